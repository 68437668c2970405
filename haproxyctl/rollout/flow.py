"""The rollout flow: the order of operations, as a generator of steps. No I/O, no clock.

For each batch (``rolling``) the flow follows the recipe of ``docs/rollout.md``, whose reasons
come from HAProxy 2.6's behaviour (``shared/haproxy-runtime-api.md`` §3-4):

1. **drain**: out of load balancing; users pinned by cookie or stick table are still served, so
   their current page views finish on the old version (grace: ``drain_timeout``).
2. **maint**: persistence to the server is ignored from now on, so pinned users are re-dispatched
   to servers in service (and their cookie or stick entry rewritten). Requests in flight are not
   killed: wait until the server has no session and an empty queue (``sessions_timeout``;
   ``kill_after`` opts into shutting down what is left).
3. **update** (in parallel within the batch): safe now, nothing is routed to the server.
4. **back through drain**: leaving maint makes HAProxy consider a checked server UP before any
   check ran; in drain it receives no new users while its checks run. Wait until health is
   full (``health_timeout``), or ``settle`` seconds for a server without checks.
5. **ready** with the original weight (optionally ramped), then verify.

A server that fails its update or never passes its checks stays in maint (it never gets traffic
while unhealthy); servers of the batch whose update never started are restored to their
original state; no further batch starts.

``halves`` updates half A while half B serves, switches in one write (A ready + B drain), then
updates B: with no persistence every user sees the new version from the switch on.

The flow can start from any journaled phase (``--resume``): each phase resumes with steps that
are safe to repeat (setting a state a server already has is a no-op in HAProxy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from haproxyctl import commands as cmd
from haproxyctl.errors import CommandError
from haproxyctl.models.server import Server
from haproxyctl.models.stat import ServerStat
from haproxyctl.models.state import AdminState
from haproxyctl.protocol.encode import Command
from haproxyctl.rollout.events import (
    BatchDone,
    BatchStarted,
    Notice,
    Phase,
    PhaseChanged,
    RolloutStarted,
    Waiting,
)
from haproxyctl.rollout.plan import (
    Plan,
    ramp_commands,
    ramp_weights,
    ready_commands,
    restore_commands,
    return_commands,
    switch_commands,
)
from haproxyctl.rollout.rebalance import plan_moves
from haproxyctl.rollout.steps import (
    Flow,
    UpdateTarget,
    emit,
    now,
    probe,
    read_table,
    send,
    sleep,
    snapshot,
    update,
)

__all__ = ["FlowResult", "rollout_flow"]

_TAKEN_OUT = (Phase.DRAINING, Phase.MAINT, Phase.DRAINED)
# Rebalancing re-reads the table a few times: users with a request in flight are skipped
# (see rollout/rebalance.py) and picked up once idle.
# A draining server is "quiet" (pinned users gone) after this long with no new session.
_QUIET = 1.0
_REBALANCE_ROUNDS = 5
_REBALANCE_PAUSE = 1.0
_NEEDS_UPDATE = (Phase.MAINT, Phase.DRAINED, Phase.UPDATING, Phase.FAILED)


@attrs.frozen
class FlowResult:
    status: str  #: completed | failed
    message: str
    phases: Mapping[str, Phase]
    errors: Mapping[str, str]
    batches_done: int


class _BatchFailed(Exception):
    """Internal: stop after this batch. Carries the one-line reason."""


class _State:
    def __init__(self, plan: Plan, phases: Mapping[str, Phase]) -> None:
        self.plan = plan
        self.phases: dict[str, Phase] = {s: Phase.PENDING for s in plan.targets}
        self.phases.update({s: Phase.SKIPPED for s in plan.skipped})
        self.phases.update(phases)
        self.errors: dict[str, str] = {}
        self.batches_done = 0
        self.notified: set[str] = set()

    def phase(self, server: str) -> Phase:
        return self.phases[server]

    def set(self, server: str, phase: Phase, detail: str = "") -> Flow[None]:
        self.phases[server] = phase
        if phase is Phase.FAILED:
            self.errors[server] = detail
        yield from emit(PhaseChanged(server, phase, detail))

    def set_all(self, servers: Sequence[str], phase: Phase, detail: str = "") -> Flow[None]:
        for s in servers:
            yield from self.set(s, phase, detail)

    def in_phase(self, servers: Sequence[str], *phases: Phase) -> list[str]:
        return [s for s in servers if self.phases[s] in phases]

    def note(self, key: str, server: str | None, message: str) -> Flow[None]:
        if key not in self.notified:
            self.notified.add(key)
            yield from emit(Notice(server, message))


def rollout_flow(plan: Plan, phases: Mapping[str, Phase] | None = None) -> Flow[FlowResult]:
    """The whole rollout; ``phases`` are the journaled phases when resuming."""
    st = _State(plan, phases or {})
    yield from emit(RolloutStarted(plan.backend, plan.strategy, plan.batches,
                                   resumed=bool(phases)))
    for note in plan.notes:
        yield from emit(Notice(None, note))
    try:
        if plan.strategy == "halves":
            yield from _halves(st)
        else:
            yield from _rolling(st)
    except _BatchFailed as exc:
        return FlowResult("failed", str(exc), dict(st.phases), dict(st.errors), st.batches_done)
    total = len(plan.batches)
    return FlowResult("completed", f"all {len(plan.targets)} servers updated in {total} "
                      f"batch{'es' if total != 1 else ''}", dict(st.phases), dict(st.errors),
                      st.batches_done)


# -- strategies -----------------------------------------------------------------------------------


def _rolling(st: _State) -> Flow[None]:
    batches = st.plan.batches
    for k, batch in enumerate(batches):
        if all(st.phase(s) is Phase.DONE for s in batch):
            st.batches_done += 1
            continue
        yield from _capacity_guard(st, batch, k)
        yield from emit(BatchStarted(k, len(batches), batch))
        ok = yield from _batch(st, batch, k, len(batches))
        if not ok:
            failed = [f"{s}: {st.errors.get(s, st.phase(s).value)}" for s in batch
                      if st.phase(s) is not Phase.DONE]
            raise _BatchFailed(f"batch {k + 1}/{len(batches)} failed ({'; '.join(failed)}); "
                               "later batches were not started")
        st.batches_done += 1


def _halves(st: _State) -> Flow[None]:
    half_a, half_b = st.plan.batches
    if not all(st.phase(s) is Phase.DONE for s in half_a):
        if (st.in_phase(half_a, Phase.PENDING, Phase.RESTORED)
                and not st.in_phase(half_b, *_TAKEN_OUT)):
            yield from _capacity_guard(st, half_a, 0)
        yield from emit(BatchStarted(0, 2, half_a))
        yield from _take_out(st, half_a)
        yield from _update(st, half_a)
        # Half A comes back to drain only: without persistence it gets no user until the switch.
        yield from _bring_back(st, half_a, ready_each=False)
        # DONE too: a crash after the switch but before every DONE was journaled.
        not_ready = [s for s in half_a if st.phase(s) not in (Phase.HEALTHY, Phase.DONE)]
        if not_ready:
            yield from emit(BatchDone(0, 2, False))
            yield from _park(st, half_a)
            raise _BatchFailed(
                "half A is not ready (" + "; ".join(f"{s}: {st.errors.get(s, st.phase(s).value)}"
                                                   for s in not_ready)
                + "); half B still serves the old version, no switch was made")
        yield from _switch(st, half_a, half_b)
        yield from emit(BatchDone(0, 2, True))
    st.batches_done = 1
    if all(st.phase(s) is Phase.DONE for s in half_b):
        st.batches_done = 2
        return
    yield from emit(BatchStarted(1, 2, half_b))
    ok = yield from _batch(st, half_b, 1, 2, keep_out=True)
    if not ok:
        raise _BatchFailed("half B failed (" + "; ".join(
            f"{s}: {st.errors.get(s, st.phase(s).value)}" for s in half_b
            if st.phase(s) is not Phase.DONE) + "); half A serves the new version")
    st.batches_done = 2


def _batch(st: _State, batch: Sequence[str], index: int, total: int, *,
           keep_out: bool = False) -> Flow[bool]:
    """One batch through every phase; True if every server ended DONE. (No ``yield`` in a
    ``finally``: a runner that stops closes the generator, and GeneratorExit forbids yielding.)"""
    try:
        yield from _take_out(st, batch, keep_out=keep_out)
        yield from _update(st, batch)
        yield from _bring_back(st, batch)
        yield from _ready(st, st.in_phase(batch, Phase.HEALTHY))
        yield from _rebalance(st, st.in_phase(batch, Phase.DONE))
    except _BatchFailed:
        yield from emit(BatchDone(index, total, False))
        raise
    ok = all(st.phase(s) is Phase.DONE for s in batch)
    yield from emit(BatchDone(index, total, ok))
    return ok


def _switch(st: _State, half_a: Sequence[str], half_b: Sequence[str]) -> Flow[None]:
    """Half A into service and half B out of it in one write: HAProxy runs the pipelined lines
    back to back, so no user is sent to the new half and then back to the old one."""
    b_live = st.in_phase(half_b, Phase.PENDING)
    replies = yield from send(switch_commands(st.plan, half_a, b_live), "switch halves")
    errors = [r for r in replies if isinstance(r, CommandError)]
    if errors:
        raise _BatchFailed(f"the switch was refused by HAProxy: {errors[0].reason}")
    yield from _verify(st, half_a)
    yield from st.set_all(b_live, Phase.DRAINING, "switched out")


# -- batch phases ---------------------------------------------------------------------------------


def _capacity_guard(st: _State, batch: Sequence[str], index: int) -> Flow[None]:
    """Re-check capacity against the live backend before touching a batch: a server may have
    gone down since the plan was made."""
    plan = st.plan
    _, servers = yield from snapshot(plan.backend)
    live = {s.name: s for s in servers}
    missing = [s for s in batch if s not in live]
    if missing:
        raise _BatchFailed(f"servers {', '.join(missing)} no longer exist in {plan.backend!r}")
    out = [s.name for s in servers if s.name not in batch and not _available(s)]
    unavailable = len(out) + len(batch)
    if unavailable > plan.max_unavailable or unavailable >= len(servers):
        raise _BatchFailed(
            f"capacity guard: batch {index + 1} would leave {unavailable} of {len(servers)} "
            f"servers out of service ({', '.join(out) or 'none'} already out), more than "
            f"max-unavailable {plan.max_unavailable}; nothing in this batch was changed")


def _available(server: Server) -> bool:
    return (server.admin_state is AdminState.READY and server.up
            and server.stat.status_word != "DOWN")


def _take_out(st: _State, batch: Sequence[str], *, keep_out: bool = False) -> Flow[None]:
    plan, opts = st.plan, st.plan.options
    # RESTORED: a batch given back after a failure is taken out again on --resume.
    pending = st.in_phase(batch, Phase.PENDING, Phase.RESTORED)
    # A server in maint before the rollout (--include-disabled) goes straight to maint: a
    # drain would take it out of maint and let pinned users reach it during the grace.
    in_maint_before = [s for s in pending
                       if plan.servers[s].admin_state is AdminState.MAINT]
    pending = [s for s in pending if s not in in_maint_before]
    if in_maint_before:
        yield from st.set_all(in_maint_before, Phase.MAINT, "in maint before the rollout")
    if pending:
        yield from _send_or_fail(st, [cmd.set_state(plan.ref(s), "drain") for s in pending],
                                 pending, "drain", restore=() if keep_out else batch)
        yield from st.set_all(pending, Phase.DRAINING)
    draining = st.in_phase(batch, Phase.DRAINING)
    if draining:
        # Grace for pinned users: over as soon as nobody is left, at the latest drain_timeout.
        yield from _wait_sessions(st, draining, "drain", opts.drain_timeout)
        yield from _send_or_fail(st, [cmd.set_state(plan.ref(s), "maint") for s in draining],
                                 draining, "maint", restore=() if keep_out else batch)
        yield from st.set_all(draining, Phase.MAINT)
    # Servers resumed past maint are put in maint again: after a crash or a reload, HAProxy's
    # state may not be what the journal says (setting the state they have changes nothing).
    again = st.in_phase(batch, Phase.MAINT, Phase.UPDATING, Phase.FAILED, Phase.DRAINED)
    again = [s for s in again if s not in draining]
    if again:
        yield from _send_or_fail(st, [cmd.set_state(plan.ref(s), "maint") for s in again],
                                 again, "maint")
    in_maint = st.in_phase(batch, Phase.MAINT, Phase.DRAINED, Phase.UPDATING, Phase.FAILED)
    if not in_maint:
        return
    left = yield from _wait_sessions(st, in_maint, "sessions", opts.sessions_timeout,
                                     kill_after=opts.kill_after)
    if left:
        detail = ", ".join(f"{s} ({n})" for s, n in left.items())
        advice = "Raise --sessions-timeout, or pass --kill-after to shut them down"
        if keep_out:
            # Half B after the switch: back in service it would serve the old version next to
            # half A's new one, and users would flip back. It stays out; half A serves.
            raise _BatchFailed(
                f"sessions still open after {opts.sessions_timeout:g}s in maint: {detail}; "
                f"half B stays out of service while half A serves the new version. {advice}")
        yield from _restore(st, batch)
        raise _BatchFailed(
            f"sessions still open after {opts.sessions_timeout:g}s in maint: {detail}; the "
            f"batch was restored. {advice}")
    for s in st.in_phase(in_maint, Phase.MAINT):
        yield from st.set(s, Phase.DRAINED)


def _update(st: _State, batch: Sequence[str]) -> Flow[None]:
    plan = st.plan
    todo = st.in_phase(batch, Phase.DRAINED, Phase.UPDATING, Phase.FAILED)
    if not todo:
        return
    yield from st.set_all(todo, Phase.UPDATING)
    targets = [UpdateTarget(plan.backend, s, plan.servers[s].address, plan.servers[s].port)
               for s in todo]
    outcomes = yield from update(targets)
    for outcome in outcomes:
        if outcome.ok:
            yield from st.set(outcome.server, Phase.UPDATED, outcome.detail)
        elif outcome.interrupted:
            yield from st.set(outcome.server, Phase.UPDATING,
                              f"interrupted ({outcome.detail}); --resume runs it again")
        else:
            yield from st.set(outcome.server, Phase.FAILED,
                              f"update failed: {outcome.detail}".strip())


def _bring_back(st: _State, batch: Sequence[str], *, ready_each: bool = True) -> Flow[None]:
    """maint -> drain, then wait for health (or settle); each server that becomes healthy is put
    in service at once (``ready_each``), so capacity comes back as early as possible."""
    plan, opts = st.plan, st.plan.options
    back = st.in_phase(batch, Phase.UPDATED, Phase.RETURNING)
    if not back:
        return
    yield from _send_or_fail(st, return_commands(plan, back), back, "drain")
    yield from st.set_all(back, Phase.RETURNING)
    start = yield from now()
    waiting = list(back)
    while waiting:
        t, stats = yield from probe([plan.ref(s) for s in waiting])
        elapsed = t - start
        healthy: list[str] = []
        for s, stat in zip(waiting, stats, strict=True):
            if plan.servers[s].has_checks:
                if stat.fully_healthy:
                    healthy.append(s)
            elif elapsed >= opts.settle:
                healthy.append(s)
        yield from emit(Waiting("health", {s: _health(plan, s, stat, elapsed)
                                           for s, stat in zip(waiting, stats, strict=True)},
                                elapsed, opts.health_timeout, at=t))
        for s in healthy:
            yield from st.set(s, Phase.HEALTHY)
        if healthy and ready_each:
            yield from _ready(st, healthy)
        waiting = [s for s in waiting if s not in healthy]
        if not waiting:
            break
        # Only servers with checks can fail here; the others finish once --settle elapsed.
        expired = [s for s in waiting
                   if plan.servers[s].has_checks and elapsed >= opts.health_timeout]
        if expired:
            # Never send traffic to a server that did not prove healthy: back to maint.
            yield from _park(st, expired)
            for s in expired:
                yield from st.set(s, Phase.FAILED,
                                  f"not healthy after {opts.health_timeout:g}s "
                                  "(left in maint)")
            waiting = [s for s in waiting if s not in expired]
            if not waiting:
                return
        deadlines = [opts.health_timeout if plan.servers[s].has_checks else opts.settle
                     for s in waiting]
        yield from sleep(min(opts.poll_interval, max(min(deadlines) - elapsed, 0.0)),
                         "health")


def _ready(st: _State, servers: Sequence[str]) -> Flow[None]:
    """Back in service with the original state and weight (ramped up if asked), verified."""
    if not servers:
        return
    plan, opts = st.plan, st.plan.options
    yield from _send_or_fail(st, ready_commands(plan, servers, ramped=opts.ramp > 0), servers,
                             "ready")
    if opts.ramp > 0:
        steps = len(ramp_weights(1)) - 1
        for k in range(1, steps + 1):
            yield from sleep(opts.ramp / steps, "ramp")
            yield from _send_or_fail(st, ramp_commands(plan, servers, k), servers,
                                     "ramp weight")
    yield from _verify(st, servers)


def _rebalance(st: _State, returned: Sequence[str]) -> Flow[None]:
    """Re-pin a fair share of stick-table users onto servers that just came back."""
    plan = st.plan
    table = plan.rebalance_table
    if table is None or not returned:
        return
    # Servers outside the rollout (left out of --groups) are in service too: count them.
    in_service = [s for s in plan.servers
                  if s not in plan.skipped
                  and st.phases.get(s, Phase.PENDING) in (Phase.DONE, Phase.PENDING)
                  and plan.servers[s].admin_state is AdminState.READY]
    names = {snap.id: name for name, snap in plan.servers.items() if snap.id is not None}
    counts: dict[str, int] = {}
    for round_ in range(_REBALANCE_ROUNDS):
        if round_:
            # Users whose in-flight request re-pinned them to the old server are idle again.
            yield from sleep(_REBALANCE_PAUSE, "rebalance")
        _, contents = yield from read_table(table)
        # Between servers on the new version only (see rebalance.py): the ones that just came
        # back, and any other updated server below its fair share, receive.
        updated = [s for s in in_service if st.phases.get(s) is Phase.DONE]
        moves = plan_moves(contents.entries, names, in_service=in_service, targets=updated,
                           sources=updated)
        if not moves:
            break
        commands: list[Command] = []
        for key, target in moves:
            commands += [cmd.clear_table(table, key=key),
                         cmd.set_table(table, key, {"server_id": plan.servers[target].id or 0})]
            counts[target] = counts.get(target, 0) + 1
        yield from send(commands, "rebalance")
    if any(counts.values()):
        yield from emit(Notice(None, f"re-pinned {sum(counts.values())} users onto "
                                     + ", ".join(f"{t} ({n})" for t, n in counts.items() if n)
                                     + f" (stick table {table})"))


def _verify(st: _State, servers: Sequence[str]) -> Flow[None]:
    plan = st.plan
    _, stats = yield from probe([plan.ref(s) for s in servers])
    for s, stat in zip(servers, stats, strict=True):
        wanted = plan.servers[s].admin_state
        word = stat.status_word
        ok = (word in ("UP", "no") if wanted is AdminState.READY
              else word.upper() == wanted.value.upper())
        if ok:
            yield from st.set(s, Phase.DONE, f"status {stat.status}")
        else:
            yield from _park(st, [s])
            yield from st.set(s, Phase.FAILED, f"status {stat.status!r} right after ready "
                                               "(left in maint)")


def _park(st: _State, servers: Sequence[str]) -> Flow[None]:
    """Put servers in maint, best effort: used on failure paths."""
    if servers:
        yield from send([cmd.set_state(st.plan.ref(s), "maint") for s in servers], "park")


def _restore(st: _State, batch: Sequence[str]) -> Flow[None]:
    """Put the batch's untouched servers back to their original state and weight."""
    plan = st.plan
    untouched = [s for s in batch if st.phase(s).untouched and st.phase(s) is not Phase.SKIPPED]
    if not untouched:
        return
    replies = yield from send(restore_commands(plan, untouched), "restore")
    # Two lines per server (weight, state): a server is restored only if both were accepted.
    refused = {s for i, s in enumerate(untouched)
               if any(isinstance(r, CommandError) for r in replies[2 * i:2 * i + 2])}
    for s in untouched:
        if s in refused:
            yield from emit(Notice(s, f"{s} could not be restored to its original state: "
                                      "HAProxy refused it"))
        else:
            yield from st.set(s, Phase.RESTORED, "restored to its original state")


