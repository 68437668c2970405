"""``balance_flow`` (``haproxyctl balance``) against the simulator: it evens out users of one
version, changes nothing when only measuring, and leaves every weight and state as it was."""

from __future__ import annotations

from haproxyctl.models.state import AdminState
from haproxyctl.rollout.leveling import LevelResult, balance_flow
from haproxyctl.rollout.options import RolloutOptions
from haproxyctl.rollout.steps import Flow, Probe, Step

from .sim import SimHAProxy, make_servers

NAMES = ["s1", "s2", "s3", "s4"]
OPTIONS = RolloutOptions(batch_size=1, allow_version_flips=True, max_unavailable=4)


def _untouched(sim: SimHAProxy) -> bool:
    return all(s.weight == 10 and s.admin is AdminState.READY for s in sim.servers.values())


def test_stick_users_on_one_server_are_spread_evenly() -> None:
    sim = SimHAProxy(make_servers(4), cookie=None, table=True)
    sim.put_entries({f"10.0.0.{i}": "s1" for i in range(12)})
    plan = sim.plan(OPTIONS)
    result: LevelResult = sim.drive(balance_flow(plan, NAMES, apply=True))
    assert sim.users_per_server() == dict.fromkeys(NAMES, 3)
    assert (result.unit, result.moved) == ("users", 9)
    assert result.imbalance_before == 4.0
    assert result.imbalance_after == 1.0
    assert _untouched(sim)


def test_measuring_sends_no_change() -> None:
    sim = SimHAProxy(make_servers(4), cookie=None, table=True)
    sim.put_entries({f"10.0.0.{i}": "s1" for i in range(12)})
    result = sim.drive(balance_flow(sim.plan(OPTIONS), NAMES, apply=False))
    assert result.imbalance_before == result.imbalance_after == 4.0
    assert sim.lines == []  # not one write
    assert sim.users_per_server()["s1"] == 12


def test_only_the_given_servers_receive() -> None:
    sim = SimHAProxy(make_servers(4), cookie=None, table=True)
    sim.put_entries({f"10.0.0.{i}": "s1" for i in range(12)})
    sim.drive(balance_flow(sim.plan(OPTIONS), ["s1", "s2"], apply=True))
    assert sim.users_per_server() == {"s1": 6, "s2": 6, "s3": 0, "s4": 0}


def test_cookie_users_are_evened_out_with_pulses_and_weights_restored() -> None:
    sim = SimHAProxy(make_servers(4))
    sim.put_cookie_users({"s1": 60, "s2": 20, "s3": 20, "s4": 20})
    result = sim.drive(balance_flow(sim.plan(OPTIONS), NAMES, apply=True, max_out=1))
    counts = sim.users_per_server()
    assert sum(counts.values()) == 120
    assert max(counts.values()) <= 1.25 * 30, counts
    assert result.pulses >= 1
    assert result.imbalance_after < result.imbalance_before
    assert sim.violations == []
    assert _untouched(sim)
    # One server out at a time (max_out=1), never two.
    assert all(len(x.commands) <= 1 for x in sim.sends if x.label == "pulse")


def _steps_of(sim: SimHAProxy, flow: Flow[LevelResult], *, traffic: bool
              ) -> tuple[list[str], LevelResult]:
    """Drive ``flow``; with ``traffic``, each of a server's users sends a request before every
    probe (the sim's stick users do not click on their own). Returns the step type names and
    the result."""
    kinds: list[str] = []

    def before(step: Step) -> None:
        kinds.append(type(step).__name__)
        if traffic and isinstance(step, Probe):
            for name, users in sim.users_per_server().items():
                sim.servers[name].stot += users

    result = sim.drive(flow, before_step=before)
    return kinds, result


def test_stick_even_out_without_traffic_reads_the_table_once_and_waits_for_nothing() -> None:
    """No request reached the group since the read: nobody can have been pinned back, and
    there is no rate to measure, so neither the verifying re-read nor the 1.5 s measurement
    happens (what made a 100,000-user rollout miss its 1 s per batch)."""
    sim = SimHAProxy(make_servers(4), cookie=None, table=True)
    sim.put_entries({f"10.0.1.{i}": "s1" for i in range(48)})
    kinds, result = _steps_of(sim, balance_flow(sim.plan(OPTIONS), NAMES, apply=True),
                              traffic=False)
    assert sim.users_per_server() == dict.fromkeys(NAMES, 12)
    assert kinds.count("ReadPins") == 1
    assert "Sleep" not in kinds
    assert result.after == dict.fromkeys(NAMES, 12.0)


def test_stick_even_out_with_traffic_reads_again_and_measures_rates() -> None:
    sim = SimHAProxy(make_servers(4), cookie=None, table=True)
    sim.put_entries({f"10.0.1.{i}": "s1" for i in range(48)})
    kinds, _ = _steps_of(sim, balance_flow(sim.plan(OPTIONS), NAMES, apply=True),
                         traffic=True)
    assert sim.users_per_server() == dict.fromkeys(NAMES, 12)
    assert kinds.count("ReadPins") >= 2  # the verifying re-read
    assert max(x.seconds for x in sim.sleeps) >= 1.5  # the rate measurement window
