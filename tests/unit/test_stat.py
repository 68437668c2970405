"""``show stat`` CSV: columns are found by header name, whatever their order, number or version.

The base data is a real 2.6.12 reply (``tests/fixtures/haproxy-2.6/show-stat.txt``); the tests
reorder, add, drop and quote columns and check that the typed values do not change.
"""

from __future__ import annotations

import contextlib
import csv
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxyctl.errors import ProtocolError
from haproxyctl.models._fields import RowView
from haproxyctl.models.stat import (
    BackendStat,
    FrontendStat,
    ServerStat,
    Stats,
    parse_header,
    parse_server_stats,
    parse_server_stats_stream,
    parse_stats,
)

from ._helpers import golden_text

GOLDEN = golden_text("show-stat.txt")
#: Columns that every reply has in the same place and that the parser relies on.
FIXED = ("pxname", "svname")

Table = tuple[list[str], list[list[str]]]


def to_table(reply: str) -> Table:
    """Header names (without "# ") and rows, trailing empty column included."""
    lines = [line for line in reply.split("\n") if line]
    header = next(csv.reader([lines[0][2:]]))
    rows = [next(csv.reader([line])) for line in lines[1:]]
    assert all(len(row) == len(header) for row in rows)
    return header, rows


def csv_field(value: str) -> str:
    """Quote like HAProxy's csv_enc(): only fields with a comma or a quote."""
    if "," in value or '"' in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def from_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["# " + ",".join(header)] + [",".join(csv_field(v) for v in row) for row in rows]
    return "\n".join(lines)


def views(stats: Stats) -> dict[str, list[dict[str, Any]]]:
    return {
        "frontends": [f.to_dict() for f in stats.frontends],
        "backends": [b.to_dict() for b in stats.backends],
        "servers": [s.to_dict() for s in stats.servers],
    }


EXPECTED = views(parse_stats(GOLDEN))
HEADER, ROWS = to_table(GOLDEN)
#: Every column except the fixed ones, the row type and the trailing empty one.
MOVABLE = [name for name in HEADER if name not in (*FIXED, "")]
DROPPABLE = [name for name in MOVABLE if name != "type"]
READ_COLUMNS = sorted(
    {f.name for view in (ServerStat, BackendStat, FrontendStat) for f in view._FIELDS} - set(FIXED)
)


def test_golden_base_is_what_the_tests_expect() -> None:
    # Guards the other tests in this module: they are only meaningful on a rich reply.
    assert HEADER[:2] == ["pxname", "svname"]
    assert HEADER[-1] == ""
    assert HEADER.index("-") == 103  # 2.6.12 layout (reference §0 #15)
    assert len(EXPECTED["servers"]) == 10
    assert len(EXPECTED["backends"]) == 4
    assert len(EXPECTED["frontends"]) == 3
    assert set(READ_COLUMNS) <= set(HEADER)


def reorder(header: list[str], rows: list[list[str]], order: list[str]) -> Table:
    positions = [header.index(name) for name in order]
    return order, [[row[i] for i in positions] for row in rows]


unknown_names = st.text(alphabet="abcdefghij_0123", min_size=1, max_size=12).map(lambda s: "x_" + s)
unknown_values = st.text(alphabet=st.sampled_from('ab1 ,"-.'), max_size=6)


@given(st.permutations(MOVABLE), st.lists(unknown_names, unique=True, max_size=5), st.data())
def test_any_column_order_and_unknown_columns_give_the_same_values(
    order: list[str], extra: list[str], data: st.DataObject
) -> None:
    header, rows = reorder(HEADER, ROWS, [*FIXED, *order, ""])
    for name in extra:
        pos = data.draw(st.integers(min_value=2, max_value=len(header) - 1), label="position")
        header.insert(pos, name)
        for row in rows:
            row.insert(pos, data.draw(unknown_values, label=name))
    reply = from_table(header, rows)
    assert views(parse_stats(reply)) == EXPECTED
    assert [s.to_dict() for s in parse_server_stats(reply)] == EXPECTED["servers"]


@given(st.sets(st.sampled_from(DROPPABLE)))
def test_dropped_columns_read_as_absent(dropped: set[str]) -> None:
    keep = [name for name in HEADER if name not in dropped]
    header, rows = reorder(HEADER, ROWS, keep)
    stats = parse_stats(from_table(header, rows))
    for kind, got in (("frontends", stats.frontends), ("backends", stats.backends),
                      ("servers", stats.servers)):
        assert len(got) == len(EXPECTED[kind])
        for row, expected in zip(got, EXPECTED[kind], strict=True):
            _check_row(row, expected, dropped)


