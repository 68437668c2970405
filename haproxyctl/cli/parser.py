"""The ``haproxyctl`` argument parser. Each subcommand names its handler in ``handler``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from haproxyctl import __version__
from haproxyctl.client import ENV_SOCKET
from haproxyctl.connection import DEFAULT_TIMEOUT

__all__ = ["build_parser"]

EPILOG = f"""\
addresses:  /run/haproxy/admin.sock | unix:/path | tcp://host:port | master:/path[@N|@!PID]
            (default: ${ENV_SOCKET}, else /run/haproxy/admin.sock)
exit codes: 0 ok, 1 HAProxy refused the command (or a server is in the wrong state; a
            rollout refused to start), 2 usage error, 3 cannot connect / connection lost,
            4 timeout, 5 unexpected reply from HAProxy, 6 rollout failed part-way,
            130 interrupted
"""


class _Parser(argparse.ArgumentParser):
    """argparse with our usage-error exit code (2) and one-line messages."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"haproxyctl: error: {message} (see '{self.prog} --help')\n")


def _common(json_default: object) -> _Parser:
    # --json and --quiet are accepted before or after the subcommand.
    p = _Parser(add_help=False)
    p.add_argument("--json", action="store_true", default=json_default,
                   help="machine-readable JSON output on stdout")
    p.add_argument("-q", "--quiet", action="store_true", default=json_default,
                   help="no progress or notes on stderr")
    return p


