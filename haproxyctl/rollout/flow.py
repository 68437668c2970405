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
from haproxyctl.rollout.balance import MAX_WEIGHT, water_fill
from haproxyctl.rollout.balance import level as load_level
from haproxyctl.rollout.events import (
    BatchDone,
    BatchStarted,
    Notice,
    Phase,
    PhaseChanged,
    RolloutStarted,
    Waiting,
)
from haproxyctl.rollout.leveling import level_cookie, level_stick
from haproxyctl.rollout.moves import Mover, measure_rates, report_load
from haproxyctl.rollout.plan import (
    Plan,
    ramp_commands,
    ramp_weights,
    ready_commands,
    restore_commands,
    return_commands,
    switch_commands,
)
from haproxyctl.rollout.rebalance import evacuate
from haproxyctl.rollout.steps import (
    Flow,
    UpdateTarget,
    emit,
    now,
    probe,
    send,
    sleep,
    snapshot,
    update,
)

__all__ = ["FlowResult", "rollout_flow"]

_TAKEN_OUT = (Phase.DRAINING, Phase.MAINT, Phase.DRAINED)
# Phases in which a server of the batch is out of load balancing and its users may still be
# re-dispatched (their cookie or stick entry names it).
_AWAY = (Phase.DRAINING, Phase.MAINT, Phase.DRAINED, Phase.UPDATING, Phase.UPDATED,
         Phase.RETURNING, Phase.HEALTHY)
# A draining server is "quiet" (pinned users gone) after this long with no new session.
_QUIET = 1.0
# Receivers of a batch's users are servers of one version. The new version is preferred (its
# users are then moved once) unless that would put them this far above their fair share
# while the old version could take the users more evenly (promise 2: never overload).
_MARGIN = 0.25
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
        self.mover = Mover(plan)
        #: Where the current batch's users go while it is out, and their version.
        self.receivers: list[str] = []
        self.receiver_version = ""
        #: The batch being updated.
        self.batch: tuple[str, ...] = ()
        #: Stick-table users per server as last read, kept up to date with our own re-pins.
        self.counts: dict[str, float] = {}

    def version(self, server: str) -> str:
        """"new" for servers serving the new version, "old" for the others."""
        return "new" if self.phases.get(server) is Phase.DONE else "old"

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
        if phases:
            yield from _normalize(st)
        if plan.strategy == "halves":
            yield from _halves(st)
        else:
            yield from _rolling(st)
        yield from _final_balance(st)
    except _BatchFailed as exc:
        # Temporary weights never outlive a failed rollout (the users of a server left in
        # maint are then load balanced with the configured weights again).
        yield from st.mover.unsteer()
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
        live = yield from _capacity_guard(st, batch, k)
        yield from emit(BatchStarted(k, len(batches), batch))
        ok = yield from _batch(st, batch, k, len(batches), live=live)
        if not ok:
            failed = [f"{s}: {st.errors.get(s, st.phase(s).value)}" for s in batch
                      if st.phase(s) is not Phase.DONE]
            raise _BatchFailed(f"batch {k + 1}/{len(batches)} failed ({'; '.join(failed)}); "
                               "later batches were not started")
        st.batches_done += 1


def _halves(st: _State) -> Flow[None]:
    half_a, half_b = st.plan.batches
    if not all(st.phase(s) is Phase.DONE for s in half_a):
        live: dict[str, Server] | None = None
        if (st.in_phase(half_a, Phase.PENDING, Phase.RESTORED)
                and not st.in_phase(half_b, *_TAKEN_OUT)):
            live = yield from _capacity_guard(st, half_a, 0)
        yield from emit(BatchStarted(0, 2, half_a))
        yield from _steer_out(st, half_a, live, "half A")
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
    ok = yield from _batch(st, half_b, 1, 2, keep_out=True, live=None)
    if not ok:
        raise _BatchFailed("half B failed (" + "; ".join(
            f"{s}: {st.errors.get(s, st.phase(s).value)}" for s in half_b
            if st.phase(s) is not Phase.DONE) + "); half A serves the new version")
    st.batches_done = 2


