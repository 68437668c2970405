"""Load levels, water filling, steering weights and the pulse controller. Pure."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxyctl.rollout.balance import (
    MAX_WEIGHT,
    allocate,
    imbalance,
    level,
    level_moves,
    steering_weights,
    water_fill,
)
from haproxyctl.rollout.pulses import PulseController

NAMES = [f"s{i}" for i in range(1, 7)]
loads_st = st.dictionaries(st.sampled_from(NAMES),
                           st.floats(0, 1000, allow_nan=False, allow_infinity=False),
                           min_size=1)
caps_st = st.dictionaries(st.sampled_from(NAMES), st.integers(1, 256))


def test_imbalance_is_busiest_over_mean_per_unit_of_weight() -> None:
    assert imbalance({"a": 10, "b": 10}) == 1.0
    assert imbalance({"a": 30, "b": 10}) == 1.5
    # weight 20 carrying twice the load of weight 10 is even
    assert imbalance({"a": 20, "b": 10}, {"a": 20, "b": 10}) == pytest.approx(1.0)
    assert imbalance({"a": 0, "b": 0}) == 1.0
    assert imbalance({"a": 5, "b": 1, "c": 1}, servers=["b", "c"]) == 1.0


def test_water_fill_raises_the_emptiest_first() -> None:
    shares = water_fill(30, {"a": 0, "b": 20, "c": 40}, {}, ["a", "b", "c"])
    # level 25 over a and b; c is above it and gets nothing
    assert shares == pytest.approx({"a": 25, "b": 5, "c": 0})
    assert water_fill(0, {"a": 1}, {}, ["a"]) == {"a": 0}
    assert water_fill(5, {}, {}, []) == {}


@given(st.floats(0, 5000, allow_nan=False), loads_st, caps_st)
def test_water_fill_properties(amount: float, loads: dict[str, float],
                               caps: dict[str, int]) -> None:
    receivers = sorted(loads)
    capacities = {s: float(c) for s, c in caps.items()}
    shares = water_fill(amount, loads, capacities, receivers)
    assert set(shares) == set(receivers)
    assert sum(shares.values()) == pytest.approx(amount, abs=1e-6 * max(amount, 1))
    assert all(v >= -1e-9 for v in shares.values())
    final = {s: (loads[s] + shares[s]) / capacities.get(s, 1.0) for s in receivers}
    top = max(final[s] for s in receivers if shares[s] > 1e-9) if amount > 1e-6 else None
    if top is not None:
        # everyone who received ends at the same level; nobody who did not is below it
        for s in receivers:
            if shares[s] > 1e-6:
                assert final[s] == pytest.approx(top, rel=1e-6, abs=1e-6)
            else:
                assert final[s] >= top - 1e-6 * max(top, 1)


@given(st.integers(0, 500), loads_st, caps_st)
def test_allocate_sums_exactly(count: int, loads: dict[str, float],
                               caps: dict[str, int]) -> None:
    receivers = sorted(loads)
    shares = allocate(count, loads, {s: float(c) for s, c in caps.items()}, receivers)
    assert sum(shares.values()) == count
    exact = water_fill(float(count), loads, {s: float(c) for s, c in caps.items()}, receivers)
    assert all(abs(shares[s] - exact[s]) < 1 + 1e-6 for s in receivers)


@given(loads_st, caps_st)
def test_level_moves_conserve_and_only_cross_the_level(loads: dict[str, float],
                                                      caps: dict[str, int]) -> None:
    servers = sorted(loads)
    capacities = {s: float(c) for s, c in caps.items()}
    give, take = level_moves(loads, capacities, servers)
    assert sum(give.values()) == pytest.approx(sum(take.values()), rel=1e-6, abs=1e-6)
    assert not set(give) & set(take)
    lvl = level(loads, capacities, servers)
    for s, v in give.items():
        assert loads[s] - v >= lvl * capacities.get(s, 1.0) - 1e-6 * max(lvl, 1)
    for s, v in take.items():
        assert loads[s] + v <= lvl * capacities.get(s, 1.0) + 1e-6 * max(lvl, 1)


def test_steering_weights() -> None:
    w = steering_weights({"a": 30, "b": 10, "c": 0}, {}, ["x", "y"])
    assert w == {"a": MAX_WEIGHT, "b": round(MAX_WEIGHT / 3), "c": 0, "x": 0, "y": 0}
    # nobody has a share: by capacity
    assert steering_weights({"a": 0, "b": 0}, {"a": 10, "b": 20}, []) == {
        "a": MAX_WEIGHT // 2, "b": MAX_WEIGHT}
    # static algorithms accept only 0% or 100%
    assert steering_weights({"a": 5, "b": 1}, {"a": 10, "b": 20}, ["x"], static=True) == {
        "a": 10, "b": 20, "x": 0}
    # a tiny share still gets a weight of 1: it must take some
    assert steering_weights({"a": 1000, "b": 0.5}, {}, [])["b"] == 1


@given(st.dictionaries(st.sampled_from(NAMES), st.floats(0, 100, allow_nan=False),
                       min_size=1), st.sets(st.sampled_from(["x", "y", "z"])))
def test_steering_weights_valid(inflow: dict[str, float], others: set[str]) -> None:
    w = steering_weights(inflow, {}, others)
    assert all(0 <= v <= MAX_WEIGHT for v in w.values())
    assert all(w[o] == 0 for o in others)
    assert any(w[s] > 0 for s in inflow)  # someone always takes load-balanced users


def _simulate(users: dict[str, float], pulse_seconds: float, donors: tuple[str, ...],
              inflow: dict[str, float], gap: float) -> dict[str, float]:
    """Expected users after a pulse: a share 1 - exp(-t/gap) of each donor moves, split by
    inflow."""
    out = dict(users)
    moved = 0.0
    for d in donors:
        m = users[d] * (1 - math.exp(-pulse_seconds / gap))
        out[d] -= m
        moved += m
    total = sum(inflow.values())
    for r, v in inflow.items():
        out[r] += moved * v / total
    return out


@pytest.mark.parametrize("gap", [0.3, 1.0, 4.0])
def test_pulse_controller_converges_whatever_the_users_click_rate(gap: float) -> None:
    users = {"s1": 60.0, "s2": 60.0, "s3": 0.0, "s4": 0.0}
    control = PulseController(list(users), dict.fromkeys(users, 1.0), max_out=2,
                              tolerance=0.10, rounds=10)
    for _ in range(10):
        pulse = control.next(users)
        if pulse is None:
            break
        assert len(pulse.donors) <= 2
        assert not set(pulse.donors) & set(pulse.inflow)
        assert control.shortest <= pulse.seconds <= control.longest
        users = _simulate(users, pulse.seconds, pulse.donors, dict(pulse.inflow), gap)
    assert imbalance(users) <= 1.10 + 1e-9, users


def test_pulse_controller_stops_when_even_or_nothing_can_move() -> None:
    even = {"a": 10.0, "b": 10.5}
    assert PulseController(["a", "b"], {}, max_out=1).next(even) is None
    assert PulseController(["a", "b"], {}, max_out=0).next({"a": 10.0, "b": 0.0}) is None
    assert PulseController(["a"], {}, max_out=1).next({"a": 10.0}) is None
