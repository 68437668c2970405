"""Stick tables (reference §7): entries are ``name=value`` tokens, never positions; entries are
lazy views over their line, and replies are parsed as they stream in (chunk by chunk)."""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import pickle
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxyctl.client import _IPV4_RE
from haproxyctl.errors import PermissionDenied, ProtocolError
from haproxyctl.models.table import (
    StickTable,
    TableEntry,
    TableInfo,
    TableReader,
    escape_key,
    owner_of,
    parse_table,
    parse_tables,
    unescape_key,
)

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
    """Refused when the reply is parsed, or (entries are lazy) when a field is first read."""
    with pytest.raises(ProtocolError):
        _read_all_fields(reply)


def _read_all_fields(reply: str) -> None:
    for entry in parse_table(reply).entries:
        entry.to_dict()


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
    """How HAProxy prints a string key: ``dump_text()`` of its UTF-8 bytes (src/tools.c)."""
    out: list[str] = []
    for byte in key.encode("utf-8"):
        char = chr(byte)
        if 0x20 < byte < 0x7F and char not in "\\=":
            out.append(char)
        elif char in "\t\n\r\x1b\\ =":
            out.append("\\" + {"\t": "t", "\n": "n", "\r": "r", "\x1b": "e"}.get(char, char))
        else:
            out.append(f"\\x{byte:02X}")
    return "".join(out)


@given(keys, st.integers(min_value=0, max_value=2**31), st.booleans())
def test_entry_keys_round_trip(key: str, server_id: int, shard: bool) -> None:
    extra = " shard=1" if shard else ""
    line = f"0x55aa: key={haproxy_escape(key)} use=0 exp=100{extra} server_id={server_id} "
    line += "server_key=-"
    (entry,) = parse_table(HEADER + line + "\n").entries
    assert entry.key == key
    assert entry.server_id == server_id
    assert entry.shard == (1 if shard else None)


# -- keys: dump_text() and back ----------------------------------------------------------------

#: Any key HAProxy can hold as text: dump_text() stops at NUL, and lone surrogates are not text.
any_keys = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                   min_size=1, max_size=20)


def test_keys_as_measured_on_2_6() -> None:
    """What HAProxy 2.6.12 printed for keys set with `set table` (escaped on the way in)."""
    measured = {"\x1bz": "\\ez", "a b": "a\\ b", "bs\\x": "bs\\\\x", "café": "caf\\xC3\\xA9",
                "e=q": "e\\=q", "h#x": "h#x", "lt<": "lt<", "q\"'": "q\"'", "semi;c": "semi;c",
                "x\tt": "x\\tt"}
    for key, printed in measured.items():
        assert escape_key(key) == printed == haproxy_escape(key)
        assert unescape_key(printed) == key
        (entry,) = parse_table(HEADER + f"0x1: key={printed} use=0 exp=0 server_id=1\n").entries
        assert entry.key == key


@given(any_keys, st.booleans(), st.integers(min_value=1, max_value=2**31 - 1))
def test_any_key_round_trips(key: str, shard: bool, server_id: int) -> None:
    printed = haproxy_escape(key)
    assert escape_key(key) == printed
    line = (f"0x7f0a: key={printed} use=0 exp=5{' shard=0' if shard else ''} "
            f"server_id={server_id} server_key=-")
    (entry,) = TableReader(chunks_of(HEADER + line + "\n", 7)).read_all()
    assert entry.key == key
    assert entry.server_id == server_id
    assert entry.raw == line
    owners = TableReader([HEADER + line + "\n"]).owners({server_id: "web"})
    assert owners == {"web": [key]}


def test_undecodable_key_bytes_stay_visible() -> None:
    assert unescape_key("bin\\xFF\\xC3") == "bin\\xff\\xc3"  # not UTF-8: shown, not lost
    assert unescape_key("trailing\\") == "trailing\\"


# -- lazy entries ------------------------------------------------------------------------------


def test_entries_are_lazy_views() -> None:
    line = "0x7f0: key=10.0.0.1 use=x exp=0 server_id=1"
    (entry,) = parse_table(HEADER + line + "\n").entries  # the line is not parsed yet
    assert entry.raw == line
    with pytest.raises(ProtocolError, match="non-numeric"):
        _ = entry.key
    with pytest.raises(ProtocolError):  # not cached as a success: the same error again
        _ = entry.server_id
    assert "malformed" in repr(entry)


def test_keyword_constructor_matches_the_parsed_entry() -> None:
    parsed = TableEntry.from_line("0x1: key=a\\ b use=0 exp=10 server_id=2 server_key=-")
    built = TableEntry(ptr="0x1", key="a b", use=0, exp=10, shard=None,
                       data={"server_id": 2, "server_key": None})
    assert built == parsed
    assert hash(built) == hash(parsed)
    assert built.raw == parsed.raw
    assert built.to_dict() == parsed.to_dict()
    assert repr(built) == "TableEntry(key='a b', server_id=2, server_key=None, use=0, exp=10)"
    assert TableEntry.from_line(parsed.raw + " gpc0=1") != parsed


