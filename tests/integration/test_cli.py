"""The ``haproxyctl`` command against a real HAProxy: output, exit codes, one-line errors.

Most tests run ``python -m haproxyctl`` in a subprocess, as a user would; the connection-lost
test runs ``main()`` in-process, where the ``wire`` spy can tell when to kill HAProxy.
"""

from __future__ import annotations

import json
import signal
import threading

import pytest
from conftest import (
    AGENT,
    APP,
    STATIC,
    STICK,
    Rig,
    Wire,
    admin_flags,
    assert_cli_error,
    assert_cut_off,
    raw_servers_state,
    run_cli,
    slow_requests,
)

from haproxyctl.cli.main import main

pytestmark = pytest.mark.integration

SERVER_KEYS = {"backend", "server", "status", "admin_state", "weight", "scur", "qcur",
               "check_status"}


def test_servers_json(rig: Rig) -> None:
    result = run_cli("-s", rig.admin, "servers", "--json")
    assert (result.returncode, result.stderr) == (0, "")
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    assert len(rows) == 111
    assert all(set(row) >= SERVER_KEYS for row in rows)
    app = [r for r in rows if r["backend"] == APP]
    assert [(r["server"], r["status"], r["admin_state"], r["weight"], r["scur"], r["qcur"],
             r["check_status"]) for r in app] == [
        (name, "UP", "ready", 1, 0, 0, "L7OK") for name in ("s1", "s2", "s3")]

    result = run_cli("-s", rig.admin, "servers", STATIC)  # a table for people
    assert result.returncode == 0
    header, *lines = result.stdout.splitlines()
    assert header.split()[:4] == ["BACKEND", "SERVER", "STATUS", "ADMIN"]
    assert [line.split()[:2] for line in lines] == [[STATIC, "s1"], [STATIC, "s2"]]


def test_state_drain_then_wait_drained(rig: Rig) -> None:
    result = run_cli("-s", rig.admin, "state", f"{APP}/s1", f"{APP}/s2", "drain")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{APP}/s1: state drain", f"{APP}/s2: state drain"]
    assert admin_flags(rig.admin, APP, "s1") == admin_flags(rig.admin, APP, "s2") == 0x08

    result = run_cli("-s", rig.admin, "wait", f"{APP}/s1", "drained", "--timeout", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{APP}/s1: drained after ")

    result = run_cli("-s", rig.admin, "--json", "wait", f"{APP}/s2", "drained", "--timeout", "5")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["target"], out["condition"], out["status"], out["scur"]) == (
        f"{APP}/s2", "drained", "DRAIN", 0)


def test_exit_0_1_2_3_with_one_line_errors(rig: Rig) -> None:
    ok = run_cli("-s", rig.admin, "info")
    assert (ok.returncode, ok.stderr) == (0, "")
    assert "cli_level" in ok.stdout
    assert "admin" in ok.stdout

    # 1: HAProxy refused (operator level), or the server is in the wrong state.
    refused = run_cli("-s", rig.lab.operator_socket, "state", f"{APP}/s1", "maint")
    assert_cli_error(refused, 1, f"{APP}/s1", "Permission denied")
    assert admin_flags(rig.admin, APP, "s1") == 0
    wrong_state = run_cli("-s", rig.admin, "wait", f"{APP}/s1", "drained", "--timeout", "5")
    assert_cli_error(wrong_state, 1, "in service")
    no_such = run_cli("-s", rig.admin, "weight", f"{APP}/nosuch", "2")
    assert_cli_error(no_such, 1, "No such server")

    # 2: usage, nothing sent.
    assert_cli_error(run_cli("-s", rig.admin, "state", f"{APP}/s1", "up"), 2,
                     "expected ready, drain or maint")
    assert_cli_error(run_cli("-s", rig.admin, "state", f"{APP}/s1;x", "maint"), 2,
                     "character ';' is not allowed")
    assert_cli_error(run_cli("-s", rig.admin, "weight", f"{APP}/s1", "300"), 2, "0-256")
    assert_cli_error(run_cli("-s", rig.admin, "frobnicate"), 2, "invalid choice")
    assert_cli_error(run_cli("-s", rig.admin, "table", "clear", STICK), 2, "--all")

    # 3: cannot connect.
    missing = f"{rig.lab.dir}/nope.sock"
    assert_cli_error(run_cli("-s", missing, "servers"), 3, "does not exist", missing)
    assert_cli_error(run_cli("-s", rig.lab.dir, "servers"), 3, "is a directory")


def test_exit_4_when_a_wait_times_out(rig: Rig) -> None:
    (request,) = slow_requests(rig, "s3", 2.0)
    assert run_cli("-s", rig.admin, "state", f"{APP}/s3", "maint").returncode == 0
    result = run_cli("-s", rig.admin, "-q", "wait", f"{APP}/s3", "drained", "--timeout", "0.3",
                     "--interval", "0.1")
    assert_cli_error(result, 4, "not drained after 0.3s", "scur=1")
    request.join()


def test_json_errors_on_stdout(rig: Rig) -> None:
    result = run_cli("-s", rig.admin, "--json", "state", f"{APP}/nosuch", "drain")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    error = json.loads(result.stdout)["error"]
    assert (error["type"], error["exit_code"]) == ("NoSuchServer", 1)
    assert f"{APP}/nosuch" in error["message"]
    assert admin_flags(rig.admin, APP, "s1") == 0