def _batch(st: _State, batch: Sequence[str], index: int, total: int, *,
           keep_out: bool = False, live: Mapping[str, Server] | None) -> Flow[bool]:
    """One batch through every phase; True if every server ended DONE. (No ``yield`` in a
    ``finally``: a runner that stops closes the generator, and GeneratorExit forbids yielding.)"""
    try:
        yield from _steer_out(st, batch, live, f"batch {index + 1}/{total}")
        yield from _take_out(st, batch, keep_out=keep_out)
        yield from _update(st, batch)
        yield from _bring_back(st, batch)
        yield from _ready(st, st.in_phase(batch, Phase.HEALTHY))
        yield from _batch_back(st, batch)
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


def _capacity_guard(st: _State, batch: Sequence[str], index: int
                    ) -> Flow[dict[str, Server]]:
    """Re-check capacity against the live backend before touching a batch: a server may have
    gone down since the plan was made. Returns the live servers."""
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
    return live


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
        yield from _wait_sessions(st, draining, "drain", plan.drain_grace)
        yield from _send_or_fail(st, [cmd.set_state(plan.ref(s), "maint") for s in draining],
                                 draining, "maint", restore=() if keep_out else batch)
        yield from st.set_all(draining, Phase.MAINT)
        yield from _evacuate(st, draining, "users of the batch")
    # Servers resumed past maint are put in maint again: after a crash or a reload, HAProxy's
    # state may not be what the journal says (setting the state they have changes nothing).
    again = st.in_phase(batch, Phase.MAINT, Phase.UPDATING, Phase.FAILED, Phase.DRAINED)
    again = [s for s in again if s not in draining]
    if again:
        yield from _send_or_fail(st, [cmd.set_state(plan.ref(s), "maint") for s in again],
                                 again, "maint")
        yield from _evacuate(st, again, "users of the batch")
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
    if st.plan.moves_users == "stick" and st.mover.steering:
        # No session left: no response can pin anyone to these servers any more. Users
        # pinned back by the last responses while idle since are moved now; then nobody can
        # be re-dispatched from this batch, and the weights go back.
        yield from _evacuate(st, in_maint, "users pinned back by their last responses")
        yield from st.mover.unsteer()


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
    # Cookie users of the batch's servers still out are load balanced until those are back:
    # the servers returning now must not take them if they serve another version.
    still_away = [s for s in st.batch if st.phase(s) in _AWAY and s not in servers]
    steering = st.mover.steering or bool(plan.moves_users == "cookie" and st.receiver_version
                                         and still_away)
    ramped = opts.ramp > 0 and not steering
    temporary = (_returned_weights(st, servers)
                 if steering and plan.moves_users == "cookie" and still_away else None)
    yield from _send_or_fail(st, ready_commands(plan, servers, ramped=ramped, weights=temporary),
                             servers, "ready")
    st.mover.forget(servers)
    if temporary is not None:
        st.mover.remember(temporary)
    elif ramped:
        steps = len(ramp_weights(1)) - 1
        for k in range(1, steps + 1):
            yield from sleep(opts.ramp / steps, "ramp")
            yield from _send_or_fail(st, ramp_commands(plan, servers, k), servers,
                                     "ramp weight")
    yield from _verify(st, servers)


# -- moving users (promises 1 and 2; see rollout/moves.py) -------------------------------------


def _in_service(live: Mapping[str, Server]) -> list[str]:
    return [s for s, server in live.items() if _available(server)]


def _loads(st: _State, servers: Sequence[str]) -> Flow[tuple[dict[str, float], str]]:
    """The load of ``servers``: users per server for stick tables (exact, from the table),
    requests per second for cookies (measured)."""
    if st.plan.moves_users == "stick":
        pins = yield from st.mover.pins(None)
        st.counts = {s: float(len(pins.get(s, ()))) for s in st.plan.servers}
        return {s: st.counts.get(s, 0.0) for s in servers}, "users"
    rates = yield from measure_rates(st.plan, servers)
    return rates, "req/s"


