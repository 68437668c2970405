"""``halves``: half A is updated while half B serves, one write switches, then half B."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haproxyctl.models.state import AdminState
from haproxyctl.rollout.events import Phase, PhaseChanged
from haproxyctl.rollout.options import RolloutOptions
from haproxyctl.rollout.plan import Plan, switch_commands
from haproxyctl.rollout.steps import Emit, Send, Step

from .sim import SimHAProxy, SimServer, make_servers

STEPS = ("drain", "maint", "ready", "update", "health down")


def halves(n: int, sessions_timeout: float = 120.0) -> tuple[SimHAProxy, Plan]:
    sim = SimHAProxy(make_servers(n), cookie=None)  # halves is for no persistence
    sim.forbid_mixed_versions = True  # the point of halves: never old and new together
    plan = sim.plan(RolloutOptions(strategy="halves", settle=1,
                                   sessions_timeout=sessions_timeout))
    return sim, plan


def switch_send(sim: SimHAProxy) -> list[Send]:
    return [s for s in sim.sends if s.label == "switch halves"]


@settings(max_examples=60)
@given(n=st.integers(2, 7), data=st.data())
def test_halves_switches_in_one_write_and_never_mixes_versions(n: int,
                                                               data: st.DataObject) -> None:
    servers = [SimServer(name=f"s{i}", sid=i, addr=f"10.0.0.{i}",
                         weight=data.draw(st.integers(1, 50)),
                         checks=data.draw(st.booleans()),
                         rise=data.draw(st.integers(1, 3)), fall=data.draw(st.integers(1, 3)),
                         inflight=(data.draw(st.integers(0, 2)), 1.5),
                         drain_arrivals=data.draw(st.sampled_from([(), (0.2, 0.6)])),
                         boot=data.draw(st.sampled_from([0.0, 2.0])))
               for i in range(1, n + 1)]
    weights = {s.name: s.weight for s in servers}
    sim = SimHAProxy(servers, cookie=None)
    sim.forbid_mixed_versions = True
    plan = sim.plan(RolloutOptions(strategy="halves", settle=1))
    a, b = plan.batches
    b_served_during_a: list[bool] = []

    def watch(step: Step) -> None:
        if isinstance(step, Emit) and isinstance(step.event, PhaseChanged) \
                and step.event.server in a and step.event.phase is Phase.UPDATING:
            b_served_during_a.append(all(sim.servers[s].available for s in b))

    result = sim.run(plan, before_step=watch)

    assert result.status == "completed", result.message
    # never zero in service (line by line), never both versions in service (write by write)
    assert sim.violations == []
    assert b_served_during_a
    assert all(b_served_during_a)
    (switch,) = switch_send(sim)
    assert list(switch.commands) == switch_commands(plan, a, b)
    assert [c.line for c in switch.commands if c.line.endswith("state drain")] == [
        f"set server app/{s} state drain" for s in b]
    for name in a:  # half A went into service in the switch, and only there
        ready = [x for x in sim.lines if x == f"set server app/{name} state ready"]
        assert len(ready) == 1
        assert ready[0] in [c.line for c in switch.commands]
    for name in b:  # half B: drained by the switch, so no 'drain' of its own before maint
        steps = [x for x in sim.actions(name) if x in STEPS]
        checks = sim.servers[name].checks
        assert steps == ["drain", "maint", "update", "drain",
                         *(["health down"] if checks else []), "ready"]
    for name, s in sim.servers.items():
        assert (s.admin, s.version, s.weight) == (AdminState.READY, 2, weights[name])
        assert result.phases[name] is Phase.DONE
    assert result.batches_done == 2


def test_half_a_comes_back_to_drain_only_until_the_switch() -> None:
    sim, plan = halves(4)
    assert sim.run(plan).status == "completed"
    switch_at = sim.sends.index(switch_send(sim)[0])
    before = [c.line for s in sim.sends[:switch_at] for c in s.commands]
    assert not any(line.endswith("state ready") for line in before)
    assert not any("app/s3" in line or "app/s4" in line for line in before)


@pytest.mark.parametrize("failure", ["update", "health"])
def test_a_failing_half_a_makes_no_switch_and_half_b_keeps_serving(failure: str) -> None:
    sim, plan = halves(4)
    if failure == "update":
        sim.servers["s2"].update_fails = "exit status 1; output: boom"
    else:
        sim.servers["s2"].boot = math.inf
    result = sim.run(plan)

    assert result.status == "failed"
    assert "half B still serves the old version, no switch was made" in result.message
    assert "s2:" in result.message
    assert switch_send(sim) == []
    assert result.phases["s2"] is Phase.FAILED
    for name in ("s1", "s2"):  # all of half A parked: none of it ever in service
        assert sim.servers[name].admin is AdminState.MAINT
        assert "ready" not in sim.actions(name)
    for name in ("s3", "s4"):
        assert not sim.touched(name)
        assert sim.servers[name].available
        assert sim.servers[name].version == 1
        assert result.phases[name] is Phase.PENDING
    assert sim.violations == []
    assert result.batches_done == 0


def test_halves_capacity_guard_runs_before_half_a() -> None:
    sim, plan = halves(4)
    sim.max_unavailable = None

    def b_dies(sim: SimHAProxy, n: int) -> None:
        sim.servers["s4"].running = False
        sim.servers["s4"].app_ok_from = math.inf

    sim.before_snapshot.append(b_dies)
    result = sim.run(plan)
    assert result.status == "failed"
    assert "capacity guard: batch 1 would leave 3 of 4" in result.message
    assert sim.sends == []


def test_a_failing_half_b_leaves_half_a_serving_the_new_version() -> None:
    sim, plan = halves(4)
    sim.servers["s4"].update_fails = "exit status 2; output: nope"
    result = sim.run(plan)
    assert result.status == "failed"
    assert result.message.startswith("half B failed (s4: update failed: exit status 2")
    assert "half A serves the new version" in result.message
    assert result.batches_done == 1
    assert [result.phases[s] for s in ("s1", "s2", "s3", "s4")] == [
        Phase.DONE, Phase.DONE, Phase.DONE, Phase.FAILED]
    assert sim.servers["s4"].admin is AdminState.MAINT
    assert sim.violations == []


def test_resume_of_half_b_continues_after_the_switch() -> None:
    sim, plan = halves(4)
    for name in ("s1", "s2"):
        s = sim.servers[name]
        s.version, s.fresh_passes = 2, s.rise
    for name in ("s3", "s4"):
        sim.servers[name].admin = AdminState.DRAIN
    phases = {"s1": Phase.DONE, "s2": Phase.DONE, "s3": Phase.DRAINING, "s4": Phase.DRAINING}
    result = sim.run(plan, phases)
    assert result.status == "completed", result.message
    assert switch_send(sim) == []
    assert not sim.touched("s1")
    assert not sim.touched("s2")
    assert sim.violations == []


def test_resume_during_the_switch_verification_keeps_servers_in_service() -> None:
    sim, plan = halves(4)
    forks: list[tuple[SimHAProxy, dict[str, Phase]]] = []

    def crash(step: Step) -> None:
        if isinstance(step, Emit) and isinstance(step.event, PhaseChanged) \
                and step.event.server == "s2" and step.event.phase is Phase.DONE:
            forks.append((sim.fork(), dict(sim.journal)))

    assert sim.run(plan, before_step=crash).status == "completed"
    (fork, journal), = forks
    assert journal == {"s1": Phase.DONE, "s2": Phase.HEALTHY}
    result = fork.run(plan, journal)
    assert fork.violations == []
    assert result.status == "completed", result.message


def test_half_b_is_not_put_back_in_service_on_the_old_version_after_the_switch() -> None:
    sim, plan = halves(4, sessions_timeout=10)
    sim.servers["s3"].inflight = (1, math.inf)
    result = sim.run(plan)
    assert result.status == "failed"
    assert sim.violations == []
    assert not sim.servers["s3"].available
    assert not sim.servers["s4"].available
