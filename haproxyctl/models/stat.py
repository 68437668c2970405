"""``show stat`` (management.txt §9.1 "CSV format"): parsed by header name, version tolerant.

Facts this parser relies on (``shared/haproxy-runtime-api.md`` §5.1):

- the header line starts with ``# ``; every line ends with a trailing comma;
- fields 0-99 are stable since 2.x; later ones move between versions (the ``-`` separator is at
  103 in 2.6 and 113 in 2.8+), so columns are looked up by name and unknown ones are ignored;
- the ``type`` column says what a row is (0 frontend, 1 backend, 2 server, 3 listener);
- string fields containing a comma or a quote are CSV-quoted (``csv_enc()``). Such lines are rare
  (check descriptions), so lines without ``"`` take the fast ``str.split`` path, split only as
  far as the last column a model reads, and the others go through the ``csv`` module;
- ``check_status`` is prefixed with ``* `` while a check is running; check fields are empty in
  MAINT or when checks are disabled.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator

import attrs

from haproxyctl.errors import ProtocolError
from haproxyctl.models._fields import (
    Column,
    Columns,
    RowView,
    flag,
    opt_int,
    opt_str,
    req_int,
    row_view,
    snippet,
    text,
)

__all__ = [
    "BackendStat",
    "FrontendStat",
    "ServerStat",
    "Stats",
    "parse_header",
    "parse_server_stats",
    "parse_server_stats_stream",
    "parse_stats",
]

TYPE_FRONTEND, TYPE_BACKEND, TYPE_SERVER, TYPE_LISTENER = "0", "1", "2", "3"


def parse_header(reply: str) -> tuple[Columns, str]:
    """Split a ``show stat`` CSV reply into its header columns and its body text."""
    header_end = reply.find("\n")
    header = reply if header_end < 0 else reply[:header_end]
    if not header.startswith("# pxname,svname,"):
        raise ProtocolError("not a 'show stat' CSV reply: no '# pxname,svname,...' header",
                            raw=snippet(reply))
    columns = Columns(header[2:].split(","))
    if "type" not in columns:
        raise ProtocolError("'show stat' header has no 'type' column", raw=snippet(header))
    return columns, "" if header_end < 0 else reply[header_end + 1:]


def _split(line: str, maxsplit: int) -> list[str]:
    if '"' in line:
        try:
            row = next(csv.reader([line]))
        except csv.Error as exc:
            raise ProtocolError(f"'show stat' line is not valid CSV: {exc}",
                                raw=snippet(line)) from None
    else:
        row = line.split(",", maxsplit)
    # Position -1 means "column absent in this version": make it read as "".
    row.append("")
    return row


def _check_status(raw: str) -> str | None:
    return (raw[2:] if raw.startswith("* ") else raw) or None


def _check_running(raw: str) -> bool:
    return raw.startswith("* ")


@row_view
@attrs.frozen(repr=False)
class ServerStat(RowView):
    """One server row of ``show stat``: traffic, queue and health as HAProxy reports them.

    ``status`` only *hints* at the admin state (a drained server that fails its checks shows
    ``DOWN``); the exact ready/drain/maint bits come from ``show servers state``
    (:class:`~haproxyctl.models.state.ServerState`), and :class:`~haproxyctl.models.server.Server`
    joins both.
    """

    values: tuple[str, ...]

    backend = Column("pxname", text)
    name = Column("svname", text)
    backend_id = Column("iid", opt_int)
    id = Column("sid", opt_int)
    #: UP, UP 1/2, DOWN, DOWN 1/2, NOLB, DRAIN, DRAIN (agent), MAINT, MAINT (via b/s), no check...
    status = Column("status", text)
    #: Effective weight. The configured weight (``uweight``, column 99) is deliberately not read
    #: here: reaching it means splitting 100 fields per row instead of 75, +25% parse time on
    #: big listings; ``show servers state`` has it (ServerState.user_weight).
    weight = Column("weight", opt_int)
    active = Column("act", flag)
    backup = Column("bck", flag)
    scur = Column("scur", req_int)
    smax = Column("smax", req_int)
    slim = Column("slim", opt_int)
    stot = Column("stot", req_int)
    qcur = Column("qcur", req_int)
    qmax = Column("qmax", req_int)
    qlimit = Column("qlimit", opt_int)
    lbtot = Column("lbtot", req_int)
    check_status = Column("check_status", _check_status)
    check_running = Column("check_status", _check_running)
    check_code = Column("check_code", opt_int)
    check_rise = Column("check_rise", opt_int)
    check_fall = Column("check_fall", opt_int)
    check_health = Column("check_health", opt_int)
    last_check = Column("last_chk", opt_str)
    agent_status = Column("agent_status", opt_str)
    addr = Column("addr", opt_str)
    cookie = Column("cookie", opt_str)
    last_change = Column("lastchg", opt_int)
    downtime = Column("downtime", opt_int)
    check_failures = Column("chkfail", opt_int)
    check_downs = Column("chkdown", opt_int)
    last_session = Column("lastsess", opt_int)
    tracked = Column("tracked", opt_str)
    connection_errors = Column("econ", req_int)
    response_errors = Column("eresp", req_int)
    redispatches = Column("wredis", req_int)
    retries = Column("wretr", req_int)
    client_aborts = Column("cli_abrt", req_int)
    server_aborts = Column("srv_abrt", req_int)

    REPR = ("backend", "name", "status", "weight", "scur", "qcur", "check_status")

    @property
    def status_word(self) -> str:
        """The first word of ``status``: UP, DOWN, NOLB, DRAIN, MAINT, or "no" for "no check"."""
        return self.status.split(" ", 1)[0]

    @property
    def drained(self) -> bool:
        """No active session and nothing queued."""
        return self.scur == 0 and self.qcur == 0

    @property
    def fully_healthy(self) -> bool | None:
        """True when health is at its maximum (``rise + fall - 1``: status shows no ``x/y``);
        None when no check is running (no check configured, MAINT, checks disabled)."""
        health, rise, fall = self.check_health, self.check_rise, self.check_fall
        if health is None or rise is None or fall is None:
            return None
        return health >= rise + fall - 1


@row_view
@attrs.frozen(repr=False)
class BackendStat(RowView):
    """The ``BACKEND`` row of one backend: totals over its servers."""

    values: tuple[str, ...]

    name = Column("pxname", text)
    id = Column("iid", opt_int)
    status = Column("status", text)
    #: Sum of the weights of *usable* servers (UP and not drained).
    weight = Column("weight", opt_int)
    active_servers = Column("act", opt_int)
    backup_servers = Column("bck", opt_int)
    scur = Column("scur", req_int)
    smax = Column("smax", req_int)
    slim = Column("slim", opt_int)
    stot = Column("stot", req_int)
    qcur = Column("qcur", req_int)
    qmax = Column("qmax", req_int)
    lbtot = Column("lbtot", req_int)
    check_downs = Column("chkdown", opt_int)
    last_change = Column("lastchg", opt_int)
    downtime = Column("downtime", opt_int)
    connection_errors = Column("econ", req_int)
    response_errors = Column("eresp", req_int)
    redispatches = Column("wredis", req_int)
    retries = Column("wretr", req_int)
    algo = Column("algo", opt_str)
    mode = Column("mode", opt_str)
    cookie = Column("cookie", opt_str)
    requests = Column("req_tot", opt_int)
    responses_5xx = Column("hrsp_5xx", opt_int)

    REPR = ("name", "status", "weight", "active_servers", "scur", "qcur")


@row_view
@attrs.frozen(repr=False)
class FrontendStat(RowView):
    """The ``FRONTEND`` row of one frontend."""

    values: tuple[str, ...]

    name = Column("pxname", text)
    id = Column("iid", opt_int)
    status = Column("status", text)
    scur = Column("scur", req_int)
    smax = Column("smax", req_int)
    slim = Column("slim", opt_int)
    stot = Column("stot", req_int)
    session_rate = Column("rate", opt_int)
    request_rate = Column("req_rate", opt_int)
    requests = Column("req_tot", opt_int)
    mode = Column("mode", opt_str)
    request_errors = Column("ereq", opt_int)
    denied_requests = Column("dreq", opt_int)

    REPR = ("name", "status", "scur", "stot")


@attrs.frozen
class Stats:
    """A parsed ``show stat`` reply, split by row type (listener rows are skipped)."""

    frontends: tuple[FrontendStat, ...]
    backends: tuple[BackendStat, ...]
    servers: tuple[ServerStat, ...]


def _rows(reply: str, views: tuple[type[RowView], ...]) -> tuple[Columns, int, Iterator[list[str]]]:
    columns, body = parse_header(reply)
    type_pos = columns.index["type"]
    maxsplit = max(type_pos + 1, *(columns.plan(v.COLUMNS)[1] for v in views))
    rows = (_split(line, maxsplit) for line in body.split("\n") if line)
    return columns, type_pos, rows


class _ServerRows:
    """Turns blocks of complete ``show stat`` lines into ServerStat views, by header name.

    When no line of a block is CSV-quoted and every column ``ServerStat`` reads exists (the
    usual case), rows are split only as far as the last of those columns, with no per-line
    function call: listing 10,000 servers is dominated by this loop (see ``bench/``).
    """

    def __init__(self, columns: Columns) -> None:
        self.columns = columns
        self.getter, needed = columns.plan(ServerStat.COLUMNS)
        self.type_pos = columns.index["type"]
        self.maxsplit = max(needed, self.type_pos + 1)
        self.complete = all(name in columns for name in ServerStat.COLUMNS)

    def rows(self, block: str, out: list[ServerStat]) -> None:
        if not self.complete or '"' in block:
            self._slow(block, out)
            return
        getter, type_pos, maxsplit, make = self.getter, self.type_pos, self.maxsplit, ServerStat
        append = out.append
        try:
            for line in block.split("\n"):
                if line:
                    row = line.split(",", maxsplit)
                    if row[type_pos] == TYPE_SERVER:
                        append(make(getter(row)))
        except IndexError:
            raise ProtocolError("'show stat' row is shorter than its header",
                                raw=snippet(block)) from None

    def _slow(self, block: str, out: list[ServerStat]) -> None:
        maxsplit, type_pos = self.maxsplit, self.type_pos
        for line in block.split("\n"):
            if line:
                row = _split(line, maxsplit)
                if len(row) <= type_pos + 1:
                    # (+1: _split appended the "absent column" cell) A row cut before its
                    # type: never drop a server silently.
                    raise ProtocolError("'show stat' row is shorter than its header",
                                        raw=snippet(line))
                if row[type_pos] == TYPE_SERVER:
                    out.append(ServerStat.from_row(row, self.columns))


def parse_server_stats(reply: str) -> list[ServerStat]:
    """The server rows of a ``show stat`` reply; the fast path for large listings."""
    columns, body = parse_header(reply)
    out: list[ServerStat] = []
    _ServerRows(columns).rows(body, out)
    return out


def parse_server_stats_stream(chunks: Iterable[bytes]) -> list[ServerStat]:
    """Like :func:`parse_server_stats`, from the reply's bytes as they arrive: lines are parsed
    while HAProxy writes the rest (see ``Connection.stream``)."""
    decode = codecs.getincrementaldecoder("utf-8")("replace").decode
    pending = ""
    parser: _ServerRows | None = None
    out: list[ServerStat] = []
    for chunk in chunks:
        text = pending + decode(chunk)
        cut = text.rfind("\n")
        if cut < 0:
            pending = text
            continue
        block, pending = text[:cut], text[cut + 1:]
        if parser is None:
            header, _, block = block.partition("\n")
            parser = _ServerRows(parse_header(header)[0])
        parser.rows(block, out)
    rest = pending + decode(b"", final=True)
    if parser is None:
        return parse_server_stats(rest)
    parser.rows(rest, out)
    return out


def parse_stats(reply: str) -> Stats:
    """Parse a whole ``show stat`` reply into frontends, backends and servers."""
    columns, type_pos, rows = _rows(reply, (ServerStat, BackendStat, FrontendStat))
    frontends: list[FrontendStat] = []
    backends: list[BackendStat] = []
    servers: list[ServerStat] = []
    for row in rows:
        kind = row[type_pos] if type_pos < len(row) else ""
        if kind == TYPE_SERVER:
            servers.append(ServerStat.from_row(row, columns))
        elif kind == TYPE_BACKEND:
            backends.append(BackendStat.from_row(row, columns))
        elif kind == TYPE_FRONTEND:
            frontends.append(FrontendStat.from_row(row, columns))
        elif kind != TYPE_LISTENER:
            raise ProtocolError(f"'show stat' row of unknown type {kind!r}", raw=snippet(repr(row)))
    return Stats(tuple(frontends), tuple(backends), tuple(servers))
