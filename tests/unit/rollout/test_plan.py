"""The pure planner: batches, capacity, persistence, serialisation, dry run."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haproxyctl.configcheck import check_backend
from haproxyctl.models.state import AdminState
from haproxyctl.models.table import TableInfo
from haproxyctl.rollout.options import RolloutOptions
from haproxyctl.rollout.plan import (
    Plan,
    PlanError,
    ServerSnapshot,
    balance_plan,
    make_plan,
    ramp_weights,
)

from .sim import (
    BACKEND,
    SimHAProxy,
    SimServer,
    backend_stat,
    make_servers,
    servers_from_text,
    stat_row,
    state_row,
)


def _sim(n: int, *, disabled: dict[int, AdminState] | None = None, down: tuple[int, ...] = (),
         cookie: str | None = "SRV", algo: str = "roundrobin", table: bool = False
         ) -> SimHAProxy:
    servers = make_servers(n)
    for i, state in (disabled or {}).items():
        servers[i - 1].admin = state
        servers[i - 1].running = state is not AdminState.MAINT
    for i in down:
        servers[i - 1].running = False
        servers[i - 1].health = 0
    return SimHAProxy(servers, cookie=cookie, algo=algo, table=table)


# -- batches ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "percent", "sizes"), [
    (10, 25, [2, 2, 2, 2, 2]),  # 2.5 -> 2
    (10, 29.9, [2, 2, 2, 2, 2]),
    (10, 30, [3, 3, 3, 1]),
    (3, 50, [1, 1, 1]),  # 1.5 -> 1
    (7, 10, [1] * 7),  # 0.7 -> at least 1
    (4, 0.001, [1, 1, 1, 1]),
])
def test_percent_rounds_down_to_at_least_one_server(n: int, percent: float,
                                                    sizes: list[int]) -> None:
    plan = _sim(n).plan(RolloutOptions(percent=percent, max_unavailable=n - 1))
    assert [len(b) for b in plan.batches] == sizes
    assert plan.targets == tuple(f"s{i}" for i in range(1, n + 1))


def test_percent_100_would_take_every_server_out() -> None:
    with pytest.raises(PlanError, match="every server"):
        _sim(3).plan(RolloutOptions(percent=100, max_unavailable=3))


def test_default_is_one_server_per_batch_and_max_unavailable_the_biggest_batch() -> None:
    plan = _sim(3).plan(RolloutOptions())
    assert plan.batches == (("s1",), ("s2",), ("s3",))
    assert plan.max_unavailable == 1
    plan = _sim(6).plan(RolloutOptions(groups=(("s1",), ("s2", "s3", "s4"), ("s5", "s6"))))
    assert plan.max_unavailable == 3
    assert plan.batches == (("s1",), ("s2", "s3", "s4"), ("s5", "s6"))


@settings(max_examples=200)
@given(n=st.integers(1, 9), disabled=st.sets(st.integers(1, 9), max_size=3),
       down=st.sets(st.integers(1, 9), max_size=2), drain=st.booleans(),
       size=st.one_of(st.none(), st.integers(1, 9)),
       percent=st.one_of(st.none(), st.floats(0.5, 100)),
       max_unavailable=st.one_of(st.none(), st.integers(1, 9)))
def test_batches_partition_the_candidates_and_capacity_is_refused_exactly_when_exceeded(
        n: int, disabled: set[int], down: set[int], drain: bool, size: int | None,
        percent: float | None, max_unavailable: int | None) -> None:
    state = AdminState.DRAIN if drain else AdminState.MAINT
    sim = _sim(n, disabled={i: state for i in disabled if i <= n},
               down=tuple(i for i in down if i <= n and i not in disabled))
    options = RolloutOptions(batch_size=size if percent is None else None, percent=percent,
                             max_unavailable=max_unavailable)
    names = [f"s{i}" for i in range(1, n + 1)]
    candidates = [s for i, s in enumerate(names, 1) if i not in disabled]
    out = {s for i, s in enumerate(names, 1) if i in disabled or i in down}
    # Oracle: refused exactly when the documented capacity rules say so.
    if not candidates:
        with pytest.raises(PlanError, match="no server to update"):
            sim.plan(options)
        return
    want = (size if percent is None else max(1, math.floor(len(candidates) * percent / 100)))
    want = want or 1
    batches = [candidates[i:i + want] for i in range(0, len(candidates), want)]
    limit = max_unavailable if max_unavailable is not None else max(map(len, batches))
    worst = max(len(out - set(b)) + len(b) for b in batches)
    if worst > limit or worst >= n:
        with pytest.raises(PlanError, match=r"batch \d+ would (leave|take)"):
            sim.plan(options)
        return
    plan = sim.plan(options)
    assert [s for b in plan.batches for s in b] == candidates  # a partition, in order
    assert all(plan.batches)
    sizes = [len(b) for b in plan.batches]
    assert all(x == sizes[0] for x in sizes[:-1])
    assert sizes[-1] <= sizes[0]
    assert set(plan.skipped) == set(names) - set(candidates)
    assert plan.max_unavailable == (max_unavailable if max_unavailable is not None
                                    else max(sizes))
    for b in plan.batches:
        unavailable = len(out - set(b)) + len(b)
        assert unavailable <= plan.max_unavailable
        assert unavailable < n


# -- groups -----------------------------------------------------------------------------------


def test_groups_naming_an_unknown_server_are_refused() -> None:
    with pytest.raises(PlanError, match="does not have: s9, s8"):
        _sim(3).plan(RolloutOptions(groups=(("s1", "s9"), ("s8",))))


def test_groups_listing_a_server_twice_are_refused() -> None:
    with pytest.raises(PlanError, match="lists s1 more than once"):
        _sim(3).plan(RolloutOptions(groups=(("s1",), ("s2", "s1"))))
    with pytest.raises(PlanError, match="lists s2 more than once"):
        _sim(3).plan(RolloutOptions(groups=(("s2", "s2"),)))


def test_servers_left_out_of_groups_are_noted_and_not_updated() -> None:
    plan = _sim(4).plan(RolloutOptions(groups=(("s2",), ("s1",))))
    assert plan.batches == (("s2",), ("s1",))
    assert plan.targets == ("s2", "s1")
    assert any("not in --groups, not updated: s3, s4" in n for n in plan.notes)


def test_groups_naming_a_disabled_server_are_refused_or_exclude_it() -> None:
    sim = _sim(4, disabled={3: AdminState.MAINT})
    options = RolloutOptions(groups=(("s1",), ("s2", "s3"), ("s4",)), max_unavailable=2)
    refusal = ""
    try:
        plan: Plan | None = sim.plan(options)
    except PlanError as exc:  # refusing is a fine fix too
        refusal, plan = str(exc), None
    if plan is None:
        assert "s3" in refusal
        return
    assert "s3" not in plan.targets or "s3" not in plan.skipped
    result = sim.run(plan)
    assert result.status == "completed", result.message


# -- capacity and disabled servers ------------------------------------------------------------


def test_disabled_servers_are_skipped_with_a_note_and_count_as_out_of_service() -> None:
    sim = _sim(5, disabled={2: AdminState.MAINT, 4: AdminState.DRAIN})
    with pytest.raises(PlanError, match=r"3 of 5 servers.*s2, s4 already out of service"):
        sim.plan(RolloutOptions())
    plan = sim.plan(RolloutOptions(max_unavailable=3))
    assert plan.targets == ("s1", "s3", "s5")
    assert plan.skipped == ("s2", "s4")
    assert any(n.startswith("s2 is in maint and is skipped") for n in plan.notes)
    assert any(n.startswith("s4 is in drain and is skipped") for n in plan.notes)


def test_include_disabled_updates_them_too() -> None:
    sim = _sim(4, disabled={2: AdminState.MAINT})
    plan = sim.plan(RolloutOptions(include_disabled=True, max_unavailable=2))
    assert plan.targets == ("s1", "s2", "s3", "s4")
    assert plan.skipped == ()
    assert plan.servers["s2"].admin_state is AdminState.MAINT


def test_servers_already_down_count_against_max_unavailable() -> None:
    sim = _sim(4, down=(3,))
    with pytest.raises(PlanError, match=r"batch 1 would leave 2 of 4 .*s3 already out.*"
                                         r"--max-unavailable 1"):
        sim.plan(RolloutOptions())
    plan = sim.plan(RolloutOptions(max_unavailable=2))
    assert not plan.servers["s3"].available
    assert plan.servers["s1"].available
    assert "s3" in plan.targets  # a DOWN server in ready is updated (it may fix it)


def test_a_batch_may_never_take_every_server_out() -> None:
    with pytest.raises(PlanError, match="every server"):
        _sim(2).plan(RolloutOptions(batch_size=2))
    with pytest.raises(PlanError, match="every server"):
        _sim(3, down=(3,)).plan(RolloutOptions(batch_size=2, max_unavailable=5))


def test_no_servers_and_no_candidates_are_refused() -> None:
    options = RolloutOptions(allow_version_flips=True)
    with pytest.raises(PlanError, match="has no servers"):
        make_plan(BACKEND, [], backend_stat(), [], options)
    with pytest.raises(PlanError, match="no server to update"):
        _sim(2, disabled={1: AdminState.MAINT, 2: AdminState.DRAIN}).plan(options)


# -- strategies and persistence ---------------------------------------------------------------


def test_halves_splits_in_two_and_needs_two_servers() -> None:
    assert _sim(5, cookie=None).plan(RolloutOptions(strategy="halves")).batches == (
        ("s1", "s2", "s3"), ("s4", "s5"))
    assert _sim(2, cookie=None).plan(RolloutOptions(strategy="halves")).batches == (
        ("s1",), ("s2",))
    with pytest.raises(PlanError, match="at least 2 servers, found 1"):
        _sim(2, disabled={2: AdminState.MAINT}, cookie=None).plan(
            RolloutOptions(strategy="halves"))


def test_rolling_without_persistence_is_refused_unless_flips_are_allowed() -> None:
    sim = _sim(3, cookie=None)
    with pytest.raises(PlanError, match="--strategy halves"):
        sim.plan(RolloutOptions())
    assert sim.plan(RolloutOptions(allow_version_flips=True)).persistence == "none"
    assert sim.plan(RolloutOptions(strategy="halves")).persistence == "none"
    # explicit persistence overrides detection, both ways
    assert sim.plan(RolloutOptions(), persistence="cookie").persistence == "cookie"
    with pytest.raises(PlanError, match="no cookie or stick-table persistence"):
        _sim(3).plan(RolloutOptions(), persistence="none")


def test_stick_table_named_after_the_backend_is_persistence_and_rebalanced() -> None:
    plan = _sim(3, cookie=None, table=True).plan(RolloutOptions())
    assert (plan.persistence, plan.rebalance_table) == ("stick-table", BACKEND)
    plan = _sim(3, table=True).plan(RolloutOptions(rebalance=False))
    assert (plan.persistence, plan.rebalance_table) == ("cookie+stick-table", None)
    servers = _sim(3, cookie=None).snapshot_result()[1]
    other = make_plan(BACKEND, servers, backend_stat(cookie=None),
                      [TableInfo("other", "ip", 10, 0)], RolloutOptions(allow_version_flips=True))
    assert (other.persistence, other.rebalance_table) == ("none", None)


CONFIG = """\
defaults
    mode http
    option persist
