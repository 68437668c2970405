"""Even load under persistence: how much load should go where, and with which weights. Pure.

Promise 2 (load evenly spread over the servers in service) is about *load per unit of
capacity*: a server of weight 20 should carry twice what a server of weight 10 carries. Every
function here takes the servers' loads (stick-table users, or requests per second for cookie
persistence) and their capacities (the weights they had before the rollout) and answers one
question:

- :func:`imbalance`: how far from even a set of servers is (busiest over mean, 1.0 = even);
- :func:`water_fill`: how to split an amount of load over receivers so that they end as even
  as possible (the emptiest first, never anyone above the common level);
- :func:`allocate`: the same in whole users (for stick-table keys);
- :func:`level_moves`: how much each server above the common level gives and each server
  below it receives, to even out a group of servers of the same version;
- :func:`steering_weights`: the temporary weights that make HAProxy's load balancing send
  re-dispatched and new users to the receivers in those proportions, and nowhere else.

Nothing here knows about HAProxy's protocol, a clock or a socket; the rollout flow and the
``balance`` command feed it measurements and act on its answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "MAX_WEIGHT",
    "allocate",
    "imbalance",
    "level",
    "level_moves",
    "steering_weights",
    "water_fill",
]

#: HAProxy's largest server weight (configuration.txt, "weight").
MAX_WEIGHT = 256


def _cap(capacities: Mapping[str, float], server: str) -> float:
    # A server of weight 0 takes no load-balanced user; for evenness it counts as the smallest
    # positive capacity, so it is neither divided by zero nor favoured.
    return max(float(capacities.get(server, 1.0)), 1e-9)


def level(loads: Mapping[str, float], capacities: Mapping[str, float],
          servers: Iterable[str] | None = None) -> float:
    """The common load per unit of capacity if ``servers`` (default: all in ``loads``) shared
    their total load evenly."""
    names = list(loads if servers is None else servers)
    if not names:
        return 0.0
    total = sum(max(loads.get(s, 0.0), 0.0) for s in names)
    return total / sum(_cap(capacities, s) for s in names)


def imbalance(loads: Mapping[str, float], capacities: Mapping[str, float] | None = None,
              servers: Iterable[str] | None = None) -> float:
    """Busiest server's load per unit of capacity over the mean of ``servers`` (default: all
    in ``loads``). 1.0 is perfectly even; an idle group counts as even."""
    caps = capacities or {}
    names = list(loads if servers is None else servers)
    mean = level(loads, caps, names)
    if not names or mean <= 0:
        return 1.0
    return max(max(loads.get(s, 0.0), 0.0) / _cap(caps, s) for s in names) / mean


def water_fill(amount: float, loads: Mapping[str, float], capacities: Mapping[str, float],
               receivers: Sequence[str]) -> dict[str, float]:
    """Split ``amount`` over ``receivers`` so that their load per unit of capacity ends as even
    as possible: the emptiest are raised first, up to a common level; a receiver already above
    that level gets nothing. Returns the share of each receiver (summing to ``amount``)."""
    if not receivers:
        return {}
    amount = max(amount, 0.0)
    order = sorted(receivers, key=lambda s: (max(loads.get(s, 0.0), 0.0) / _cap(capacities, s),
                                             s))
    # Raise the water level over the k emptiest receivers until the amount is used up.
    chosen: list[str] = []
    cap_sum = 0.0
    load_sum = 0.0
    water = 0.0
    for i, s in enumerate(order):
        chosen.append(s)
        cap_sum += _cap(capacities, s)
        load_sum += max(loads.get(s, 0.0), 0.0)
        water = (load_sum + amount) / cap_sum
        nxt = order[i + 1] if i + 1 < len(order) else None
        if nxt is None or water <= max(loads.get(nxt, 0.0), 0.0) / _cap(capacities, nxt):
            break
    shares = {s: 0.0 for s in receivers}
    for s in chosen:
        shares[s] = max(water * _cap(capacities, s) - max(loads.get(s, 0.0), 0.0), 0.0)
    # Rounding can leave the sum a hair off: give the difference to the biggest share.
    total = sum(shares.values())
    if total > 0 and amount > 0:
        biggest = max(shares, key=lambda s: (shares[s], s))
        shares[biggest] += amount - total
    elif amount > 0:
        shares[order[0]] = amount
    return shares


def allocate(count: int, loads: Mapping[str, float], capacities: Mapping[str, float],
             receivers: Sequence[str]) -> dict[str, int]:
    """:func:`water_fill` in whole units (users): largest remainders get the leftover units,
    so the shares sum to exactly ``count``."""
    if count <= 0 or not receivers:
        return {s: 0 for s in receivers}
    shares = water_fill(float(count), loads, capacities, receivers)
    whole = {s: math.floor(v + 1e-9) for s, v in shares.items()}
    left = count - sum(whole.values())
    by_remainder = sorted(receivers, key=lambda s: (-(shares[s] - whole[s]),
                                                    loads.get(s, 0.0) / _cap(capacities, s), s))
    for s in by_remainder[:max(left, 0)]:
        whole[s] += 1
    return whole


def level_moves(loads: Mapping[str, float], capacities: Mapping[str, float],
                servers: Sequence[str], *, donors: Iterable[str] | None = None,
                receivers: Iterable[str] | None = None,
                tolerance: float = 0.0) -> tuple[dict[str, float], dict[str, float]]:
    """How to even out ``servers`` (all of one version): ``(give, take)`` per server.

    The level is the group's total load per unit of capacity. A server above it by more than
    ``tolerance`` (a fraction of its fair load) gives the excess; a server below it receives
    in proportion to its deficit. ``donors``/``receivers`` restrict who may give or receive
    (default: anyone in ``servers``); the amounts are scaled so that what is given equals what
    is taken.
    """
    names = list(servers)
    lvl = level(loads, capacities, names)
    may_give = set(names if donors is None else donors) & set(names)
    may_take = set(names if receivers is None else receivers) & set(names)
    give: dict[str, float] = {}
    take: dict[str, float] = {}
    for s in names:
        fair = lvl * _cap(capacities, s)
        have = max(loads.get(s, 0.0), 0.0)
        if s in may_give and have > fair * (1 + tolerance):
            give[s] = have - fair
        elif s in may_take and have < fair:
            take[s] = fair - have
    given, taken = sum(give.values()), sum(take.values())
    if given <= 0 or taken <= 0:
        return {}, {}
    moved = min(given, taken)
    return ({s: v * moved / given for s, v in give.items()},
            {s: v * moved / taken for s, v in take.items()})


def steering_weights(inflow: Mapping[str, float], capacities: Mapping[str, float],
                     others: Iterable[str], *, static: bool = False) -> dict[str, int]:
    """Temporary weights so that load-balanced users go to the receivers of ``inflow`` in the
    proportions given, and to none of ``others``.

    Why weights: a user whose persistence points to a server in maint (or DOWN) is load
    balanced again, request by request, as is every new user (management.txt "set server",
    configuration.txt "cookie"/"stick"). A server of weight 0 takes no load-balanced request
    but still serves the users pinned to it ("weight": "0 means the server will not
    participate in load-balancing but will still accept persistent connections"). So weights
    decide where moved users land, and leave everyone else alone.

    Receivers get weights proportional to their share, the largest at :data:`MAX_WEIGHT` (at
    least 1 each, so a receiver with a tiny share still takes some); receivers with no share
    and ``others`` get 0. If no receiver has a share, they get weights by capacity. With a
    ``static`` algorithm (only 0% or 100% of the configured weight are accepted), receivers
    keep their capacity and the rest get 0.
    """
    weights = {s: 0 for s in others}
    receivers = list(inflow)
    if not receivers:
        return weights
    if static:
        weights.update({s: max(round(_cap(capacities, s)), 1) for s in receivers})
        return weights
    positive = {s: v for s, v in inflow.items() if v > 1e-9}
    basis = positive or {s: _cap(capacities, s) for s in receivers}
    top = max(basis.values())
    for s in receivers:
        v = basis.get(s, 0.0)
        weights[s] = max(1, min(MAX_WEIGHT, round(MAX_WEIGHT * v / top))) if v > 0 else 0
    return weights