def build_parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="haproxyctl",
        description="Control HAProxy through its runtime API: server state, weights, waits, "
                    "stick tables and safe rolling updates.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(False)],
    )
    top.add_argument("-s", "--socket", metavar="ADDR",
                     help=f"HAProxy CLI socket (default: ${ENV_SOCKET} or /run/haproxy/admin.sock)")
    top.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                     help="seconds allowed per exchange with HAProxy "
                          f"(default {DEFAULT_TIMEOUT:g})")
    top.add_argument("-v", "--verbose", action="store_true",
                     help="log every command sent to HAProxy on stderr")
    top.add_argument("--version", action="version", version=f"haproxyctl {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    common = [_common(argparse.SUPPRESS)]

    def add(name: str, handler: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=common)
        p.set_defaults(handler=handler)
        return p

    add("info", "info", "show the HAProxy process (version, pid, uptime, connections)")
    add("backends", "backends", "list backends with their totals")

    p = add("servers", "servers", "list servers: state, weight, sessions, queue, checks")
    p.add_argument("backend", nargs="?", help="only this backend")

    p = add("server", "server", "show one server in detail (state bits, weights, checks)")
    p.add_argument("server", metavar="BACKEND/SERVER")

    p = add("state", "state", "set servers to ready, drain or maint (admin socket)")
    p.add_argument("args", nargs="+", metavar="BACKEND/SERVER... STATE",
                   help="one or more servers, then ready|drain|maint")

    p = add("weight", "weight", "set a server's weight (0-256 or N%% of its initial weight)")
    p.add_argument("server", metavar="BACKEND/SERVER")
    p.add_argument("weight", metavar="N|N%")

    p = add("wait", "wait", "wait until a server is drained (no sessions, empty queue) or up "
                            "(health checks pass)")
    p.add_argument("server", metavar="BACKEND/SERVER")
    p.add_argument("condition", choices=["drained", "up"])
    p.add_argument("--timeout", dest="wait_timeout", type=float, default=None, metavar="S",
                   help="give up after S seconds (default: 300 for drained, 60 for up)")
    p.add_argument("--interval", type=float, default=0.5, metavar="S",
                   help="seconds between polls (default 0.5)")
    p.add_argument("--allow-ready", action="store_true",
                   help="drained: also wait on a server still in ready (normally refused)")

    p = add("sessions", "sessions", "list current sessions, all or of one server (operator)")
    p.add_argument("server", nargs="?", metavar="BACKEND/SERVER")

    p = add("health", "health", "enable or disable a server's health checks, or force its "
                                "health up/stopping/down until the next check result")
    p.add_argument("action", choices=["enable", "disable", "up", "stopping", "down"])
    p.add_argument("server", metavar="BACKEND/SERVER")

    p = add("agent", "agent", "enable or disable a server's agent check")
    p.add_argument("action", choices=["enable", "disable"])
    p.add_argument("server", metavar="BACKEND/SERVER")

    p = add("addr", "addr", "change a server's address (and port)")
    p.add_argument("server", metavar="BACKEND/SERVER")
    p.add_argument("address", metavar="IP")
    p.add_argument("--port", type=int)

    p = add("shutdown-sessions", "shutdown_sessions",
            "kill every session of a server (in-flight requests are cut: a 502 up to "
            "HAProxy 3.0.5, no response from 3.0.6/3.1 on)")
    p.add_argument("server", metavar="BACKEND/SERVER")

    table = add("table", "table", "stick tables: list, show, set, clear (operator)")
    tsub = table.add_subparsers(dest="table_command", metavar="ACTION", parser_class=_Parser)
    tsub.required = True
    tsub.add_parser("list", help="list the stick tables", parents=common)
    t = tsub.add_parser("show", help="show a table's entries", parents=common)
    t.add_argument("table")
    t.add_argument("--key", help="only this key")
    t.add_argument("--where", action="append", default=[], metavar="'TYPE OP VALUE'",
                   help="data filter such as 'server_id eq 2' (repeatable, up to 4)")
    t = tsub.add_parser("set", help="create or update an entry: table set T KEY server_id=2",
                        parents=common)
    t.add_argument("table")
    t.add_argument("key")
    t.add_argument("data", nargs="+", metavar="TYPE=VALUE")
    t = tsub.add_parser("clear", help="remove entries by key, by data filter, or all (--all)",
                        parents=common)
    t.add_argument("table")
    t.add_argument("--key")
    t.add_argument("--where", action="append", default=[], metavar="'TYPE OP VALUE'")
    t.add_argument("--all", action="store_true", help="remove every entry (must be explicit)")

    maps = add("map", "map", "maps: show, add, set, del, clear")
    msub = maps.add_subparsers(dest="map_command", metavar="ACTION", parser_class=_Parser)
    msub.required = True
    m = msub.add_parser("show", help="list a map's entries", parents=common)
    m.add_argument("map", help="map file name or #ID")
    for name, helptext in (("add", "add an entry"), ("set", "change the value of a key")):
        m = msub.add_parser(name, help=helptext, parents=common)
        m.add_argument("map")
        m.add_argument("key")
        m.add_argument("value")
    m = msub.add_parser("del", help="delete a key", parents=common)
    m.add_argument("map")
    m.add_argument("key")
    m = msub.add_parser("clear", help="remove every entry", parents=common)
    m.add_argument("map")

    _add_rollout(add)

    p = add("balance", "balance",
            "show how evenly persistent users are spread over a backend's servers in service "
            "(stick-table users or req/s), and with --apply even them out (all of those "
            "servers must run one version)")
    p.add_argument("backend")
    p.add_argument("--apply", action="store_true",
                   help="move users: re-pin stick-table entries, or short maint pulses for "
                        "cookies (weights and states are restored, also on Ctrl-C)")
    p.add_argument("--servers", metavar="S1,S2",
                   help="only these servers (default: every server ready and UP)")
    p.add_argument("--tolerance", type=float, default=0.10, metavar="F",
                   help="even enough once the busiest is within this fraction of the mean "
                        "(default 0.10)")
    p.add_argument("--balance-timeout", type=float, default=30.0, metavar="S",
                   help="upper bound of the cookie pulses (default 30)")
    p.add_argument("--max-unavailable", type=int, default=1, metavar="N",
                   help="servers a pulse may take out of service at once (default 1)")
    bj = p.add_mutually_exclusive_group()
    bj.add_argument("--journal", metavar="PATH",
                    help="the backend's rollout journal (refused while it has an unfinished "
                         "rollout; default: the rollout's default path)")
    bj.add_argument("--no-journal", action="store_true",
                    help="do not look for an unfinished rollout")

    p = add("demo", "demo", "start a local HAProxy with app servers and simulated users, roll "
                            "them from v1 to v2 live, and show what the users saw")
    p.add_argument("--users", type=int, default=20, help="simulated users per backend")
    p.add_argument("--servers", type=int, default=4, help="app servers per backend (2-12)")

    p = add("raw", "raw", "send one command line verbatim and print the reply (put '--' "
                          "before words that start with '-')")
    p.add_argument("words", nargs="+", metavar="COMMAND...")
    return top


def _add_rollout(add: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    p = add("rollout", "rollout",
            "update a backend's servers batch by batch without failing a request: drain, "
            "maint, wait for sessions, update, health checks, ready (see docs/rollout.md)")
    p.add_argument("backend")
    p.add_argument("--exec", dest="exec_cmd", metavar="CMD",
                   help="update command per server; placeholders {backend} {server} {address} "
                        "{port}; run in parallel within a batch; non-zero exit = failure")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="print the plan and the exact commands, change nothing")
    mode.add_argument("--resume", action="store_true",
                      help="finish an unfinished rollout from its journal (timing options "
                           "given now replace the journal's; the batches cannot change)")
    mode.add_argument("--abort", action="store_true",
                      help="undo an unfinished rollout: restore servers not yet updated")
    p.add_argument("--strategy", choices=["rolling", "halves"], default=None,
                   help="rolling (default): batch by batch, needs persistence; halves: update "
                        "half A, switch A in and B out in one write, update B")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--batch-size", type=int, metavar="N", help="servers per batch (default 1)")
    group.add_argument("--percent", type=float, metavar="P", help="batch size as %% of servers")
    group.add_argument("--groups", metavar="'s1,s2 s3,s4'", help="explicit batches")
    p.add_argument("--max-unavailable", type=int, metavar="N",
                   help="servers out of service at once, counting those already down or in "
                        "maint (default: the batch size)")
    p.add_argument("--drain-timeout", type=float, default=None, metavar="S",
                   help="grace for pinned users in drain before maint (default: 0 when "
                        "haproxyctl moves the users itself, else 10)")
    p.add_argument("--sessions-timeout", type=float, default=None, metavar="S",
                   help="max wait for in-flight requests in maint (default 120)")
    p.add_argument("--kill-after", type=float, metavar="S",
                   help="shut down sessions still open after S seconds in maint (opt-in)")
    p.add_argument("--health-timeout", type=float, default=None, metavar="S",
                   help="max wait for health checks after the update (default 60)")
    p.add_argument("--settle", type=float, default=None, metavar="S",
                   help="wait instead of checks for servers without health checks (default 5)")
    p.add_argument("--ramp", type=float, default=None, metavar="S",
                   help="bring the weight back in steps over S seconds (default: at once)")
    p.add_argument("--exec-timeout", type=float, default=None, metavar="S",
                   help="kill an update command running longer (default 600)")
    p.add_argument("--poll-interval", type=float, default=None, metavar="S",
                   help="seconds between polls of HAProxy (default 0.25)")
    p.add_argument("--persistence", choices=["auto", "cookie", "stick-table", "none"],
                   default="auto", help="override persistence detection")
    p.add_argument("--allow-version-flips", action="store_true",
                   help="allow rolling on a backend without persistence")
    p.add_argument("--include-disabled", action="store_true",
                   help="also update servers in maint/drain before the rollout")
    p.add_argument("--haproxy-config", metavar="FILE",
                   help="HAProxy's configuration: refuse settings that defeat maint ('option "
                        "persist', 'force-persist') and warn about cookie modes that cannot "
                        "re-pin a user (prefix, rewrite, passive)")
    p.add_argument("--no-rebalance", dest="rebalance", action="store_false",
                   help="do not move users to keep the load even (no steering weights, no "
                        "stick-table re-pins, no final even-out)")
    p.add_argument("--balance-tolerance", type=float, default=None, metavar="F",
                   help="the final even-out stops once the busiest server is within this "
                        "fraction of the mean (default 0.10)")
    p.add_argument("--balance-timeout", type=float, default=None, metavar="S",
                   help="upper bound of the final even-out (default 30)")
    journal = p.add_mutually_exclusive_group()
    journal.add_argument("--journal", metavar="PATH",
                         help="journal file (default: $HAPROXYCTL_STATE_DIR or "
                              "~/.local/state/haproxyctl/rollout-<backend>-<hash>.jsonl)")
    journal.add_argument("--no-journal", action="store_true",
                         help="no journal: no resume/abort, no protection against a second "
                              "rollout")
