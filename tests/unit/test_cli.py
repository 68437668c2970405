"""The CLI without HAProxy: exit codes and one-line errors for usage and connection failures.

Exit codes (``haproxyctl --help``): 0 ok, 1 refused, 2 usage, 3 connection, 4 timeout,
5 unexpected reply, 130 interrupted.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from haproxyctl.cli.main import main

MISSING = "/nonexistent/x.sock"


@pytest.fixture(autouse=True)
def _no_env_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAPROXYCTL_SOCKET", raising=False)


def run(argv: list[str]) -> int:
    """``main`` returns the exit code, or argparse exits: normalise both to the code."""
    try:
        return main(argv)
    except SystemExit as exc:
        code = exc.code
    if not isinstance(code, int):
        raise AssertionError(f"exited with {code!r}, not an exit code")
    return code


def assert_one_line_error(err: str, *needles: str) -> None:
    assert err.startswith("haproxyctl: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bogus"], "invalid choice"),
        ([], "required"),
        (["state", "be/s1", "drian"], "invalid server state 'drian'"),
        (["state", "be/s1"], "expected BACKEND/SERVER"),
        (["state", "be;x/s1", "drain"], "';'"),
        (["state", "be/s1", "be/s 2", "drain"], "' '"),
        (["weight", "be/s1", "300"], "out of range"),
        (["weight", "be/s1", "abc"], "invalid weight"),
        (["weight", "be/s1", "-1"], "invalid weight"),
        (["weight", "be;s1/x", "5"], "';'"),
        (["health", "be/s1"], "invalid choice"),
        (["addr", "be/s1", "not-an-ip"], "expected an IPv4 or IPv6 address"),
        (["addr", "be/s1", "10.0.0.1", "--port", "0"], "expected 1-65535"),
        (["addr", "be/s1", "10.0.0.1", "--port", "x"], "invalid int value"),
        (["table", "set", "t", "k", "server_id"], "expected TYPE=INTEGER"),
        (["table", "set", "t", "k", "server_key=s1"], "server_key"),
        (["table", "clear", "t"], "--all"),
        (["table", "show", "t", "--where", "server_id == 2"], "invalid filter operator"),
        (["table", "show", "bad name"], "invalid stick table name"),
        (["wait", "be/s1", "sleeping"], "invalid choice"),
        (["wait", "be/s1", "drained", "--timeout", "-1"], "--timeout must be >= 0"),
        (["--timeout", "0", "info"], "--timeout must be > 0"),
        (["raw"], "required: COMMAND"),
        (["raw", "add", "map", "x", "<<"], "payload"),
        (["raw", "show info\nshow stat"], "newline"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["-s", MISSING, *argv])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert_one_line_error(err, needle)


@pytest.mark.parametrize(
    "argv",
    [["info"], ["servers"], ["backends"], ["table", "list"], ["raw", "show", "info"],
     ["map", "show", "#1"], ["state", "be/s1", "drain"], ["weight", "be/s1", "50%"]],
)
def test_missing_socket_exits_3(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["-s", MISSING, *argv])
    out, err = capsys.readouterr()
    assert code == 3
    assert out == ""
    assert_one_line_error(err, MISSING, "does not exist")


def test_missing_socket_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HAPROXYCTL_SOCKET", "unix:" + MISSING)
    assert run(["info"]) == 3
    assert_one_line_error(capsys.readouterr().err, MISSING)


def test_regular_file_is_not_a_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "admin.sock"
    path.write_text("a file socat created by mistake (reference §0 #13)\n")
    assert run(["-s", str(path), "info"]) == 3
    assert_one_line_error(capsys.readouterr().err, str(path), "not a socket")


def test_directory_is_not_a_socket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-s", str(tmp_path), "info"]) == 3
    assert_one_line_error(capsys.readouterr().err, str(tmp_path))


@pytest.fixture
def dead_socket(tmp_path: Path) -> str:
    """A leftover socket file nobody listens on (HAProxy stopped): connection refused."""
    path = str(tmp_path / "dead.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()
    return path


def test_leftover_socket_file_is_connection_refused(
    dead_socket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["-s", dead_socket, "info"]) == 3
    assert_one_line_error(capsys.readouterr().err, "connection refused")


def test_unsupported_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-s", "http://x", "info"]) == 2
    assert_one_line_error(capsys.readouterr().err, "unsupported socket address")


def test_json_error_object_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--json", "-s", MISSING, "info"]) == 3
    out, err = capsys.readouterr()
    error = json.loads(out)["error"]
    assert error["type"] == "ConnectError"
    assert error["exit_code"] == 3
    assert MISSING in error["message"]
    assert_one_line_error(err, MISSING)


def test_json_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-s", MISSING, "state", "be/s1", "drian", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error == {"type": "UsageError", "exit_code": 2,
                     "message": "invalid server state 'drian': expected ready, drain or maint"}


def test_non_utf8_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid UTF-8 in argv reaches Python as a lone surrogate (surrogateescape). It cannot be
    sent to HAProxy; the CLI must say so (exit 2), not crash with a UnicodeEncodeError
    traceback."""
    code = run(["-s", MISSING, "map", "add", "/etc/haproxy/hosts.map", "\udcff", "v"])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err)


def test_non_ascii_digit_in_table_data_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``"²".isdigit()`` is True but ``int("²")`` raises ValueError: the CLI's TYPE=INTEGER
    check must refuse it as a usage error instead of crashing with a traceback."""
    assert run(["-s", MISSING, "table", "set", "t", "k", "server_id=²"]) == 2
    assert_one_line_error(capsys.readouterr().err, "server_id")


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("haproxyctl ")
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out
    assert "master:/path[@N|@!PID]" in out