def test_entries_are_frozen_and_copyable() -> None:
    entry = TableEntry.from_line("0x1: key=k use=0 exp=10 server_id=2 server_key=s1")
    with pytest.raises(AttributeError):
        entry.key = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.data["server_id"] = 3  # type: ignore[index]
    for clone in (copy.copy(entry), pickle.loads(pickle.dumps(entry))):
        assert clone == entry
        assert clone.server_key == "s1"


def test_owner_rule() -> None:
    names = {1: "s1", 2: "s2"}
    assert owner_of("s2", 1, names) == "s2"  # server_key wins (reference §7)
    assert owner_of(None, 1, names) == "s1"
    assert owner_of(None, 7, names) == "#7"  # an id nobody has
    assert owner_of(None, 0, names) is None  # what a refused `set table` leaves
    assert owner_of(None, -1, names) is None
    assert owner_of(None, None, names) is None


# -- streaming -----------------------------------------------------------------------------------


def chunks_of(text: str, size: int) -> list[bytes]:
    data = text.encode("utf-8")
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


def cut_at(text: str, cuts: Iterable[int]) -> list[bytes]:
    data = text.encode("utf-8")
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


TABLE = (
    "# table: be_hdr, type: string, size:102400, used:5\n"
    "0x7f69b004c210: key=alice use=0 exp=1796129 server_id=1 server_key=-\n"
    "0x56383c45f2f0: key=carol use=0 exp=1796132 server_id=1 server_key=s2\n"
    "0x7f69b004c320: key=dave use=1 exp=1796133 shard=0 server_id=2 http_req_cnt=4 "
    "server_key=s2\n"
    "0x56383c45ef50: key=with\\ space use=0 exp=1796129 server_id=9 server_key=-\n"
    "0x56383c45ef60: key=caf\\xC3\\xA9 use=0 exp=1796129 server_id=0 server_key=-\n"
)


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_chunking_gives_the_same_table(cuts: list[int]) -> None:
    whole = parse_table(TABLE)
    streamed = TableReader(cut_at(TABLE, cuts)).table()
    assert streamed == whole
    assert [e.to_dict() for e in streamed.entries] == [e.to_dict() for e in whole.entries]
    assert TableReader(cut_at(TABLE, cuts)).owners({1: "s1", 2: "s2"}) == {
        "s1": ["alice"], "s2": ["carol", "dave"], "#9": ["with space"]}


def test_iteration_and_header() -> None:
    reader = TableReader(chunks_of(TABLE, 16))
    assert reader.info == TableInfo("be_hdr", "string", 102400, 5)
    first = next(reader)
    assert first.key == "alice"
    assert [e.key for e in reader] == ["carol", "dave", "with space", "café"]
    assert list(reader) == []


def test_reading_is_incremental() -> None:
    """Entries come out as their lines arrive, before the rest of the reply exists."""
    pieces: list[bytes] = []

    def source() -> Iterable[bytes]:
        for chunk in chunks_of(TABLE, 40):
            pieces.append(chunk)
            yield chunk

    reader = TableReader(source())
    assert reader.info.name == "be_hdr"
    # The header and the line after it (where a refusal would be) are 4 reads away at most.
    assert len(pieces) <= 4
    next(reader)
    assert len(pieces) < len(chunks_of(TABLE, 40))


def test_close_closes_the_source() -> None:
    closed: list[bool] = []

    def source() -> Iterable[bytes]:
        try:
            yield from chunks_of(TABLE, 40)
        finally:
            closed.append(True)

    with TableReader(source()) as reader:
        next(reader)
    assert closed == [True]


def test_privilege_note_while_streaming() -> None:
    reply = golden_text("show-table-be_stick-user.txt")
    for size in (1, 5, 40, 1000):
        with pytest.raises(PermissionDenied) as info:
            TableReader(chunks_of(reply + "\n", size)).read_all()
        assert info.value.reply == reply
        with pytest.raises(PermissionDenied):
            TableReader(chunks_of(reply + "\n", size)).owners({})


def test_empty_reply_with_a_name() -> None:
    """HAProxy 2.6 prints nothing for `show table <t> key <absent>` (reference §7)."""
    info = TableInfo("be_stick", "ip", 102400, 3)
    assert TableReader([b""], name="be_stick", info=info).table() == StickTable(info, ())
    assert TableReader([b""], name="be_stick").info == TableInfo("be_stick", "", 0, 0)
    assert TableReader([], name="be_stick").owners({}) == {}
    with pytest.raises(ProtocolError, match="empty"):
        _ = TableReader([b""]).info