def _steer_out(st: _State, batch: Sequence[str], live: Mapping[str, Server] | None,
               label: str) -> Flow[None]:
    """Before a batch leaves load balancing: choose where its users go (servers of one
    version) and set the weights that send them there, in proportion to what each receiver
    should take for the load to end even."""
    plan = st.plan
    st.receivers, st.receiver_version, st.batch = [], "", tuple(batch)
    if plan.moves_users is None:
        return
    if live is None:
        _, servers = yield from snapshot(plan.backend)
        live = {s.name: s for s in servers}
    away = [s for s in batch if st.phase(s) in (Phase.PENDING, Phase.RESTORED, *_AWAY)]
    if not away:
        return
    in_service = [s for s in _in_service(live) if s not in batch]
    if not in_service:
        return
    loads, unit = yield from _loads(st, [*in_service, *[s for s in batch if s in live]])
    caps = st.mover.capacities(loads)
    yield from report_load(f"{label}: before", loads, unit, in_service + list(away), caps)
    # A server of weight 0 takes no load-balanced user by configuration: never a receiver.
    weighted = [s for s in in_service if plan.weight(s) > 0]
    if not weighted:
        return
    new = [s for s in weighted if st.version(s) == "new"]
    old = [s for s in weighted if st.version(s) == "old"]
    moving = sum(loads.get(s, 0.0) for s in batch)
    receivers, version = _receivers(new, old, loads, caps, moving)
    st.receivers, st.receiver_version = receivers, version
    inflow = water_fill(moving, loads, caps, receivers)
    others = [s for s in in_service if s not in receivers]
    if not others and len(set(plan.weight(s) for s in receivers)) <= 1 and \
            len({round(v, 6) for v in inflow.values()}) <= 1:
        return  # one version in service and an even split: the configured weights do it
    yield from st.mover.steer(inflow, others,
                              f"steer {label}'s users to the {version} version")
    yield from st.note(f"steer:{label}", None,
                       f"{label}: its users go to {', '.join(receivers)} ({version} version); "
                       + (f"{', '.join(others)} take no load-balanced user meanwhile "
                          "(weight 0, pinned users still served)" if others else
                          "weights set in proportion to what each should take"))


def _receivers(new: Sequence[str], old: Sequence[str], loads: Mapping[str, float],
               caps: Mapping[str, float], moving: float) -> tuple[list[str], str]:
    if not new:
        return list(old), "old"
    if not old:
        return list(new), "new"
    fair = load_level(loads, caps, [*new, *old]) + moving / sum(caps[s] for s in [*new, *old])
    new_level = load_level(loads, caps, new) + moving / sum(caps[s] for s in new)
    if new_level <= fair * (1 + _MARGIN):
        return list(new), "new"
    old_level = load_level(loads, caps, old) + moving / sum(caps[s] for s in old)
    return (list(new), "new") if new_level <= old_level else (list(old), "old")


def _evacuate(st: _State, servers: Sequence[str], what: str) -> Flow[None]:
    """Stick tables: re-pin the users of ``servers`` (in maint) onto the receivers, the
    emptiest first. Safe for promise 1: a request still running on a server in maint can
    only pin its user back to that server, whose persistence HAProxy ignores, so the user's
    next request is load balanced, and the weights send it to the receivers' version."""
    if st.plan.moves_users != "stick" or not st.receivers or not servers:
        return
    pins = yield from st.mover.pins(list(servers))
    leaving = {s: pins.get(s, []) for s in servers}
    if not any(leaving.values()):
        return
    counts = {r: st.counts.get(r, 0.0) for r in st.receivers}
    moves = evacuate(leaving, counts, st.mover.capacities(st.receivers), st.receivers,
                     moves=st.mover.moves)
    done = yield from st.mover.repin(moves, "re-pin " + what)
    for _, target in moves:
        st.counts[target] = st.counts.get(target, 0.0) + 1
    for s in servers:
        st.counts[s] = 0.0
    if done:
        yield from emit(Notice(None, f"re-pinned {done} {what} onto "
                                     + ", ".join(sorted({t for _, t in moves}))
                                     + f" (stick table {st.plan.rebalance_table})"))


