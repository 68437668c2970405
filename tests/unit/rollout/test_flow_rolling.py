"""The rolling flow against the simulated HAProxy: order of operations, safety invariants and
timeouts in simulated time."""

from __future__ import annotations

import itertools
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haproxyctl.errors import UsageError
from haproxyctl.models.state import AdminState
from haproxyctl.rollout.events import (
    Balance,
    BatchDone,
    BatchStarted,
    Notice,
    Phase,
    RolloutStarted,
    Waiting,
)
from haproxyctl.rollout.leveling import EVEN_WINDOW
from haproxyctl.rollout.options import RolloutOptions
from haproxyctl.rollout.plan import Plan

from .sim import SimHAProxy, SimServer, make_servers

HAPPY_PHASES = [Phase.DRAINING, Phase.MAINT, Phase.DRAINED, Phase.UPDATING, Phase.UPDATED,
                Phase.RETURNING, Phase.HEALTHY, Phase.DONE]
SERVER_STEPS = ("drain", "maint", "ready", "update", "health down", "kill")


def steps_of(sim: SimHAProxy, server: str) -> list[str]:
    """A server's admin/health/update actions (weights left out)."""
    return [a for a in sim.actions(server) if a in SERVER_STEPS]


def expected_steps(checks: bool) -> list[str]:
    return ["drain", "maint", "update", "drain", *(["health down"] if checks else []), "ready"]


def phases_of(sim: SimHAProxy, server: str) -> list[Phase]:
    return [p for _, s, p in sim.phase_log if s == server]


def assert_batches_in_order(sim: SimHAProxy, plan: Plan, upto: int | None = None) -> None:
    """Every action on batch k happens before any action on batch k+1 (weights left out: the
    rollout steers the users of a batch with the weights of the servers in service)."""
    position: dict[str, tuple[int, int]] = {}
    for i, (server, action) in enumerate(sim.order):
        if action not in SERVER_STEPS:
            continue
        first, _last = position.get(server, (i, i))
        position[server] = (first, i)
    batches = plan.batches[:upto]
    for a, b in itertools.pairwise(batches):
        assert max(position[s][1] for s in a) < min(position[s][0] for s in b), (a, b)


# -- the happy path, property-based -----------------------------------------------------------


@st.composite
def rollouts(draw: st.DrawFn) -> tuple[SimHAProxy, RolloutOptions]:
    n = draw(st.integers(2, 7), label="servers")
    size = draw(st.integers(1, n - 1), label="batch size")
    extra = draw(st.integers(0, n - 1 - size), label="max_unavailable - batch size")
    servers: list[SimServer] = []
    for i in range(1, n + 1):
        servers.append(SimServer(
            name=f"s{i}", sid=i, addr=f"10.0.0.{i}", port=8000 + i,
            weight=draw(st.integers(1, 256)),
            checks=draw(st.sampled_from([True, True, True, False])),
            rise=draw(st.integers(1, 3)), fall=draw(st.integers(1, 3)),
            inter=draw(st.sampled_from([0.5, 1.0, 2.0])),
            inflight=(draw(st.integers(0, 3)), draw(st.sampled_from([0.0, 0.3, 2.0, 7.0]))),
            queued=(draw(st.integers(0, 2)), draw(st.sampled_from([0.0, 0.2, 1.5]))),
            drain_arrivals=tuple(sorted(draw(st.lists(st.sampled_from(
                [0.1, 0.4, 0.9, 1.5, 2.5, 4.0]), max_size=3, unique=True)))),
            boot=draw(st.sampled_from([0.0, 0.5, 3.0, 6.0])),
        ))
    options = RolloutOptions(
        batch_size=size, max_unavailable=size + extra,
        drain_timeout=draw(st.sampled_from([0.0, 2.0, 10.0])),
        sessions_timeout=30.0, health_timeout=40.0,
        settle=draw(st.sampled_from([0.0, 1.0, 3.0])),
        poll_interval=draw(st.sampled_from([0.1, 0.25, 0.5])),
    )
    sim = SimHAProxy(servers, read_cost=draw(st.sampled_from([0.0, 0.01, 0.3])))
    sim.update_duration = draw(st.sampled_from([0.0, 1.0, 4.0]))
    return sim, options


