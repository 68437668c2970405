"""Bounded polling, the lab's only way of waiting for something to happen.

Fixed sleeps make tests both slow (the sleep is sized for the worst case) and flaky (the worst
case is sometimes worse). Every wait in the lab is therefore a poll with a deadline that fails
loudly, naming what it waited for and what it saw last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from haproxyctl.lab.errors import LabTimeout

__all__ = ["poll_until"]

T = TypeVar("T")

# Start polling fast (most conditions hold within a few ms: a socket appearing, a process
# exiting) and back off so a long wait does not burn CPU on a 2-core CI machine.
_FIRST_INTERVAL = 0.005
_BACKOFF = 1.5


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    details: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something other than ``None``, and return that.

    ``check`` may raise (typically :class:`~haproxyctl.lab.errors.LabError` when the process
    being waited for has died) to abort the wait early; the exception propagates unchanged.

    Args:
        check: returns ``None`` while the condition does not hold yet.
        timeout: seconds before giving up.
        what: what is being waited for, completing "timed out after 2.0s waiting for ...".
        interval: the longest pause between two calls.
        details: called once on timeout; its text (e.g. a log tail or the last state seen)
            is appended to the error message.

    Raises:
        LabTimeout: ``check`` kept returning ``None`` for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    pause = min(_FIRST_INTERVAL, interval)
    while True:
        result = check()
        if result is not None:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            message = f"timed out after {timeout:.1f}s waiting for {what}"
            if details is not None:
                message += "\n" + details()
            raise LabTimeout(message)
        time.sleep(min(pause, remaining))
        pause = min(pause * _BACKOFF, interval)
