"""``haproxyctl balance``: show how evenly users are spread over a backend, and even them out.

Outside a rollout, users pinned by persistence stay where they are when servers come back,
get added, or change weight, so one server can carry twice its share for as long as its users
keep their cookie or stick entry. This measures each server's load (stick-table users per
server, exact; or requests per second for cookies, since a cookie user cannot be seen but
its requests can) and, with ``apply=True``, evens it out with the rollout's own tools
(``rollout/leveling.py``): re-pins for stick tables, short maint pulses for cookies.

Moving a user between two servers that run different versions would make it flip, so the
servers evened out (``servers``, default every server in service) must all run one version;
haproxyctl cannot see versions, so that is the caller's promise. It refuses to start while a
rollout of the backend is unfinished (its journal says so) and holds the rollout lock while it
applies, so the two never run at once.

Example::

    from haproxyctl import Client
    from haproxyctl.rollout.evenout import even_out

    with Client("/run/haproxy/admin.sock") as haproxy:
        report = even_out(haproxy, "app", apply=True)
        print(report.imbalance_before, "->", report.imbalance_after)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from haproxyctl import commands as cmd
from haproxyctl.client import Client
from haproxyctl.errors import HAProxyError, UsageError
from haproxyctl.models.state import AdminState
from haproxyctl.rollout.events import Event
from haproxyctl.rollout.journal import Journal
from haproxyctl.rollout.leveling import LevelResult, balance_flow
from haproxyctl.rollout.plan import Plan, PlanError, balance_plan
from haproxyctl.rollout.runner import Runner, StopSignal
from haproxyctl.rollout.steps import Emit, Flow, Now, Send

__all__ = ["EvenOutReport", "ReloadedDuringBalance", "even_out"]


@attrs.frozen
class EvenOutReport:
    """What ``balance`` measured and did. ``status``: "measured", "balanced" (applied and
    within the tolerance), "uneven" (applied, still above it) or "interrupted"."""

    backend: str
    persistence: str
    servers: tuple[str, ...]
    unit: str
    before: Mapping[str, float]
    after: Mapping[str, float]
    imbalance_before: float
    imbalance_after: float
    applied: bool
    status: str
    tolerance: float
    moved: int = 0
    pulses: int = 0
    message: str = ""
    #: Current sessions per server when the report was made (``scur``): the users active now.
    sessions: Mapping[str, int] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "persistence": self.persistence,
                "servers": list(self.servers), "unit": self.unit,
                "before": dict(self.before), "after": dict(self.after),
                "imbalance_before": round(self.imbalance_before, 3),
                "imbalance_after": round(self.imbalance_after, 3), "applied": self.applied,
                "status": self.status, "tolerance": self.tolerance, "moved": self.moved,
                "pulses": self.pulses, "message": self.message,
                "sessions": dict(self.sessions)}


def even_out(client: Client, backend: str, *, servers: Sequence[str] | None = None,
             apply: bool = False, tolerance: float = 0.10, timeout: float = 30.0,
             max_unavailable: int = 1, journal: str | Path | Literal[False] | None = None,
             on_event: Callable[[Event], None] | None = None,
             stop: StopSignal | None = None) -> EvenOutReport:
    """Measure (and with ``apply``, even out) the load of ``backend``'s servers in service.

    Raises PlanError when the backend has no persistence (every request is already load
    balanced: nothing to even out), fewer than two servers to compare, or a server of
    ``servers`` that is unknown or not in service; JournalError while a rollout of the
    backend is unfinished or running. ``timeout`` bounds the cookie pulses (seconds),
    ``max_unavailable`` how many servers a pulse may take out at once.
    """
    if not 0 < tolerance < 1:
        raise UsageError(f"tolerance {tolerance!r} must be between 0 and 1", field="tolerance",
                         value=tolerance)
    if not timeout > 0:
        raise UsageError(f"timeout {timeout!r} must be positive", field="timeout",
                         value=timeout)
    if max_unavailable < 1:
        raise UsageError(f"max_unavailable {max_unavailable!r} must be at least 1",
                         field="max_unavailable", value=max_unavailable)
    from haproxyctl.rollout.api import Rollout  # the journal's default path lives there

    path = Rollout(client, backend, journal=journal).journal_path
    with _locked(path, apply) as _:
        plan, group = _plan(client, backend, servers, tolerance, timeout)
        runner = Runner(client, None, journal=None, stop=stop)
        flow = balance_flow(plan, group, apply=apply, max_out=max_unavailable)
        result: LevelResult | None = None
        reloaded = False
        try:
            result = _drive(runner, flow, on_event)
        except ReloadedDuringBalance:
            reloaded = True  # a new process: nothing of ours to restore there
            raise
        finally:
            if apply and result is None and not reloaded:
                # Stopped or failed half-way (Ctrl-C during a pulse, lost connection): every
                # server of the group was ready when we started, and no weight may outlive us.
                _restore(client, plan, group)
        interrupted = runner.stop.requested and result is None
    if result is None:
        return EvenOutReport(backend, plan.persistence, tuple(group), "", {}, {}, 0.0, 0.0,
                             apply, "interrupted", tolerance,
                             message=f"{runner.stop.reason}: every server was put back in "
                                     "service with its weight" if interrupted else "")
    stats = client.server_stats_of([plan.ref(s) for s in group])
    sessions = {s: stat.scur for s, stat in zip(group, stats, strict=True)}
    status = "measured"
    if apply:
        status = "balanced" if result.imbalance_after <= 1 + tolerance else "uneven"
    return EvenOutReport(backend, plan.persistence, tuple(group), result.unit, result.before,
                         result.after, result.imbalance_before, result.imbalance_after, apply,
                         status, tolerance, moved=result.moved, pulses=result.pulses,
                         message=result.stopped, sessions=sessions)


@contextlib.contextmanager
def _locked(path: Path | None, apply: bool) -> Iterator[None]:
    """Refuse while a rollout of the backend is unfinished; hold its lock while applying."""
    if path is None:
        yield
        return
    journal = Journal(path)
    if not apply:
        journal.check_can_start()
        yield
        return
    with journal.lock():
        journal.check_can_start()
        yield


def _plan(client: Client, backend: str, wanted: Sequence[str] | None, tolerance: float,
          timeout: float) -> tuple[Plan, list[str]]:
    level = client.cli_level()
    stats = client.stats(backend)
    rows = [b for b in stats.backends if b.name == backend]
    if not rows:
        raise UsageError(f"{backend!r} is not a backend (it has no BACKEND row)",
                         field="backend", value=backend)
    live = client.servers(backend)
    if len(live) < 2:
        raise PlanError(f"backend {backend!r} has {len(live)} server(s); evening out needs at "
                        "least two")
    plan = balance_plan(backend, live, rows[0], client.tables(), tolerance=tolerance,
                        timeout=timeout)
    in_service = [s.name for s in live
                  if s.admin_state is AdminState.READY and s.status == "UP"]
    if wanted is None:
        group = in_service
    else:
        names = {s.name for s in live}
        unknown = [s for s in wanted if s not in names]
        if unknown:
            raise PlanError(f"backend {backend!r} has no server {', '.join(unknown)}")
        out = [s for s in wanted if s not in in_service]
        if out:
            raise PlanError(f"{', '.join(out)} {'is' if len(out) == 1 else 'are'} not in "
                            "service (ready and UP); only servers in service can be evened out")
        group = list(dict.fromkeys(wanted))
    if len(group) < 2:
        raise PlanError(f"backend {backend!r} has {len(group)} server(s) in service to compare; "
                        "evening out needs at least two")
    if level != "admin" and plan.moves_users == "cookie":
        # Reading stot works at any level, but a refusal would only show at the first pulse.
        raise PlanError(f"balancing cookie users needs an admin-level socket; "
                        f"{client.address} is '{level}' level")
    return plan, group


class ReloadedDuringBalance(HAProxyError):
    """HAProxy was reloaded while ``balance`` ran: the new process starts from its
    configuration (weights and states as configured), so there is nothing left to restore."""

    exit_code = 3


def _drive(runner: Runner, flow: Flow[LevelResult],
           on_event: Callable[[Event], None] | None) -> LevelResult | None:
    """Perform the flow's steps; None if a stop was requested before it ended."""
    gen: Generator[Any, Any, LevelResult] = flow
    connection = runner.client.connection
    connection.current_process()
    changes = connection.process_changes
    try:
        step = next(gen)
        while True:
            if runner.stop.requested and not isinstance(step, Emit | Now):
                return None
            if isinstance(step, Emit):
                if on_event is not None:
                    on_event(step.event)
                step = gen.send(None)
                continue
            if isinstance(step, Send):
                connection.current_process()  # never act on a reloaded process unawares
            value = runner.perform(step)
            if connection.process_changes != changes:
                raise ReloadedDuringBalance(
                    f"HAProxy was reloaded while balancing (now worker pid "
                    f"{connection.worker_pid}); the new process runs with its configured "
                    "weights and states, its users are where its own load balancing puts them")
            step = gen.send(value)
    except StopIteration as done:
        result: LevelResult = done.value
        return result
    finally:
        gen.close()


def _restore(client: Client, plan: Plan, group: Sequence[str]) -> None:
    commands = [cmd.set_state(plan.ref(s), "ready") for s in group]
    commands += [cmd.set_weight(plan.ref(s), plan.weight(s)) for s in plan.servers
                 if s not in plan.skipped]
    with contextlib.suppress(Exception):
        client.execute_many(commands)
