"""The waits (drained, up, any predicate) against a real HAProxy, with real traffic."""

from __future__ import annotations

import signal
import time

import pytest
from conftest import APP, InFlight, Rig, Wire, assert_cut_off, raw_stat, slow_requests

from haproxyctl import (
    Client,
    ServerStat,
    StateError,
    WaitProgress,
    WaitTimeout,
)

pytestmark = pytest.mark.integration


def _stat_command(rig: Rig, server: str) -> str:
    base = rig.baseline[(APP, server)]
    return f"show stat {base['be_id']} 4 {base['srv_id']}"


@pytest.mark.parametrize("state", ["drain", "maint"])
def test_wait_drained_returns_once_requests_in_flight_finish(client: Client, rig: Rig,
                                                             state: str) -> None:
    (request,) = slow_requests(rig, "s1", 1.5)
    client.set_state(f"{APP}/s1", state)
    seen: list[WaitProgress[ServerStat]] = []
    start = time.monotonic()

    result = client.wait_drained(f"{APP}/s1", timeout=10, interval=0.1, on_progress=seen.append)

    assert 0.5 < time.monotonic() - start < 5
    assert (result.condition, result.target) == ("drained", f"{APP}/s1")
    assert (result.observation.scur, result.observation.qcur) == (0, 0)
    assert result.observation.status == state.upper()
    assert result.polls == len(seen) >= 3
    assert seen[0].observation.scur == 1  # the request was in flight at first
    assert seen[-1].observation is result.observation
    assert [p.polls for p in seen] == list(range(1, len(seen) + 1))
    assert all(p.condition == "drained" and p.timeout == 10 for p in seen)
    assert seen[-1].elapsed == pytest.approx(result.elapsed)
    request.join()
    assert request.status == 200  # neither drain nor maint kills a request in flight


def test_wait_drained_polls_only_that_server(client: Client, rig: Rig, wire: Wire) -> None:
    (request,) = slow_requests(rig, "s2", 1.0)
    client.set_state(f"{APP}/s2", "drain")
    client.version()
    wire.clear()

    result = client.wait_drained(f"{APP}/s2", timeout=10, interval=0.05)

    lines = wire.commands()
    poll = _stat_command(rig, "s2")
    # The state check up front, then one `show stat <iid> 4 <sid>` row per poll.
    assert lines[0] == f"show servers state {APP}"
    assert set(lines[1:]) == {poll}
    assert len(lines[1:]) == result.polls + 1  # +1: the row read with the state check
    per_reply = wire.bytes_received / len(wire.lines())  # at most a CSV header and one row
    whole_stat = len(rig.raw("show stat"))
    assert per_reply < 3000 < whole_stat, (per_reply, whole_stat)
    request.join()


def test_wait_drained_refuses_a_server_in_service_at_once(client: Client) -> None:
    start = time.monotonic()
    with pytest.raises(StateError) as caught:
        client.wait_drained(f"{APP}/s1", timeout=30)
    assert time.monotonic() - start < 1
    assert (caught.value.target, caught.value.state) == (f"{APP}/s1", "ready")
    assert "set it to drain or maint first" in str(caught.value)


def test_wait_drained_stops_when_the_server_is_put_back(client: Client, rig: Rig) -> None:
    (request,) = slow_requests(rig, "s3", 1.0)
    client.set_state(f"{APP}/s3", "drain")
    polls: list[int] = []

    def put_back_after_first_poll(p: WaitProgress[ServerStat]) -> None:
        polls.append(p.polls)
        if p.polls == 1:
            rig.raw(f"set server {APP}/s3 state ready")

    with pytest.raises(StateError, match="put back in service"):
        client.wait_drained(f"{APP}/s3", timeout=10, interval=0.05,
                            on_progress=put_back_after_first_poll)
    assert polls == [1]
    request.join()


def test_wait_drained_times_out_with_the_last_observation(client: Client, rig: Rig) -> None:
    (request,) = slow_requests(rig, "s1", 3.0)
    client.set_state(f"{APP}/s1", "maint")
    start = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        client.wait_drained(f"{APP}/s1", timeout=0.5, interval=0.1)
    assert 0.5 <= time.monotonic() - start < 1.5
    err = caught.value
    assert (err.condition, err.timeout, err.exit_code) == ("drained", 0.5, 4)
    assert isinstance(err.last, ServerStat)
    assert (err.last.name, err.last.scur, err.last.status) == ("s1", 1, "MAINT")
    assert "not drained after 0.5s" in str(err)
    assert "scur=1" in str(err)

    client.shutdown_sessions(f"{APP}/s1")
    request.join(timeout=5)
    assert_cut_off(rig, request)
    rig.lab.replace_app(APP, "s1", "v1", sig=signal.SIGKILL)  # still sleeping on it


def test_wait_up_after_maint_then_drain(client: Client, rig: Rig) -> None:
    client.set_state(f"{APP}/s2", "maint")
    client.set_state(f"{APP}/s2", "drain")
    seen: list[WaitProgress[ServerStat]] = []

    result = client.wait_up(f"{APP}/s2", timeout=10, interval=0.05, on_progress=seen.append)

    s = result.observation
    assert (s.status, s.check_status, s.check_health) == ("DRAIN", "L7OK", 3)
    assert s.fully_healthy is True
    # Leaving maint is optimistic: health starts at rise, one check short of full health.
    assert seen[0].observation.status == "DRAIN 1/2"
    assert seen[0].observation.fully_healthy is False
    assert len(seen) >= 2
    assert result.elapsed < 5


def test_wait_up_times_out_when_the_app_is_unhealthy(client: Client, rig: Rig) -> None:
    rig.lab.set_healthy(APP, "s3", False)
    client.set_state(f"{APP}/s3", "maint")
    client.set_state(f"{APP}/s3", "drain")
    with pytest.raises(WaitTimeout) as caught:
        client.wait_up(f"{APP}/s3", timeout=1.5, interval=0.1)
    last = caught.value.last
    assert isinstance(last, ServerStat)
    assert last.status == "DOWN"
    assert last.check_status == "L7STS"
    assert caught.value.condition == "up"


def test_wait_up_refuses_a_server_in_maint(client: Client) -> None:
    client.set_state(f"{APP}/s1", "maint")
    start = time.monotonic()
    with pytest.raises(StateError) as caught:
        client.wait_up(f"{APP}/s1", timeout=30)
    assert time.monotonic() - start < 1
    assert caught.value.state == "maint"


def test_wait_up_on_a_server_without_checks_returns_at_once(client: Client) -> None:
    result = client.wait_up("bk100/s1", timeout=5)
    assert (result.polls, result.observation.status) == (1, "no check")


def test_wait_until_a_custom_predicate(client: Client, rig: Rig) -> None:
    served_before = int(raw_stat(rig.lab, APP, "s2")["stot"])
    request = InFlight(rig.lab.frontend_port(APP), "/slow?s=0.5", cookie="s2")
    result = client.wait_until(f"{APP}/s2", lambda s: s.stot > served_before and s.scur == 0,
                               timeout=10, interval=0.05, condition="done serving")
    assert result.condition == "done serving"
    assert (result.observation.stot, result.observation.scur) == (served_before + 1, 0)
    assert result.polls >= 2  # the request took a while
    request.join()
    assert request.status == 200

    with pytest.raises(WaitTimeout, match="not weightless"):
        client.wait_until(f"{APP}/s2", lambda s: s.weight == 0, timeout=0.2, interval=0.05,
                          condition="weightless")
