"""One function per subcommand: parse arguments into library calls, print the result.

No HAProxy logic lives here; anything worth having is in the library, where scripts get it too.
Each handler returns the process exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import attrs

from haproxyctl.cli.balance import balance
from haproxyctl.cli.render import Output
from haproxyctl.cli.rollout import rollout
from haproxyctl.client import BulkResult, Client
from haproxyctl.commands import TableFilter, as_ref
from haproxyctl.errors import UsageError
from haproxyctl.models.stat import ServerStat
from haproxyctl.models.state import AdminState
from haproxyctl.models.table import TableEntry
from haproxyctl.wait import WaitProgress

__all__ = ["HANDLERS"]

Handler = Callable[[Client, argparse.Namespace, Output], int]

_SERVER_COLUMNS = (
    ("backend", "BACKEND"), ("server", "SERVER"), ("status", "STATUS"),
    ("admin_state", "ADMIN"), ("weight", "WEIGHT"), ("scur", "SESS"), ("qcur", "QUEUE"),
    ("check_status", "CHECK"), ("address", "ADDRESS"), ("port", "PORT"),
)


def info(client: Client, args: argparse.Namespace, out: Output) -> int:
    i = client.info()
    level = client.cli_level()
    out.result({**i.to_dict(), "cli_level": level}, lambda: out.pairs([
        ("name", i.name), ("version", i.version), ("pid", i.pid), ("nbthread", i.nbthread),
        ("uptime_sec", i.uptime_sec), ("current_conns", i.current_conns),
        ("max_conn", i.max_conn), ("stopping", i.stopping), ("node", i.node),
        ("cli_level", level),
    ]))
    return 0


def backends(client: Client, args: argparse.Namespace, out: Output) -> int:
    rows = [b.to_dict() for b in client.backend_stats()]
    out.result(rows, lambda: out.table(rows, (
        ("name", "BACKEND"), ("status", "STATUS"), ("active_servers", "ACTIVE"),
        ("backup_servers", "BACKUP"), ("weight", "WEIGHT"), ("scur", "SESS"),
        ("qcur", "QUEUE"), ("algo", "ALGO"), ("mode", "MODE"))))
    return 0


def servers(client: Client, args: argparse.Namespace, out: Output) -> int:
    rows = [s.to_dict() for s in client.servers(args.backend)]
    out.result(rows, lambda: out.table(rows, _SERVER_COLUMNS))
    return 0


def _bulk_output(results: list[BulkResult], out: Output, verb: str) -> int:
    failed = [r for r in results if not r.ok]

    def human() -> None:
        for r in results:
            out.line(f"{r.target}: {verb}" if r.ok else
                     f"{r.target}: FAILED: {r.error.reason if r.error else ''}")

    out.result({"results": [r.to_dict() for r in results], "ok": not failed}, human)
    if failed:
        first = failed[0]
        others = "; the others were applied" if len(failed) < len(results) else ""
        out.error(f"{len(failed)} of {len(results)} changes failed, first {first.target}: "
                  f"{first.error.reason if first.error else 'failed'}{others}")
    return 1 if failed else 0


def state(client: Client, args: argparse.Namespace, out: Output) -> int:
    if len(args.args) < 2:
        raise UsageError("expected BACKEND/SERVER... followed by ready, drain or maint",
                         field="arguments")
    *targets, new_state = args.args
    wanted = AdminState.parse(new_state)
    refs = [as_ref(t) for t in targets]
    results = client.set_state_many(refs, wanted, raise_on_error=False)
    return _bulk_output(results, out, f"state {wanted.value}")


def weight(client: Client, args: argparse.Namespace, out: Output) -> int:
    ref = as_ref(args.server)
    client.set_weight(ref, args.weight)
    w = client.get_weight(ref)
    out.result({"target": str(ref), "weight": w.current, "initial_weight": w.initial},
               lambda: out.line(f"{ref}: weight {w.current} (initial {w.initial})"))
    return 0


def wait(client: Client, args: argparse.Namespace, out: Output) -> int:
    ref = as_ref(args.server)
    timeout = args.wait_timeout
    if timeout is None:
        timeout = 300.0 if args.condition == "drained" else 60.0
    if timeout < 0:
        raise UsageError("--timeout must be >= 0", field="timeout", value=timeout)

    def progress(p: WaitProgress[ServerStat]) -> None:
        s = p.observation
        out.progress(f"waiting for {p.target} to be {p.condition}: status={s.status} "
                     f"sessions={s.scur} queue={s.qcur} "
                     f"[{p.elapsed:.0f}s/{p.timeout:.0f}s]")

    try:
        if args.condition == "drained":
            result = client.wait_drained(ref, timeout=timeout, interval=args.interval,
                                         on_progress=progress,
                                         require_out_of_service=not args.allow_ready)
        else:
            server = client.server(ref)
            if not (server.has_checks and server.checks_enabled):
                out.note(f"note: {ref} has no enabled health check; HAProxy treats it as up "
                         "without checking it")
            result = client.wait_up(ref, timeout=timeout, interval=args.interval,
                                    on_progress=progress)
    finally:
        out.end_progress()
    s = result.observation
    out.result({"target": str(ref), "condition": args.condition, "elapsed": result.elapsed,
                "polls": result.polls, "status": s.status, "scur": s.scur, "qcur": s.qcur},
               lambda: out.line(f"{ref}: {args.condition} after {result.elapsed:.1f}s "
                                f"(status {s.status}, sessions {s.scur}, queue {s.qcur})"))
    return 0


def sessions(client: Client, args: argparse.Namespace, out: Output) -> int:
    rows = [s.to_dict() for s in client.sessions(args.server)]
    out.result(rows, lambda: out.table(rows, (
        ("id", "ID"), ("proto", "PROTO"), ("src", "SOURCE"), ("frontend", "FRONTEND"),
        ("backend", "BACKEND"), ("server", "SERVER"), ("age", "AGE(S)"))))
    return 0


def _simple(out: Output, target: str, what: str, extra: dict[str, Any] | None = None) -> int:
    out.result({"target": target, "ok": True, **(extra or {})},
               lambda: out.line(f"{target}: {what}"))
    return 0


def health(client: Client, args: argparse.Namespace, out: Output) -> int:
    ref = as_ref(args.server)
    if args.action in ("enable", "disable"):
        (client.enable_health if args.action == "enable" else client.disable_health)(ref)
        return _simple(out, str(ref), f"health checks {args.action}d")
    client.set_health(ref, args.action)
    return _simple(out, str(ref), f"health forced {args.action} (until the next check result; "
                                  "for good while checks are disabled)")


def server(client: Client, args: argparse.Namespace, out: Output) -> int:
    s = client.server(as_ref(args.server))
    d = s.to_dict()
    d["admin_flags"] = [f.name for f in type(s.admin_flags) if f in s.admin_flags
                        and f.name and not f.name.endswith("_MASK")]
    human = {**d, "admin_flags": "|".join(d["admin_flags"]) or "-"}
    out.result(d, lambda: out.pairs(list(human.items())))
    return 0


def agent(client: Client, args: argparse.Namespace, out: Output) -> int:
    ref = as_ref(args.server)
    (client.enable_agent if args.action == "enable" else client.disable_agent)(ref)
    return _simple(out, str(ref), f"agent check {args.action}d")


def addr(client: Client, args: argparse.Namespace, out: Output) -> int:
    ref = as_ref(args.server)
    message = client.set_address(ref, args.address, args.port)
    return _simple(out, str(ref), message or "address set", {"message": message})


def shutdown_sessions(client: Client, args: argparse.Namespace, out: Output) -> int:
    ref = as_ref(args.server)
    client.shutdown_sessions(ref)
    return _simple(out, str(ref), "sessions shut down")


def _filters(raw: list[str]) -> list[TableFilter]:
    return [TableFilter.parse(w) for w in raw]


def _data(pairs: list[str]) -> dict[str, int]:
    data: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if name.removeprefix("data.") == "server_key":
            raise UsageError("server_key cannot be set through the runtime API (HAProxy only "
                             "takes integers); set server_id instead", field="data")
        if not sep or not value.isascii() or not value.isdigit():
            raise UsageError(f"invalid data {pair!r}: expected TYPE=INTEGER like server_id=2",
                             field="data", value=pair)
        data[name.removeprefix("data.")] = int(value)
    return data


_ENTRY_COLUMNS = (("key", "KEY"), ("server_id", "SERVER_ID"), ("server_key", "SERVER_KEY"),
                  ("exp", "EXPIRES(MS)"), ("data", "DATA"))


def _entry_row(e: TableEntry) -> dict[str, Any]:
    return {"key": e.key, "server_id": e.server_id, "server_key": e.server_key, "exp": e.exp,
            "data": " ".join(f"{k}={v}" for k, v in e.data.items()
                             if k not in ("server_id", "server_key"))}


def table(client: Client, args: argparse.Namespace, out: Output) -> int:
    action = args.table_command
    if action == "list":
        rows = [{"name": t.name, "type": t.type, "size": t.size, "used": t.used}
                for t in client.tables()]
        out.result(rows, lambda: out.table(rows, (("name", "TABLE"), ("type", "TYPE"),
                                                  ("size", "SIZE"), ("used", "USED"))))
        return 0
    if action == "show":
        # Streamed: entries are printed while HAProxy still sends the rest, and never all held
        # in memory (tables of a million users are 75 MB of text). --json keeps the shape of
        # StickTable.to_dict(), written entry by entry.
        with client.iter_table(args.table, key=args.key, where=_filters(args.where)) as entries:
            if out.json_mode:
                out.json_stream(attrs.asdict(entries.info), "entries",
                                (e.to_dict() for e in entries))
            else:
                out.stream_table((_entry_row(e) for e in entries), _ENTRY_COLUMNS)
        return 0
    if action == "set":
        client.table_set(args.table, args.key, _data(args.data))
        return _simple(out, f"{args.table}[{args.key}]", "set")
    # clear
    filters = _filters(args.where)
    if args.key is None and not filters and not args.all:
        raise UsageError("refusing to clear every entry of the table without --all "
                         "(or give --key / --where)", field="table clear")
    client.table_clear(args.table, key=args.key, where=filters)
    return _simple(out, args.table, "cleared")


def map_(client: Client, args: argparse.Namespace, out: Output) -> int:
    action = args.map_command
    if action == "show":
        rows = [e.to_dict() for e in client.map_entries(args.map)]
        out.result(rows, lambda: out.table(rows, (("ref", "REF"), ("key", "KEY"),
                                                  ("value", "VALUE"))))
        return 0
    if action == "add":
        client.map_add(args.map, args.key, args.value)
    elif action == "set":
        client.map_set(args.map, args.key, args.value)
    elif action == "del":
        client.map_del(args.map, args.key)
    else:
        client.map_clear(args.map)
    return _simple(out, args.map, f"map {action} done")


def raw(client: Client, args: argparse.Namespace, out: Output) -> int:
    words = [w for w in args.words if w != "--"]
    if not words:
        raise UsageError("raw needs a command, e.g. 'haproxyctl raw show info'", field="command")
    text = client.raw(" ".join(words))
    out.result({"command": " ".join(words), "output": text}, lambda: out.line(text))
    return 0


def demo(args: argparse.Namespace, out: Output) -> int:
    """The demo needs no socket: it starts its own HAProxy (see haproxyctl.demo)."""
    from haproxyctl.demo import run_demo

    if not 1 <= args.users <= 200:
        raise UsageError("--users must be 1-200", field="users", value=args.users)
    if not 2 <= args.servers <= 12:
        raise UsageError("--servers must be 2-12", field="servers", value=args.servers)
    result = run_demo(users=args.users, servers=args.servers, out=out.out,
                      json_mode=out.json_mode)
    if out.json_mode:
        out.json({"ok": result.ok,
                  "rollouts": [r.to_dict() for r in result.rollouts],
                  "users": {b: {"requests": load.total, "failed": load.failed,
                                "flipped_back": len(load.flips),
                                "mixed_pages": load.mixed_pages,
                                "max_moves": load.max_moves,
                                "per_server": dict(load.per_server),
                                "per_version": dict(load.per_version)}
                            for b, load in result.loads}})
    return 0 if result.ok else 1


HANDLERS: dict[str, Handler] = {
    "balance": balance,
    "info": info,
    "backends": backends,
    "servers": servers,
    "server": server,
    "state": state,
    "weight": weight,
    "wait": wait,
    "sessions": sessions,
    "health": health,
    "agent": agent,
    "addr": addr,
    "shutdown_sessions": shutdown_sessions,
    "table": table,
    "map": map_,
    "raw": raw,
    "rollout": rollout,
}
