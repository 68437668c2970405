"""Command builders: the exact line sent to HAProxy, and usage errors before anything is sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxyctl import commands as cmd
from haproxyctl.commands import TableFilter
from haproxyctl.errors import UsageError
from haproxyctl.models.state import AdminState
from haproxyctl.models.weight import WeightSpec
from haproxyctl.protocol.encode import Command, Expect, ServerRef, unescape_words


@pytest.mark.parametrize(
    ("command", "line", "expect"),
    [
        (cmd.show_stat(), "show stat", Expect.DATA),
        (cmd.show_stat(3, 4, 2), "show stat 3 4 2", Expect.DATA),
        (cmd.show_stat("be_app", -1, -1), "show stat be_app -1 -1", Expect.DATA),
        (cmd.show_stat(-1, cmd.STAT_BACKENDS, -1), "show stat -1 2 -1", Expect.DATA),
        (cmd.show_stat(-1, cmd.STAT_SERVERS), "show stat -1 4 -1", Expect.DATA),
        (cmd.show_servers_state(), "show servers state", Expect.DATA),
        (cmd.show_servers_state("be_app"), "show servers state be_app", Expect.DATA),
        (cmd.show_servers_state("#3"), "show servers state #3", Expect.DATA),
        (cmd.show_servers_conn(), "show servers conn", Expect.DATA),
        (cmd.show_servers_conn("be_app"), "show servers conn be_app", Expect.DATA),
        (cmd.get_weight("be/s1"), "get weight be/s1", Expect.DATA),
        (cmd.set_state("be/s1", "drain"), "set server be/s1 state drain", Expect.EMPTY),
        (cmd.set_state("be/s1", "MAINT"), "set server be/s1 state maint", Expect.EMPTY),
        (cmd.set_state(ServerRef("#3", "#1"), AdminState.READY), "set server #3/#1 state ready",
         Expect.EMPTY),
        (cmd.set_weight("be/s1", "50%"), "set server be/s1 weight 50%", Expect.EMPTY),
        (cmd.set_weight("be/s1", 0), "set server be/s1 weight 0", Expect.EMPTY),
        (cmd.set_weight("be/s1", 256), "set server be/s1 weight 256", Expect.EMPTY),
        (cmd.set_weight("be/s1", WeightSpec(7)), "set server be/s1 weight 7", Expect.EMPTY),
        (cmd.set_health("be/s1", "stopping"), "set server be/s1 health stopping", Expect.EMPTY),
        (cmd.set_agent("be/s1", "down"), "set server be/s1 agent down", Expect.EMPTY),
        (cmd.enable_health("be/s1"), "enable health be/s1", Expect.EMPTY),
        (cmd.disable_health("be/s1"), "disable health be/s1", Expect.EMPTY),
        (cmd.enable_agent("be/s1"), "enable agent be/s1", Expect.EMPTY),
        (cmd.disable_agent("be/s1"), "disable agent be/s1", Expect.EMPTY),
        (cmd.set_address("be/s1", "127.0.0.2"), "set server be/s1 addr 127.0.0.2",
         Expect.MESSAGE),
        (cmd.set_address("be/s1", "::1", 8080), "set server be/s1 addr ::1 port 8080",
         Expect.MESSAGE),
        (cmd.set_address("be/s1", "2001:DB8:0:0::1"), "set server be/s1 addr 2001:db8::1",
         Expect.MESSAGE),
        (cmd.shutdown_sessions("be/s1"), "shutdown sessions server be/s1", Expect.EMPTY),
        (cmd.show_table(), "show table", Expect.DATA),
        (cmd.show_table("be_stick"), "show table be_stick", Expect.DATA),
        (cmd.show_table("t", key="a b"), "show table t key a\\ b", Expect.DATA),
        (cmd.show_table("t", where=[TableFilter("server_id", "eq", 2)]),
         "show table t data.server_id eq 2", Expect.DATA),
        (cmd.set_table("t", "a b", {"server_id": 2}), "set table t key a\\ b data.server_id 2",
         Expect.EMPTY),
        (cmd.set_table("t", "10.0.0.1", {"server_id": 1, "gpc0": 0}),
         "set table t key 10.0.0.1 data.server_id 1 data.gpc0 0", Expect.EMPTY),
        (cmd.set_table("t", "k", {}), "set table t key k", Expect.EMPTY),
        (cmd.clear_table("t", where=[TableFilter.parse("server_id eq 2")]),
         "clear table t data.server_id eq 2", Expect.EMPTY),
        (cmd.clear_table("t", key="with space"), "clear table t key with\\ space", Expect.EMPTY),
        (cmd.clear_table("t"), "clear table t", Expect.EMPTY),
        (cmd.clear_table("px/t"), "clear table px/t", Expect.EMPTY),
        (cmd.show_map("#2"), "show map #2", Expect.DATA),
        (cmd.show_map("/etc/haproxy/hosts.map"), "show map /etc/haproxy/hosts.map", Expect.DATA),
        (cmd.add_map("/x/y.map", "k;1", "v\\2"), "add map /x/y.map k\\;1 v\\\\2", Expect.EMPTY),
        (cmd.set_map("/x/y.map", "k", "a b"), "set map /x/y.map k a\\ b", Expect.EMPTY),
        (cmd.del_map("/x/y.map", "k"), "del map /x/y.map k", Expect.EMPTY),
        (cmd.clear_map("/x/y.map"), "clear map /x/y.map", Expect.EMPTY),
    ],
)
def test_exact_lines(command: Command, line: str, expect: Expect) -> None:
    assert command.line == line
    assert command.expect is expect
    assert command.encode() == line.encode() + b"\n"


def test_idempotence_flags() -> None:
    """Commands that may not be sent twice after a lost connection."""
    assert cmd.add_map("m", "k", "v").idempotent is False
    assert cmd.del_map("m", "k").idempotent is False
    assert cmd.set_state("be/s1", "drain").idempotent is True
    assert cmd.set_map("m", "k", "v").idempotent is True


@pytest.mark.parametrize("state", ["drian", "up", "", "enable", "ready now"])
def test_set_state_refuses_unknown_state(state: str) -> None:
    with pytest.raises(UsageError, match="expected ready, drain or maint"):
        cmd.set_state("be/s1", state)


@pytest.mark.parametrize("weight", [257, -1, "abc", True, "300", "1.5", "", "-1%"])
def test_set_weight_refuses(weight: Any) -> None:
    with pytest.raises(UsageError) as info:
        cmd.set_weight("be/s1", weight)
    assert info.value.field == "weight"


@pytest.mark.parametrize("health", ["UP", "drain", "", "ok"])
def test_set_health_refuses(health: str) -> None:
    with pytest.raises(UsageError, match="expected up, stopping or down"):
        cmd.set_health("be/s1", health)


def test_set_agent_refuses() -> None:
    with pytest.raises(UsageError, match="expected up or down"):
        cmd.set_agent("be/s1", "stopping")


@pytest.mark.parametrize("address", ["", "localhost", "10.0.0", "1.2.3.4:80", "::1%", "300.1.1.1",
                                     "10.0.0.1 port 80"])
def test_set_address_refuses_bad_ip(address: str) -> None:
    with pytest.raises(UsageError, match="expected an IPv4 or IPv6 address") as info:
        cmd.set_address("be/s1", address)
    assert info.value.field == "address"


@pytest.mark.parametrize("port", [0, 65536, -1, True, "80", 8.0])
def test_set_address_refuses_bad_port(port: Any) -> None:
    with pytest.raises(UsageError, match="expected 1-65535") as info:
        cmd.set_address("be/s1", "10.0.0.1", port)
    assert info.value.field == "port"


@given(st.integers(min_value=1, max_value=65535))
def test_set_address_any_valid_port(port: int) -> None:
    assert cmd.set_address("be/s1", "10.0.0.1", port).line.endswith(f" port {port}")


@pytest.mark.parametrize(
    "ref", ["be", "be/", "/s1", "be/s1/x", "be;x/s1", "be/s 1", "bé/s1", ("be", "s;1"), 42]
)
def test_server_references_are_validated(ref: Any) -> None:
    builders: list[Callable[[Any], Command]] = [
        cmd.get_weight, cmd.enable_health, cmd.shutdown_sessions,
        lambda r: cmd.set_state(r, "drain"), lambda r: cmd.set_weight(r, 1),
    ]
    for build in builders:
        with pytest.raises(UsageError):
            build(ref)


def test_as_ref_forms() -> None:
    ref = ServerRef("be", "s1")
    assert cmd.as_ref(ref) is ref
    assert cmd.as_ref("be/s1") == ref
    assert cmd.as_ref(("be", "s1")) == ref


@pytest.mark.parametrize("name", ["be;x", "be x", "", "a\nb"])
def test_backend_names_are_validated(name: str) -> None:
    with pytest.raises(UsageError):
        cmd.show_servers_state(name)
    with pytest.raises(UsageError):
        cmd.show_servers_conn(name)
    with pytest.raises(UsageError):
        cmd.show_stat(name, 4, -1)


# -- stick tables ---------------------------------------------------------------------------------


def test_set_table_refuses_server_key() -> None:
    with pytest.raises(UsageError, match="server_key") as info:
        cmd.set_table("t", "k", {"server_key": 1})
    assert info.value.field == "data.server_key"


@pytest.mark.parametrize(
    ("data", "field"),
    [({"server_id": -1}, "data.server_id"), ({"server_id": True}, "data.server_id"),
     ({"server_id": "2"}, "data.server_id"), ({"gpc0": 2**64}, "data.gpc0"),
     ({"Server_ID": 1}, "data type"), ({"data.server_id": 1}, "data type"),
     ({"a b": 1}, "data type")],
)
def test_set_table_refuses_bad_data(data: dict[str, Any], field: str) -> None:
    with pytest.raises(UsageError) as info:
        cmd.set_table("t", "k", data)
    assert info.value.field == field


def test_set_table_accepts_largest_counter() -> None:
    assert cmd.set_table("t", "k", {"gpc0": 2**64 - 1}).line.endswith(f"data.gpc0 {2**64 - 1}")


@pytest.mark.parametrize("name", ["", "a b", "t;x", "a/b/c", "/t", "t/", "tablé", "a\tb"])
def test_invalid_table_names(name: str) -> None:
    with pytest.raises(UsageError, match="invalid stick table name") as info:
        cmd.show_table(name)
    assert info.value.field == "table"
    with pytest.raises(UsageError):
        cmd.clear_table(name)
    with pytest.raises(UsageError):
        cmd.set_table(name, "k", {"server_id": 1})


def test_key_and_filters_are_exclusive() -> None:
    with pytest.raises(UsageError, match="not both"):
        cmd.show_table("t", key="a", where=[TableFilter("server_id", "eq", 1)])
    with pytest.raises(UsageError, match="not both"):
        cmd.clear_table("t", key="a", where=[TableFilter("server_id", "eq", 1)])


def test_at_most_four_filters() -> None:
    four = [TableFilter("gpc0", op, 1) for op in ("eq", "ne", "le", "ge")]
    assert cmd.show_table("t", where=four).line.count("data.gpc0") == 4
    with pytest.raises(UsageError, match="at most 4"):
        cmd.show_table("t", where=[*four, TableFilter("gpc1", "lt", 1)])
    with pytest.raises(UsageError, match="at most 4"):
        cmd.clear_table("t", where=[*four, TableFilter("gpc1", "lt", 1)])


def test_empty_key_is_refused() -> None:
    with pytest.raises(UsageError, match="empty"):
        cmd.set_table("t", "", {"server_id": 1})
    with pytest.raises(UsageError, match="newline"):
        cmd.clear_table("t", key="a\nclear table t")


@pytest.mark.parametrize(
    ("text", "line"),
    [("server_id eq 2", "data.server_id eq 2"), ("data.server_id ne 0", "data.server_id ne 0"),
     ("  gpc0   gt  10 ", "data.gpc0 gt 10"), ("http_req_rate(10000) ge 5",
                                                 "data.http_req_rate(10000) ge 5")],
)
def test_filter_parse(text: str, line: str) -> None:
    assert str(TableFilter.parse(text)) == line
    assert TableFilter.parse(text).args() == line.split(" ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server_id eq", "expected 'TYPE OP VALUE'"),
        ("server_id eq 2 3", "expected 'TYPE OP VALUE'"),
        ("", "expected 'TYPE OP VALUE'"),
        ("server_id eq two", "not an integer"),
        ("server_id == 2", "invalid filter operator"),
        ("server_id EQ 2", "invalid filter operator"),
        ("server_id eq -1", "non-negative"),
        ("Server_id eq 1", "invalid stick table data type"),
        ("data. eq 1", "invalid stick table data type"),
        ("server-id eq 1", "invalid stick table data type"),
    ],
)
def test_filter_parse_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        TableFilter.parse(text)


@given(
    st.sampled_from(["server_id", "gpc0", "http_req_cnt", "conn_rate(3000)"]),
    st.sampled_from(["eq", "ne", "le", "ge", "lt", "gt"]),
    st.integers(min_value=0, max_value=2**64 - 1),
)
def test_filter_round_trip(data_type: str, op: str, value: int) -> None:
    f = TableFilter.parse(f"{data_type} {op} {value}")
    assert f == TableFilter(data_type, op, value)
    assert TableFilter.parse(str(f)) == f
    words = unescape_words(cmd.clear_table("t", where=[f]).line)
    assert words == ["clear", "table", "t", f"data.{data_type}", op, str(value)]


sendable = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\0"),
    min_size=1,
)


@given(sendable)
def test_any_key_is_sent_as_one_word(key: str) -> None:
    line = cmd.set_table("t", key, {"server_id": 1}).line
    assert unescape_words(line) == ["set", "table", "t", "key", key, "data.server_id", "1"]


@given(sendable, sendable)
def test_map_arguments_are_sent_as_one_word_each(key: str, value: str) -> None:
    line = cmd.add_map("/x.map", key, value).line
    assert unescape_words(line) == ["add", "map", "/x.map", key, value]


# -- re-pinning --------------------------------------------------------------------------------


def test_repin_lines() -> None:
    ((key, clear, set_),) = cmd.repin_each("be_stick", [("a b;c", 3)])
    assert key == "a b;c"
    assert clear.line == "clear table be_stick key a\\ b\\;c"
    assert set_.line == "set table be_stick key a\\ b\\;c data.server_id 3"
    assert clear.expect is set_.expect is Expect.EMPTY
    assert clear.idempotent
    assert set_.idempotent
    assert cmd.repin_each("t", []) == []


@given(st.lists(st.tuples(sendable, st.integers(min_value=1, max_value=2**31 - 1)),
                min_size=1, max_size=5))
def test_any_repin_key_stays_one_word_in_one_command(moves: list[tuple[str, int]]) -> None:
    """A ';' or a space in a key never starts a second command nor splits the key."""
    for (key, sid), (k, clear, set_) in zip(moves, cmd.repin_each("t", moves), strict=True):
        assert k == key
        assert unescape_words(clear.line) == ["clear", "table", "t", "key", key]
        assert unescape_words(set_.line) == ["set", "table", "t", "key", key, "data.server_id",
                                             str(sid)]


@pytest.mark.parametrize(
    ("moves", "field"),
    [
        ([("10.0.0.1", 1), ("a\nclear table t", 2)], "key"),
        ([("a\rb", 1)], "key"),
        ([("a\0b", 1)], "key"),
        ([("", 1)], "key"),
        ([("k", 0)], "server_id"),
        ([("k", -1)], "server_id"),
        ([("k", 2**31)], "server_id"),  # HAProxy would store it as a negative id
        ([("k", True)], "server_id"),
        ([("k", "2")], "server_id"),
        ([("k", 1, 2)], "move"),
        (["k"], "move"),
    ],
)
def test_repin_refuses_a_bad_move_before_building_anything(moves: Any, field: str) -> None:
    with pytest.raises(UsageError) as info:
        cmd.repin_each("t", moves)
    assert info.value.field == field


def test_repin_refuses_a_bad_table_name() -> None:
    with pytest.raises(UsageError, match="invalid stick table name"):
        cmd.repin_each("t;x", [("k", 1)])