@settings(max_examples=80)
@given(rollouts())
def test_happy_path_keeps_every_promise(case: tuple[SimHAProxy, RolloutOptions]) -> None:
    sim, options = case
    weights = {n: s.weight for n, s in sim.servers.items()}
    plan = sim.plan(options)
    result = sim.run(plan)

    assert result.status == "completed", result.message
    assert result.batches_done == len(plan.batches)
    assert result.errors == {}
    # never more than max_unavailable out of service, never ready before fresh checks passed,
    # updates only in maint with no session and an empty queue
    assert sim.violations == []
    assert sim.max_out_seen <= plan.max_unavailable
    for name, s in sim.servers.items():
        assert result.phases[name] is Phase.DONE
        assert (s.admin, s.weight, s.version) == (AdminState.READY, weights[name], 2)
        assert steps_of(sim, name) == expected_steps(s.checks)
        assert phases_of(sim, name) == HAPPY_PHASES
    # one parallel update per batch, batch after batch
    assert [names for _, names in sim.updates] == list(plan.batches)
    assert_batches_in_order(sim, plan)
    started = sim.events_of(BatchStarted)
    assert [e.servers for e in started if isinstance(e, BatchStarted)] == list(plan.batches)
    assert all(isinstance(e, BatchDone) and e.ok for e in sim.events_of(BatchDone))


def test_each_server_goes_drain_maint_update_drain_health_down_ready() -> None:
    sim = SimHAProxy(make_servers(3, inflight=(2, 1.5), boot=2.0))
    plan = sim.plan(RolloutOptions())
    assert sim.run(plan).status == "completed"
    for name in plan.targets:
        assert steps_of(sim, name) == ["drain", "maint", "update", "drain", "health down",
                                       "ready"]
        assert sim.servers[name].weight == 10  # temporary weights all restored
    assert sim.violations == []
    # back through drain: 'state drain' and 'health down' in one write, per server
    writes = [[c.line for c in s.commands] for s in sim.sends]
    returns = [w for w in writes if any(line.endswith("health down") for line in w)]
    assert returns == [[f"set server app/{n} state drain", f"set server app/{n} health down"]
                       for n in plan.targets]
    started = sim.events[0]
    assert isinstance(started, RolloutStarted)
    assert not started.resumed


def test_checks_after_the_update_need_rise_passes_at_inter_intervals() -> None:
    # fall 1: leaving maint would make the server fully healthy at once (health = rise);
    # forced down, it needs 'rise' real checks, inter apart, after the new version booted.
    servers = make_servers(3, rise=3, fall=1, inter=2.0, boot=1.0)
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(poll_interval=0.25))
    assert sim.run(plan).status == "completed"
    assert sim.violations == []
    for name in plan.targets:
        times = dict((a, t) for t, a in sim.trace[name])
        returned, ready = times["health down"], times["ready"]
        # boot 1 s, then 3 passes 2 s apart: at least 1 + 2*2 s, at most 1 + 3*2 + a poll
        assert 5.0 - 1e-6 <= ready - returned <= 7.25 + 1e-6


def test_unchecked_servers_wait_settle_seconds() -> None:
    sim = SimHAProxy(make_servers(2, checks=False))
    plan = sim.plan(RolloutOptions(settle=4, poll_interval=0.5))
    assert sim.run(plan).status == "completed"
    for name in plan.targets:
        times = dict((a, t) for t, a in sim.trace[name])
        assert 4.0 <= times["ready"] - times["drain"] <= 4.5 + 1e-9
        assert "health down" not in times
    assert sim.violations == []


