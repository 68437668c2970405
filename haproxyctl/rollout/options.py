"""Rollout options: how servers are grouped, how long each wait may take. Validated on creation."""

from __future__ import annotations

import math
from typing import Literal

import attrs

from haproxyctl.errors import UsageError

__all__ = ["RolloutOptions", "Strategy"]

Strategy = Literal["rolling", "halves"]


@attrs.frozen(kw_only=True)
class RolloutOptions:
    """Everything a rollout needs to know besides the backend and the update.

    Grouping (at most one of ``batch_size``, ``percent``, ``groups``; default one server per
    batch): ``groups`` are explicit lists of server names.

    Times are seconds. ``drain_timeout`` is the grace given to users pinned to a server in
    ``drain`` before it goes to ``maint`` (None: automatic, see ``Plan.drain_grace``);
    ``sessions_timeout`` bounds the wait for in-flight
    requests in ``maint``; ``kill_after`` (opt-in) shuts down sessions still open after that
    long in ``maint``; ``health_timeout`` bounds the wait for checks after the update; ``settle``
    replaces that wait for servers without checks; ``ramp`` brings the weight back in steps over
    that long; ``exec_timeout`` bounds each update command.
    """

    strategy: Strategy = "rolling"
    batch_size: int | None = None
    percent: float | None = None
    groups: tuple[tuple[str, ...], ...] | None = None
    #: Servers that may be out of service at once, counting those already down or in maint.
    #: Default: the batch size (no server may already be down).
    max_unavailable: int | None = None
    drain_timeout: float | None = None
    sessions_timeout: float = 120.0
    kill_after: float | None = None
    health_timeout: float = 60.0
    settle: float = 5.0
    ramp: float = 0.0
    exec_timeout: float = 600.0
    poll_interval: float = 0.25
    #: Run ``rolling`` on a backend without persistence (users then flip between versions).
    allow_version_flips: bool = False
    #: Also update servers that are in maint or drain before the rollout (returned to that state).
    include_disabled: bool = False
    #: Keep the load even while users are moved: steering weights, stick-table re-pins and,
    #: for cookies, maint pulses at the end (see rollout/moves.py).
    rebalance: bool = True
    #: The final even-out stops once the busiest server is within this fraction of the mean.
    balance_tolerance: float = 0.10
    #: Upper bound of the final even-out, in seconds.
    balance_timeout: float = 30.0

    def __attrs_post_init__(self) -> None:
        for name in ("drain_timeout", "sessions_timeout", "kill_after", "health_timeout",
                     "settle", "ramp", "exec_timeout", "poll_interval", "balance_tolerance",
                     "balance_timeout"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)
                                      or not math.isfinite(value) or value < 0):
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} must be a finite number >= 0, not {value!r}",
                                 field=flag, value=value)
        given = [n for n, v in (("--batch-size", self.batch_size), ("--percent", self.percent),
                                ("--groups", self.groups)) if v is not None]
        if len(given) > 1:
            raise UsageError(f"{' and '.join(given)} cannot be combined; choose one",
                             field="--batch-size/--percent/--groups")
        if self.strategy not in ("rolling", "halves"):
            raise UsageError(f"unknown strategy {self.strategy!r}: expected rolling or halves",
                             field="--strategy", value=self.strategy)
        if self.strategy == "halves" and given:
            raise UsageError("--strategy halves splits the servers in two itself; "
                             f"{given[0]} does not apply", field="--batch-size/--percent/--groups")
        if self.batch_size is not None and (isinstance(self.batch_size, bool)
                                            or self.batch_size < 1):
            raise UsageError(f"--batch-size must be >= 1, not {self.batch_size!r}",
                             field="--batch-size", value=self.batch_size)
        if self.percent is not None and not 0 < self.percent <= 100:
            raise UsageError(f"--percent must be in (0, 100], not {self.percent!r}",
                             field="--percent", value=self.percent)
        if self.max_unavailable is not None and self.max_unavailable < 1:
            raise UsageError(f"--max-unavailable must be >= 1, not {self.max_unavailable!r}",
                             field="--max-unavailable", value=self.max_unavailable)
        if self.groups is not None and (not self.groups or any(not g for g in self.groups)):
            raise UsageError("--groups needs at least one non-empty group", field="--groups")
        if self.kill_after is not None and self.kill_after > self.sessions_timeout:
            raise UsageError(
                f"--kill-after ({self.kill_after:g}s) is longer than --sessions-timeout "
                f"({self.sessions_timeout:g}s): it would never fire", field="--kill-after")
        if self.poll_interval < 0.01:
            raise UsageError("--poll-interval must be >= 0.01", field="--poll-interval")

    @staticmethod
    def parse_groups(text: str) -> tuple[tuple[str, ...], ...]:
        """``"s1,s2 s3,s4"``: groups separated by spaces (or ``;``), names by commas."""
        groups = tuple(tuple(n for n in g.split(",") if n) for g in text.replace(";", " ").split())
        if not groups:
            raise UsageError(f"--groups {text!r} names no server; expected e.g. 's1,s2 s3,s4'",
                             field="--groups", value=text)
        return groups
