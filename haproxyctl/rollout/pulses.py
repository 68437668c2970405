"""Evening out cookie users with short maint pulses. Pure: a controller fed with measured rates.

HAProxy's CLI cannot rewrite a cookie. What it can do is make HAProxy ignore one: a user whose
cookie names a server in maint is load balanced again and gets a new ``Set-Cookie`` for the
server that answers (configuration.txt "cookie", insert mode; the code checks the server is not
STOPPED before honouring the cookie). So users are moved off a busy server by putting it in
maint for a moment (a *pulse*) while temporary weights send every load-balanced request to the
servers that should receive (see ``balance.steering_weights``). Requests already running on
the pulsed server finish there (maint never cuts a session); users who send nothing during the
pulse keep their cookie. Pulses are only made between servers of the *same* version, so
nobody can flip, whatever the timing of their parallel requests.

How many users a pulse moves depends on how often they click, which HAProxy does not say. The
controller learns it: a user sends a request within ``t`` seconds with probability about
``1 - exp(-t / g)``, ``g`` being the gap between a user's requests. After each pulse it compares
the donor's request rate before and after, estimates ``g``, and sizes the next pulse for what is
left to move (never more than twice the previous pulse, so a noisy measure cannot make it
overshoot by much). It stops once the group is within ``tolerance`` of even, or after
``rounds`` pulses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import attrs

from haproxyctl.rollout.balance import imbalance, level_moves

__all__ = ["Pulse", "PulseController"]

#: A first guess of the gap between two requests of one user, before any pulse measured it.
_GAP_GUESS = 0.5
# Each pulse aims at this share of a donor's excess, not all of it: rates measured over a
# second or two are noisy (one browser's page is 4 requests at once), and overshooting makes
# the receiver the next donor, which moves its users twice. Measured on the lab (6 servers, 60
# users): aiming at the whole excess oscillated and ended at 1.5x; see bench/bench_balance.py.
_DAMPING = 0.6
_LEARNED_DAMPING = 0.8
# A donor whose rate fell by less than this fraction shows no measurable effect.
_NO_EFFECT = 0.03


@attrs.frozen
class Pulse:
    """Put ``donors`` in maint for ``seconds`` while the weights steer load-balanced requests to
    the ``inflow`` receivers (receiver -> share of the moved load)."""

    donors: tuple[str, ...]
    seconds: float
    inflow: Mapping[str, float]


class PulseController:
    """Decides the next pulse from the latest rates (requests per second per server).

    Args:
        servers: the group to even out (all serving one version, all in service).
        capacities: each server's weight before the rollout.
        max_out: how many servers may be out of load balancing at once (the rollout's
            max-unavailable minus what is already out).
        tolerance: stop once the busiest is within this fraction of the mean (0.10: 1.10x).
        shortest, longest: bounds of one pulse, in seconds.
        rounds: at most this many pulses.
    """

    def __init__(self, servers: Sequence[str], capacities: Mapping[str, float], *,
                 max_out: int, tolerance: float = 0.10, shortest: float = 0.05,
                 longest: float = 2.0, rounds: int = 12) -> None:
        self.servers = list(servers)
        self.capacities = dict(capacities)
        self.max_out = max_out
        self.tolerance = tolerance
        self.shortest = shortest
        self.longest = longest
        self.rounds = rounds
        self.done = 0
        self._gap: float | None = None
        self._last_inflow: tuple[str, ...] = ()
        self._last: Pulse | None = None
        self._previous = 0.0
        self._before: dict[str, float] = {}

    def even(self, rates: Mapping[str, float]) -> bool:
        return imbalance(rates, self.capacities, self.servers) <= 1 + self.tolerance

    def next(self, rates: Mapping[str, float]) -> Pulse | None:
        """The next pulse, or None when the group is even enough, cannot be improved, or the
        rounds are used up. ``rates`` are measured *after* the previous pulse."""
        self._learn(rates)
        if self.done >= self.rounds or self.max_out < 1 or len(self.servers) < 2:
            return None
        if self.even(rates):
            return None
        # Donors are only asked to shed their excess over the level (plus the tolerance), so
        # a donor slightly above average is not pulsed for nothing.
        give, take = level_moves(rates, self.capacities, self.servers,
                                 tolerance=self.tolerance / 2)
        if not give or not take:
            return None
        # One donor per pulse, the busiest, and not one that has just received (its rate is
        # still settling): a common duration for two donors that need different shares
        # overshoots one of them, and an overshoot makes the next pulse undo it.
        received = set(self._last_inflow)
        candidates = [d for d in give if d not in received] or list(give)
        donor = min(candidates, key=lambda s: (-give[s], s))
        seconds = self._duration(rates.get(donor, 0.0), give[donor])
        self._last = Pulse((donor,), seconds, dict(take))
        self._last_inflow = tuple(take)
        self._previous = seconds
        self._before = {donor: rates.get(donor, 0.0)}
        self.done += 1
        return self._last

    @property
    def gap_estimate(self) -> float:
        """The gap between two requests of one user, as learned so far (seconds)."""
        return self._gap if self._gap is not None else _GAP_GUESS

    def _duration(self, rate: float, excess: float) -> float:
        if rate <= 0:
            return self.shortest
        # Damped harder until the users' click rate was measured once.
        damping = _DAMPING if self._gap is None else _LEARNED_DAMPING
        share = min(max(damping * excess / rate, 0.0), 0.95)
        t = -self.gap_estimate * math.log(1.0 - share)
        if self._previous > 0:
            t = min(t, 2 * self._previous)
        return min(max(t, self.shortest), self.longest)

    def _learn(self, rates: Mapping[str, float]) -> None:
        """Update the gap estimate from the rate the last donor lost. Users of one backend
        click alike whatever their server, so one estimate is pooled over every pulse, and
        each new measure only moves it half-way (in log terms): one noisy second cannot make
        the next pulse ten times too long."""
        if self._last is None:
            return
        t = self._last.seconds
        for d in self._last.donors:
            before = self._before.get(d, 0.0)
            if before <= 0:
                continue
            moved = 1.0 - rates.get(d, 0.0) / before
            if moved <= _NO_EFFECT:
                # Nothing measurable moved: users click less often than assumed.
                measured = min(self.gap_estimate * 2, 60.0)
            else:
                measured = max(-t / math.log(1.0 - min(moved, 0.95)), 0.05)
            self._gap = (measured if self._gap is None
                         else math.sqrt(self._gap * measured))
        self._last = None
