"""Every write of the client against a real HAProxy, checked through the lab's raw socket."""

from __future__ import annotations

import signal
import time

import pytest
from conftest import (
    AGENT,
    APP,
    DYN,
    MANY,
    STATIC,
    STICK,
    Rig,
    Wire,
    admin_flags,
    assert_cut_off,
    raw_servers_state,
    raw_stat,
    refs,
    server_settings,
    slow_requests,
    wait_scur,
)

from haproxyctl import (
    AdminState,
    BulkResult,
    Client,
    InvalidArgument,
    NoSuchBackend,
    NoSuchServer,
    OpState,
    PartialFailure,
    PermissionDenied,
    UsageError,
)
from haproxyctl import commands as cmd

pytestmark = pytest.mark.integration

HUNDRED = refs(MANY, [f"s{i}" for i in range(1, 101)])


# --- state -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "state", "status", "flags"),
    [
        ("drain", AdminState.DRAIN, "DRAIN", 0x08),
        ("maint", AdminState.MAINT, "MAINT", 0x01),
        ("DRAIN", AdminState.DRAIN, "DRAIN", 0x08),
        (AdminState.MAINT, AdminState.MAINT, "MAINT", 0x01),
    ],
)
def test_set_state(client: Client, rig: Rig, word: str | AdminState, state: AdminState,
                   status: str, flags: int) -> None:
    client.set_state(f"{APP}/s1", word)
    assert admin_flags(rig.admin, APP, "s1") == flags
    server = client.server(f"{APP}/s1")
    assert (server.admin_state, server.status) == (state, status)
    assert raw_stat(rig.lab, APP, "s1")["status"] == status

    client.set_state(f"{APP}/s1", "ready")
    assert admin_flags(rig.admin, APP, "s1") == 0
    assert client.server(f"{APP}/s1").admin_state is AdminState.READY


def test_maint_clears_drain_and_ready_clears_both(client: Client, rig: Rig) -> None:
    client.set_state(f"{STATIC}/s1", "drain")
    client.set_state(f"{STATIC}/s1", "maint")
    assert admin_flags(rig.admin, STATIC, "s1") == 0x01
    client.set_state(f"{STATIC}/s1", "ready")
    assert admin_flags(rig.admin, STATIC, "s1") == 0


# --- weight ------------------------------------------------------------------------------------


def test_set_weight_absolute(client: Client, rig: Rig) -> None:
    client.set_weight(f"{APP}/s2", 0)
    w = client.get_weight(f"{APP}/s2")
    assert (w.current, w.initial) == (0, 1)
    row = raw_stat(rig.lab, APP, "s2")
    assert (row["weight"], row["status"]) == ("0", "UP")  # weight 0 is not a state change
    client.set_weight(f"{MANY}/s7", 256)
    assert raw_servers_state(rig.admin)[(MANY, "s7")]["srv_uweight"] == "256"
    assert client.get_weight(f"{MANY}/s7").current == 256


def test_set_weight_percent_of_initial(client: Client) -> None:
    client.set_weight(f"{DYN}/d1", "50%")
    assert client.get_weight(f"{DYN}/d1").current == 5
    client.set_weight(f"{DYN}/d1", "200%")
    assert client.get_weight(f"{DYN}/d1").current == 20
    client.set_weight(f"{DYN}/d1", "100%")
    assert client.get_weight(f"{DYN}/d1").current == 10


def test_static_backend_refuses_a_weight_other_than_0_or_100_percent(client: Client) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.set_weight(f"{STATIC}/s1", 5)
    assert caught.value.reason == (
        "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.")
    assert caught.value.command == f"set server {STATIC}/s1 weight 5"
    assert client.get_weight(f"{STATIC}/s1").current == 10  # unchanged

    client.set_weight(f"{STATIC}/s1", "0%")
    assert client.get_weight(f"{STATIC}/s1").current == 0
    client.set_weight(f"{STATIC}/s1", "100%")
    assert client.get_weight(f"{STATIC}/s1").current == 10


# --- health, agent -----------------------------------------------------------------------------


