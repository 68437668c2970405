"""``haproxyctl balance BACKEND``: how evenly persistent users are spread, and evening them out.

All logic is in :mod:`haproxyctl.rollout.evenout`; this parses, prints and maps the outcome to
an exit code (0 measured or balanced, 6 applied but still uneven, 130 interrupted).
"""

from __future__ import annotations

import argparse

from haproxyctl.cli.render import Output
from haproxyctl.cli.rollout import EXIT_FAILED, EXIT_INTERRUPTED, stop_on_signals
from haproxyctl.client import Client
from haproxyctl.rollout.evenout import EvenOutReport, even_out
from haproxyctl.rollout.events import Balance, Event, Notice
from haproxyctl.rollout.progress import format_load
from haproxyctl.rollout.runner import StopSignal

__all__ = ["balance"]


def balance(client: Client, args: argparse.Namespace, out: Output) -> int:
    servers = None
    if args.servers is not None:
        servers = [s for s in args.servers.split(",") if s]

    def progress(event: Event) -> None:
        if isinstance(event, Balance):
            out.note(f"{event.stage}: {format_load(event)}")
        elif isinstance(event, Notice):
            out.note(event.message)

    stop = StopSignal()
    with stop_on_signals(stop, out):
        report = even_out(client, args.backend, servers=servers, apply=args.apply,
                          tolerance=args.tolerance, timeout=args.balance_timeout,
                          max_unavailable=args.max_unavailable,
                          journal=False if args.no_journal else args.journal,
                          on_event=progress, stop=stop)
    out.result(report.to_dict(), lambda: _print(out, report))
    if report.status == "interrupted":
        out.error(f"balance interrupted: {report.message}")
        return EXIT_INTERRUPTED
    if report.status == "uneven":
        out.error(f"{args.backend}: still {report.imbalance_after:.2f}x the mean after "
                  f"evening out ({report.message or 'no further move would help'})")
        return EXIT_FAILED
    return 0


def _print(out: Output, report: EvenOutReport) -> None:
    if report.status == "interrupted":
        return
    unit = report.unit
    fmt = "{:.0f}" if unit == "users" else "{:.1f}"
    rows = [{"server": s, "before": fmt.format(report.before.get(s, 0.0)),
             "after": fmt.format(report.after.get(s, 0.0)),
             "sessions": str(report.sessions.get(s, "-"))} for s in report.servers]
    columns = [("server", "SERVER"), ("before", f"{unit.upper()}"), ("sessions", "SESS")]
    if report.applied:
        columns = [("server", "SERVER"), ("before", f"BEFORE ({unit})"),
                   ("after", f"AFTER ({unit})"), ("sessions", "SESS")]
    out.table(rows, columns)
    line = (f"{report.backend} ({report.persistence}): busiest server "
            f"{report.imbalance_before:.2f}x the mean")
    if report.applied:
        done = (f"re-pinned {report.moved} users" if report.unit == "users"
                else f"{report.pulses} maint pulse(s)")
        line += f", now {report.imbalance_after:.2f}x ({done})"
    elif report.imbalance_before > 1 + report.tolerance:
        line += f" (above {1 + report.tolerance:.2f}x: --apply evens it out)"
    out.line(line)
