"""Showing rollout progress: a live view on a terminal, timestamped lines on a pipe, JSON lines
for scripts. Each renderer is a callable taking events; none of them changes anything."""

from __future__ import annotations

import datetime
import json
from typing import TextIO

from haproxyctl.rollout.events import (
    Balance,
    BatchDone,
    BatchStarted,
    Event,
    Notice,
    PhaseChanged,
    RolloutFinished,
    RolloutReport,
    RolloutStarted,
    Waiting,
)

__all__ = ["JsonLines", "LiveView", "PlainLines", "format_report", "renderer_for"]


def _clock() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


class JsonLines:
    """One JSON object per event (``{"event": "phase", "server": "s1", ...}``)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: Event) -> None:
        self.out.write(json.dumps(event.to_dict(), default=str) + "\n")
        self.out.flush()


class PlainLines:
    """Timestamped lines; wait progress at most every ``every`` seconds per wait."""

    def __init__(self, out: TextIO, *, every: float = 5.0) -> None:
        self.out = out
        self.every = every
        self._last_wait: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        line = self._line(event)
        if line is not None:
            self.out.write(f"{_clock()} {line}\n")
            self.out.flush()

    def _line(self, event: Event) -> str | None:
        if isinstance(event, RolloutStarted):
            batches = " | ".join(",".join(b) for b in event.batches)
            verb = "resuming" if event.resumed else "starting"
            return f"{verb} {event.strategy} rollout of {event.backend}: {batches}"
        if isinstance(event, BatchStarted):
            self._last_wait.clear()
            return f"batch {event.index + 1}/{event.total}: {', '.join(event.servers)}"
        if isinstance(event, PhaseChanged):
            return f"  {event.server}: {event.phase.value}" + (f" ({event.detail})"
                                                                if event.detail else "")
        if isinstance(event, Waiting):
            last = self._last_wait.get(event.what)
            if last is not None and event.elapsed - last < self.every:
                return None
            self._last_wait[event.what] = event.elapsed
            detail = "; ".join(f"{s}: {v}" for s, v in event.servers.items())
            return f"  waiting ({event.what}, {event.elapsed:.0f}/{event.timeout:.0f}s): {detail}"
        if isinstance(event, Notice):
            return f"  note: {event.message}"
        if isinstance(event, Balance):
            return f"  load ({event.stage}): {format_load(event)}"
        if isinstance(event, BatchDone):
            return f"batch {event.index + 1}/{event.total} {'done' if event.ok else 'FAILED'}"
        if isinstance(event, RolloutFinished):
            return format_report(event.report)
        return None


class LiveView:
    """A block redrawn in place: batch k of n, each server's phase, what it waits for."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.backend = ""
        self.batch = ""
        self.phase: dict[str, str] = {}
        self.detail: dict[str, str] = {}
        self.notes: list[str] = []
        self.load = ""
        self.elapsed = 0.0
        self._drawn = 0

    def __call__(self, event: Event) -> None:
        self.elapsed = max(self.elapsed, event.at)
        if isinstance(event, RolloutStarted):
            self.backend = f"{event.strategy} rollout of {event.backend}"
            for batch in event.batches:
                for s in batch:
                    self.phase.setdefault(s, "pending")
        elif isinstance(event, BatchStarted):
            self.batch = f"batch {event.index + 1}/{event.total}"
        elif isinstance(event, PhaseChanged):
            self.phase[event.server] = event.phase.value
            self.detail[event.server] = event.detail
        elif isinstance(event, Waiting):
            for s, v in event.servers.items():
                self.detail[s] = f"{event.what}: {v} ({event.elapsed:.0f}/{event.timeout:.0f}s)"
        elif isinstance(event, Notice):
            self.notes.append(event.message)
        elif isinstance(event, Balance):
            self.load = f"load ({event.stage}): {format_load(event)}"
        elif isinstance(event, RolloutFinished):
            self._draw()
            self.out.write(format_report(event.report) + "\n")
            self.out.flush()
            return
        self._draw()

    def _draw(self) -> None:
        lines = [f"{self.backend}  {self.batch}  elapsed {self.elapsed:.0f}s"]
        width = max((len(s) for s in self.phase), default=0)
        for s, p in self.phase.items():
            lines.append(f"  {s.ljust(width)}  {p:<9}  {self.detail.get(s, '')}"[:160])
        if self.load:
            lines.append(f"  {self.load}"[:160])
        lines += [f"  note: {n}"[:160] for n in self.notes[-3:]]
        up = f"\033[{self._drawn}F" if self._drawn else ""
        self.out.write(up + "".join(f"\033[2K{line}\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)


def format_load(balance: Balance) -> str:
    """``s1 12  s2 11  s3 13 req/s, busiest 1.08x the mean``."""
    per = "  ".join(f"{s} {v:g}" for s, v in balance.loads.items())
    return f"{per} {balance.unit}, busiest {balance.imbalance:.2f}x the mean"


def format_report(report: RolloutReport) -> str:
    """The final report as text: one line per server with its phase and live state."""
    head = (f"rollout of {report.backend} {report.status}: {report.message} "
            f"({report.batches_done}/{report.batches_total} batches, {report.elapsed:.1f}s, "
            f"overhead {report.overhead * 1000:.0f} ms)")
    width = max((len(o.server) for o in report.servers), default=0)
    rows = []
    for o in report.servers:
        live = (f"{o.admin_state or '?'}/{o.status or '?'} weight {o.weight}"
                if o.admin_state is not None else "unknown (HAProxy unreachable)")
        was = f"was {o.original_state}/weight {o.original_weight}"
        err = f"  error: {o.error}" if o.error else ""
        rows.append(f"  {o.server.ljust(width)}  {o.phase.value:<9}  now {live}  ({was}){err}")
    if report.loads:
        shown = list(report.loads)
        if len(shown) > 8:  # the first, the worst and the last few stages
            worst = max(shown[1:-3], key=lambda b: b.imbalance)
            shown = [shown[0], worst, *shown[-3:]]
        rows.append("  load of the servers in service:")
        rows += [f"    {b.stage}: {format_load(b)}" for b in shown]
    return "\n".join([head, *rows])


def renderer_for(out: TextIO, *, json_mode: bool) -> JsonLines | LiveView | PlainLines:
    if json_mode:
        return JsonLines(out)
    return LiveView(out) if out.isatty() else PlainLines(out)