def _check_row(row: RowView, expected: dict[str, Any], dropped: set[str]) -> None:
    for field in row._FIELDS:
        value = getattr(row, field.attr)
        if field.name in dropped:
            assert value == field.convert(""), field.attr
            assert value in (None, 0, "", False)
        else:
            assert value == expected[field.attr], field.attr


def test_dropping_every_optional_column_reads_none_and_zero() -> None:
    header, rows = reorder(HEADER, ROWS, [*FIXED, "type", ""])
    server = next(s for s in parse_server_stats(from_table(header, rows)) if s.name == "s1")
    assert server.backend == "be_app"
    assert server.status == ""
    assert server.weight is None
    assert server.scur == 0
    assert server.qcur == 0
    assert server.check_status is None
    assert server.check_running is False
    assert server.active is False
    assert server.fully_healthy is None
    assert server.drained is True


def test_haproxy_2_8_header_layout() -> None:
    """2.8+ inserts srid, sess_other ... proto before "-", which moves from 103 to 113."""
    new = ["srid", "sess_other", "h1sess", "h2sess", "h3sess", "req_other", "h1req", "h2req",
           "h3req", "proto"]
    at = HEADER.index("-")
    header = HEADER[:at] + new + HEADER[at:]
    rows = [row[:at] + [str(i) for i in range(len(new))] + row[at:] for row in ROWS]
    assert header.index("-") == 113
    assert views(parse_stats(from_table(header, rows))) == EXPECTED


def test_pre_2_6_header_without_late_columns() -> None:
    """An older or trimmed reply: nothing after uweight (no agg_*, no "-", no modules)."""
    cut = HEADER.index("uweight") + 1
    header, rows = [*HEADER[:cut], ""], [[*row[:cut], ""] for row in ROWS]
    assert views(parse_stats(from_table(header, rows))) == EXPECTED


def test_quoted_fields_with_commas_and_quotes() -> None:
    header, rows = HEADER, [list(row) for row in ROWS]
    s1 = next(i for i, row in enumerate(rows) if row[1] == "s1")
    rows[s1][header.index("last_chk")] = 'HTTP status check returned code <503>, "busy"'
    rows[s1][header.index("check_desc")] = "Layer7 wrong status, again"
    rows[s1][header.index("cookie")] = "a,b"
    reply = from_table(header, rows)
    assert 'returned code <503>, ""busy""' in reply
    server = next(s for s in parse_server_stats(reply) if s.name == "s1")
    assert server.last_check == 'HTTP status check returned code <503>, "busy"'
    assert server.cookie == "a,b"
    # Columns after the quoted ones are still in place.
    assert (server.check_rise, server.check_fall, server.check_health) == (2, 2, 3)
    assert server.addr is not None
    assert server.addr.startswith("127.0.0.1:")
    expected = dict(EXPECTED["servers"][0])
    expected.update(last_check=server.last_check, cookie="a,b")
    assert server.to_dict() == expected


def test_check_in_progress_prefix() -> None:
    header, rows = HEADER, [list(row) for row in ROWS]
    col = header.index("check_status")
    rows[1][col] = "* L7OK"
    server = parse_server_stats(from_table(header, rows))[0]
    assert server.check_status == "L7OK"
    assert server.check_running is True
    assert parse_server_stats(GOLDEN)[0].check_running is False


def test_golden_typed_values() -> None:
    servers = {(s.backend, s.name): s for s in parse_server_stats(GOLDEN)}
    s1 = servers["be_app", "s1"]
    assert (s1.backend_id, s1.id, s1.status, s1.weight, s1.scur, s1.stot) == (3, 1, "UP", 5, 1, 1)
    assert (s1.check_status, s1.check_code, s1.check_health) == ("L7OK", 200, 3)
    assert s1.fully_healthy is True
    assert s1.drained is False
    assert s1.status_word == "UP"
    assert servers["be_app", "s2"].status_word == "DRAIN"
    assert servers["be_app", "s2"].weight == 10  # DRAIN rows keep their weight (reference §0)
    assert servers["be_app", "s3"].check_status is None  # MAINT: check fields empty
    assert servers["be_app", "s3"].fully_healthy is None
    assert servers["be_app", "s4"].status_word == "no"
    down = servers["be_stick", "s2"]
    assert (down.status, down.check_status, down.check_code) == ("DOWN", "L7STS", 503)
    assert down.last_check == "Service Unavailable"
    assert down.fully_healthy is False
    assert down.check_failures == 2
    tracked = servers["be_static", "t1"]
    assert tracked.status == "MAINT (via be_app/s3)"
    assert tracked.tracked == "be_app/s3"
    assert repr(s1).startswith("ServerStat(backend='be_app', name='s1', status='UP'")


