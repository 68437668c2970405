"""Builders for every command haproxyctl sends: validation and escaping in one place, no I/O.

Each function returns a :class:`~haproxyctl.protocol.encode.Command` whose line is exactly what
goes on the socket, so dry runs can print it and tests can assert it. Syntax follows
management.txt §9.3 ("Unix Socket commands") of HAProxy 2.6, unchanged through 3.2 for these
commands (``shared/haproxy-runtime-api.md`` §13).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping

import attrs

from haproxyctl.errors import UsageError
from haproxyctl.models.state import AdminState
from haproxyctl.models.weight import WeightSpec
from haproxyctl.protocol.encode import Command, Expect, ServerRef, check_name, escape_arg

__all__ = [
    "TableFilter",
    "as_ref",
    "clear_map",
    "clear_table",
    "del_map",
    "disable_agent",
    "disable_health",
    "enable_agent",
    "enable_health",
    "get_weight",
    "repin_each",
    "set_address",
    "set_agent",
    "set_health",
    "set_map",
    "set_state",
    "set_state_each",
    "set_table",
    "set_weight",
    "show_map",
    "show_servers_conn",
    "show_servers_state",
    "show_stat",
    "show_table",
    "shutdown_sessions",
]

_TABLE_RE = re.compile(r"[A-Za-z0-9_.:\-]+(?:/[A-Za-z0-9_.:\-]+)?")
_DATA_TYPE_RE = re.compile(r"[a-z][a-z0-9_]*(?:\([0-9]+\))?")
_OPERATORS = ("eq", "ne", "le", "ge", "lt", "gt")
#: HAProxy's build-time limit on data filters per ``show/clear table`` (STKTABLE_FILTER_LEN).
MAX_TABLE_FILTERS = 4
# Stick-table data values are stored as 64-bit counters at most; refuse what cannot fit.
_MAX_DATA = 2**64 - 1
# server_id is stored as a signed 32-bit int (std_t_sint): HAProxy 2.6 stores 4294967295 as -1
# and 4294967296 as 0 without an error (measured), and server ids start at 1.
_MAX_SERVER_ID = 2**31 - 1

# types for show stat filters (management.txt §9.3 "show stat")
STAT_FRONTENDS, STAT_BACKENDS, STAT_SERVERS = 1, 2, 4


def as_ref(ref: ServerRef | str | tuple[str, str]) -> ServerRef:
    """Accept ``ServerRef``, ``"backend/server"`` or ``(backend, server)``."""
    if isinstance(ref, ServerRef):
        return ref
    if isinstance(ref, tuple) and len(ref) == 2:
        return ServerRef(ref[0], ref[1])
    if isinstance(ref, str):
        return _parse_ref(ref)
    raise UsageError(f"invalid server reference {ref!r}: expected 'backend/server'",
                     field="server", value=ref)


@functools.lru_cache(maxsize=4096)
def _parse_ref(text: str) -> ServerRef:
    # Cached: deploy tools name the same servers over and over; a ServerRef is immutable.
    return ServerRef.parse(text)


def _server_line(ref: ServerRef, *words: str) -> str:
    """``set server <b>/<s> <words>`` for a validated ref and haproxyctl's own words.

    Escaping is the identity here (backend and server names are validated against HAProxy's
    name charset, which has no character the tokenizer treats specially, and ``words`` are
    constants or validated values), so the line is joined directly: bulk changes build
    thousands of these.
    """
    return f"set server {ref.backend}/{ref.server} {' '.join(words)}"


# -- reads --------------------------------------------------------------------------------------


def show_stat(proxy: str | int = -1, types: int = -1, server_id: int = -1) -> Command:
    """``show stat [<iid>|<proxy> <type> <sid>]``: ``types`` is a bitmask (1 frontends,
    2 backends, 4 servers); ids of -1 mean all. Filtering by ids is what makes reading one
    server cheap on a 10,000-server configuration."""
    if proxy == -1 and types == -1 and server_id == -1:
        return Command.build("show stat")
    px = str(proxy) if isinstance(proxy, int) else check_name("backend name", proxy)
    return Command.build("show stat", px, str(int(types)), str(int(server_id)))


def show_servers_state(backend: str | None = None) -> Command:
    if backend is None:
        return Command.build("show servers state")
    return Command.build("show servers state", check_name("backend name", backend))


def show_servers_conn(backend: str | None = None) -> Command:
    if backend is None:
        return Command.build("show servers conn")
    return Command.build("show servers conn", check_name("backend name", backend))


def get_weight(ref: ServerRef | str) -> Command:
    return Command.build("get weight", str(as_ref(ref)))


# -- server writes ------------------------------------------------------------------------------


def set_state(ref: ServerRef | str, state: AdminState | str) -> Command:
    """``set server <b>/<s> state ready|drain|maint`` (needs an admin-level socket)."""
    return Command(_server_line(as_ref(ref), "state", AdminState.parse(state).value),
                   expect=Expect.EMPTY)


def set_state_each(refs: Iterable[ServerRef], state: AdminState | str) -> list[Command]:
    """``set_state`` for many validated refs (the state word is resolved once)."""
    words = f"state {AdminState.parse(state).value}"
    return [Command(_server_line(r, words), expect=Expect.EMPTY) for r in refs]


def set_weight(ref: ServerRef | str, weight: int | str | WeightSpec) -> Command:
    """``set server <b>/<s> weight <0-256 | N%>``; a percentage is of the initial weight."""
    return Command(_server_line(as_ref(ref), "weight", str(WeightSpec.parse(weight))),
                   expect=Expect.EMPTY)


def set_health(ref: ServerRef | str, health: str) -> Command:
    """Force the health status until the next check result (``up``/``stopping``/``down``)."""
    if health not in ("up", "stopping", "down"):
        raise UsageError(f"invalid health {health!r}: expected up, stopping or down",
                         field="health", value=health)
    return Command.build("set server", str(as_ref(ref)), "health", health, expect=Expect.EMPTY)


def set_agent(ref: ServerRef | str, agent: str) -> Command:
    if agent not in ("up", "down"):
        raise UsageError(f"invalid agent state {agent!r}: expected up or down", field="agent",
                         value=agent)
    return Command.build("set server", str(as_ref(ref)), "agent", agent, expect=Expect.EMPTY)


def enable_health(ref: ServerRef | str) -> Command:
    return Command.build("enable health", str(as_ref(ref)), expect=Expect.EMPTY)


def disable_health(ref: ServerRef | str) -> Command:
    return Command.build("disable health", str(as_ref(ref)), expect=Expect.EMPTY)


def enable_agent(ref: ServerRef | str) -> Command:
    return Command.build("enable agent", str(as_ref(ref)), expect=Expect.EMPTY)


def disable_agent(ref: ServerRef | str) -> Command:
    return Command.build("disable agent", str(as_ref(ref)), expect=Expect.EMPTY)


def set_address(ref: ServerRef | str, address: str, port: int | None = None) -> Command:
    """``set server <b>/<s> addr <ip> [port <port>]``. HAProxy answers with an informational
    message ("IP changed from ... to ..."), hence ``Expect.MESSAGE``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise UsageError(f"invalid server address {address!r}: expected an IPv4 or IPv6 address",
                         field="address", value=address) from None
    args = [str(as_ref(ref)), "addr", str(ip)]
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise UsageError(f"invalid port {port!r}: expected 1-65535", field="port", value=port)
        args += ["port", str(port)]
    return Command.build("set server", *args, expect=Expect.MESSAGE)