def test_disable_and_enable_health(client: Client, rig: Rig) -> None:
    client.disable_health(f"{APP}/s1")
    s1 = client.server(f"{APP}/s1")
    assert (s1.status, s1.has_checks, s1.checks_enabled, s1.check_status) == (
        "no check", True, False, None)
    assert int(raw_servers_state(rig.admin)[(APP, "s1")]["srv_check_state"]) & 0x04 == 0

    client.enable_health(f"{APP}/s1")
    s1 = client.server(f"{APP}/s1")
    assert (s1.checks_enabled, s1.status, s1.check_status) == (True, "UP", "L7OK")


def test_enable_health_without_a_check_configured(client: Client) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.enable_health(f"{STATIC}/s1")
    assert caught.value.reason == "Health check was not configured on this server, cannot enable."


def test_disable_and_enable_agent(client: Client, rig: Rig) -> None:
    def agent_bits() -> int:
        return int(raw_servers_state(rig.admin)[(AGENT, "a1")]["srv_agent_state"])

    assert agent_bits() & 0x04
    client.disable_agent(f"{AGENT}/a1")
    assert not agent_bits() & 0x04
    assert client.server(f"{AGENT}/a1").has_agent  # still configured
    client.enable_agent(f"{AGENT}/a1")
    assert agent_bits() & 0x04


def test_enable_agent_on_a_server_without_agent(client: Client) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.enable_agent(f"{AGENT}/s1")
    assert caught.value.reason == "Agent was not configured on this server, cannot enable."


def test_set_health_forces_the_operational_state(client: Client) -> None:
    ref = f"{AGENT}/s1"  # no health check: nothing overrides the forced state
    client.set_health(ref, "down")
    s = client.server(ref)
    assert (s.status, s.op_state) == ("DOWN", OpState.STOPPED)
    assert s.admin_state is AdminState.READY
    client.set_health(ref, "stopping")
    s = client.server(ref)
    assert (s.status, s.op_state) == ("NOLB", OpState.STOPPING)
    client.set_health(ref, "up")
    s = client.server(ref)
    assert (s.status, s.op_state) == ("no check", OpState.RUNNING)
    with pytest.raises(UsageError):
        client.set_health(ref, "sideways")


# --- address -----------------------------------------------------------------------------------


def test_set_address_and_port(client: Client, rig: Rig) -> None:
    message = client.set_address(f"{STATIC}/s2", "127.0.0.2", 8082)
    assert message == ("IP changed from '127.0.0.1' to '127.0.0.2', port changed from '9' to "
                       "'8082' by 'stats socket command'")
    (s1, s2) = client.servers_state(STATIC)
    assert (s2.addr, s2.port) == ("127.0.0.2", 8082)
    assert (s1.addr, s1.port) == ("127.0.0.1", 9)
    raw = raw_servers_state(rig.admin)[(STATIC, "s2")]
    assert (raw["srv_addr"], raw["srv_port"]) == ("127.0.0.2", "8082")
    assert raw_stat(rig.lab, STATIC, "s2")["addr"] == "127.0.0.2:8082"

    message = client.set_address(f"{STATIC}/s2", "127.0.0.3")
    assert message.startswith("IP changed from '127.0.0.2' to '127.0.0.3'")
    server = client.server(f"{STATIC}/s2")
    assert (server.address, server.port) == ("127.0.0.3", 8082)

    for bad_address, port in (("not-an-ip", None), ("127.0.0.1", 0), ("127.0.0.1", 70000)):
        with pytest.raises(UsageError):
            client.set_address(f"{STATIC}/s2", bad_address, port)
    assert client.server(f"{STATIC}/s2").address == "127.0.0.3"


# --- sessions ----------------------------------------------------------------------------------


def test_shutdown_sessions_cuts_a_request_in_flight(client: Client, rig: Rig) -> None:
    (request,) = slow_requests(rig, "s2", 3.0)
    assert client.server_stat(f"{APP}/s2").scur == 1
    start = time.monotonic()
    client.shutdown_sessions(f"{APP}/s2")
    request.join(timeout=5)
    assert time.monotonic() - start < 2.0  # cut, not finished
    assert_cut_off(rig, request)  # 502 from HAProxy, or no response (3.0.6+)
    wait_scur(rig.lab, APP, "s2", lambda n: n == 0)
    assert client.server_stat(f"{APP}/s2").scur == 0
    # The app itself is still sleeping on the request HAProxy gave up on; a graceful stop of
    # the lab would wait for it. Replace it at once.
    rig.lab.replace_app(APP, "s2", "v1", sig=signal.SIGKILL)


