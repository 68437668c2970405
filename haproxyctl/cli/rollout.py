"""``haproxyctl rollout``: arguments to :class:`~haproxyctl.rollout.Rollout`, events to the
screen, the report to an exit code. No rollout logic here."""

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Literal

from haproxyctl.cli.render import Output
from haproxyctl.client import Client
from haproxyctl.errors import UsageError
from haproxyctl.protocol.encode import Command
from haproxyctl.rollout import (
    Event,
    Plan,
    Rollout,
    RolloutOptions,
    RolloutReport,
    StopSignal,
)
from haproxyctl.rollout.journal import read_journal
from haproxyctl.rollout.plan import batches_for
from haproxyctl.rollout.progress import renderer_for

__all__ = ["rollout"]

EXIT_FAILED = 6
EXIT_INTERRUPTED = 130
_CAUSE_EXIT = {"transport": 3, "reload": 3, "timeout": 4}


# Options that may change when resuming: how long to wait, not which servers go together.
TIMING = ("drain_timeout", "sessions_timeout", "kill_after", "health_timeout", "settle", "ramp",
          "exec_timeout", "poll_interval", "balance_tolerance", "balance_timeout")


def _timing(args: argparse.Namespace) -> dict[str, Any]:
    """The timing options given on the command line (the others keep their defaults)."""
    return {name: getattr(args, name) for name in TIMING if getattr(args, name) is not None}


def _options(args: argparse.Namespace) -> RolloutOptions:
    return RolloutOptions(
        strategy=args.strategy or "rolling", batch_size=args.batch_size, percent=args.percent,
        groups=RolloutOptions.parse_groups(args.groups) if args.groups else None,
        max_unavailable=args.max_unavailable,
        allow_version_flips=args.allow_version_flips, include_disabled=args.include_disabled,
        rebalance=args.rebalance, **_timing(args),
    )


def _resume_overrides(args: argparse.Namespace, ro: Rollout) -> dict[str, Any]:
    """Timing options given with --resume replace the journal's. Grouping options may be
    repeated (re-running the same command with --resume) but not changed: the batches are
    fixed by the plan."""
    path = ro.journal_path
    state = read_journal(path) if path is not None and path.exists() else None
    if state is not None and state.ended is None:  # an ended one is refused by resume itself
        plan = state.plan
        wanted = _options(args)
        changed: list[str] = []
        if args.strategy is not None and wanted.strategy != plan.strategy:
            changed.append("--strategy")
        if any(getattr(args, n) is not None for n in ("batch_size", "percent", "groups")) \
                and batches_for(list(plan.targets), wanted) != plan.batches:
            changed.append(next(f"--{n.replace('_', '-')}"
                                for n in ("batch_size", "percent", "groups")
                                if getattr(args, n) is not None))
        if args.max_unavailable is not None and args.max_unavailable != plan.max_unavailable:
            changed.append("--max-unavailable")
        if changed:
            verb = "changes" if len(changed) == 1 else "change"
            raise UsageError(
                f"{', '.join(changed)} {verb} the unfinished rollout's plan, whose batches "
                "cannot change on --resume (repeat the original values or leave them out; "
                "--abort, then start anew to change them)", field=changed[0])
    return _timing(args)


@contextlib.contextmanager
def stop_on_signals(stop: StopSignal, out: Output) -> Iterator[None]:
    """SIGINT/SIGTERM ask the rollout to stop after the current step (it finishes waits early;
    an update command already running completes)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.requested:
            out.note(f"{name}: already stopping after the current step")
        else:
            out.note(f"{name}: stopping after the current step...")
        stop.request(f"stopped by {name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _never_fails(render: Callable[[Event], None]) -> Callable[[Event], None]:
    """Progress output must never stop a rollout half-way: if stdout goes away (a closed pipe,
    `| head`), the rollout goes on silently and its exit code still tells how it ended."""
    broken = False

    def safe(event: Event) -> None:
        nonlocal broken
        if broken:
            return
        try:
            render(event)
        except OSError:
            broken = True

    return safe


def _exit_code(report: RolloutReport) -> int:
    if report.status in ("completed", "aborted"):
        return 0
    if report.status == "interrupted":
        return EXIT_INTERRUPTED
    return _CAUSE_EXIT.get(report.cause or "", EXIT_FAILED)


def rollout(client: Client, args: argparse.Namespace, out: Output) -> int:
    persistence = None if args.persistence == "auto" else args.persistence
    journal: str | Literal[False] | None = False if args.no_journal else args.journal
    options = RolloutOptions() if args.resume or args.abort else _options(args)
    ro = Rollout(client, args.backend, args.exec_cmd, options=options, journal=journal,
                 persistence=persistence, haproxy_config=args.haproxy_config)
    if args.dry_run:
        plan = ro.plan()
        steps = plan.commands()
        out.result({"plan": plan.to_dict(),
                    "steps": [{"step": label, "commands": [c.line for c in commands]}
                              for label, commands in steps]},
                   lambda: _print_plan(out, plan, steps, args.exec_cmd))
        return 0
    render = _never_fails(renderer_for(out.out, json_mode=out.json_mode))
    if args.abort:
        report = ro.abort(on_event=render)
        return _exit_code(report)
    stop = StopSignal()
    with stop_on_signals(stop, out):
        report = (ro.resume(on_event=render, stop=stop, overrides=_resume_overrides(args, ro))
                  if args.resume else ro.run(on_event=render, stop=stop))
    if not report.ok:
        out.error(f"rollout {report.status}: {report.message}")
    return _exit_code(report)


def _print_plan(out: Output, plan: Plan, steps: list[tuple[str, list[Command]]],
                exec_cmd: str | None) -> None:
    out.line(f"plan: {plan.strategy} rollout of {plan.backend} ({plan.persistence} "
             f"persistence), {len(plan.batches)} batch(es), at most {plan.max_unavailable} "
             "server(s) out of service")
    for k, batch in enumerate(plan.batches, 1):
        out.line(f"  batch {k}: {', '.join(batch)}")
    for note in plan.notes:
        out.line(f"  note: {note}")
    out.line(f"update: {exec_cmd or '(none given)'}")
    out.line("commands:")
    for label, commands in steps:
        out.line(f"  # {label}")
        for c in commands:
            out.line(f"  {c}")
