"""Bad input and refusals: a clear, typed error, and nothing changed in HAProxy."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    APP,
    STICK,
    Rig,
    Wire,
    assert_cli_error,
    free_tcp_port_refusing,
    run_cli,
    server_settings,
)

from haproxyctl import (
    Client,
    ConnectError,
    HAProxyError,
    InvalidArgument,
    NoSuchBackend,
    NoSuchMap,
    NoSuchServer,
    NoSuchTable,
    PermissionDenied,
    UnknownCommand,
    UsageError,
)

pytestmark = pytest.mark.integration

BAD_NAMES = [
    "s1;set server be_app/s2 state maint",
    "s1\nset server be_app/s2 state maint",
    "s1\\",
    "s1\\;x",
    "s 1",
    "s1\r",
    "s1\0",
    "",
]


@pytest.fixture
def unchanged(rig: Rig, wire: Wire) -> Iterator[None]:
    """The test must leave every server as it was and write nothing at all."""
    before = server_settings(rig.admin)
    wire.clear()
    yield
    assert wire.sent == []
    assert server_settings(rig.admin) == before


# --- names, words, numbers ---------------------------------------------------------------------


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_server_name_is_refused_before_sending(client: Client, bad: str) -> None:
    for ref in (f"{APP}/{bad}", (APP, bad)):
        with pytest.raises(UsageError):
            client.set_state(ref, "maint")
    with pytest.raises(UsageError):
        client.set_weight((APP, bad), 0)
    with pytest.raises(UsageError):
        client.shutdown_sessions((APP, bad))
    with pytest.raises(UsageError):
        client.set_state_many([f"{APP}/s1", (APP, bad)], "maint")


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_backend_name_is_refused_before_sending(client: Client, bad: str) -> None:
    with pytest.raises(UsageError):
        client.set_state((bad, "s1"), "maint")
    with pytest.raises(UsageError):
        client.servers(bad)
    with pytest.raises(UsageError):
        client.get_weight((bad, "s1"))


@pytest.mark.usefixtures("unchanged")
def test_the_error_names_the_offending_character(client: Client) -> None:
    with pytest.raises(UsageError) as caught:
        client.set_state(f"{APP}/s1;shutdown sessions server {APP}", "maint")
    assert "character ';' is not allowed" in str(caught.value)
    assert caught.value.exit_code == 2
    with pytest.raises(UsageError, match="BACKEND/SERVER"):
        client.set_state(f"{APP}/s1/x", "maint")


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("word", ["up", "disabled", "", "ready;", "drain maint", "0"])
def test_state_word_other_than_ready_drain_maint(client: Client, word: str) -> None:
    with pytest.raises(UsageError, match="expected ready, drain or maint"):
        client.set_state(f"{APP}/s1", word)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("weight", [300, -1, "257", "-1", "abc", "1.5", "5 %", "", True])
def test_weight_out_of_range_or_malformed(client: Client, weight: int | str) -> None:
    with pytest.raises(UsageError):
        client.set_weight(f"{APP}/s1", weight)


def test_bulk_validates_its_state_and_weight_before_any_io(client: Client, wire: Wire) -> None:
    wire.clear()
    with pytest.raises(UsageError):
        client.set_state_many([f"{APP}/s1"], "bogus")
    with pytest.raises(UsageError):
        client.set_weight_many([f"{APP}/s1"], 300)
    assert wire.sent == []
    with Client("/nonexistent/haproxy.sock") as unreachable, pytest.raises(UsageError):
        unreachable.set_state_many(["b/s"], "bogus")


@pytest.mark.usefixtures("unchanged")
def test_weight_300_says_why(client: Client) -> None:
    with pytest.raises(UsageError, match="out of range: HAProxy accepts 0-256"):
        client.set_weight(f"{APP}/s1", 300)


@pytest.mark.usefixtures("unchanged")
def test_raw_refuses_a_second_line(client: Client) -> None:
    with pytest.raises(UsageError):
        client.raw(f"show version\nset server {APP}/s1 state maint")
    with pytest.raises(UsageError):
        client.raw("   ")


# --- objects HAProxy does not know -------------------------------------------------------------


def _raises(exc: type[HAProxyError], call: Callable[[], object]) -> HAProxyError:
    with pytest.raises(exc) as caught:
        call()
    return caught.value


def test_unknown_backend(client: Client, rig: Rig) -> None:
    before = server_settings(rig.admin)
    err = _raises(NoSuchBackend, lambda: client.set_state("nosuch/s1", "drain"))
    assert isinstance(err, NoSuchBackend)
    assert (err.reason, err.command) == ("No such backend.", "set server nosuch/s1 state drain")
    assert err.address == f"unix:{rig.admin}"
    for call in (
        lambda: client.get_weight("nosuch/s1"),
        lambda: client.server("nosuch/s1"),
        lambda: client.servers("nosuch"),
        lambda: client.stats("nosuch"),
        lambda: client.servers_state("nosuch"),
        lambda: client.servers_conn("nosuch"),
        lambda: client.server_stat("nosuch/s1"),
        lambda: client.wait_drained("nosuch/s1", timeout=1),
    ):
        _raises(NoSuchBackend, call)
    assert server_settings(rig.admin) == before


def test_unknown_server(client: Client, rig: Rig) -> None:
    before = server_settings(rig.admin)
    err = _raises(NoSuchServer, lambda: client.set_state(f"{APP}/nosuch", "drain"))
    assert isinstance(err, NoSuchServer)
    assert (err.reason, err.command) == ("No such server.", f"set server {APP}/nosuch state drain")
    assert err.exit_code == 1
    for call in (
        lambda: client.set_weight(f"{APP}/nosuch", 0),
        lambda: client.get_weight(f"{APP}/nosuch"),
        lambda: client.server(f"{APP}/nosuch"),
        lambda: client.server_stat(f"{APP}/nosuch"),
        lambda: client.shutdown_sessions(f"{APP}/nosuch"),
        lambda: client.enable_health(f"{APP}/nosuch"),
        lambda: client.sessions(f"{APP}/nosuch"),
        lambda: client.wait_up(f"{APP}/nosuch", timeout=1),
    ):
        _raises(NoSuchServer, call)
    assert server_settings(rig.admin) == before


def test_unknown_table_map_and_command(client: Client, rig: Rig) -> None:
    _raises(NoSuchTable, lambda: client.table("nosuch"))
    _raises(NoSuchTable, lambda: client.table_set("nosuch", "10.0.0.1", {"server_id": 1}))
    _raises(NoSuchMap, lambda: client.map_entries("/nonexistent.map"))
    _raises(NoSuchMap, lambda: client.map_add("/nonexistent.map", "k", "v"))
    err = _raises(UnknownCommand, lambda: client.raw("frobnicate the servers"))
    assert isinstance(err, UnknownCommand)
    assert err.reason == "Unknown command"
    _raises(InvalidArgument, lambda: client.table(STICK, where=["gpc0 gt 0"]))
    _raises(UsageError, lambda: client.table(STICK, where=["server_id equals 2"]))
    assert "used:0" in rig.raw(f"show table {STICK}")


# --- sockets -----------------------------------------------------------------------------------


def test_socket_path_that_does_not_exist(tmp_path: Path) -> None:
    path = os.path.join(str(tmp_path), "haproxy.sock")
    with Client(path) as c, pytest.raises(ConnectError) as caught:
        c.version()
    assert caught.value.errno == errno.ENOENT
    assert "socket does not exist" in str(caught.value)
    assert caught.value.exit_code == 3


def test_socket_path_that_is_a_regular_file(tmp_path: Path) -> None:
    path = os.path.join(str(tmp_path), "haproxy.sock")
    with open(path, "w", encoding="ascii") as f:
        f.write("not a socket\n")
    with Client(f"unix:{path}") as c, pytest.raises(ConnectError, match="not a socket"):
        c.version()
    with open(path, encoding="ascii") as f:
        assert f.read() == "not a socket\n"  # untouched (socat would have written into it)


def test_socket_path_that_is_a_directory(tmp_path: Path) -> None:
    with Client(str(tmp_path)) as c, pytest.raises(ConnectError, match="is a directory"):
        c.version()


def test_tcp_address_that_refuses() -> None:
    holder, port = free_tcp_port_refusing()
    with holder, Client(f"tcp://127.0.0.1:{port}", timeout=2) as c:
        with pytest.raises(ConnectError, match="connection refused") as caught:
            c.version()
        assert caught.value.errno == errno.ECONNREFUSED


def test_a_socket_file_left_behind_refuses(small: Rig) -> None:
    small.lab.kill_haproxy()
    assert stat.S_ISSOCK(os.stat(small.admin).st_mode)  # the file is still there
    with Client(small.admin) as c, pytest.raises(ConnectError, match="connection refused"):
        c.version()


def test_permission_denied_on_the_socket(rig: Rig) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the CLI as another user (nobody)")
    # mode 600 socket owned by root: let nobody reach the socket itself (the lab dir is 700).
    directory = rig.lab.dir
    mode = stat.S_IMODE(os.stat(directory).st_mode)
    os.chmod(directory, 0o711)
    try:
        result = run_cli("-s", rig.admin, "info", as_nobody=True)
    finally:
        os.chmod(directory, mode)
    assert_cli_error(result, 3, "permission denied", rig.admin)


# --- privilege levels --------------------------------------------------------------------------


def test_operator_socket_cannot_change_servers(rig: Rig) -> None:
    before = server_settings(rig.admin)
    with Client(rig.lab.operator_socket) as operator:
        for call in (
            lambda: operator.set_state(f"{APP}/s1", "maint"),
            lambda: operator.set_weight(f"{APP}/s1", 0),
            lambda: operator.shutdown_sessions(f"{APP}/s1"),
            lambda: operator.disable_health(f"{APP}/s1"),
        ):
            err = _raises(PermissionDenied, call)
            assert isinstance(err, PermissionDenied)
            assert err.reason == "Permission denied"
            assert err.exit_code == 1
            assert "level admin" in str(err)
        # What operator level may do: read sessions, change stick tables.
        assert operator.sessions() != []
        operator.table_set(STICK, "10.0.0.9", {"server_id": 1})
        assert [e.key for e in operator.table(STICK).entries] == ["10.0.0.9"]
    assert server_settings(rig.admin) == before


def test_user_socket_cannot_read_tables_or_sessions(rig: Rig) -> None:
    rig.raw(f"set table {STICK} key 10.0.0.1 data.server_id 1")
    with Client(rig.lab.user_socket) as user:
        assert [t.name for t in user.tables()] == [STICK]  # the list is public
        with pytest.raises(PermissionDenied, match="needs operator or admin"):
            user.table(STICK)
        with pytest.raises(PermissionDenied):
            user.sessions()
        with pytest.raises(PermissionDenied):
            user.table_clear(STICK, key="10.0.0.1")
        assert user.cli_level() == "user"
    assert "key=10.0.0.1 " in rig.raw(f"show table {STICK}")