def test_ready_restores_the_original_weight_and_drain_state() -> None:
    servers = make_servers(3)
    servers[0].weight, servers[0].iweight = 3, 10
    servers[1].admin = AdminState.DRAIN
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(include_disabled=True, max_unavailable=2))
    result = sim.run(plan)
    assert result.status == "completed", result.message
    assert (sim.servers["s1"].weight, sim.servers["s1"].admin) == (3, AdminState.READY)
    assert (sim.servers["s2"].admin, sim.servers["s2"].version) == (AdminState.DRAIN, 2)
    assert steps_of(sim, "s2")[-1] == "drain"


def test_the_flow_reads_no_clock_and_timeouts_hold_in_simulated_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object) -> float:
        raise AssertionError("the flow read the wall clock or slept for real")

    # a clock far from the real one, jumping 7 s at every read; sessions never end
    servers = make_servers(3)
    servers[0].inflight = (1, math.inf)
    sim = SimHAProxy(servers, start=5e8, read_cost=7.0)
    plan = sim.plan(RolloutOptions(sessions_timeout=100, drain_timeout=20))
    for name in ("monotonic", "time", "sleep", "perf_counter", "monotonic_ns", "time_ns"):
        monkeypatch.setattr(time, name, forbidden)
    t0 = sim.now
    result = sim.run(plan)
    monkeypatch.undo()
    assert result.status == "failed"
    maint_at = next(t for t, a in sim.trace["s1"] if a == "maint")
    restored_at = sim.trace["s1"][-1][0]
    # gave up once 100 simulated seconds had passed in maint, not before, and not much later
    assert 100 <= restored_at - maint_at <= 100 + 7 + 1e-6
    drain_at = next(t for t, a in sim.trace["s1"] if a == "drain")
    assert drain_at - t0 <= 3 * 7 + 1 + 1e-6  # three reads and a second measuring the load
    assert maint_at - drain_at <= 20 + 7 + 1e-6  # drain grace bounded by drain_timeout
    assert sim.violations == []  # no negative or NaN sleep


def test_sleeps_never_exceed_the_poll_interval_or_the_time_left() -> None:
    sim = SimHAProxy(make_servers(3, inflight=(1, 2.2), boot=1.3))
    plan = sim.plan(RolloutOptions(poll_interval=0.3, drain_timeout=0.5))
    assert sim.run(plan).status == "completed"
    assert sim.sleeps
    polls = [s for s in sim.sleeps if s.reason not in ("measure load", "pulse", "even out")]
    assert all(0 <= s.seconds <= 0.3 + 1e-12 for s in polls)
    assert {s.reason for s in sim.sleeps} >= {"drain", "sessions", "health"}
    # the load is measured over one second before a batch leaves (cookie persistence), and
    # over EVEN_WINDOW around the pulses of the final even-out
    assert {s.seconds for s in sim.sleeps if s.reason == "measure load"} <= {1.0, EVEN_WINDOW}


# -- drain grace ------------------------------------------------------------------------------


def _maint_delay(sim: SimHAProxy, server: str) -> float:
    times = dict((a, t) for t, a in reversed(sim.trace[server]))
    return times["maint"] - times["drain"]


def test_drain_grace_ends_after_a_quiet_second_when_nobody_is_pinned() -> None:
    sim = SimHAProxy(make_servers(2))
    plan = sim.plan(RolloutOptions(drain_timeout=10, poll_interval=0.25))
    assert sim.run(plan).status == "completed"
    assert 1.0 <= _maint_delay(sim, "s1") <= 1.25 + 1e-9


def test_drain_grace_lasts_until_pinned_users_stop_coming() -> None:
    servers = make_servers(2)
    servers[0].drain_arrivals = (0.3, 0.9, 1.6, 2.4, 3.1)  # gaps < 1 s, the last at 3.1 s
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(drain_timeout=10, poll_interval=0.25))
    assert sim.run(plan).status == "completed"
    # the last new session is seen at the first poll after 3.1 s; quiet one second later
    assert 4.1 <= _maint_delay(sim, "s1") <= 4.1 + 0.25 + 0.25 + 1e-9
    assert sim.servers["s1"].stot == 5