# --- stick tables ------------------------------------------------------------------------------


def _raw_table(rig: Rig) -> str:
    return rig.raw(f"show table {STICK}")


def test_table_set_and_clear_by_key(client: Client, rig: Rig) -> None:
    client.table_set(STICK, "10.0.0.1", {"server_id": 1})
    client.table_set(STICK, "10.0.0.2", {"server_id": 2})
    table = _raw_table(rig)
    assert "used:2" in table
    assert "key=10.0.0.1 " in table
    assert "server_id=1" in table
    client.table_set(STICK, "10.0.0.1", {"server_id": 2})  # update
    assert client.table(STICK, key="10.0.0.1").entries[0].server_id == 2

    client.table_clear(STICK, key="10.0.0.1")
    table = _raw_table(rig)
    assert "key=10.0.0.1 " not in table
    assert "key=10.0.0.2 " in table

    client.table_clear(STICK)  # no filter: everything
    assert "used:0" in _raw_table(rig)


def test_table_clear_by_data_filter(client: Client, rig: Rig) -> None:
    for key, sid in (("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.3", 2), ("10.0.0.4", 1)):
        client.table_set(STICK, key, {"server_id": sid})
    client.table_clear(STICK, where=["server_id eq 2"])
    assert sorted(e.key for e in client.table(STICK).entries) == ["10.0.0.1", "10.0.0.4"]
    assert "used:2" in _raw_table(rig)


@pytest.mark.parametrize("key", ["notanip", "10.0.0.300", "::1", "10.0.0.1;clear table x"])
def test_table_set_refuses_a_key_of_the_wrong_type(client: Client, rig: Rig, key: str) -> None:
    with pytest.raises(UsageError, match="not valid for stick table"):
        client.table_set(STICK, key, {"server_id": 1})
    assert _raw_table(rig).startswith(f"# table: {STICK}, type: ip, size:102400, used:0\n")


# --- maps --------------------------------------------------------------------------------------


def test_map_add_set_del_clear(client: Client, rig: Rig) -> None:
    client.map_add(rig.map_path, "a.example", "v1")
    assert rig.map_contents() == [("example.com", "be_app"), ("a.example", "v1")]
    client.map_set(rig.map_path, "a.example", "v2")
    assert [(e.key, e.value) for e in client.map_entries(rig.map_path)] == [
        ("example.com", "be_app"), ("a.example", "v2")]
    client.map_del(rig.map_path, "example.com")
    assert rig.map_contents() == [("a.example", "v2")]
    with pytest.raises(InvalidArgument):
        client.map_del(rig.map_path, "example.com")  # Key not found.
    with pytest.raises(InvalidArgument):
        client.map_set(rig.map_path, "nope.example", "x")  # entry not found.
    client.map_clear(rig.map_path)
    assert rig.map_contents() == []
    assert client.map_entries(rig.map_path) == []


@pytest.mark.parametrize(
    "value",
    ["a;b", "two words", "back\\slash", "x;y z\\w", "ends<<", "<<", "tab\there", "a\\;b",
     "semi;colon;set server be_app/s1 state maint"],
)
def test_map_values_are_stored_exactly(client: Client, rig: Rig, value: str) -> None:
    client.map_add(rig.map_path, "k.example", value)
    client.map_add(rig.map_path, "after.example", "still-a-command")
    assert rig.map_contents() == [("example.com", "be_app"), ("k.example", value),
                                  ("after.example", "still-a-command")]
    assert [e.value for e in client.map_entries(rig.map_path)][1] == value
    client.map_set(rig.map_path, "after.example", value)
    assert rig.map_contents()[2] == ("after.example", value)
    assert admin_flags(rig.admin, APP, "s1") == 0  # nothing after a ';' ran


# --- bulk --------------------------------------------------------------------------------------


