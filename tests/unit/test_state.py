"""``show servers state``: exact admin/operational bits, read in *decimal* (reference §3.2, §5.2).

Reading ``srv_admin_state`` as hex is the client-native bug that reports drained servers as in
maintenance: ``16`` (IDRAIN) read as ``0x16`` has IMAINT|CMAINT set.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxyctl.errors import ProtocolError, UsageError
from haproxyctl.models.server import Server, join_servers
from haproxyctl.models.stat import parse_server_stats
from haproxyctl.models.state import (
    AdminFlag,
    AdminState,
    CheckState,
    OpState,
    ServerState,
    parse_servers_state,
)

from ._helpers import golden_text

HEADER = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health "
    "srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord "
    "srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
)


def state_line(admin: str = "0", op: str = "2", name: str = "s2", check_state: str = "6") -> str:
    return (f"3 be_cookie 2 {name} 127.0.0.1 {op} {admin} 1 1 93 15 3 3 {check_state} 0 0 0 - "
            "18082 - 0 0 - - 0")


def one(admin: str = "0", op: str = "2", check_state: str = "6") -> ServerState:
    (state,) = parse_servers_state(HEADER + state_line(admin, op, check_state=check_state) + "\n")
    return state


@pytest.mark.parametrize(
    ("admin", "state"),
    [
        ("0", AdminState.READY),
        ("1", AdminState.MAINT),  # FMAINT
        ("2", AdminState.MAINT),  # IMAINT (tracked server in maint)
        ("4", AdminState.MAINT),  # CMAINT (config "disabled")
        ("5", AdminState.MAINT),  # FMAINT|CMAINT (add server ... disabled)
        ("8", AdminState.DRAIN),  # FDRAIN
        ("9", AdminState.MAINT),  # maint wins over drain
        ("10", AdminState.MAINT),  # IMAINT|FDRAIN; as hex 0x10 would read IDRAIN -> drain
        ("16", AdminState.DRAIN),  # IDRAIN; as hex 0x16 would read IMAINT|CMAINT -> maint
        ("24", AdminState.DRAIN),  # FDRAIN|IDRAIN; as hex 0x24 would read maint
        ("32", AdminState.MAINT),  # RMAINT (DNS resolution failed)
        ("40", AdminState.MAINT),  # FDRAIN|RMAINT
        ("64", AdminState.MAINT),  # HMAINT
    ],
)
def test_admin_state_from_decimal_flags(admin: str, state: AdminState) -> None:
    server = one(admin)
    assert server.admin_state is state
    assert int(server.admin_flags) == int(admin)
    assert server.to_dict()["admin_state"] == state.value
    assert server.to_dict()["admin_flags"] == int(admin)


@given(st.integers(min_value=0, max_value=127))
def test_admin_state_matches_the_bit_definitions(flags: int) -> None:
    maint = flags & (0x01 | 0x02 | 0x04 | 0x20 | 0x40)
    drain = flags & (0x08 | 0x10)
    expected = AdminState.MAINT if maint else AdminState.DRAIN if drain else AdminState.READY
    assert one(str(flags)).admin_state is expected
    assert AdminState.from_flags(flags) is expected


def test_flags_are_exact_bits() -> None:
    assert one("40").admin_flags == AdminFlag.FDRAIN | AdminFlag.RMAINT
    assert AdminFlag.FDRAIN in one("9").admin_flags
    assert AdminFlag.FMAINT in one("9").admin_flags


@pytest.mark.parametrize(
    ("op", "state"),
    [("0", OpState.STOPPED), ("1", OpState.STARTING), ("2", OpState.RUNNING),
     ("3", OpState.STOPPING)],
)
def test_op_state(op: str, state: OpState) -> None:
    assert one(op=op).op_state is state
    assert one(op=op).to_dict()["op_state"] == state.name.lower()


@pytest.mark.parametrize(
    ("check_state", "configured", "enabled"),
    [("6", True, True), ("14", True, True), ("2", True, False), ("0", False, False),
     ("7", True, True), ("-", False, False)],
)
def test_check_state_bits(check_state: str, configured: bool, enabled: bool) -> None:
    server = one(check_state=check_state)
    assert server.has_checks is configured
    assert server.checks_enabled is enabled
    assert server.has_agent is False


def test_paused_checks_in_maint() -> None:
    assert CheckState.PAUSED in one(check_state="14").check_state


@pytest.mark.parametrize(
    ("admin", "op"),
    [("-", "2"), ("x", "2"), ("0x8", "2"), ("1.5", "2"), ("0", "-"), ("0", "4"), ("0", "run")],
)
def test_bad_state_values_raise_protocol_error(admin: str, op: str) -> None:
    server = one(admin, op)
    assert server.name == "s2"  # the row itself parses; the bad value fails on access
    with pytest.raises(ProtocolError, match=r"srv_(admin|op)_state"):
        server.validate()
    with pytest.raises(ProtocolError):
        server.to_dict()


def test_values_and_dashes() -> None:
    server = one("8")
    assert server.backend_id == 3
    assert server.backend == "be_cookie"
    assert server.id == 2
    assert server.name == "s2"
    assert server.addr == "127.0.0.1"
    assert server.user_weight == 1
    assert server.initial_weight == 1
    assert server.seconds_since_change == 93
    assert server.check_status_code == 15
    assert server.check_result == 3
    assert server.check_health == 3
    assert server.fqdn is None  # "-"
    assert server.port == 18082
    assert server.check_port == 0
    assert server.check_addr is None
    assert "admin_state=<AdminState.DRAIN" in repr(server)


def test_columns_are_read_by_name() -> None:
    """A future format (columns reordered, new ones) is parsed by name, not refused.
    (The header is recognised by its first column, ``be_id``, which therefore stays first.)"""
    lines = (HEADER + state_line("8")).split("\n")
    names = lines[1][2:].split(" ")
    values = lines[2].split(" ")
    order = [0, *reversed(range(1, len(names)))]
    header = "# " + " ".join([*(names[i] for i in order), "new_col"])
    row = " ".join([*(values[i] for i in order), "zz"])
    (server,) = parse_servers_state(f"2\n{header}\n{row}\n")
    assert server.to_dict() == one("8").to_dict()


def test_missing_columns_read_as_none() -> None:
    (server,) = parse_servers_state(
        "1\n# be_id be_name srv_id srv_name srv_op_state srv_admin_state\n3 be 1 s1 2 8\n"
    )
    assert server.admin_state is AdminState.DRAIN
    assert server.user_weight is None
    assert server.port is None
    assert server.has_checks is False


@pytest.mark.parametrize(
    "reply", ["", "1", "Can't find backend.", "1\nbe_id be_name", "# be_id be_name\n3 be"]
)
def test_not_a_servers_state_reply(reply: str) -> None:
    with pytest.raises(ProtocolError):
        parse_servers_state(reply)


def test_header_only() -> None:
    assert parse_servers_state(HEADER) == []


def test_short_row_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="fewer than its header"):
        parse_servers_state(HEADER + "3 be_cookie 2\n")


# -- AdminState.parse -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "state"),
    [("ready", AdminState.READY), ("DRAIN", AdminState.DRAIN), (" maint ", AdminState.MAINT),
     (AdminState.DRAIN, AdminState.DRAIN)],
)
def test_admin_state_parse(text: str | AdminState, state: AdminState) -> None:
    assert AdminState.parse(text) is state
    assert str(state) == state.value


@pytest.mark.parametrize("text", ["drian", "", "up", "maintenance", "0"])
def test_admin_state_parse_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="expected ready, drain or maint") as info:
        AdminState.parse(text)
    assert info.value.field == "state"


# -- joining stat and state -----------------------------------------------------------------------


def test_join_golden_servers() -> None:
    servers = {s.ref: s for s in join_servers(
        parse_server_stats(golden_text("show-stat.txt")),
        parse_servers_state(golden_text("show-servers-state.txt")),
    )}
    assert len(servers) == 10
    s1 = servers["be_app/s1"]
    assert (s1.admin_state, s1.op_state, s1.weight, s1.initial_weight) == (
        AdminState.READY, OpState.RUNNING, 5, 10)
    assert s1.effective_weight == 5
    assert s1.up is True
    assert s1.has_checks
    assert s1.checks_enabled
    assert servers["be_app/s2"].admin_state is AdminState.DRAIN
    assert servers["be_app/s2"].up is True
    assert servers["be_app/s3"].admin_state is AdminState.MAINT
    assert servers["be_app/s3"].up is False
    assert servers["be_app/s4"].has_checks is False
    # Drained but failing its checks: show stat says DOWN, the admin bits say drain.
    down = servers["be_stick/s2"]
    assert (down.status, down.admin_state, down.op_state) == ("DOWN", AdminState.DRAIN,
                                                              OpState.STOPPED)
    assert down.up is False
    tracker = servers["be_static/t1"]
    assert tracker.admin_state is AdminState.MAINT
    assert tracker.admin_flags == AdminFlag.IMAINT
    d = s1.to_dict()
    assert d["backend"] == "be_app"
    assert d["server"] == "s1"
    assert d["admin_state"] == "ready"
    assert d["op_state"] == "running"
    assert d["port"] == s1.port
    assert isinstance(d["port"], int)
    assert "admin_state='ready'" in repr(s1)


def test_join_leaves_out_servers_seen_in_one_listing_only() -> None:
    stats = parse_server_stats(golden_text("show-stat.txt"))
    states = parse_servers_state(golden_text("show-servers-state-be_app.txt"))
    joined = join_servers(stats, states)
    assert [s.ref for s in joined] == ["be_app/s1", "be_app/s2", "be_app/s3", "be_app/s4"]


def test_from_parts_refuses_mismatched_ids() -> None:
    stats = parse_server_stats(golden_text("show-stat.txt"))
    states = parse_servers_state(golden_text("show-servers-state.txt"))
    assert Server.from_parts(stats[0], states[0]).ref == "be_app/s1"
    with pytest.raises(ProtocolError, match="cannot join"):
        Server.from_parts(stats[0], states[1])
