"""poll_until with a fake clock and a fake sleep: no real time passes in these tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxyctl.errors import StateError, WaitTimeout
from haproxyctl.wait import MIN_INTERVAL, WaitProgress, poll_until


class FakeTime:
    """A clock that only moves when slept on (plus an optional cost per read)."""

    def __init__(self, start: float = 1000.0, read_cost: float = 0.0) -> None:
        self.now = start
        self.start = start
        self.read_cost = read_cost
        self.sleeps: list[float] = []
        #: (time the sleep started, time it ended)
        self.slept: list[tuple[float, float]] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        # A zero sleep would be a busy loop (and, with this clock, an endless one).
        assert seconds > 0, "slept for 0 s"
        assert len(self.sleeps) < 100_000, "endless polling"
        self.sleeps.append(seconds)
        self.slept.append((self.now, self.now + seconds))
        self.now += seconds

    def reader(self, values: list[int]) -> Callable[[], int]:
        """Returns successive values (the last one forever); each read costs ``read_cost``."""
        it = iter(values)
        last = values[-1]

        def read() -> int:
            nonlocal last
            self.now += self.read_cost
            last = next(it, last)
            return last

        return read


def test_returns_on_first_success() -> None:
    t = FakeTime()
    result = poll_until(t.reader([0]), lambda v: v == 0, condition="drained", target="be/s1",
                        timeout=10, clock=t.clock, sleep=t.sleep)
    assert (result.observation, result.polls, result.elapsed) == (0, 1, 0.0)
    assert (result.condition, result.target) == ("drained", "be/s1")
    assert t.sleeps == []


def test_polls_until_the_predicate_holds() -> None:
    t = FakeTime()
    result = poll_until(t.reader([3, 2, 1, 0]), lambda v: v == 0, condition="drained",
                        target="be/s1", timeout=10, interval=0.5, clock=t.clock, sleep=t.sleep)
    assert result.polls == 4
    assert result.observation == 0
    assert result.elapsed == pytest.approx(1.5)
    assert t.sleeps == [0.5, 0.5, 0.5]


def test_timeout_reports_target_condition_and_last_observation() -> None:
    t = FakeTime()
    with pytest.raises(WaitTimeout) as info:
        poll_until(t.reader([5, 4, 3]), lambda v: v == 0, condition="drained", target="be/s1",
                   timeout=2, interval=0.5, clock=t.clock, sleep=t.sleep,
                   describe=lambda v: f"scur={v}", address="unix:/run/haproxy/admin.sock")
    exc = info.value
    assert exc.last == 3
    assert exc.condition == "drained"
    assert exc.timeout == 2
    assert exc.address == "unix:/run/haproxy/admin.sock"
    assert exc.exit_code == 4
    assert isinstance(exc, TimeoutError)
    message = str(exc)
    assert "be/s1" in message
    assert "drained" in message
    assert "scur=3" in message
    assert "2s" in message
    # Polls at 0, 0.5, 1.0, 1.5, 2.0: the last one exactly at the deadline.
    assert "5 polls" in message
    assert t.now - t.start == pytest.approx(2.0)


def test_never_sleeps_past_the_deadline() -> None:
    t = FakeTime()
    with pytest.raises(WaitTimeout):
        poll_until(t.reader([1]), lambda v: False, condition="up", target="be/s1", timeout=1.2,
                   interval=0.5, clock=t.clock, sleep=t.sleep)
    assert t.sleeps == pytest.approx([0.5, 0.5, 0.2])
    assert t.now - t.start == pytest.approx(1.2)


@given(
    timeout=st.floats(min_value=0, max_value=5, allow_nan=False),
    interval=st.floats(min_value=0, max_value=10, allow_nan=False),
    read_cost=st.floats(min_value=0, max_value=3, allow_nan=False),
)
def test_deadline_properties(timeout: float, interval: float, read_cost: float) -> None:
    t = FakeTime(read_cost=read_cost)
    progress: list[WaitProgress[int]] = []
    with pytest.raises(WaitTimeout) as info:
        poll_until(t.reader([1]), lambda v: False, condition="up", target="b/s",
                   timeout=timeout, interval=interval, clock=t.clock, sleep=t.sleep,
                   on_progress=progress.append)
    deadline = t.start + timeout
    for begin, end in t.slept:
        assert end <= deadline + 1e-9, "slept past the deadline"
        assert end - begin <= max(interval, MIN_INTERVAL) + 1e-9
    # Only the last read may run past the deadline.
    assert t.now <= deadline + read_cost + 1e-9
    # The last poll was made at or after the deadline, and every poll reported progress.
    assert progress[-1].elapsed >= timeout - 1e-9  # (float rounding of now - start)
    assert len(progress) == len(t.sleeps) + 1
    assert f"({len(progress)} polls)" in str(info.value)
    assert [p.polls for p in progress] == list(range(1, len(progress) + 1))
    assert all(p.remaining >= 0 for p in progress)


def test_interval_floor() -> None:
    t = FakeTime()
    with pytest.raises(WaitTimeout):
        poll_until(t.reader([1]), lambda v: False, condition="up", target="b/s", timeout=0.05,
                   interval=0, clock=t.clock, sleep=t.sleep)
    assert t.sleeps
    assert all(s == pytest.approx(MIN_INTERVAL) for s in t.sleeps[:-1])
    assert len(t.sleeps) == 5  # 0.05 s / 0.01 s


def test_zero_timeout_polls_once() -> None:
    t = FakeTime()
    with pytest.raises(WaitTimeout) as info:
        poll_until(t.reader([7]), lambda v: False, condition="up", target="b/s", timeout=0,
                   clock=t.clock, sleep=t.sleep)
    assert info.value.last == 7
    assert t.sleeps == []
    ok = poll_until(t.reader([7]), lambda v: True, condition="up", target="b/s", timeout=0,
                    clock=t.clock, sleep=t.sleep)
    assert ok.polls == 1


def test_negative_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        poll_until(lambda: 1, lambda v: True, condition="up", target="b/s", timeout=-1)


def test_check_stops_immediately() -> None:
    t = FakeTime()
    reads: list[int] = []

    def read() -> int:
        reads.append(len(reads))
        return len(reads)

    def check(value: int) -> None:
        if value == 2:
            raise StateError("put back in service", target="b/s", state="UP")

    progress: list[WaitProgress[int]] = []
    with pytest.raises(StateError, match="put back in service"):
        poll_until(read, lambda v: False, condition="drained", target="b/s", timeout=100,
                   interval=1, check=check, on_progress=progress.append, clock=t.clock,
                   sleep=t.sleep)
    assert len(reads) == 2
    assert t.sleeps == [1]
    assert len(progress) == 1  # the failing observation is not reported as progress


def test_check_runs_before_the_predicate() -> None:
    t = FakeTime()

    def check(value: int) -> None:
        raise StateError("never", target="b/s", state="x")

    with pytest.raises(StateError):
        poll_until(t.reader([0]), lambda v: True, condition="c", target="b/s", timeout=1,
                   check=check, clock=t.clock, sleep=t.sleep)


def test_on_progress_reports_every_poll() -> None:
    t = FakeTime()
    progress: list[WaitProgress[int]] = []
    poll_until(t.reader([3, 2, 1, 0]), lambda v: v == 0, condition="drained", target="be/s1",
               timeout=10, interval=2, on_progress=progress.append, clock=t.clock,
               sleep=t.sleep)
    assert [(p.observation, p.polls, p.elapsed, p.remaining) for p in progress] == [
        (3, 1, 0.0, 10.0), (2, 2, 2.0, 8.0), (1, 3, 4.0, 6.0), (0, 4, 6.0, 4.0)]
    assert all((p.condition, p.target, p.timeout) == ("drained", "be/s1", 10) for p in progress)


def test_remaining_never_negative() -> None:
    p = WaitProgress("c", "t", 0, elapsed=12.0, timeout=10.0, polls=3)
    assert p.remaining == 0.0