def test_drain_grace_ends_at_drain_timeout_when_users_keep_coming() -> None:
    servers = make_servers(2)
    servers[0].drain_arrivals = tuple(0.5 * k for k in range(1, 100))
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(drain_timeout=6, poll_interval=0.25))
    assert sim.run(plan).status == "completed"
    assert 6.0 <= _maint_delay(sim, "s1") <= 6.0 + 1e-9
    waits = [e for e in sim.events if isinstance(e, Waiting) and e.what == "drain"]
    assert waits
    assert max(w.elapsed for w in waits) == pytest.approx(6.0)
    assert all(w.timeout == 6 for w in waits)


def test_zero_drain_timeout_goes_to_maint_at_once() -> None:
    servers = make_servers(2)
    servers[0].drain_arrivals = (0.0, 0.1)
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(drain_timeout=0))
    assert sim.run(plan).status == "completed"
    assert _maint_delay(sim, "s1") == 0


# -- sessions in maint ------------------------------------------------------------------------


def test_update_waits_for_sessions_and_queue_to_finish_in_maint() -> None:
    servers = make_servers(3)
    servers[1].inflight = (3, 12.0)
    servers[1].queued = (2, 5.0)
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(poll_interval=0.5))
    assert sim.run(plan).status == "completed"
    times = dict((a, t) for t, a in sim.trace["s2"])
    assert 12.0 <= times["update"] - times["maint"] <= 12.5 + 1e-9
    assert sim.violations == []


def test_sessions_that_never_finish_restore_the_batch_and_stop() -> None:
    servers = make_servers(6, weight=7)
    servers[2].inflight = (1, math.inf)  # s3, batch 2 = (s3, s4)
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(batch_size=2, sessions_timeout=20))
    result = sim.run(plan)
    assert result.status == "failed"
    assert "sessions still open after 20s in maint: s3 (1)" in result.message
    assert "the batch was restored" in result.message
    assert result.batches_done == 1
    assert [result.phases[s] for s in ("s1", "s2")] == [Phase.DONE, Phase.DONE]
    assert [result.phases[s] for s in ("s3", "s4")] == [Phase.RESTORED, Phase.RESTORED]
    for name in ("s3", "s4"):  # original state and weight, never updated
        s = sim.servers[name]
        assert (s.admin, s.weight, s.version) == (AdminState.READY, 7, 1)
        assert sim.actions(name)[-2:] == ["weight 7", "ready"]
    for name in ("s5", "s6"):
        assert not sim.touched(name)
    assert [names for _, names in sim.updates] == [("s1", "s2")]
    assert sim.violations == []
    done = [e for e in sim.events if isinstance(e, BatchDone)]
    assert [(e.index, e.ok) for e in done] == [(0, True), (1, False)]


def test_kill_after_shuts_sessions_down_once_then_proceeds() -> None:
    servers = make_servers(3)
    servers[0].inflight = (2, math.inf)
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(kill_after=5, sessions_timeout=30, poll_interval=0.25))
    result = sim.run(plan)
    assert result.status == "completed", result.message
    kills = [line for line in sim.lines if line.startswith("shutdown sessions")]
    assert kills == ["shutdown sessions server app/s1"]
    times = dict((a, t) for t, a in sim.trace["s1"])
    assert 5.0 <= times["kill"] - times["maint"] <= 5.25 + 1e-9
    assert times["update"] >= times["kill"]
    assert sim.servers["s1"].kills == 1
    assert any(isinstance(e, Notice) and "--kill-after 5s" in e.message for e in sim.events)
    assert sim.violations == []


def test_kill_after_only_kills_servers_that_still_have_sessions() -> None:
    servers = make_servers(4)
    servers[0].inflight = (1, math.inf)
    servers[1].inflight = (1, 1.0)
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(batch_size=2, kill_after=3, sessions_timeout=10))
    assert sim.run(plan).status == "completed"
    assert [x for x in sim.lines if x.startswith("shutdown")] == [
        "shutdown sessions server app/s1"]