def test_set_state_many_changes_100_servers_in_one_round_trip(client: Client, rig: Rig,
                                                             wire: Wire) -> None:
    client.version()  # open the session, so the writes below are the calls' own
    wire.clear()
    results = client.set_state_many(HUNDRED, "maint")
    assert [r.target for r in results] == HUNDRED
    assert all(isinstance(r, BulkResult) and r.ok and r.error is None for r in results)
    assert results[41].command == f"set server {MANY}/s42 state maint"
    # One write to check every server exists, one write with all 100 changes.
    assert len(wire.sent) == 2
    assert wire.sent[0] == f"show servers state {MANY}\n".encode()
    assert wire.sent[1].decode().splitlines() == [f"set server {r} state maint" for r in HUNDRED]
    state = raw_servers_state(rig.admin)
    assert {state[(MANY, f"s{i}")]["srv_admin_state"] for i in range(1, 101)} == {"1"}

    client.set_state_many(HUNDRED, AdminState.READY)
    state = raw_servers_state(rig.admin)
    assert {state[(MANY, f"s{i}")]["srv_admin_state"] for i in range(1, 101)} == {"0"}


def test_bulk_with_one_unknown_server_changes_nothing(client: Client, rig: Rig,
                                                      wire: Wire) -> None:
    targets = [*HUNDRED[:99], f"{MANY}/nosuch"]
    with pytest.raises(NoSuchServer, match="nosuch") as caught:
        client.set_state_many(targets, "maint")
    assert "nothing was changed" in str(caught.value)
    assert not any(line.startswith("set server") for line in wire.commands())
    state = raw_servers_state(rig.admin)
    assert {state[(MANY, f"s{i}")]["srv_admin_state"] for i in range(1, 101)} == {"0"}

    before = server_settings(rig.admin)
    with pytest.raises(NoSuchBackend):
        client.set_weight_many([f"{MANY}/s1", "nosuch_backend/s1"], 5)
    assert server_settings(rig.admin) == before


def test_bulk_refused_on_an_operator_socket_reports_every_item(rig: Rig) -> None:
    targets = HUNDRED[:5]
    with Client(rig.lab.operator_socket) as operator, pytest.raises(PartialFailure) as caught:
        operator.set_state_many(targets, "drain")
    results = caught.value.results
    assert [r.target for r in results] == targets
    assert len(caught.value.failed) == 5
    assert all(isinstance(r.error, PermissionDenied) for r in results)
    assert all(r.error is not None and r.error.reason == "Permission denied" for r in results)
    assert "5 of 5 changes failed" in str(caught.value)
    assert caught.value.exit_code == 1
    state = raw_servers_state(rig.admin)
    assert {state[(MANY, f"s{i}")]["srv_admin_state"] for i in range(1, 6)} == {"0"}


def test_bulk_partial_failure_applies_the_other_items(client: Client, rig: Rig) -> None:
    targets = [f"{MANY}/s1", f"{MANY}/nosuch", f"{MANY}/s3"]
    with pytest.raises(PartialFailure) as caught:
        client.set_state_many(targets, "drain", check_exists=False)
    assert [r.ok for r in caught.value.results] == [True, False, True]
    failed = caught.value.results[1]
    assert isinstance(failed.error, NoSuchServer)
    assert failed.to_dict() == {"target": f"{MANY}/nosuch",
                                "command": f"set server {MANY}/nosuch state drain",
                                "ok": False, "error": "No such server."}
    assert admin_flags(rig.admin, MANY, "s1") == 0x08
    assert admin_flags(rig.admin, MANY, "s3") == 0x08

    results = client.set_state_many(targets, "ready", check_exists=False, raise_on_error=False)
    assert [r.ok for r in results] == [True, False, True]
    assert admin_flags(rig.admin, MANY, "s1") == 0


def test_set_weight_many(client: Client, rig: Rig) -> None:
    targets = HUNDRED[10:20]
    results = client.set_weight_many(targets, 7)
    assert all(r.ok for r in results)
    state = raw_servers_state(rig.admin)
    assert [state[(MANY, t.split("/")[1])]["srv_uweight"] for t in targets] == ["7"] * 10
    assert state[(MANY, "s21")]["srv_uweight"] == "1"


def test_bulk_with_prepared_commands(client: Client, rig: Rig) -> None:
    results = client.bulk([
        ("weight", cmd.set_weight(f"{DYN}/d1", "50%")),
        ("drain", cmd.set_state(f"{DYN}/d2", "drain")),
        ("bad", cmd.set_weight(f"{STATIC}/s1", 3)),
    ], raise_on_error=False)
    assert [r.ok for r in results] == [True, True, False]
    assert isinstance(results[2].error, InvalidArgument)
    assert client.get_weight(f"{DYN}/d1").current == 5
    assert admin_flags(rig.admin, DYN, "d2") == 0x08