def _returned_weights(st: _State, servers: Sequence[str]) -> dict[str, int]:
    """Weights for servers of the batch back in service while others of it are still out
    (cookies): the users of those may still be load balanced. A returned server takes them
    only if it serves the receivers' version (it is empty: it gets the largest steering
    weight); else none until the whole batch is back."""
    if st.receiver_version == "new":
        top = max(st.mover.weights.values(), default=0) or MAX_WEIGHT
        return {s: top for s in servers}
    return {s: 0 for s in servers}


def _batch_back(st: _State, batch: Sequence[str]) -> Flow[None]:
    """The batch is back (or failed): nobody can be re-dispatched from it any more once no
    server of it is out, so the weights go back (with the ramp, if asked)."""
    if st.in_phase(batch, *_AWAY) or not st.mover.steering:
        return
    done = st.in_phase(batch, Phase.DONE)
    opts = st.plan.options
    if opts.ramp > 0 and done:
        # The ready step skipped the ramp while steering: ramp now from the first step.
        yield from send(ramp_commands(st.plan, done, 0), "ramp start")
        st.mover.forget(done)
        yield from st.mover.unsteer()
        steps = len(ramp_weights(1)) - 1
        for k in range(1, steps + 1):
            yield from sleep(opts.ramp / steps, "ramp")
            yield from _send_or_fail(st, ramp_commands(st.plan, done, k), done, "ramp weight")
        return
    yield from st.mover.unsteer()


def _normalize(st: _State) -> Flow[None]:
    """On resume: a stopped rollout may have left temporary weights on servers in service,
    and, if it stopped during the final even-out (every batch done), a server in maint for
    a pulse. Put those back; leave everything else to the flow (which re-asserts the state of
    the batch in progress) and to the operator."""
    plan = st.plan
    _, servers = yield from snapshot(plan.backend)
    live = {s.name: s for s in servers}
    all_done = all(st.phase(s) is Phase.DONE for s in plan.targets)
    commands: list[Command] = []
    fixed: list[str] = []
    for name, server in live.items():
        if name not in plan.servers or name in plan.skipped:
            continue
        phase = st.phases.get(name, Phase.PENDING)
        if phase is Phase.DONE and all_done and server.admin_state is AdminState.MAINT \
                and plan.servers[name].admin_state is not AdminState.MAINT:
            commands += ready_commands(plan, [name], ramped=False)
            fixed.append(f"{name} back in service (an even-out pulse was cut short)")
        elif phase in (Phase.PENDING, Phase.RESTORED, Phase.DONE) \
                and server.weight is not None and server.weight != plan.weight(name):
            commands.append(cmd.set_weight(plan.ref(name), plan.weight(name)))
            fixed.append(f"{name} weight {server.weight} -> {plan.weight(name)}")
    if commands:
        yield from send(commands, "restore weights and states")
        yield from emit(Notice(None, "resume: put back what the stopped rollout left: "
                                     + "; ".join(fixed)))


def _final_balance(st: _State) -> Flow[None]:
    """Every server on the new version: even out the users (nobody can flip any more, all
    servers serve the same version). Stick tables: re-pin from the busiest to the emptiest.
    Cookies: short maint pulses on the busiest while weights send the users they shed to
    the emptiest (see rollout/pulses.py)."""
    plan = st.plan
    if plan.moves_users is None:
        return
    _, servers = yield from snapshot(plan.backend)
    live = {s.name: s for s in servers}
    group = [s for s in _in_service(live) if st.version(s) == "new"]
    if len(group) < 2:
        return
    caps = st.mover.capacities(group)
    if plan.moves_users == "stick":
        yield from level_stick(plan, st.mover, group, caps)
    else:
        out = len(live) - len(_in_service(live))
        others = [s for s in plan.servers if s not in group and s not in plan.skipped]
        yield from level_cookie(plan, st.mover, group, caps,
                                max_out=plan.max_unavailable - out, others=others)


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