def test_sessions_resisting_kill_after_still_fail_at_sessions_timeout() -> None:
    servers = make_servers(3)
    servers[0].inflight = (1, math.inf)
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(kill_after=2, sessions_timeout=8))
    # new sessions keep arriving in maint ('option persist'): the kill cannot empty it
    sim.servers["s1"].maint_arrivals = tuple(0.1 * k for k in range(1, 200))
    sim.servers["s1"].pinned_session = 5.0
    result = sim.run(plan)
    assert result.status == "failed"
    assert result.phases["s1"] is Phase.RESTORED
    assert sim.lines.count("shutdown sessions server app/s1") == 1


def test_new_sessions_in_maint_are_reported_once_as_option_persist() -> None:
    servers = make_servers(3)
    servers[0].inflight = (1, 3.0)
    servers[0].maint_arrivals = (0.5, 1.0, 1.5)
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions())
    assert sim.run(plan).status == "completed"
    notes = [e for e in sim.events if isinstance(e, Notice) and e.server == "s1"]
    assert len(notes) == 1
    assert "option persist" in notes[0].message


# -- update and health failures ---------------------------------------------------------------


@settings(max_examples=60)
@given(n=st.integers(3, 7), size=st.integers(1, 3), data=st.data())
def test_update_failure_parks_the_server_and_stops_before_the_next_batch(
        n: int, size: int, data: st.DataObject) -> None:
    size = min(size, n - 1)
    sim = SimHAProxy(make_servers(n, boot=1.0))
    plan = sim.plan(RolloutOptions(batch_size=size))
    k = data.draw(st.integers(0, len(plan.batches) - 1), label="failing batch")
    failing = data.draw(st.lists(st.sampled_from(plan.batches[k]), min_size=1, unique=True),
                        label="failing servers")
    for name in failing:
        sim.servers[name].update_fails = f"exit status 3; output: {name} broke"
    result = sim.run(plan)

    assert result.status == "failed"
    assert result.batches_done == k
    assert f"batch {k + 1}/{len(plan.batches)} failed" in result.message
    for name in failing:
        assert result.phases[name] is Phase.FAILED
        assert f"{name}: update failed: exit status 3" in result.message
        assert result.errors[name].startswith("update failed: exit status 3")
        assert sim.servers[name].admin is AdminState.MAINT
        assert "ready" not in sim.actions(name)
    for name in plan.batches[k]:
        if name not in failing:  # siblings that updated fine come back
            assert result.phases[name] is Phase.DONE
            assert sim.servers[name].admin is AdminState.READY
    for batch in plan.batches[:k]:
        assert all(result.phases[s] is Phase.DONE for s in batch)
    for batch in plan.batches[k + 1:]:
        for name in batch:
            assert result.phases[name] is Phase.PENDING
            assert not sim.touched(name)
            # only temporary weights, all back to what they were
            assert not any((f"app/{name} " in line or line.endswith(f"app/{name}"))
                           and " weight " not in line for line in sim.lines)
            assert sim.servers[name].weight == plan.weight(name)
    assert sim.violations == []