# -- malformed replies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "No such proxy.",
        "pxname,svname,type\nbe,s1,2",
        "# svname,pxname,type\ns1,be,2",
        "# pxname,svname,status\nbe,s1,UP",  # no type column
    ],
)
def test_not_a_stat_reply(reply: str) -> None:
    with pytest.raises(ProtocolError):
        parse_stats(reply)
    with pytest.raises(ProtocolError):
        parse_server_stats(reply)


def test_header_only_is_empty() -> None:
    header_only = golden_text("show-stat-no-rows.txt")
    assert parse_stats(header_only) == Stats((), (), ())
    assert parse_server_stats(header_only) == []
    columns, body = parse_header(header_only)
    assert "status" in columns
    assert body == ""


def test_short_row_is_a_protocol_error() -> None:
    reply = "# pxname,svname,qcur,status,weight,type,\nbe,s1,0,UP"
    with pytest.raises(ProtocolError):
        parse_stats(reply)
    with pytest.raises(ProtocolError):
        parse_server_stats(reply)


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "with-a-quoted-field"])
def test_truncated_server_row_is_never_dropped_silently(quoted: bool) -> None:
    """A server row cut before its ``type`` column cannot be classified: the reply is damaged
    and must be refused, whichever code path (plain or CSV-quoted lines) parses it. Dropping
    the row would make a server silently vanish from the listing."""
    rows = [list(row) for row in ROWS]
    if quoted:
        rows[0][HEADER.index("check_desc")] = "a, b"  # any quote sends lines through csv
    lines = from_table(HEADER, rows).split("\n")
    s1 = next(i for i, line in enumerate(lines) if line.startswith("be_app,s1,"))
    lines[s1] = ",".join(lines[s1].split(",")[:20])
    reply = "\n".join(lines)
    with pytest.raises(ProtocolError):
        parse_stats(reply)
    with pytest.raises(ProtocolError):
        parse_server_stats(reply)


def test_unknown_row_type_is_a_protocol_error_and_listeners_are_skipped() -> None:
    assert parse_stats("# pxname,svname,type,\nfe,sock-1,3,\n") == Stats((), (), ())
    with pytest.raises(ProtocolError, match="unknown type"):
        parse_stats("# pxname,svname,type,\nfe,x,7,\n")


def test_bad_number_is_reported_on_access() -> None:
    reply = "# pxname,svname,scur,weight,type,\nbe,s1,lots,x,2,\n"
    (server,) = parse_server_stats(reply)
    assert server.name == "s1"
    with pytest.raises(ProtocolError, match="scur") as info:
        _ = server.scur
    assert info.value.raw == "lots"
    with pytest.raises(ProtocolError):
        server.validate()
    with pytest.raises(ProtocolError):
        server.to_dict()


@pytest.mark.parametrize(
    "line",
    [
        'be,s1\r",2,',  # an unquoted CR on a line that also holds a quote
        'be,\r"s1,2,',
    ],
)
def test_csv_module_errors_become_protocol_errors(line: str) -> None:
    """Lines with a quote go through the csv module, which raises csv.Error on an unquoted CR.
    HAProxy quotes such fields itself, so this only happens on a damaged reply -- which must
    still be reported as ProtocolError, not as a csv.Error escaping from the parser."""
    reply = "# pxname,svname,type,\n" + line + "\n"
    for parse in (parse_stats, parse_server_stats):
        with contextlib.suppress(ProtocolError):
            parse(reply)


@given(st.data())
def test_streamed_parsing_equals_whole_reply_parsing(data: st.DataObject) -> None:
    """``parse_server_stats_stream`` (parsing while HAProxy still writes) gives the same rows as
    parsing the whole reply, however the bytes are split, multi-byte characters included."""
    text = GOLDEN.replace("be_cookie", "bé_cookie") if data.draw(st.booleans()) else GOLDEN
    raw = text.encode("utf-8")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    whole = parse_server_stats(text)
    streamed = parse_server_stats_stream(pieces)
    assert [s.values for s in streamed] == [s.values for s in whole]
    assert len(whole) > 0


def test_streamed_parsing_reports_bad_input_like_whole_parsing() -> None:
    with pytest.raises(ProtocolError):
        parse_server_stats_stream([b"No such proxy.\n"])
    with pytest.raises(ProtocolError):
        parse_server_stats_stream([GOLDEN.split("\n")[0].encode() + b"\nbe,s1\n"])
    with pytest.raises(ProtocolError):
        parse_server_stats_stream([])  # not even a header