def shutdown_sessions(ref: ServerRef | str) -> Command:
    """Kill every session on the server (reference §4). In-flight requests get a 502 up to
    HAProxy 3.0.5; from 3.0.6 / 3.1 their connections are closed with no response."""
    return Command.build("shutdown sessions server", str(as_ref(ref)), expect=Expect.EMPTY)


# -- stick tables ---------------------------------------------------------------------------------


def check_table(name: str) -> str:
    if not isinstance(name, str) or not _TABLE_RE.fullmatch(name):
        raise UsageError(
            f"invalid stick table name {name!r}: tables are named after their proxy (letters, "
            "digits, '.', ':', '_', '-')", field="table", value=name)
    return name


def _data_type(name: str) -> str:
    if not isinstance(name, str) or not _DATA_TYPE_RE.fullmatch(name):
        raise UsageError(f"invalid stick table data type {name!r} (e.g. server_id, gpc0)",
                         field="data type", value=name)
    return name


def _data_value(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_DATA:
        raise UsageError(f"invalid value {value!r} for data.{name}: expected a non-negative "
                         "integer", field=f"data.{name}", value=value)
    return str(value)


@attrs.frozen
class TableFilter:
    """A ``data.<type> <op> <value>`` filter for ``show table``/``clear table``."""

    data_type: str = attrs.field(converter=_data_type)
    operator: str
    value: int

    def __attrs_post_init__(self) -> None:
        if self.operator not in _OPERATORS:
            raise UsageError(f"invalid filter operator {self.operator!r}: expected one of "
                             f"{', '.join(_OPERATORS)}", field="operator", value=self.operator)
        _data_value(self.data_type, self.value)

    @classmethod
    def parse(cls, text: str) -> TableFilter:
        """``"server_id eq 2"`` (``data.`` prefix optional)."""
        parts = text.split()
        if len(parts) != 3:
            raise UsageError(f"invalid table filter {text!r}: expected 'TYPE OP VALUE' like "
                             "'server_id eq 2'", field="filter", value=text)
        name, op, raw = parts
        try:
            value = int(raw)
        except ValueError:
            raise UsageError(f"invalid table filter {text!r}: {raw!r} is not an integer",
                             field="filter", value=text) from None
        return cls(name.removeprefix("data."), op, value)

    def args(self) -> list[str]:
        return [f"data.{self.data_type}", self.operator, str(self.value)]

    def __str__(self) -> str:
        return " ".join(self.args())


def _filter_args(key: str | None, where: Iterable[TableFilter]) -> list[str]:
    filters = list(where)
    if key is not None and filters:
        raise UsageError("a table is filtered by key or by data, not both (HAProxy accepts one)",
                         field="filter")
    if len(filters) > MAX_TABLE_FILTERS:
        raise UsageError(f"at most {MAX_TABLE_FILTERS} data filters are accepted by HAProxy",
                         field="filter")
    if key is not None:
        return ["key", key]
    return [a for f in filters for a in f.args()]


def show_table(table: str | None = None, *, key: str | None = None,
               where: Iterable[TableFilter] = ()) -> Command:
    if table is None:
        return Command.build("show table")
    return Command.build("show table", check_table(table), *_filter_args(key, where))


def set_table(table: str, key: str, data: Mapping[str, int]) -> Command:
    """``set table <t> key <k> [data.<type> <value>]*``. ``server_key`` cannot be set from the
    CLI (HAProxy answers "Require a valid integer value to store" and still creates the entry),
    so it is refused here; set ``server_id`` instead."""
    if "server_key" in data:
        raise UsageError("server_key cannot be set through the runtime API (HAProxy only takes "
                         "integers); set server_id instead", field="data.server_key")
    escape_arg(key, field="key")  # validate here so an error names the key (build escapes it)
    args = [check_table(table), "key", key]
    for name, value in data.items():
        args += [f"data.{_data_type(name)}", _data_value(name, value)]
    return Command.build("set table", *args, expect=Expect.EMPTY)


def repin_each(table: str, moves: Iterable[tuple[str, int]]) -> list[tuple[str, Command, Command]]:
    """``(key, clear table <t> key <k>, set table <t> key <k> data.server_id <id>)`` per move.

    A re-pin is a clear then a set because ``server_key`` takes precedence over ``server_id``
    when the entry is used and cannot be set from the CLI (reference §7): only a fresh entry,
    whose ``server_key`` is unset, follows the new ``server_id``. Every key is escaped like any
    argument (a ``;`` or a space stays inside the key; CR, LF, NUL or an empty key are refused)
    and every id checked (1 to 2**31-1) before the first command is built, so a bad move
    refuses the whole batch. The table name's charset needs no escaping, so the lines are
    joined directly (10,000 moves build 20,000 lines).
    """
    check_table(table)
    out: list[tuple[str, Command, Command]] = []
    empty = Expect.EMPTY
    for move in moves:
        if not isinstance(move, tuple) or len(move) != 2:
            raise UsageError(f"invalid move {move!r}: expected (key, server_id)", field="move",
                             value=move)
        key, sid = move
        escaped = escape_arg(key, field="key")
        if isinstance(sid, bool) or not isinstance(sid, int) or not 0 < sid <= _MAX_SERVER_ID:
            raise UsageError(f"invalid server id {sid!r} for key {key!r}: expected an integer "
                             f"from 1 to {_MAX_SERVER_ID}", field="server_id", value=sid)
        out.append((key, Command(f"clear table {table} key {escaped}", expect=empty),
                    Command(f"set table {table} key {escaped} data.server_id {sid}",
                            expect=empty)))
    return out


def clear_table(table: str, *, key: str | None = None,
                where: Iterable[TableFilter] = ()) -> Command:
    """``clear table <t> [key <k> | data.<type> <op> <v>...]``; without a filter every entry
    (not in use) is removed."""
    return Command.build("clear table", check_table(table), *_filter_args(key, where),
                         expect=Expect.EMPTY)


# -- maps -----------------------------------------------------------------------------------------


def show_map(map_id: str) -> Command:
    return Command.build("show map", map_id)


def add_map(map_id: str, key: str, value: str) -> Command:
    # Not idempotent: HAProxy keeps duplicate keys, so it is never resent after a lost connection.
    return Command.build("add map", map_id, key, value, expect=Expect.EMPTY, idempotent=False)


def set_map(map_id: str, key: str, value: str) -> Command:
    return Command.build("set map", map_id, key, value, expect=Expect.EMPTY)


def del_map(map_id: str, key: str) -> Command:
    return Command.build("del map", map_id, key, expect=Expect.EMPTY, idempotent=False)


def clear_map(map_id: str) -> Command:
    return Command.build("clear map", map_id, expect=Expect.EMPTY)
