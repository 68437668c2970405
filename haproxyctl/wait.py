"""Waiting for a server condition: drained, up, or any predicate, with a deadline.

The loop itself (:func:`poll_until`) knows nothing about HAProxy: it calls ``read`` for an
observation, ``check`` to fail early on a state that can never lead to success, ``predicate`` to
stop, and reports progress. Clock and sleep are parameters, so it is tested without real time.

What each wait reads is chosen so polling stays cheap on configurations with 10,000 servers: one
``show stat <backend-id> 4 <server-id>`` row per poll (a few hundred bytes), never the full table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs

from haproxyctl.errors import WaitTimeout

__all__ = ["DEFAULT_INTERVAL", "WaitProgress", "WaitResult", "poll_until"]

T = TypeVar("T")

#: Seconds between polls unless told otherwise: fast enough for interactive use, and one row per
#: poll is nothing for HAProxy.
DEFAULT_INTERVAL = 0.5
MIN_INTERVAL = 0.01


@attrs.frozen
class WaitProgress(Generic[T]):
    """Passed to ``on_progress`` after every observation."""

    condition: str
    target: str
    observation: T
    elapsed: float
    timeout: float
    polls: int

    @property
    def remaining(self) -> float:
        return max(self.timeout - self.elapsed, 0.0)


@attrs.frozen
class WaitResult(Generic[T]):
    """What a successful wait returns: the observation that satisfied the condition."""

    condition: str
    target: str
    observation: T
    elapsed: float
    polls: int


def poll_until(
    read: Callable[[], T],
    predicate: Callable[[T], bool],
    *,
    condition: str,
    target: str,
    timeout: float,
    interval: float = DEFAULT_INTERVAL,
    check: Callable[[T], None] | None = None,
    on_progress: Callable[[WaitProgress[T]], None] | None = None,
    describe: Callable[[T], str] = repr,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    address: str | None = None,
) -> WaitResult[T]:
    """Observe with ``read`` until ``predicate`` holds; raise WaitTimeout after ``timeout`` s.

    ``check`` may raise to stop early when the observation shows the condition cannot be met.
    The first observation is made at once; the last one at or just before the deadline.
    """
    if timeout < 0:
        raise ValueError("timeout must be >= 0")
    interval = max(interval, MIN_INTERVAL)
    start = clock()
    deadline = start + timeout
    polls = 0
    while True:
        observation = read()
        polls += 1
        now = clock()
        if check is not None:
            check(observation)
        if on_progress is not None:
            on_progress(WaitProgress(condition, target, observation, now - start, timeout, polls))
        if predicate(observation):
            return WaitResult(condition, target, observation, now - start, polls)
        if now >= deadline:
            raise WaitTimeout(
                f"{target}: not {condition} after {timeout:g}s ({polls} polls); "
                f"last seen: {describe(observation)}",
                timeout=timeout, condition=condition, last=observation, address=address,
            )
        sleep(min(interval, max(deadline - now, 0.0)))
