"""Stick tables (reference §7): entries are ``name=value`` tokens, never positions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxyctl.errors import PermissionDenied, ProtocolError
from haproxyctl.models.table import StickTable, TableInfo, parse_table, parse_tables

from ._helpers import golden_text

HEADER = "# table: be_stickstr, type: string, size:1024, used:8\n"


def test_reference_listing() -> None:
    tables = parse_tables(
        "# table: be_stickstr, type: string, size:1024, used:4\n"
        "# table: be_stick, type: ip, size:1024, used:4\n"
    )
    assert tables == [TableInfo("be_stickstr", "string", 1024, 4),
                      TableInfo("be_stick", "ip", 1024, 4)]
    assert parse_tables("") == []


def test_reference_contents_2_6() -> None:
    table = parse_table(
        HEADER
        + "0x561129e38c50: key=alice use=0 exp=1799985 server_id=1 http_req_cnt=0 server_key=s1\n"
        "0x561129e40010: key=eve use=0 exp=1800000 server_id=2 http_req_cnt=0 server_key=-\n"
        "0x7f043c046770: key=with\\ space use=0 exp=1800000 server_id=1 http_req_cnt=0 "
        "server_key=-\n"
    )
    assert table.info == TableInfo("be_stickstr", "string", 1024, 8)
    alice, eve, spaced = table.entries
    assert (alice.ptr, alice.key, alice.use, alice.exp, alice.shard) == (
        "0x561129e38c50", "alice", 0, 1799985, None)
    assert alice.server_id == 1
    assert alice.server_key == "s1"
    assert alice.data == {"server_id": 1, "http_req_cnt": 0, "server_key": "s1"}
    assert eve.server_key is None  # "server_key=-": created with `set table`
    assert eve.data["server_key"] is None
    assert eve.server_id == 2
    assert spaced.key == "with space"
    assert spaced.server_id == 1


def test_shard_field_of_2_7() -> None:
    table = parse_table(
        "# table: be_stick, type: ip, size:1024, used:1\n"
        "0x7f0: key=127.0.0.2 use=0 exp=1706502 shard=0 server_id=1 server_key=s1\n"
    )
    (entry,) = table.entries
    assert entry.shard == 0
    assert entry.exp == 1706502
    assert entry.server_id == 1
    assert "shard" not in entry.data
    assert entry.to_dict() == {"ptr": "0x7f0", "key": "127.0.0.2", "use": 0, "exp": 1706502,
                               "shard": 0, "data": {"server_id": 1, "server_key": "s1"}}


def test_rate_counters_keep_their_name() -> None:
    (entry,) = parse_table(
        HEADER + "0x1: key=k use=2 exp=10 http_req_rate(10000)=5 gpc0=-1 server_key=s2\n"
    ).entries
    assert entry.data["http_req_rate(10000)"] == 5
    assert entry.data["gpc0"] == -1
    assert entry.use == 2


def test_escaped_keys() -> None:
    (entry,) = parse_table(HEADER + "0x1: key=a\\ b\\\\c\\=d use=0 exp=0\n").entries
    assert entry.key == "a b\\c=d"


def test_privilege_note_is_permission_denied() -> None:
    reply = golden_text("show-table-be_stick-user.txt")
    with pytest.raises(PermissionDenied) as info:
        parse_table(reply)
    assert info.value.reply == reply
    assert "be_stick" in str(info.value)
    assert "operator" in str(info.value)


def test_no_output_for_an_unparsable_key() -> None:
    """`show table be_stick key notanip` prints nothing, not even the header (§7)."""
    assert golden_text("show-table-be_stick-badkey.txt") == ""
    assert parse_table("", name="be_stick") == StickTable(TableInfo("be_stick", "", 0, 0), ())
    with pytest.raises(ProtocolError, match="empty"):
        parse_table("")


def test_header_only() -> None:
    table = parse_table("# table: be_stick, type: ip, size:1024, used:0\n")
    assert table.entries == ()
    assert table.to_dict() == {"name": "be_stick", "type": "ip", "size": 1024, "used": 0,
                               "entries": []}


@pytest.mark.parametrize(
    "reply",
    [
        "No such table",
        "# table: t, type: ip\n",
        "# table: t, type: ip, size:x, used:0\n",
        HEADER + "key=a use=0\n",  # no pointer
        HEADER + "0x1: use=0 exp=0\n",  # no key
        HEADER + "0x1: key=a junk\n",  # token without '='
        HEADER + "0x1: key=a use=x exp=0\n",
        HEADER + "0x1: key=a use=0 exp=soon\n",
        HEADER + "0x1: key=a use=0 exp=0 shard=?\n",
        HEADER + "0xzz: key=a\n",
    ],
)
def test_malformed_table_replies(reply: str) -> None:
    with pytest.raises(ProtocolError):
        parse_table(reply)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("--5", "--5"), ("-", None), ("5-", "5-"), ("0x10", "0x10"), ("²", "²"), ("1e3", "1e3"),
     ("-0", 0), ("-7", -7), ("12", 12)],
)
def test_odd_data_values_never_crash(value: str, expected: int | str | None) -> None:
    """A data value that is not a plain integer is kept as text (None for "-"); it must never
    escape as a bare ValueError. ``"--5".lstrip("-").isdigit()`` and ``"²".isdigit()`` are
    both True, but int() refuses them."""
    reply = HEADER + f"0x1: key=a use=0 exp=0 gpc0={value}\n"
    try:
        (entry,) = parse_table(reply).entries
    except ProtocolError:  # refusing the reply would be acceptable too
        return
    assert entry.data["gpc0"] == expected


def test_parse_tables_refuses_content_lines() -> None:
    with pytest.raises(ProtocolError):
        parse_tables(HEADER + "0x1: key=a use=0 exp=0\n")


keys = st.text(alphabet=st.sampled_from("ab1 \\=.:-"), min_size=1, max_size=10)


def haproxy_escape(key: str) -> str:
    """How HAProxy prints a string key (spaces and backslashes escaped)."""
    return key.replace("\\", "\\\\").replace(" ", "\\ ")


@given(keys, st.integers(min_value=0, max_value=2**31), st.booleans())
def test_entry_keys_round_trip(key: str, server_id: int, shard: bool) -> None:
    extra = " shard=1" if shard else ""
    line = f"0x55aa: key={haproxy_escape(key)} use=0 exp=100{extra} server_id={server_id} "
    line += "server_key=-"
    (entry,) = parse_table(HEADER + line + "\n").entries
    assert entry.key == key
    assert entry.server_id == server_id
    assert entry.shard == (1 if shard else None)