def _send_or_fail(st: _State, commands: Sequence[Command], servers: Sequence[str],
                  what: str, *, restore: Sequence[str] = ()) -> Flow[None]:
    """Send; if HAProxy refuses any line, give back the untouched servers of ``restore`` (the
    batch being taken out) and stop."""
    replies = yield from send(commands, what)
    errors = [r for r in replies if isinstance(r, CommandError)]
    if errors:
        yield from _restore(st, restore)
        raise _BatchFailed(f"HAProxy refused '{what}' for {', '.join(servers)}: "
                           f"{errors[0].reason}")


def _wait_sessions(st: _State, servers: Sequence[str], what: str, timeout: float, *,
                   kill_after: float | None = None) -> Flow[dict[str, int]]:
    """Poll until every server has no session and an empty queue; return those that still have
    some after ``timeout`` (server -> sessions + queued).

    For the drain grace (``what == "drain"``) a moment with no session is not enough: users
    pinned to a draining server keep coming back between clicks, so the grace ends only once a
    server has had no session *and no new one* for ``_QUIET`` seconds (or at ``timeout``).
    """
    plan, opts = st.plan, st.plan.options
    refs = [plan.ref(s) for s in servers]
    start = yield from now()
    killed = False
    first_stot: dict[str, int] = {}
    last_stot: dict[str, tuple[int, float]] = {}
    quiet = min(_QUIET, timeout)
    while True:
        t, stats = yield from probe(refs)
        elapsed = t - start
        left: dict[str, int] = {}
        for s, stat in zip(servers, stats, strict=True):
            seen = last_stot.get(s)
            if seen is None or seen[0] != stat.stot:
                last_stot[s] = seen = (stat.stot, t)
            busy = not stat.drained or (what == "drain" and t - seen[1] < quiet)
            if busy:
                left[s] = stat.scur + stat.qcur
        yield from emit(Waiting(what, {s: f"{stat.scur} sessions, {stat.qcur} queued"
                                       for s, stat in zip(servers, stats, strict=True)},
                                elapsed, timeout, at=t))
        if what == "sessions":
            yield from _detect_persist(st, servers, stats, first_stot)
        if not left:
            return {}
        if kill_after is not None and not killed and elapsed >= kill_after:
            killed = True
            yield from send([cmd.shutdown_sessions(plan.ref(s)) for s in left], "kill")
            yield from emit(Notice(None, f"--kill-after {kill_after:g}s: shut down the "
                                         f"sessions left on {', '.join(left)}"))
        if elapsed >= timeout:
            return left
        yield from sleep(min(opts.poll_interval, max(timeout - elapsed, 0.0)), what)


def _detect_persist(st: _State, servers: Sequence[str], stats: Sequence[ServerStat],
                    first: dict[str, int]) -> Flow[None]:
    """New sessions reaching a server in maint mean ``option persist`` or ``force-persist``
    keeps routing pinned users to it (reference §4): they will fail once the app stops."""
    for s, stat in zip(servers, stats, strict=True):
        base = first.setdefault(s, stat.stot)
        if stat.stot > base:
            yield from st.note(
                f"persist:{s}", s,
                f"{s} receives new sessions while in maint: the backend probably uses "
                "'option persist' or 'force-persist', which defeats maint; its users will be "
                "redispatched only when the connection fails (see docs/rollout.md)")


def _health(plan: Plan, server: str, stat: ServerStat, elapsed: float) -> str:
    if not plan.servers[server].has_checks:
        return f"no check, settling {min(elapsed, plan.options.settle):.0f}/" \
               f"{plan.options.settle:g}s"
    return f"{stat.status} ({stat.check_status or '-'})"