def test_raw_show_version(rig: Rig) -> None:
    result = run_cli("-s", rig.admin, "raw", "show", "version")
    assert result.returncode == 0
    assert result.stdout.strip() == rig.raw("show version").strip()
    result = run_cli("-s", rig.admin, "raw", "show", "cli", "level")
    assert result.stdout.strip() == "admin"


def test_table_show_set_clear(rig: Rig) -> None:
    assert run_cli("-s", rig.admin, "table", "set", STICK, "10.0.0.1", "server_id=1"
                   ).stdout.strip() == f"{STICK}[10.0.0.1]: set"
    assert run_cli("-s", rig.admin, "table", "set", STICK, "10.0.0.2", "server_id=2"
                   ).returncode == 0
    assert "used:2" in rig.raw(f"show table {STICK}")

    shown = json.loads(run_cli("-s", rig.admin, "table", "show", STICK, "--json").stdout)
    assert (shown["name"], shown["type"], shown["used"]) == (STICK, "ip", 2)
    assert sorted((e["key"], e["data"]["server_id"]) for e in shown["entries"]) == [
        ("10.0.0.1", 1), ("10.0.0.2", 2)]
    text = run_cli("-s", rig.admin, "table", "show", STICK, "--where", "server_id eq 2")
    assert [line.split()[:2] for line in text.stdout.splitlines()[1:]] == [["10.0.0.2", "2"]]
    tables = json.loads(run_cli("-s", rig.admin, "--json", "table", "list").stdout)
    assert tables == [{"name": STICK, "type": "ip", "size": 102400, "used": 2}]

    assert run_cli("-s", rig.admin, "table", "clear", STICK, "--key", "10.0.0.1"
                   ).returncode == 0
    table = rig.raw(f"show table {STICK}")
    assert "key=10.0.0.1 " not in table
    assert "key=10.0.0.2 " in table
    assert run_cli("-s", rig.admin, "table", "clear", STICK, "--all").returncode == 0
    assert "used:0" in rig.raw(f"show table {STICK}")

    bad = run_cli("-s", rig.admin, "table", "set", STICK, "notanip", "server_id=1")
    assert_cli_error(bad, 2, "notanip")
    assert "used:0" in rig.raw(f"show table {STICK}")


def test_socket_from_the_environment(rig: Rig) -> None:
    env = {"HAPROXYCTL_SOCKET": rig.admin}
    result = run_cli("--json", "info", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pid"] == rig.lab.worker_pid()
    # -s wins over the environment.
    result = run_cli("-s", rig.lab.user_socket, "raw", "show", "cli", "level", env=env)
    assert result.stdout.strip() == "user"


def test_server_changes_from_the_command_line(rig: Rig) -> None:
    def ok(*args: str) -> str:
        result = run_cli("-s", rig.admin, *args)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        return result.stdout

    assert ok("weight", f"{APP}/s1", "0").strip() == f"{APP}/s1: weight 0 (initial 1)"
    ok("health", "disable", f"{APP}/s2")
    ok("agent", "disable", f"{AGENT}/a1")
    assert "port changed from '9' to '8081'" in ok("addr", f"{STATIC}/s1", "127.0.0.2",
                                                   "--port", "8081")
    value = "a;b c\\d"
    ok("map", "add", rig.map_path, "cli.example", value)
    state = raw_servers_state(rig.admin)
    assert state[(APP, "s1")]["srv_uweight"] == "0"
    assert int(state[(APP, "s2")]["srv_check_state"]) & 0x04 == 0
    assert int(state[(AGENT, "a1")]["srv_agent_state"]) & 0x04 == 0
    assert (state[(STATIC, "s1")]["srv_addr"], state[(STATIC, "s1")]["srv_port"]) == (
        "127.0.0.2", "8081")
    assert rig.map_contents()[-1] == ("cli.example", value)
    shown = json.loads(ok("map", "show", rig.map_path, "--json"))
    assert shown[-1]["value"] == value

    (request,) = slow_requests(rig, "s3", 2.0)
    sessions = json.loads(ok("sessions", f"{APP}/s3", "--json"))
    assert [(s["backend"], s["server"]) for s in sessions] == [(APP, "s3")]
    ok("shutdown-sessions", f"{APP}/s3")
    request.join(timeout=5)
    assert_cut_off(rig, request)
    rig.lab.replace_app(APP, "s3", "v1", sig=signal.SIGKILL)  # still sleeping on it


def test_verbose_logs_every_command(rig: Rig) -> None:
    result = run_cli("-v", "-s", rig.admin, "servers", APP)
    assert result.returncode == 0
    assert "show servers state" in result.stderr


# --- with a lab of its own ---------------------------------------------------------------------


def test_exit_4_when_haproxy_does_not_answer(small: Rig) -> None:
    small.lab.signal_workers(signal.SIGSTOP)
    try:
        result = run_cli("-s", small.admin, "--timeout", "0.5", "info")
    finally:
        small.lab.signal_workers(signal.SIGCONT)
    assert_cli_error(result, 4, "within 0.5s", small.admin)


def test_exit_3_when_haproxy_dies_during_the_call(small: Rig, wire: Wire,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    small.lab.signal_workers(signal.SIGSTOP)
    codes: list[int] = []
    call = threading.Thread(
        target=lambda: codes.append(main(["-s", small.admin, "--timeout", "10", "info"])))
    call.start()
    assert wire.sent_event.wait(5)
    small.lab.kill_haproxy()
    call.join(10)
    assert codes == [3]
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert err.startswith(f"haproxyctl: error: unix:{small.admin}: ")
