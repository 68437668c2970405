"""Every parser, on any text, returns or raises ProtocolError -- never IndexError, ValueError,
KeyError or csv.Error -- and so does reading every attribute of what it returned.

Inputs are real 2.6 replies (the golden files) with random edits, plus arbitrary text: replies
from another HAProxy version, a truncated read or a misrouted command must fail cleanly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxyctl.errors import PermissionDenied, ProtocolError
from haproxyctl.models import (
    Info,
    MapEntry,
    ServerConn,
    ServerState,
    Session,
    Stats,
    StickTable,
    TableInfo,
    Weight,
    join_servers,
    parse_info,
    parse_map,
    parse_server_stats,
    parse_servers_conn,
    parse_servers_state,
    parse_sessions,
    parse_stats,
    parse_table,
    parse_tables,
    parse_weight,
)
from haproxyctl.models._fields import RowView
from haproxyctl.models.backends import parse_backend_names

from ._helpers import golden_text


def exercise(value: Any) -> None:
    """Read everything a caller could read from a parse result."""
    if isinstance(value, list | tuple):
        for item in value:
            exercise(item)
    elif isinstance(value, RowView):
        value.validate()
        value.to_dict()
        repr(value)
        for name in ("status_word", "drained", "fully_healthy", "admin_state", "has_checks",
                     "checks_enabled", "has_agent"):
            if hasattr(type(value), name):
                getattr(value, name)
    elif isinstance(value, Stats):
        exercise([value.frontends, value.backends, value.servers])
    elif isinstance(value, Info):
        value.to_dict()
        _ = value.version_tuple
    elif isinstance(value, StickTable):
        value.to_dict()
        for entry in value.entries:
            _ = (entry.server_id, entry.server_key, entry.to_dict())
    elif isinstance(value, Session | MapEntry):
        value.to_dict()
    elif isinstance(value, TableInfo | Weight | str):
        attrs.asdict(value) if not isinstance(value, str) else None
    else:  # pragma: no cover - a new model type: extend this function
        raise AssertionError(f"unexpected parse result {type(value)}")


def check(parse: Callable[[str], Any], text: str) -> None:
    try:
        result = parse(text)
    except (ProtocolError, PermissionDenied):
        return
    with contextlib.suppress(ProtocolError):
        exercise(result)


PARSERS: dict[str, tuple[Callable[[str], Any], list[str]]] = {
    "stats": (parse_stats, ["show-stat.txt", "show-stat-backends.txt", "show-stat-frontends.txt"]),
    "server_stats": (parse_server_stats, ["show-stat.txt", "show-stat-id-filter.txt"]),
    "servers_state": (parse_servers_state, ["show-servers-state.txt"]),
    "info": (parse_info, ["show-info.txt"]),
    "table": (parse_table, ["show-table-be_hdr.txt", "show-table-be_stick.txt",
                            "show-table-be_stick-user.txt"]),
    "tables": (parse_tables, ["show-table.txt"]),
    "sessions": (parse_sessions, ["show-sess.txt"]),
    "servers_conn": (parse_servers_conn, ["show-servers-conn.txt"]),
    "map": (parse_map, ["show-map.txt"]),
    "weight": (parse_weight, ["get-weight-s1.txt"]),
    "backend_names": (parse_backend_names, ["show-backend.txt"]),
}
CORPUS = {name: [golden_text(f) for f in files] for name, (_, files) in PARSERS.items()}

#: Edits: characters and tokens that matter to the parsers.
PIECES = st.sampled_from(
    ["", "0", "7", "-", "--", ",", '"', '""', "\\", " ", "  ", "=", "\n", "\r", ":", ": ", "#",
     "# ", "x", "\t", "/", "²", "0x", "* ", "-1", "99999999999999999999", "key=", "[", "]",
     ")", "%", "é", "\x00"]
)


@st.composite
def mutated(draw: st.DrawFn, corpus: list[str]) -> str:
    text = draw(st.sampled_from(corpus))
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "dup-line"]))
        pos = draw(st.integers(min_value=0, max_value=len(text)))
        if op == "insert":
            text = text[:pos] + draw(PIECES) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 5)):]
        elif op == "replace":
            text = text[:pos] + draw(PIECES) + text[pos + 1:]
        elif op == "truncate":
            text = text[:pos]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
    return text


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(data=st.data())
def test_parser_on_mutated_real_replies(name: str, data: st.DataObject) -> None:
    parse, _ = PARSERS[name]
    check(parse, data.draw(mutated(CORPUS[name])))


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(text=st.text(max_size=300))
def test_parser_on_arbitrary_text(name: str, text: str) -> None:
    check(PARSERS[name][0], text)


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(data=st.data())
def test_parser_on_another_command_reply(name: str, data: st.DataObject) -> None:
    """The reply of a different command (or an error text) is refused or parsed, not a crash."""
    others = [t for other, texts in CORPUS.items() if other != name for t in texts]
    errors = ["No such backend.", "Permission denied", "Unknown command, but maybe one...", ""]
    check(PARSERS[name][0], data.draw(st.sampled_from(others + errors)))


@given(st.data())
def test_join_of_mutated_listings(data: st.DataObject) -> None:
    try:
        stats = parse_server_stats(data.draw(mutated(CORPUS["server_stats"])))
        states = parse_servers_state(data.draw(mutated(CORPUS["servers_state"])))
        servers = join_servers(stats, states)
    except ProtocolError:
        return
    for server in servers:
        try:
            server.to_dict()
            repr(server)
            _ = (server.up, server.fully_healthy, server.drained)
        except ProtocolError:
            pass


def test_exercise_reads_typed_values() -> None:
    """Guard: the helper above really reaches the typed attributes."""
    (state,) = parse_servers_state("1\n# be_id be_name srv_id srv_name srv_admin_state\n"
                                   "1 b 1 s x\n")
    assert isinstance(state, ServerState)
    with pytest.raises(ProtocolError):
        exercise([state])
    (conn,) = parse_servers_conn(golden_text("show-servers-conn.txt").split("\n", 2)[0] + "\n"
                                 + golden_text("show-servers-conn.txt").split("\n", 2)[1])
    assert isinstance(conn, ServerConn)
    exercise(conn)