@settings(max_examples=60)
@given(n=st.integers(3, 7), size=st.integers(1, 3), data=st.data())
def test_any_failure_leaves_every_server_safe_and_later_batches_untouched(
        n: int, size: int, data: st.DataObject) -> None:
    size = min(size, n - 1)
    sim = SimHAProxy(make_servers(n, inflight=(1, 0.5), boot=0.5,
                                  checks=data.draw(st.booleans(), label="checks")))
    weights = {name: s.weight for name, s in sim.servers.items()}
    plan = sim.plan(RolloutOptions(batch_size=size, sessions_timeout=10, health_timeout=10))
    k = data.draw(st.integers(0, len(plan.batches) - 1), label="failing batch")
    for name in plan.batches[k]:
        kind = data.draw(st.sampled_from(["none", "update", "health", "sessions"]), label=name)
        s = sim.servers[name]
        if kind == "update":
            s.update_fails = "exit status 1; output: x"
        elif kind == "health" and s.checks:
            s.boot = math.inf
        elif kind == "sessions":
            s.inflight = (1, math.inf)
    result = sim.run(plan)

    assert sim.violations == []
    for batch in plan.batches[:k]:
        assert all(result.phases[name] is Phase.DONE for name in batch)
    if result.status == "completed":  # nothing in the batch failed after all
        assert all(p is Phase.DONE for p in result.phases.values())
        return
    for batch in plan.batches[k + 1:]:
        assert not any(sim.touched(name) for name in batch)
    assert result.batches_done == k
    for name in plan.batches[k]:
        s, phase = sim.servers[name], result.phases[name]
        assert phase in (Phase.DONE, Phase.FAILED, Phase.RESTORED), (name, phase)
        if phase is Phase.FAILED:  # never in service unproven: parked in maint
            assert s.admin is AdminState.MAINT
            assert result.errors[name]
            assert f"{name}: " in result.message
        elif phase is Phase.RESTORED:  # untouched: as before the rollout
            assert (s.admin, s.weight, s.version) == (AdminState.READY, weights[name], 1)
        else:
            assert (s.admin, s.weight, s.version) == (AdminState.READY, weights[name], 2)


def test_health_that_never_passes_fails_and_parks_in_maint() -> None:
    servers = make_servers(4)
    servers[1].boot = math.inf
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(batch_size=2, health_timeout=15, poll_interval=0.5))
    result = sim.run(plan)
    assert result.status == "failed"
    assert result.phases == {"s1": Phase.DONE, "s2": Phase.FAILED, "s3": Phase.PENDING,
                             "s4": Phase.PENDING}
    assert "not healthy after 15s (left in maint)" in result.errors["s2"]
    assert "s2: not healthy" in result.message
    s2 = sim.servers["s2"]
    assert s2.admin is AdminState.MAINT
    assert "ready" not in sim.actions("s2")
    assert sim.actions("s2")[-1] == "maint"
    times = [t for t, a in sim.trace["s2"]]
    assert 15.0 <= times[-1] - times[-2] <= 15.5 + 1e-9  # parked once 15 s had passed
    assert not sim.touched("s3")
    assert not sim.touched("s4")
    assert sim.violations == []


def test_a_server_down_right_after_ready_is_parked() -> None:
    servers = make_servers(3)
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions())

    def break_on_ready(step: object) -> None:
        # the new version dies between 'ready' and the verification read
        if sim.servers["s2"].admin is AdminState.READY and sim.servers["s2"].version == 2:
            sim.servers["s2"].running = False
            sim.servers["s2"].health = 0

    result = sim.run(plan, before_step=break_on_ready)
    assert result.status == "failed"
    assert result.phases["s2"] is Phase.FAILED
    assert "right after ready (left in maint)" in result.errors["s2"]
    assert sim.servers["s2"].admin is AdminState.MAINT
    assert not sim.touched("s3")


@pytest.mark.parametrize("word", ["drain", "maint"])
def test_a_refused_take_out_stops_the_rollout_before_the_update(word: str) -> None:
    sim = SimHAProxy(make_servers(3))
    sim.refuse[("s1", word)] = "Permission denied"
    plan = sim.plan(RolloutOptions())
    result = sim.run(plan)
    assert result.status == "failed"
    assert f"HAProxy refused '{word}' for s1: Permission denied" in result.message
    assert sim.updates == []
    assert not sim.touched("s2")


def test_a_refused_drain_restores_the_servers_already_drained() -> None:
    sim = SimHAProxy(make_servers(4))
    sim.refuse[("s2", "drain")] = "No such server."
    plan = sim.plan(RolloutOptions(batch_size=2))
    result = sim.run(plan)
    assert result.status == "failed"
    assert sim.servers["s1"].admin is AdminState.READY


# -- capacity guard at run time ---------------------------------------------------------------


