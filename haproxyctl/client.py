"""The client: typed reads, checked writes, bulk changes and waits over one connection.

Everything here is a thin composition of :mod:`haproxyctl.commands` (what to send),
:class:`~haproxyctl.connection.Connection` (sending it) and :mod:`haproxyctl.models` (reading the
reply). No method returns ``False`` or ``None`` for failure: they raise a
:class:`~haproxyctl.errors.HAProxyError` subclass.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from haproxyctl import commands as cmd
from haproxyctl.address import DEFAULT_SOCKET, Address, parse_address
from haproxyctl.connection import DEFAULT_TIMEOUT, Connection
from haproxyctl.errors import (
    CommandError,
    NoSuchBackend,
    NoSuchServer,
    NoSuchTable,
    PartialFailure,
    PermissionDenied,
    StateError,
    UsageError,
)
from haproxyctl.models.backends import parse_backend_names
from haproxyctl.models.conn import ServerConn, parse_servers_conn
from haproxyctl.models.info import Info, parse_info
from haproxyctl.models.maps import MapEntry, parse_map
from haproxyctl.models.server import Server, join_servers
from haproxyctl.models.session import Session, parse_sessions
from haproxyctl.models.stat import (
    BackendStat,
    FrontendStat,
    ServerStat,
    Stats,
    parse_server_stats,
    parse_server_stats_stream,
    parse_stats,
)
from haproxyctl.models.state import AdminState, ServerState, parse_servers_state, server_names
from haproxyctl.models.table import (
    StickTable,
    TableInfo,
    TablePins,
    TableReader,
    parse_table,
    parse_tables,
)
from haproxyctl.models.weight import Weight, WeightSpec, parse_weight
from haproxyctl.protocol.encode import Command, ServerRef
from haproxyctl.wait import DEFAULT_INTERVAL, WaitProgress, WaitResult, poll_until

__all__ = ["ENV_SOCKET", "BulkResult", "Client"]

#: Environment variable read when no address is given.
ENV_SOCKET = "HAPROXYCTL_SOCKET"

RefLike = ServerRef | str | tuple[str, str]
ProgressCallback = Callable[[WaitProgress[ServerStat]], None]
# What ipaddress.IPv4Address accepts (four decimal octets 0-255, no leading zero), without its
# cost: re-pinning 10,000 keys checks 10,000 of them (the unit tests compare the two).
_IPV4_RE = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    r"(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")


@attrs.frozen
class BulkResult:
    """The outcome of one item of a bulk change."""

    target: str
    command: str
    error: CommandError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "command": self.command, "ok": self.ok,
                "error": None if self.error is None else self.error.reason}


def _describe(stat: ServerStat) -> str:
    return (f"status={stat.status!r} scur={stat.scur} qcur={stat.qcur} "
            f"check={stat.check_status or '-'} health={stat.check_health}")


class Client:
    """A client for one HAProxy CLI socket (worker stats socket or master CLI).

    Args:
        address: ``/path``, ``unix:/path``, ``tcp://host:port`` or ``master:/path[@N|@!PID]``;
            default ``$HAPROXYCTL_SOCKET`` or ``/run/haproxy/admin.sock``.
        timeout: seconds allowed for each exchange (connect + send + complete reply).
        connect_timeout: seconds allowed to connect (default ``min(timeout, 5)``).

    The client keeps one persistent prompt-mode session, reconnects on its own after HAProxy
    closes it, and is safe to share between threads. Use it as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        address: str | Address | os.PathLike[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
    ) -> None:
        if address is None:
            address = os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET
        addr = address if isinstance(address, Address) else parse_address(address)
        self.connection = Connection(addr, timeout=timeout, connect_timeout=connect_timeout)
        self._ids: dict[tuple[str, str], tuple[int, int]] = {}
        self._ids_lock = threading.Lock()

    @property
    def address(self) -> Address:
        return self.connection.address

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({str(self.address)!r})"

    # -- raw -----------------------------------------------------------------------------------

    def execute(self, command: Command, *, timeout: float | None = None) -> str:
        """Send a prepared command; return the reply text or raise CommandError."""
        return self.connection.execute(command, timeout=timeout).text

    def execute_many(
        self, commands: Sequence[Command], *, timeout: float | None = None
    ) -> list[str | CommandError]:
        """Pipeline commands in one round trip; one reply text or CommandError per command."""
        return [r if isinstance(r, CommandError) else r.text
                for r in self.connection.execute_many(commands, timeout=timeout)]

    def raw(self, line: str, *, timeout: float | None = None) -> str:
        """Send one command line verbatim on a one-shot connection; return HAProxy's output.

        The line may chain commands with ``;`` (the caller's choice) but never spans two lines.
        HAProxy's errors are recognised by their known messages and raised as CommandError.
        """
        return self.connection.execute_once(Command.raw(line), timeout=timeout).text

    # -- reads ---------------------------------------------------------------------------------

    def version(self) -> str:
        return self.execute(Command.build("show version")).strip()

    def cli_level(self) -> str:
        """``admin``, ``operator`` or ``user``: what this socket is allowed to do."""
        return self.execute(Command.build("show cli level")).strip()

    def info(self) -> Info:
        return parse_info(self.execute(Command.build("show info")))

    def backends(self) -> list[str]:
        return parse_backend_names(self.execute(Command.build("show backend")))

    def stats(self, backend: str | None = None) -> Stats:
        """All of ``show stat`` (or one proxy's rows), split into frontends/backends/servers."""
        command = cmd.show_stat() if backend is None else cmd.show_stat(backend, -1, -1)
        return parse_stats(self.execute(command))

    def server_stats(self, backend: str | None = None) -> list[ServerStat]:
        """The ``show stat`` rows of every server (of one backend), without backends/frontends."""
        command = cmd.show_stat(-1 if backend is None else backend, cmd.STAT_SERVERS, -1)
        return parse_server_stats_stream(self.connection.stream(command))

    def backend_stats(self) -> list[BackendStat]:
        return list(parse_stats(self.execute(cmd.show_stat(-1, cmd.STAT_BACKENDS, -1))).backends)

    def frontend_stats(self) -> list[FrontendStat]:
        return list(parse_stats(self.execute(cmd.show_stat(-1, cmd.STAT_FRONTENDS, -1)))
                    .frontends)

    def servers_state(self, backend: str | None = None) -> list[ServerState]:
        return parse_servers_state(self.execute(cmd.show_servers_state(backend)))

    def servers(self, backend: str | None = None) -> list[Server]:
        """Every server (of one backend) with traffic, health and exact admin state: ``show
        stat`` (parsed while it streams in) joined with ``show servers state``."""
        return join_servers(self.server_stats(backend), self.servers_state(backend))

    def server(self, ref: RefLike) -> Server:
        """One server, read cheaply (its own ``show stat`` row and its backend's state)."""
        r = cmd.as_ref(ref)
        states = self.servers_state(r.backend)
        state = next((s for s in states if s.name == r.server), None)
        if state is None:
            raise self._no_such_server(r)
        stat = self._stat_by_ids(r, state.backend_id, state.id)
        return Server.from_parts(stat, state)

    def server_stat(self, ref: RefLike) -> ServerStat:
        """One server's ``show stat`` row, read by id (``show stat <iid> 4 <sid>``): what each
        wait poll reads, a few hundred bytes even on a 10,000-server configuration."""
        return self.server_stats_of([ref])[0]

    def server_stats_of(self, refs: Sequence[RefLike]) -> list[ServerStat]:
        """Several servers' ``show stat`` rows in one round trip (pipelined, read by id).

        Ids are resolved once and cached. If HAProxy was reloaded with other ids, a row no
        longer matches its name: only those servers are resolved again, and read once more.
        """
        targets = [cmd.as_ref(r) for r in refs]
        stale: set[ServerRef] = set()
        for _ in (1, 2):
            ids = [self._resolve_ids(r) if r in stale or (r.backend, r.server) not in self._ids
                   else self._ids[(r.backend, r.server)] for r in targets]
            replies = self._pipeline([cmd.show_stat(i, cmd.STAT_SERVERS, s) for i, s in ids])
            rows = [parse_server_stats(text) for text in replies]
            stale = {r for rs, r in zip(rows, targets, strict=True)
                     if len(rs) != 1 or rs[0].backend != r.backend or rs[0].name != r.server}
            if not stale:
                return [rs[0] for rs in rows]
        raise self._no_such_server(next(r for r in targets if r in stale))

    def servers_conn(self, backend: str | None = None) -> list[ServerConn]:
        return parse_servers_conn(self.execute(cmd.show_servers_conn(backend)))

    def get_weight(self, ref: RefLike) -> Weight:
        return parse_weight(self.execute(cmd.get_weight(cmd.as_ref(ref))))

    def sessions(self, ref: RefLike | None = None) -> list[Session]:
        """Current sessions (streams), all or those of one server (needs operator level).

        HAProxy 2.6 cannot filter ``show sess`` by server, so the filter is applied here; the
        server's existence is checked so a typo is an error, not an empty list.
        """
        r = None if ref is None else cmd.as_ref(ref)
        if r is not None:
            self.server_stat(r)
        sessions = parse_sessions(self.execute(Command.build("show sess")))
        if r is None:
            return sessions
        return [s for s in sessions if s.backend == r.backend and s.server == r.server]

    def tables(self) -> list[TableInfo]:
        return parse_tables(self.execute(cmd.show_table()))

    def iter_table(self, name: str, *, key: str | None = None,
                   where: Iterable[cmd.TableFilter | str] = (),
                   timeout: float | None = None) -> TableReader:
        """A stick table's entries as they arrive (operator level): an iterator of lazy
        :class:`~haproxyctl.models.table.TableEntry` views, parsed while HAProxy still writes
        the rest, so memory stays bounded whatever the table's size.

        The command is sent and the header read before this returns, so a missing table or a
        refusal raises here; ``.info`` is the header. ``timeout`` bounds the whole reply
        (default: the client's). Until the iterator is exhausted or closed (use ``with``), the
        connection is busy: another call from the same thread raises UsageError, other
        threads wait. Keys and filters as in :meth:`table`.
        """
        filters = _filters(where)
        command = cmd.show_table(name, key=key, where=filters)
        info = None
        if key is not None:
            info = self._table_info(name)
            _check_key(info, key)
        reader = TableReader(self.connection.stream(command, timeout=timeout), name=name,
                             info=info)
        try:
            reader.info  # noqa: B018 - sends the command and reads the header now
        except BaseException:
            reader.close()
            raise
        return reader

    def table(self, name: str, *, key: str | None = None,
              where: Iterable[cmd.TableFilter | str] = ()) -> StickTable:
        """A stick table's entries, optionally filtered by key or by data (operator level).

        A key that cannot be parsed for the table's type makes HAProxy print nothing at all;
        the key is checked against the type first so that is an error, not an empty table.
        Built on :meth:`iter_table`: for big tables prefer iterating, which does not keep every
        entry in memory.
        """
        with self.iter_table(name, key=key, where=where) as reader:
            return reader.table()

    def table_owners(self, name: str, *, where: Iterable[cmd.TableFilter | str] = (),
                     servers: Mapping[int, str] | None = None, backend: str | None = None,
                     timeout: float | None = None) -> dict[str, list[str]]:
        """Who is pinned where: the keys of a stick table per owning server (operator level).

        An entry's owner is its ``server_key`` when set (it takes precedence over
        ``server_id`` when HAProxy uses the entry, reference §7), else the name of its
        ``server_id``. Ids are named by ``servers`` (``{id: name}``) or, by default, by one
        ``show servers state`` of ``backend`` (default: the backend named like the table, which
        is where ``stick-table`` declares it; pass ``backend`` when the table is declared
        elsewhere and used with ``stick on ... table <name>``). An id nobody has is reported
        as ``"#<id>"``; entries pinned nowhere (``server_id`` 0 or none) are left out.

        ``where`` filters on HAProxy's side (``"server_id eq 2"``: read only the users of
        server 2). The reply is read as it streams in, without building entry objects.
        """
        with self._table_reader(name, where, servers, backend, timeout) as (reader, names):
            return reader.owners(names)

    def table_pins(self, name: str, *, where: Iterable[cmd.TableFilter | str] = (),
                   servers: Mapping[int, str] | None = None, backend: str | None = None,
                   timeout: float | None = None) -> TablePins:
        """:meth:`table_owners` plus the keys of the entries a stream holds right now
        (``TablePins.busy``): what a re-pin needs, since a busy user's response stores its
        entry again (``process_store_rules`` in HAProxy's ``stream.c``)."""
        with self._table_reader(name, where, servers, backend, timeout) as (reader, names):
            return reader.pins(names)

    @contextlib.contextmanager
    def _table_reader(self, name: str, where: Iterable[cmd.TableFilter | str],
                      servers: Mapping[int, str] | None, backend: str | None,
                      timeout: float | None) -> Iterator[tuple[TableReader, dict[int, str]]]:
        filters = _filters(where)
        command = cmd.show_table(name, where=filters)
        if servers is not None and backend is not None:
            raise UsageError("give servers (an id -> name mapping) or backend, not both",
                             field="servers")
        names = dict(servers) if servers is not None else self._server_names(name, backend)
        with TableReader(self.connection.stream(command, timeout=timeout), name=name) as reader:
            yield reader, names

    def map_entries(self, map_id: str) -> list[MapEntry]:
        return parse_map(self.execute(cmd.show_map(map_id)))

    # -- writes --------------------------------------------------------------------------------

    def set_state(self, ref: RefLike, state: AdminState | str) -> None:
        """Put a server in ``ready``, ``drain`` or ``maint`` (admin level).

        Note: leaving maint puts a checked server UP before any check ran; to bring a server
        back safely go maint -> drain, :meth:`wait_up`, then ready (reference §3.4).
        """
        self.execute(cmd.set_state(cmd.as_ref(ref), state))

    def set_weight(self, ref: RefLike, weight: int | str | WeightSpec) -> None:
        """Set the weight: 0-256, or ``"N%"`` of the initial weight (admin level)."""
        self.execute(cmd.set_weight(cmd.as_ref(ref), weight))

    def enable_health(self, ref: RefLike) -> None:
        self.execute(cmd.enable_health(cmd.as_ref(ref)))

    def disable_health(self, ref: RefLike) -> None:
        self.execute(cmd.disable_health(cmd.as_ref(ref)))

    def enable_agent(self, ref: RefLike) -> None:
        self.execute(cmd.enable_agent(cmd.as_ref(ref)))

    def disable_agent(self, ref: RefLike) -> None:
        """Stop the agent check; do this before a rollout, because an agent answering
        ready/drain/maint overrides states set through the CLI (reference §3.1)."""
        self.execute(cmd.disable_agent(cmd.as_ref(ref)))

    def set_health(self, ref: RefLike, health: str) -> None:
        self.execute(cmd.set_health(cmd.as_ref(ref), health))

    def set_address(self, ref: RefLike, address: str, port: int | None = None) -> str:
        """Change the server's address (and port); returns HAProxy's message."""
        return self.execute(cmd.set_address(cmd.as_ref(ref), address, port)).strip()

    def shutdown_sessions(self, ref: RefLike) -> None:
        """Kill every session on the server. A request in flight gets a 502 from HAProxy up to
        3.0.5; from 3.0.6 / 3.1 on its client connection is closed with no response."""
        self.execute(cmd.shutdown_sessions(cmd.as_ref(ref)))

    def table_set(self, name: str, key: str, data: Mapping[str, int]) -> None:
        """Create or update an entry (operator level), e.g. ``{"server_id": 2}`` to pin a key.

        The key is checked against the table's type first: HAProxy silently stores nothing for
        a key it cannot parse (``set table be_stick key notanip`` answers success).
        """
        command = cmd.set_table(name, key, data)
        _check_key(self._table_info(name), key)
        try:
            existed = bool(parse_table(self.execute(cmd.show_table(name, key=key)), name=name)
                           .entries)
        except PermissionDenied as exc:
            raise PermissionDenied(
                f"HAProxy refused {command.line!r}: the socket's level is too low to change "
                "stick table entries (needs operator or admin)", reply=exc.reply,
                reason=exc.reason, address=str(self.address), command=command.line) from None
        try:
            self.execute(command)
        except CommandError:
            # HAProxy creates the entry before it refuses the data (an unknown or unstored data
            # type: reference §7): take back what the refused command left behind.
            if not existed:
                self.execute(cmd.clear_table(name, key=key))
            raise

    def table_clear(self, name: str, *, key: str | None = None,
                    where: Iterable[cmd.TableFilter | str] = ()) -> None:
        """Remove entries: one key, those matching data filters (``"server_id eq 2"``), or all."""
        command = cmd.clear_table(name, key=key, where=_filters(where))
        if key is not None:
            _check_key(self._table_info(name), key)
        self.execute(command)

    def repin(self, name: str, moves: Iterable[tuple[str, int]], *,
              raise_on_error: bool = True, timeout: float | None = None) -> list[BulkResult]:
        """Re-pin users: for each ``(key, server_id)``, ``clear table <t> key <k>`` then ``set
        table <t> key <k> data.server_id <id>`` (operator level), all pipelined (groups of at
        most 64 KB, one round trip each). One :class:`BulkResult` per move, in order, whose
        ``target`` is the key.

        Why clear first: ``server_key`` wins over ``server_id`` and cannot be set from the CLI
        (reference §7), so an entry is only re-pinned once it is recreated without it.

        Every key is escaped and checked against the table's type, and every id checked,
        before any change is sent: one bad move refuses the batch (UsageError). HAProxy's
        refusals are per key: a clear refused because the entry is in use fails that key (its
        ``server_id`` may still have changed, but its ``server_key`` keeps it where it was),
        and when a set is refused after the clear, the entry HAProxy created anyway is
        removed again. With ``raise_on_error``, failures raise PartialFailure after every move
        was attempted (its ``results`` say which were applied); without it, check ``ok``.
        """
        prepared = cmd.repin_each(name, moves)
        if not prepared:
            return []
        info = self._table_info(name)
        for key, _clear, _set in prepared:
            _check_key(info, key)
        commands: list[Command] = []
        for _key, clear, set_ in prepared:
            commands += (clear, set_)
        replies = self.connection.execute_many(commands, timeout=timeout)
        results: list[BulkResult] = []
        undo: list[Command] = []
        for i, (key, clear, set_) in enumerate(prepared):
            cleared, stored = replies[2 * i], replies[2 * i + 1]
            if isinstance(cleared, CommandError):
                results.append(BulkResult(key, clear.line, cleared))
            elif isinstance(stored, CommandError):
                # HAProxy creates the entry before it refuses the data (reference §7).
                undo.append(clear)
                results.append(BulkResult(key, set_.line, stored))
            else:
                results.append(BulkResult(key, set_.line))
        if undo:
            self.connection.execute_many(undo, timeout=timeout)
        if raise_on_error:
            self._raise_partial(results, "re-pins")
        return results

    def map_add(self, map_id: str, key: str, value: str) -> None:
        self.execute(cmd.add_map(map_id, key, value))

    def map_set(self, map_id: str, key: str, value: str) -> None:
        self.execute(cmd.set_map(map_id, key, value))

    def map_del(self, map_id: str, key: str) -> None:
        self.execute(cmd.del_map(map_id, key))

    def map_clear(self, map_id: str) -> None:
        self.execute(cmd.clear_map(map_id))

    # -- bulk ----------------------------------------------------------------------------------

    def bulk(self, items: Sequence[tuple[str, Command]], *, raise_on_error: bool = True,
             timeout: float | None = None) -> list[BulkResult]:
        """Apply prepared commands in about one round trip; one :class:`BulkResult` each.

        ``items`` are ``(target label, command)``. With ``raise_on_error`` a failure of any item
        raises :class:`~haproxyctl.errors.PartialFailure` *after* every item was attempted; its
        ``results`` say which were applied.
        """
        replies = self.connection.execute_many([c for _, c in items], timeout=timeout)
        results = [BulkResult(target, c.line, r if isinstance(r, CommandError) else None)
                   for (target, c), r in zip(items, replies, strict=True)]
        if raise_on_error:
            self._raise_partial(results, "changes")
        return results

    def _raise_partial(self, results: list[BulkResult], what: str) -> None:
        """PartialFailure if any of ``results`` failed (every item was attempted)."""
        failed = [r for r in results if not r.ok]
        if failed:
            first = failed[0]
            raise PartialFailure(
                f"{len(failed)} of {len(results)} {what} failed (the other "
                f"{len(results) - len(failed)} were applied); first: {first.target}: "
                f"{first.error.reason if first.error else ''}",
                results=results, address=str(self.address))

    def set_state_many(self, refs: Iterable[RefLike], state: AdminState | str, *,
                       check_exists: bool = True, raise_on_error: bool = True) -> list[BulkResult]:
        """Set many servers' state in one round trip (see :meth:`bulk`).

        Every name is validated, and with ``check_exists`` every server is looked up first, so a
        typo fails the whole call before anything changes.
        """
        wanted = AdminState.parse(state)
        targets = self._bulk_targets(refs, check_exists)
        items = list(zip((f"{r.backend}/{r.server}" for r in targets),
                         cmd.set_state_each(targets, wanted), strict=True))
        return self.bulk(items, raise_on_error=raise_on_error)

    def set_weight_many(self, refs: Iterable[RefLike], weight: int | str | WeightSpec, *,
                        check_exists: bool = True,
                        raise_on_error: bool = True) -> list[BulkResult]:
        spec = WeightSpec.parse(weight)
        targets = self._bulk_targets(refs, check_exists)
        items = [(str(r), cmd.set_weight(r, spec)) for r in targets]
        return self.bulk(items, raise_on_error=raise_on_error)

    # -- waits ---------------------------------------------------------------------------------

    def wait_until(
        self,
        ref: RefLike,
        predicate: Callable[[ServerStat], bool],
        *,
        timeout: float,
        condition: str = "matching the condition",
        interval: float = DEFAULT_INTERVAL,
        on_progress: ProgressCallback | None = None,
        check: Callable[[ServerStat], None] | None = None,
    ) -> WaitResult[ServerStat]:
        """Poll one server's ``show stat`` row until ``predicate`` holds (WaitTimeout if not)."""
        r = cmd.as_ref(ref)
        return poll_until(
            lambda: self.server_stat(r), predicate, condition=condition, target=str(r),
            timeout=timeout, interval=interval, check=check, on_progress=on_progress,
            describe=_describe, address=str(self.address),
        )

    def wait_drained(
        self,
        ref: RefLike,
        *,
        timeout: float,
        interval: float = DEFAULT_INTERVAL,
        on_progress: ProgressCallback | None = None,
        require_out_of_service: bool = True,
    ) -> WaitResult[ServerStat]:
        """Wait until the server has no session and an empty queue.

        A server still in ``ready`` keeps getting new sessions and may never drain, so by default
        that is refused at once (StateError) instead of waiting out the timeout; so is a server
        put back in service while we wait. Under cookie or stick-table persistence a server in
        ``drain`` still receives its pinned users (reference §4): use ``maint``, or a timeout.
        """
        r = cmd.as_ref(ref)
        if require_out_of_service:
            server = self.server(r)
            if server.admin_state is AdminState.READY:
                raise StateError(
                    f"{r} is in service (state ready) and would keep receiving new sessions; "
                    "set it to drain or maint first", target=str(r), state="ready",
                    address=str(self.address))

        def back_in_service(stat: ServerStat) -> None:
            # DRAIN/MAINT show as such; a drained server failing its checks shows DOWN. UP,
            # NOLB or "no check" mean someone put it back into load balancing.
            if require_out_of_service and stat.status_word in ("UP", "NOLB", "no"):
                raise StateError(f"{r} was put back in service while waiting for it to drain "
                                 f"(status {stat.status!r})", target=str(r), state=stat.status,
                                 address=str(self.address))

        return self.wait_until(r, lambda s: s.drained, timeout=timeout, condition="drained",
                               interval=interval, on_progress=on_progress,
                               check=back_in_service)

    def wait_up(
        self,
        ref: RefLike,
        *,
        timeout: float,
        interval: float = DEFAULT_INTERVAL,
        on_progress: ProgressCallback | None = None,
        fully: bool = True,
    ) -> WaitResult[ServerStat]:
        """Wait until the server's health checks pass.

        ``fully`` (the default) waits for full health (``rise + fall - 1``: status ``UP`` or
        ``DRAIN`` without ``x/y``), so one failed check cannot take it down at once. A server
        without checks is treated as up by HAProxy and returns at once; a server in maint is
        refused (StateError) because checks do not run in maintenance.
        """
        r = cmd.as_ref(ref)
        server = self.server(r)
        if server.admin_state is AdminState.MAINT:
            raise StateError(f"{r} is in maint: health checks do not run in maintenance; set it "
                             "to drain first (then ready once it is up)", target=str(r),
                             state="maint", address=str(self.address))
        checked = server.has_checks and server.checks_enabled

        def is_up(stat: ServerStat) -> bool:
            if not checked:
                return stat.status_word != "DOWN"
            healthy = stat.fully_healthy
            if fully:
                return bool(healthy)
            return stat.status_word in ("UP", "DRAIN", "NOLB")

        return self.wait_until(r, is_up, timeout=timeout, condition="up", interval=interval,
                               on_progress=on_progress)

    # -- internals -----------------------------------------------------------------------------

    def _pipeline(self, commands: Sequence[Command]) -> list[str]:
        out: list[str] = []
        for r in self.connection.execute_many(commands):
            if isinstance(r, CommandError):
                raise r
            out.append(r.text)
        return out

    def _no_such_server(self, r: ServerRef) -> NoSuchServer:
        return NoSuchServer(f"backend {r.backend!r} has no server {r.server!r}",
                            reply="No such server.", reason="No such server.",
                            address=str(self.address))

    def _resolve_ids(self, r: ServerRef) -> tuple[int, int]:
        states = self.servers_state(r.backend)
        for s in states:
            if s.name == r.server and s.backend_id is not None and s.id is not None:
                ids = (s.backend_id, s.id)
                with self._ids_lock:
                    self._ids[(r.backend, r.server)] = ids
                return ids
        raise self._no_such_server(r)

    def _stat_by_ids(self, r: ServerRef, backend_id: int | None, server_id: int | None
                     ) -> ServerStat:
        if backend_id is None or server_id is None:
            raise self._no_such_server(r)
        with self._ids_lock:
            self._ids[(r.backend, r.server)] = (backend_id, server_id)
        return self.server_stat(r)

    def _bulk_targets(self, refs: Iterable[RefLike], check_exists: bool) -> list[ServerRef]:
        targets = [cmd.as_ref(r) for r in refs]
        if not targets:
            raise UsageError("no servers given", field="servers")
        if check_exists:
            backends = sorted({t.backend for t in targets})
            texts = self.connection.execute_many([cmd.show_servers_state(b) for b in backends])
            known: set[tuple[str, str]] = set()
            for backend, reply in zip(backends, texts, strict=True):
                if isinstance(reply, NoSuchBackend):
                    raise NoSuchBackend(f"no backend {backend!r}; nothing was changed",
                                        reply=reply.reply, reason=reply.reason,
                                        address=str(self.address))
                if isinstance(reply, CommandError):
                    raise reply
                known.update(server_names(reply.text))
            missing = [str(t) for t in targets if (t.backend, t.server) not in known]
            if missing:
                raise NoSuchServer(
                    f"no such server: {', '.join(missing)}; nothing was changed",
                    reply="No such server.", reason="No such server.", address=str(self.address))
        return targets

    def _server_names(self, table: str, backend: str | None) -> dict[int, str]:
        """``{server id: name}`` of the backend using ``table`` (for :meth:`table_owners`)."""
        if backend is None and "/" in table:
            raise UsageError(f"stick table {table!r} is not declared in a backend: pass "
                             "backend= (the backend that uses it) or servers=", field="backend",
                             value=table)
        target = table if backend is None else backend
        try:
            states = self.servers_state(target)
        except NoSuchBackend as exc:
            if backend is not None:
                raise
            raise NoSuchBackend(
                f"no backend named like stick table {table!r} to name its server ids: pass "
                "backend= (the backend that uses it) or servers=", reply=exc.reply,
                reason=exc.reason, address=str(self.address), command=exc.command) from None
        return {s.id: s.name for s in states if s.id is not None}

    def _table_info(self, name: str) -> TableInfo:
        cmd.check_table(name)
        for info in self.tables():
            if info.name == name:
                return info
        raise NoSuchTable(f"no stick table named {name!r}", reply="No such table",
                          reason="No such table", address=str(self.address))


def _filters(where: Iterable[cmd.TableFilter | str]) -> list[cmd.TableFilter]:
    return [f if isinstance(f, cmd.TableFilter) else cmd.TableFilter.parse(f) for f in where]


def _check_key(info: TableInfo, key: str) -> None:
    """Refuse a key HAProxy would silently ignore for this table's type (reference §7: for
    ``set table be_stick key notanip`` it answers success and stores nothing)."""
    kind = info.type.split(" ", 1)[0]
    expected: str | None = None
    if kind == "ip":
        if type(key) is str and _IPV4_RE.fullmatch(key):
            return
        try:
            ipaddress.IPv4Address(key)
        except ValueError:
            expected = "an IPv4 address"
    elif kind == "ipv6":
        try:
            ipaddress.ip_address(key)
        except ValueError:
            expected = "an IP address"
    elif kind == "integer" and not (key.isdigit() and int(key) < 2**32):
        expected = "a non-negative 32-bit integer"
    if expected is not None:
        raise UsageError(f"key {key!r} is not valid for stick table {info.name!r} of type "
                         f"{info.type!r}: expected {expected}", field="key", value=key)
