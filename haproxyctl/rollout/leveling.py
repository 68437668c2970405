"""Evening out users over servers of one version: the end of a rollout and ``haproxyctl balance``.

Flow pieces (generators of steps, no I/O, no clock). Moving a user between two servers of the
same version cannot make anyone flip, so these only ever run on such a group:

- **stick tables**: re-pin keys from the busiest servers to the emptiest (``clear table`` +
  ``set table ... data.server_id``, see ``rollout/rebalance.py``), idle users first. A user
  whose request is running on its old server while it is moved is pinned back by that
  response (HAProxy stores at response time, ``stream.c`` ``process_store_rules``), so the
  table is read again and the leftovers moved in a few rounds;
- **cookies**, which the CLI cannot rewrite: short maint pulses on the busiest servers while
  steering weights send the users they shed to the emptiest (``rollout/pulses.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from haproxyctl import commands as cmd
from haproxyctl.errors import CommandError
from haproxyctl.rollout.balance import imbalance
from haproxyctl.rollout.events import Notice
from haproxyctl.rollout.moves import Mover, measure_rates, report_load
from haproxyctl.rollout.plan import Plan
from haproxyctl.rollout.pulses import PulseController
from haproxyctl.rollout.rebalance import Pin, level_by_rate, moved_pins
from haproxyctl.rollout.rebalance import level as level_pins
from haproxyctl.rollout.steps import Flow, emit, now, probe, send, sleep

__all__ = ["LevelResult", "balance_flow", "level_cookie", "level_stick"]

# The table is read again this many times at most, this far apart (see the module docstring).
LEVEL_ROUNDS = 5
LEVEL_PAUSE = 1.0
QUIET_PAUSE = 0.2
# Cookie rates are measured over this long around each pulse: longer than the 1 s a batch's
# steering uses, because the even-out acts on differences of a few percent.
EVEN_WINDOW = 1.5
# Stick tables: rounds of re-pins by measured request rate after the user counts are even.
RATE_ROUNDS = 3
RATE_MIN_USERS = 10
# The rate levelling is a refinement once the counts are even: it never moves a user a third
# time in one rollout (the bound; measured before this bound: 14-19 of 150 users of a
# stick `halves` rollout moved three times, all by the rate rounds).
RATE_MAX_MOVES = 2


@attrs.frozen
class LevelResult:
    """What an even-out did: the load before and after (per server), how many users were
    re-pinned or how many pulses were made, and why it stopped."""

    unit: str  #: "users" (stick table) or "req/s" (cookies)
    before: Mapping[str, float]
    after: Mapping[str, float]
    imbalance_before: float
    imbalance_after: float
    moved: int = 0
    pulses: int = 0
    stopped: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"unit": self.unit, "before": dict(self.before), "after": dict(self.after),
                "imbalance_before": round(self.imbalance_before, 3),
                "imbalance_after": round(self.imbalance_after, 3), "moved": self.moved,
                "pulses": self.pulses, "stopped": self.stopped}


def level_stick(plan: Plan, mover: Mover, group: Sequence[str], caps: Mapping[str, float],
                *, stage: str = "end") -> Flow[LevelResult]:
    """Re-pin stick-table users of ``group`` until it is even (or ``LEVEL_ROUNDS`` reads)."""
    moved = 0
    before: dict[str, float] = {}
    quiet = False
    started = seen = yield from _activity(plan, group)
    pins: dict[str, list[Pin]] = {}
    for round_ in range(LEVEL_ROUNDS):
        if round_:
            # Read again to catch users pinned back by a response: after a second if some
            # entries were busy, sooner if none was (one may have started a request since).
            # With plain `stick on` every entry reads as idle, even mid-request (HAProxy
            # holds a tracked entry only, see docs/rollout.md rule 4); so the read is skipped
            # only when no request at all was running at the last read (``scur`` 0) and none
            # reached the group since (``stot`` unchanged): then no response can have pinned
            # anyone back (with 100,000 users, one read less is a tenth of a second).
            if quiet and not seen.running and (yield from _activity(plan, group)).served \
                    == seen.served:
                break
            yield from sleep(QUIET_PAUSE if quiet else LEVEL_PAUSE, "even out")
            seen = yield from _activity(plan, group)
        pins = yield from mover.pins(list(group))
        if round_ == 0:
            before = {s: float(len(pins.get(s, ()))) for s in group}
            yield from report_load(f"{stage}: before even-out", before, "users", group, caps)
        # Idle users first; in the last rounds busy ones too, when users are so often busy
        # that the idle ones cannot even the group out (a busy user's response may pin it
        # back to the same version, and the next read moves it again).
        idle_only = round_ < LEVEL_ROUNDS - 2
        moves = level_pins(pins, caps, group, moves=mover.moves, idle_only=idle_only)
        if not moves and idle_only:
            moves = level_pins(pins, caps, group, moves=mover.moves, idle_only=False)
        if not moves:
            break
        done = yield from mover.repin(moves, "even out")
        moved += done
        quiet = done == len(moves) and all(p.idle for ps in pins.values() for p in ps)
        pins = moved_pins(pins, moves)
    # Then by request rate: evening the user counts leaves the servers that received the
    # busier users busier (measured: 1.18x the mean in requests with user counts even).
    # Only with enough users a server for a rate to say something about them: with 4 users
    # a server, one busy user is a quarter of its rate and moving by rate only shuffles;
    # and only if the group served requests at all meanwhile (a rate of nothing is 0 for
    # every server, and measuring it would cost a 1.5 s wait for nothing).
    enough = sum(map(len, pins.values())) >= RATE_MIN_USERS * len(group)
    busy = (yield from _activity(plan, group)).served > started.served
    for _ in range(RATE_ROUNDS if enough and busy else 0):
        rates = yield from measure_rates(plan, group, EVEN_WINDOW)
        if imbalance(rates, caps, group) <= 1 + plan.options.balance_tolerance:
            break
        pins = yield from mover.pins(list(group))
        moves = level_by_rate(pins, rates, caps, group, moves=mover.moves,
                              tolerance=plan.options.balance_tolerance / 2,
                              max_moves=RATE_MAX_MOVES)
        if not moves:
            break
        moved += yield from mover.repin(moves, "even out the request rates")
        pins = moved_pins(pins, moves)
    after = {s: float(len(pins.get(s, ()))) for s in group}
    yield from report_load(stage, after, "users", group, caps)
    if moved:
        yield from emit(Notice(None, f"evened out: re-pinned {moved} users "
                                     f"(stick table {plan.rebalance_table})"))
    return LevelResult("users", before, after, imbalance(before, caps, group),
                       imbalance(after, caps, group), moved=moved)


@attrs.frozen
class _Activity:
    #: Requests the servers have been sent so far (``stot``, cumulative): unchanged between two
    #: probes means no request reached them in between.
    served: int
    #: Requests running on them now (``scur``).
    running: int


def _activity(plan: Plan, group: Sequence[str]) -> Flow[_Activity]:
    _, stats = yield from probe([plan.ref(s) for s in group])
    return _Activity(sum(s.stot for s in stats), sum(s.scur for s in stats))


def level_cookie(plan: Plan, mover: Mover, group: Sequence[str], caps: Mapping[str, float], *,
                 max_out: int, others: Sequence[str] = (), stage: str = "end"
                 ) -> Flow[LevelResult]:
    """Even out cookie users of ``group`` with maint pulses. ``others`` are servers in service
    outside the group: they get weight 0 during each pulse so nobody lands there."""
    opts = plan.options
    control = PulseController(group, caps, max_out=max_out, tolerance=opts.balance_tolerance)
    start = yield from now()
    rates = yield from measure_rates(plan, group, EVEN_WINDOW)
    before = dict(rates)
    yield from report_load(f"{stage}: before even-out", rates, "req/s", group, caps)
    pulses = 0
    stopped = ""
    while True:
        t = yield from now()
        if t - start >= opts.balance_timeout:
            stopped = f"stopped after {opts.balance_timeout:g}s (--balance-timeout)"
            yield from emit(Notice(None, f"even-out {stopped}"))
            break
        pulse = control.next(rates)
        if pulse is None:
            break
        shut = [s for s in group if s not in pulse.inflow] + list(others)
        yield from mover.steer(pulse.inflow, shut, "steer the pulse's users")
        refs = [plan.ref(d) for d in pulse.donors]
        replies = yield from send([cmd.set_state(r, "maint") for r in refs], "pulse")
        yield from sleep(pulse.seconds, "pulse")
        # Back in service whatever the first write answered: a pulse must never leave a
        # server out (a refused maint left it in service anyway). A stop during the pulse
        # is repaired by the caller (resume/abort, or the balance runner's cleanup).
        yield from send([cmd.set_state(plan.ref(d), plan.servers[d].admin_state)
                         for d in pulse.donors], "end of pulse")
        yield from mover.unsteer()
        refused = [r for r in replies if isinstance(r, CommandError)]
        if refused:
            stopped = f"HAProxy refused a pulse: {refused[0].reason}"
            yield from emit(Notice(None, f"even-out stopped: {stopped}"))
            break
        pulses += 1
        rates = yield from measure_rates(plan, group, EVEN_WINDOW)
    yield from report_load(stage, rates, "req/s", group, caps)
    if pulses:
        yield from emit(Notice(None, f"evened out with {pulses} maint pulse(s)"))
    return LevelResult("req/s", before, dict(rates), imbalance(before, caps, group),
                       imbalance(rates, caps, group), pulses=pulses, stopped=stopped)


def balance_flow(plan: Plan, group: Sequence[str], *, apply: bool, max_out: int = 1
                 ) -> Flow[LevelResult]:
    """``haproxyctl balance``: measure ``group``'s load and, with ``apply``, even it out.

    Every server of ``group`` must serve the same version (the caller's promise: this is what
    makes moving users between them safe). The plan's servers outside the group get weight 0
    during cookie pulses and are otherwise left alone.
    """
    mover = Mover(plan)
    caps = mover.capacities(group)
    if plan.moves_users == "stick":
        if apply:
            return (yield from level_stick(plan, mover, group, caps, stage="balance"))
        pins = yield from mover.pins(list(group))
        loads = {s: float(len(pins.get(s, ()))) for s in group}
        yield from report_load("balance", loads, "users", group, caps)
        return LevelResult("users", loads, loads, imbalance(loads, caps, group),
                           imbalance(loads, caps, group))
    others = [s for s in plan.servers if s not in group and s not in plan.skipped]
    if apply:
        return (yield from level_cookie(plan, mover, group, caps, max_out=max_out,
                                        others=others, stage="balance"))
    rates = yield from measure_rates(plan, group, EVEN_WINDOW)
    yield from report_load("balance", rates, "req/s", group, caps)
    return LevelResult("req/s", rates, rates, imbalance(rates, caps, group),
                       imbalance(rates, caps, group))