def test_capacity_guard_stops_before_a_batch_when_another_server_went_down() -> None:
    sim = SimHAProxy(make_servers(4))
    plan = sim.plan(RolloutOptions())
    # s4 (batch 4) stops answering its checks while batch 1 runs: fall 2 at 1 s intervals
    # bring it DOWN before batch 2 starts
    sim.at(0.5, lambda sim: setattr(sim.servers["s4"], "app_ok_from", math.inf))
    sim.max_unavailable = None  # s4 going down is not the flow's doing
    result = sim.run(plan)
    assert result.status == "failed"
    assert "capacity guard: batch 2 would leave 2 of 4 servers out of service (s4 already " \
           "out)" in result.message
    assert "nothing in this batch was changed" in result.message
    assert result.phases["s1"] is Phase.DONE
    assert result.phases["s2"] is Phase.PENDING
    assert not sim.touched("s2")
    assert not sim.touched("s3")
    assert result.batches_done == 1
    assert not any(isinstance(e, BatchStarted) and e.index == 1 for e in sim.events)


def test_capacity_guard_counts_servers_put_in_maint_by_someone_else() -> None:
    sim = SimHAProxy(make_servers(5))
    plan = sim.plan(RolloutOptions(batch_size=2))  # max_unavailable 2

    def operator(sim: SimHAProxy, n: int) -> None:
        if n == 1:  # before batch 2 = (s3, s4)
            sim.servers["s1"].admin = AdminState.MAINT  # s1 (batch 1, done) put in maint
            sim.servers["s1"].running = False

    sim.before_snapshot.append(operator)
    sim.max_unavailable = None
    result = sim.run(plan)
    assert result.status == "failed"
    assert "capacity guard: batch 2 would leave 3 of 5 servers out of service (s1 already " \
           "out), more than max-unavailable 2" in result.message
    assert not any(sim.touched(s) for s in ("s3", "s4", "s5"))


def test_capacity_guard_sees_a_server_that_disappeared() -> None:
    sim = SimHAProxy(make_servers(3))
    plan = sim.plan(RolloutOptions())

    def s3_deleted(sim: SimHAProxy, n: int) -> None:
        if n == 2:
            del sim.servers["s3"]

    sim.before_snapshot.append(s3_deleted)
    result = sim.run(plan)
    assert result.status == "failed"
    assert "servers s3 no longer exist in 'app'" in result.message


# -- ramp and weights -------------------------------------------------------------------------


def test_ramp_brings_the_weight_back_in_steps() -> None:
    servers = make_servers(2, weight=100)
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(ramp=6))
    assert sim.run(plan).status == "completed"
    weights = [(t, a) for t, a in sim.trace["s1"] if a.startswith("weight")]
    assert [a for _, a in weights] == ["weight 25", "weight 50", "weight 75", "weight 100"]
    assert weights[-1][0] - weights[0][0] == pytest.approx(6.0)
    ready_at = next(t for t, a in sim.trace["s1"] if a == "ready")
    assert ready_at == weights[0][0]  # ready with the first step, not the full weight
    assert sim.servers["s1"].weight == 100


def test_ramp_keeps_a_zero_weight_at_zero() -> None:
    servers = make_servers(3)
    servers[0].weight = 0
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(ramp=2))
    assert sim.run(plan).status == "completed"
    assert sim.servers["s1"].weight == 0


def test_unchecked_servers_settle_even_when_settle_exceeds_health_timeout() -> None:
    refusal: str | None = None
    try:
        options = RolloutOptions(settle=5, health_timeout=3)
    except UsageError as exc:  # refusing the combination is a fine fix too
        refusal = exc.field
    if refusal is not None:
        assert refusal in ("--settle", "--health-timeout", "settle", "health-timeout")
        return
    sim = SimHAProxy(make_servers(3, checks=False))
    result = sim.run(sim.plan(options))
    assert result.status == "completed", result.message


# -- stick-table rebalance --------------------------------------------------------------------