def test_garbage_after_the_header_is_refused_at_parse() -> None:
    for garbage in ("# table: other, type: ip, size:1, used:0", "No such table", "key=a use=0"):
        with pytest.raises(ProtocolError):
            TableReader(chunks_of(TABLE + garbage + "\n", 64)).read_all()
        with pytest.raises(ProtocolError):
            TableReader(chunks_of(TABLE + garbage + "\n", 64)).owners({})


# -- owners ------------------------------------------------------------------------------------

entry_specs = st.lists(
    st.tuples(any_keys,
              st.one_of(st.none(), st.sampled_from([0, 1, 2, 3, 42, -1])),  # server_id
              st.one_of(st.none(), st.sampled_from(["s1", "s2", "other", "-"])),  # server_key
              st.booleans()),  # 2.7 shard field
    max_size=25)


def table_text(specs: Sequence[tuple[str, int | None, str | None, bool]],
               *, server_key_column: bool = True) -> str:
    lines = [f"# table: t, type: string, size:100, used:{len(specs)}"]
    for i, (key, sid, skey, shard) in enumerate(specs):
        line = f"0x{0x1000 + i:x}: key={haproxy_escape(key)} use=0 exp=100"
        line += " shard=1" if shard else ""
        line += f" server_id={'-' if sid is None else sid} gpc0=0"
        if server_key_column:
            line += f" server_key={skey or '-'}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@given(entry_specs, st.booleans(), st.integers(min_value=1, max_value=64))
def test_owners_without_entries_equal_the_entries_owners(
    specs: list[tuple[str, int | None, str | None, bool]], skey_column: bool, size: int,
) -> None:
    names = {1: "s1", 2: "s2", 3: "s3"}
    text = table_text(specs, server_key_column=skey_column)
    expected: dict[str, list[str]] = {}
    for entry in parse_table(text).entries:
        owner = entry.owner(names)
        if owner is not None:
            expected.setdefault(owner, []).append(entry.key)
    owners = TableReader(chunks_of(text, size)).owners(names)
    assert {k: sorted(v) for k, v in owners.items()} == {k: sorted(v) for k, v in
                                                         expected.items()}


@given(entry_specs, st.lists(st.integers(0, 3)), st.integers(min_value=1, max_value=64))
def test_in_use_keys_are_those_the_entries_say(
    specs: list[tuple[str, int | None, str | None, bool]], uses: list[int], size: int,
) -> None:
    """``pins()`` finds exactly the keys whose entry has ``use`` > 0, whatever
    the chunking and the keys' escaping."""
    text = table_text(specs)
    lines = text.split("\n")
    for i, use in enumerate(uses[:len(specs)]):
        lines[i + 1] = lines[i + 1].replace(" use=0 ", f" use={use} ", 1)
    text = "\n".join(lines)
    expected = {e.key for e in parse_table(text).entries if e.use}
    pins = TableReader(chunks_of(text, size)).pins({1: "s1"})
    assert pins.busy == expected
    assert pins.owners == TableReader(chunks_of(text, size)).owners({1: "s1"})


def test_owners_of_a_layout_the_fast_path_does_not_know() -> None:
    """Fields are still found by name when they come in another order."""
    text = (HEADER + "0x1: key=a server_id=2 use=0 exp=1\n"
            "0x2: key=b server_key=s1 use=0 exp=1 server_id=2\n"
            "0x3: key=c use=0 exp=1\n")
    assert TableReader([text]).owners({2: "s2"}) == {"s2": ["a"], "s1": ["b"]}
    with pytest.raises(ProtocolError, match="server_id"):
        TableReader([HEADER + "0x1: key=a use=0 exp=1 server_id=x\n"]).owners({})


@given(st.text(max_size=300), st.integers(min_value=1, max_value=50))
def test_garbage_raises_only_protocol_errors(text: str, size: int) -> None:
    for body in (text, HEADER + text, TABLE + text):
        for consume in (_read_every_field, _owners):
            with contextlib.suppress(ProtocolError, PermissionDenied):
                consume(TableReader(chunks_of(body, size), name="t"))


def _read_every_field(reader: TableReader) -> None:
    _ = reader.info
    for entry in reader:
        with contextlib.suppress(ProtocolError):
            _ = (entry.ptr, entry.key, entry.use, entry.exp, entry.shard, entry.data,
                 entry.server_id, entry.server_key, entry.owner({1: "a"}), entry.to_dict())
        repr(entry)


def _owners(reader: TableReader) -> None:
    reader.owners({1: "a"})


# -- the fast IPv4 check used for keys -------------------------------------------------------------


@given(st.one_of(st.ip_addresses(v=4).map(str),
                 st.text(alphabet="0123456789.", max_size=16),
                 st.text(max_size=16)))
def test_ipv4_check_agrees_with_ipaddress(text: str) -> None:
    try:
        ipaddress.IPv4Address(text)
        valid = True
    except ValueError:
        valid = False
    assert bool(_IPV4_RE.fullmatch(text)) == valid, text