backend app
    balance roundrobin
    cookie SRV prefix
    server s1 127.0.0.1:8001 cookie s1
"""


def test_config_findings_refuse_option_persist_and_note_cookie_prefix() -> None:
    findings = check_backend(CONFIG, BACKEND)
    servers = _sim(3).snapshot_result()[1]
    with pytest.raises(PlanError, match=r"defeats maint.*line 3 \(defaults\)"):
        make_plan(BACKEND, servers, backend_stat(cookie="SRV"), [], RolloutOptions(),
                  config_findings=findings)
    fixed = check_backend(CONFIG.replace("option persist", "option redispatch"), BACKEND)
    plan = make_plan(BACKEND, servers, backend_stat(cookie="SRV"), [], RolloutOptions(),
                     config_findings=fixed)
    assert any(n.startswith("configuration line 6 (backend app):") and "prefix" in n
               for n in plan.notes), plan.notes


@pytest.mark.parametrize("algo", ["static-rr", "source", "uri", "url_param", "hdr",
                                  "rdp-cookie", "hash"])
def test_ramp_is_refused_on_static_algorithms(algo: str) -> None:
    with pytest.raises(PlanError, match=f"uses {algo}"):
        _sim(3, algo=algo).plan(RolloutOptions(ramp=10))
    assert _sim(3, algo=algo).plan(RolloutOptions()).options.ramp == 0


def test_ramp_is_accepted_on_dynamic_algorithms() -> None:
    assert _sim(3, algo="leastconn").plan(RolloutOptions(ramp=10)).options.ramp == 10


def test_unchecked_servers_get_a_settle_note() -> None:
    servers = make_servers(3)
    servers[1].checks = False
    plan = SimHAProxy(servers).plan(RolloutOptions(settle=7))
    assert not plan.servers["s2"].has_checks
    assert plan.servers["s1"].has_checks
    assert any("no health check on s2" in n and "7s" in n for n in plan.notes)


def test_snapshot_of_a_server_with_checks_disabled_has_no_checks() -> None:
    (server,) = servers_from_text(
        [stat_row(name="s1", sid=1, status="no check", weight=3)],
        [state_row(name="s1", sid=1, weight=3, iweight=5, check_state=2)])
    snap = ServerSnapshot.of(server)
    assert (snap.has_checks, snap.available, snap.weight, snap.initial_weight) == (
        False, True, 3, 5)
    assert ServerSnapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap


# -- serialisation ----------------------------------------------------------------------------


@given(n=st.integers(2, 8), strategy=st.sampled_from(["rolling", "halves"]),
       grouping=st.sampled_from(["none", "size", "percent", "groups"]),
       kill=st.booleans(), ramp=st.sampled_from([0.0, 2.5]), table=st.booleans(),
       disabled=st.booleans(), weights=st.lists(st.integers(0, 256), min_size=8, max_size=8))
def test_plan_round_trips_through_json(n: int, strategy: str, grouping: str, kill: bool,
                                       ramp: float, table: bool, disabled: bool,
                                       weights: list[int]) -> None:
    servers = make_servers(n)
    for s, w in zip(servers, weights, strict=False):
        s.weight = s.iweight = w
    if disabled:
        servers[-1].admin = AdminState.DRAIN
    kw: dict[str, object] = {}
    if strategy == "rolling":
        if grouping == "size":
            kw["batch_size"] = 1
        elif grouping == "percent":
            kw["percent"] = 12.5
        elif grouping == "groups":
            kw["groups"] = tuple((s.name,) for s in servers[:-1])
    options = RolloutOptions(strategy=strategy,  # type: ignore[arg-type]
                             kill_after=3.0 if kill else None, ramp=ramp, max_unavailable=n,
                             **kw)  # type: ignore[arg-type]
    try:
        plan = SimHAProxy(servers, table=table).plan(options)
    except PlanError:
        return
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    assert again.to_dict() == plan.to_dict()


def test_weight_to_restore_is_the_weight_before_the_rollout() -> None:
    servers = make_servers(3)
    servers[0].weight, servers[0].iweight = 7, 20
    plan = SimHAProxy(servers).plan(RolloutOptions())
    assert plan.weight("s1") == 7


@given(st.integers(0, 256))
def test_ramp_weights_climb_to_the_weight_and_never_reach_zero(weight: int) -> None:
    steps = ramp_weights(weight)
    assert len(steps) == 4
    assert steps == sorted(steps)
    assert steps[-1] == weight
    if weight:
        assert min(steps) >= 1  # a positive weight never ramps through "no traffic"
    else:
        assert steps == [0, 0, 0, 0]  # a server with weight 0 stays without traffic


def test_ramp_weights_example() -> None:
    assert ramp_weights(100) == [25, 50, 75, 100]
    assert ramp_weights(3) == [1, 2, 3, 3]


# -- dry run ----------------------------------------------------------------------------------


def _flat(plan: Plan) -> list[str]:
    return [c.line for _, commands in plan.commands() for c in commands
            if " weight " not in c.line]


def _state_lines(sim: SimHAProxy) -> list[str]:
    """What the flow sent, but weights (temporary steering weights are decided at run time
    from the measured load; the dry run says so) and stick-table re-pins."""
    return [c.line for send in sim.sends for c in send.commands
            if " weight " not in c.line and not c.line.startswith(("set table", "clear table"))]


def test_dry_run_lists_each_step_with_labels() -> None:
    plan = _sim(3).plan(RolloutOptions(kill_after=5))
    labels = [label for label, _ in plan.commands()]
    # cookie persistence: where the batch's users go is decided at run time
    assert labels[0].startswith("batch 1/3: measure the load, then set temporary weights")
    assert labels[1].startswith("batch 1/3: drain")
    assert labels[2].startswith("batch 1/3: maint")
    assert labels[3].startswith("batch 1/3: if sessions remain after 5s")
    assert labels[-1].startswith("end: even out the users: short maint pulses")
    assert _flat(plan)[:3] == ["set server app/s1 state drain", "set server app/s1 state maint",
                               "shutdown sessions server app/s1"]


def _servers(n: int, pattern: int, weights: list[int], *, same_phase: bool) -> list[SimServer]:
    servers = make_servers(n, check_phase=0.5 if same_phase else None)
    for i, (s, w) in enumerate(zip(servers, weights, strict=False)):
        s.checks = bool(pattern >> i & 1)
        s.weight = s.iweight = w
    return servers


@settings(max_examples=50)
@given(n=st.integers(2, 6), size=st.integers(1, 5), checks=st.booleans(),
       halves=st.booleans(), table=st.booleans(),
       weights=st.lists(st.integers(1, 256), min_size=6, max_size=6))
def test_dry_run_is_exactly_what_the_flow_sends_on_the_happy_path(
        n: int, size: int, checks: bool, halves: bool, table: bool, weights: list[int]) -> None:
    # Servers of a batch become healthy at the same poll, so the flow readies them together.
    servers = _servers(n, -1 if checks else 0, weights, same_phase=True)
    sim = SimHAProxy(servers, cookie=None if halves else "SRV", table=table)
    options = (RolloutOptions(strategy="halves", settle=1) if halves
               else RolloutOptions(batch_size=min(size, n - 1), settle=1))
    plan = sim.plan(options)
    result = sim.run(plan)
    assert result.status == "completed", result.message
    assert _state_lines(sim) == _flat(plan)
    assert all(s.weight == plan.weight(n) for n, s in sim.servers.items())


@settings(max_examples=50)
@given(n=st.integers(2, 6), size=st.integers(1, 5), pattern=st.integers(0, 63),
       weights=st.lists(st.integers(1, 256), min_size=6, max_size=6))
def test_dry_run_matches_the_flow_per_server_when_servers_become_healthy_apart(
        n: int, size: int, pattern: int, weights: list[int]) -> None:
    # Each server is readied as soon as it is healthy: across servers the order of the 'ready'
    # writes follows the checks, but each server gets exactly the dry run's lines, in order.
    sim = SimHAProxy(_servers(n, pattern, weights, same_phase=False))
    plan = sim.plan(RolloutOptions(batch_size=min(size, n - 1), settle=1))
    assert sim.run(plan).status == "completed"
    sent = _state_lines(sim)
    assert sorted(sent) == sorted(_flat(plan))
    for name in plan.targets:
        mine = [line for line in sent if f"app/{name} " in line]
        assert mine == [line for line in _flat(plan) if f"app/{name} " in line]


def test_dry_run_with_ramp_lists_every_command_the_flow_sends() -> None:
    sim = _sim(3)
    plan = sim.plan(RolloutOptions(ramp=3))
    assert sim.run(plan).status == "completed"
    assert _state_lines(sim) == _flat(plan)
    ramps = [c.line for s in sim.sends if s.label == "ramp weight" for c in s.commands]
    assert ramps == [c.line for label, commands in plan.commands() if "ramp step" in label
                     for c in commands]


# -- the balance command's plan -----------------------------------------------------------------


def _balance_plan(sim: SimHAProxy) -> Plan:
    _, servers = sim.snapshot_result()
    tables = [TableInfo(BACKEND, "ip", 1024, 0)] if sim.has_table else []
    return balance_plan(BACKEND, servers, backend_stat(cookie=sim.cookie), tables,
                        tolerance=0.05, timeout=30.0)


def test_balance_plan_has_no_batches_and_moves_users_by_the_persistence() -> None:
    stick = _balance_plan(_sim(4, cookie=None, table=True, disabled={3: AdminState.DRAIN}))
    assert (stick.batches, stick.moves_users, stick.rebalance_table) == ((), "stick", BACKEND)
    assert stick.skipped == ("s3",)  # not ready: a pulse's steering leaves it alone
    assert (stick.options.balance_tolerance, stick.options.balance_timeout) == (0.05, 30.0)
    cookie = _balance_plan(_sim(4))
    assert (cookie.moves_users, cookie.rebalance_table) == ("cookie", None)


def test_balance_plan_refuses_a_backend_without_persistence() -> None:
    with pytest.raises(PlanError, match="no cookie or stick-table persistence"):
        _balance_plan(_sim(4, cookie=None))