def test_stick_users_leave_each_batch_once_and_end_even() -> None:
    sim = SimHAProxy(make_servers(4), cookie=None, table=True)
    sim.redispatch_on_maint = False  # users idle: only haproxyctl's re-pins move them
    owners = {f"u{i:02d}": f"s{1 + i % 4}" for i in range(40)}
    sim.put_entries(owners)
    plan = sim.plan(RolloutOptions(batch_size=2))
    assert plan.moves_users == "stick"
    assert plan.drain_grace == 0
    assert sim.run(plan).status == "completed"
    # every re-pin went to a server in service; nobody who reached v2 went back to v1
    assert sim.violations == []
    counts = sim.users_per_server()
    assert sum(counts.values()) == 40
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    labels = [x.label for x in sim.sends]
    assert "re-pin users of the batch" in labels
    assert "even out" in labels
    # batch 1's users went to batch 2 (old version), batch 2's to batch 1 (new): nobody was
    # re-pinned more than twice, and the final even-out took users moved once
    repins = [line.split()[4] for line in sim.lines if line.startswith("set table")]
    assert max(repins.count(k) for k in set(repins)) <= 2
    loads = [e for e in sim.events if isinstance(e, Balance)]
    assert loads[-1].stage == "end"
    assert loads[-1].imbalance == pytest.approx(1.0)


def test_stick_users_are_steered_to_one_version_while_in_flight_responses_pin_them_back() -> None:
    sim = SimHAProxy(make_servers(4, inflight=(2, 1.0)), cookie=None, table=True)
    sim.put_entries({f"u{i:02d}": f"s{1 + i % 4}" for i in range(40)})
    plan = sim.plan(RolloutOptions(batch_size=1))
    assert sim.run(plan).status == "completed"
    assert sim.violations == []
    weights = [line for line in sim.lines if " weight " in line]
    assert any(line.endswith(" weight 0") for line in weights)  # others out of balancing
    assert all(s.weight == 10 for s in sim.servers.values())


def test_cookie_users_end_even_after_maint_pulses() -> None:
    sim = SimHAProxy(make_servers(4))
    sim.put_cookie_users(dict.fromkeys(["s1", "s2", "s3", "s4"], 30))
    plan = sim.plan(RolloutOptions(batch_size=2, health_timeout=30))
    result = sim.run(plan)
    assert result.status == "completed", result.message
    assert sim.violations == []  # one version per re-dispatch, nobody back to v1
    counts = sim.users_per_server()
    assert sum(counts.values()) == 120
    assert max(counts.values()) <= 1.25 * 30, counts
    assert "pulse" in [x.label for x in sim.sends]
    assert all(s.weight == 10 and s.admin is AdminState.READY for s in sim.servers.values())


def test_no_rebalance_without_a_stick_table_or_when_disabled() -> None:
    sim = SimHAProxy(make_servers(3), table=True)
    sim.put_entries({f"u{i}": "s2" for i in range(9)})
    assert sim.run(sim.plan(RolloutOptions(rebalance=False))).status == "completed"
    assert not any(x.startswith(("set table", "clear table")) for x in sim.lines)


# -- servers disabled before the rollout ------------------------------------------------------


def test_skipped_servers_are_never_touched() -> None:
    servers = make_servers(4)
    servers[1].admin, servers[1].running = AdminState.MAINT, False
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(max_unavailable=2))
    result = sim.run(plan)
    assert result.status == "completed", result.message
    assert result.phases["s2"] is Phase.SKIPPED
    assert not sim.touched("s2")
    assert sim.servers["s2"].version == 1


def test_a_server_in_maint_before_the_rollout_stays_in_maint_until_its_update() -> None:
    servers = make_servers(4)
    servers[1].admin, servers[1].running = AdminState.MAINT, False
    sim = SimHAProxy(servers)
    plan = sim.plan(RolloutOptions(include_disabled=True, max_unavailable=2))
    result = sim.run(plan)
    assert result.status == "completed", result.message
    assert sim.servers["s2"].admin is AdminState.MAINT  # back to its original state
    before_update = sim.actions("s2")[:sim.actions("s2").index("update")]
    assert "drain" not in before_update
