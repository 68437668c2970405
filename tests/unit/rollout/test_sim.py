"""The simulator itself must behave like HAProxy 2.6 where the flow relies on it
(``shared/haproxy-runtime-api.md`` §3.3-3.4, §5): otherwise the flow tests prove nothing."""

from __future__ import annotations

from haproxyctl import commands as cmd
from haproxyctl.models.state import AdminState, OpState
from haproxyctl.protocol.encode import ServerRef

from .sim import (
    BACKEND,
    SimHAProxy,
    SimServer,
    make_servers,
    servers_from_text,
    stat_row,
    state_row,
)


def _ref(name: str) -> ServerRef:
    return ServerRef(BACKEND, name)


def test_rows_parse_through_the_real_parsers_with_decimal_admin_bits() -> None:
    rows = [stat_row(name="s1", sid=1, status="DRAIN", weight=5, scur=3, qcur=1, stot=9,
                     check=("L7OK", 2, 2, 3)),
            stat_row(name="s2", sid=2, status="MAINT", weight=5)]
    states = [state_row(name="s1", sid=1, admin=8, weight=5),
              state_row(name="s2", sid=2, admin=1, op=0, weight=5, check_state=14)]
    s1, s2 = servers_from_text(rows, states)
    assert (s1.admin_state, s1.scur, s1.qcur, s1.stot, s1.weight) == (
        AdminState.DRAIN, 3, 1, 9, 5)
    assert s1.fully_healthy is True
    assert s1.up
    assert s1.op_state is OpState.RUNNING
    assert s2.admin_state is AdminState.MAINT
    assert not s2.up
    assert s2.fully_healthy is None  # check columns are empty in maint


def test_leaving_maint_is_optimistic_and_health_down_needs_rise_passes() -> None:
    srv = SimServer(name="s1", sid=1, rise=3, fall=1, inter=2.0)
    sim = SimHAProxy([srv, SimServer(name="s2", sid=2)])
    sim.apply(cmd.set_state(_ref("s1"), "maint"))
    assert sim.stats(["s1"])[0].status == "MAINT"
    sim.apply(cmd.set_state(_ref("s1"), "drain"))
    # rise 3 fall 1: health = rise = max at once, no check ran (reference §3.4)
    (stat,) = sim.stats(["s1"])
    assert (stat.status, stat.fully_healthy) == ("DRAIN", True)
    sim.apply(cmd.set_health(_ref("s1"), "down"))
    t0 = sim.now
    assert sim.stats(["s1"])[0].status == "DOWN"
    while not sim.stats(["s1"])[0].fully_healthy:
        sim.advance(0.1)
    # three passes at 2 s intervals: between 2*inter and 3*inter after the forced down
    assert 4.0 - 1e-6 <= sim.now - t0 <= 6.0 + 1e-6
    assert srv.fresh_passes >= 3


def test_checks_fail_until_the_new_version_booted_and_fall_brings_it_down() -> None:
    srv = SimServer(name="s1", sid=1, rise=2, fall=2, inter=1.0)
    sim = SimHAProxy([srv, SimServer(name="s2", sid=2)])
    srv.app_ok_from = sim.now + 100
    sim.advance(1.5)
    assert sim.stats(["s1"])[0].status == "UP 1/2"
    sim.advance(1.0)
    assert sim.stats(["s1"])[0].status == "DOWN"
    assert not srv.available


def test_sessions_and_queue_in_maint_end_after_their_time_and_shutdown_kills_them() -> None:
    srv = SimServer(name="s1", sid=1, inflight=(2, 3.0), queued=(1, 1.0))
    never = SimServer(name="s2", sid=2, inflight=(1, float("inf")))
    sim = SimHAProxy([srv, never, SimServer(name="s3", sid=3)])
    sim.apply(cmd.set_state(_ref("s1"), "maint"))
    sim.apply(cmd.set_state(_ref("s2"), "maint"))
    a, b = sim.stats(["s1", "s2"])
    assert (a.scur, a.qcur, b.scur) == (2, 1, 1)
    sim.advance(1.5)
    assert (sim.stats(["s1"])[0].scur, sim.stats(["s1"])[0].qcur) == (2, 0)
    sim.advance(2.0)
    assert sim.stats(["s1"])[0].drained
    sim.advance(1000.0)
    assert sim.stats(["s2"])[0].scur == 1
    sim.apply(cmd.shutdown_sessions(_ref("s2")))
    assert sim.stats(["s2"])[0].drained
    assert never.kills == 1


def test_pinned_users_arrive_only_while_draining() -> None:
    srv = SimServer(name="s1", sid=1, drain_arrivals=(0.5, 1.0, 5.0), pinned_session=0.2)
    sim = SimHAProxy([srv, SimServer(name="s2", sid=2)])
    sim.advance(2.0)
    assert sim.stats(["s1"])[0].stot == 0  # ready: the script is about pinned users in drain
    sim.apply(cmd.set_state(_ref("s1"), "drain"))
    sim.advance(0.6)
    assert (sim.stats(["s1"])[0].stot, sim.stats(["s1"])[0].scur) == (1, 1)
    sim.advance(0.5)
    assert (sim.stats(["s1"])[0].stot, sim.stats(["s1"])[0].scur) == (2, 1)
    sim.apply(cmd.set_state(_ref("s1"), "maint"))
    sim.advance(10.0)
    assert sim.stats(["s1"])[0].stot == 2  # maint: the 5 s arrival was redispatched


def test_invariants_are_detected() -> None:
    sim = SimHAProxy(make_servers(3))
    sim.max_unavailable = 1
    sim.apply(cmd.set_state(_ref("s1"), "drain"))
    assert sim.violations == []
    sim.apply(cmd.set_state(_ref("s2"), "maint"))
    assert len(sim.violations) == 1
    assert "max_unavailable 1" in sim.violations[0]
    sim.apply(cmd.set_state(_ref("s3"), "maint"))
    assert any("no server in service" in v for v in sim.violations)


def test_ready_right_after_an_update_without_fresh_checks_is_a_violation() -> None:
    sim = SimHAProxy(make_servers(3, rise=2, fall=1))
    sim.apply(cmd.set_state(_ref("s1"), "maint"))
    sim.servers["s1"].version = 2
    sim.servers["s1"].fresh_passes = 0
    sim.servers["s1"].fresh_update = True
    sim.apply(cmd.set_state(_ref("s1"), "ready"))  # optimistic health = rise = max
    assert any("s1 set ready" in v for v in sim.violations)
