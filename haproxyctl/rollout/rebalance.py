"""Which stick-table users to re-pin where. Pure.

A user pinned by a stick table follows its entry's server (``server_key`` if the table stores
it, else ``server_id``: the name wins, see ``entry_owner``). haproxyctl moves users by
rewriting entries: ``clear table <t> key <k>`` then ``set table <t> key <k> data.server_id
<id>`` (a fresh entry has no ``server_key``, so the id decides; management.txt "set table").

When is a move safe for promise 1 (never new, then old)? HAProxy stores the entry again when
each response comes back (``process_store_rules`` in ``src/stream.c``: every stored response
writes the serving server's id and name), so a user moved while one of its requests is still
running is pinned back to the server that answers it. The rollout therefore only re-pins:

- **users of a server in maint** (:func:`evacuate`): a request still running there pins its
  user back to a server in maint, whose persistence HAProxy ignores, so the user's next
  request is load balanced, and the rollout's temporary weights send it to the same version
  as the re-pin did. Once the server has no session left, nothing can pin anyone back to it.
- **users between servers of the same version** (:func:`level`): a user pinned back by a
  response stays on the same version.

Both prefer idle entries (``use=0``) and the users moved least so far, so that nobody is moved
more than needed (the issue's target: at most twice in one rollout).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence

import attrs

from haproxyctl.models.table import TableEntry
from haproxyctl.rollout.balance import allocate, level_moves

__all__ = ["Pin", "entry_owner", "evacuate", "level", "level_by_rate", "moved_pins", "owners_of"]


@attrs.frozen
class Pin:
    """One user's entry, as far as moving it is concerned."""

    key: str
    #: No stream holds the entry right now (``use=0``).
    idle: bool = True


def entry_owner(entry: TableEntry, names_by_id: Mapping[int, str]) -> str | None:
    """The server an entry sends its user to: ``server_key`` (the name) wins over
    ``server_id`` when both are set, as in HAProxy 2.4+ (``sticking_rule_find_target``)."""
    if entry.server_key is not None:
        return entry.server_key
    if entry.server_id is not None:
        return names_by_id.get(entry.server_id)
    return None


def owners_of(entries: Iterable[TableEntry], names_by_id: Mapping[int, str]
              ) -> dict[str, list[Pin]]:
    """Entries grouped by the server they pin to (entries of unknown servers left out)."""
    owners: dict[str, list[Pin]] = {}
    for e in entries:
        owner = entry_owner(e, names_by_id)
        if owner is not None:
            owners.setdefault(owner, []).append(Pin(e.key, not e.use))
    return owners


def _order(pins: Sequence[Pin], moves: Mapping[str, int]) -> list[Pin]:
    """Idle first, then the least moved, then in an order that does not follow the keys.

    HAProxy lists a table in key order, and neighbouring keys are often alike (one office's
    addresses, one client type): taking the first N of a donor moved a biased sample, which
    evens the users' count but not their load (measured: the servers that received the first
    100 of 150 ``src`` keys, all browser-like users, got 1.5x the mean request rate). A hash
    of the key is a fixed, unbiased order, so plans stay deterministic."""
    return sorted(pins, key=lambda p: (not p.idle, moves.get(p.key, 0),
                                       zlib.crc32(p.key.encode("utf-8", "surrogatepass"))))


def evacuate(sources: Mapping[str, Sequence[Pin]], counts: Mapping[str, float],
             capacities: Mapping[str, float], receivers: Sequence[str], *,
             moves: Mapping[str, int] | None = None) -> list[tuple[str, str]]:
    """Re-pin every user of ``sources`` (servers being taken out) onto ``receivers``, so that
    the receivers' users per unit of capacity (``counts``: users each holds now) end as even as
    possible: the emptiest receive first. Returns ``[(key, receiver), ...]``."""
    # One order over all sources (not source by source), so that the deal gives every
    # receiver its share of the users moved least: the even-out at the end can then take
    # users who moved once from every server (a receiver holding only users already moved
    # twice would have to move one a third time).
    keys = [p.key for p in _order([p for s in sorted(sources) for p in sources[s]], moves or {})]
    if not keys or not receivers:
        return []
    return _deal(keys, allocate(len(keys), counts, capacities, receivers))


def level(owners: Mapping[str, Sequence[Pin]], capacities: Mapping[str, float],
          servers: Sequence[str], *, receivers: Sequence[str] | None = None,
          moves: Mapping[str, int] | None = None, tolerance: float = 0.0,
          idle_only: bool = True) -> list[tuple[str, str]]:
    """Even out the users of ``servers`` (all on one version): users of the servers above the
    common level move to the servers below it (``receivers`` restricts who may receive).
    ``tolerance`` is the share above its fair count a server may keep (0.05: 5%). Busy entries
    are never moved when ``idle_only``. Returns ``[(key, receiver), ...]``."""
    moves = moves or {}
    counts = {s: float(len(owners.get(s, ()))) for s in servers}
    give, take = level_moves(counts, capacities, servers, receivers=receivers,
                             tolerance=tolerance)
    if not give:
        return []
    per_donor: list[list[str]] = []
    for donor in sorted(give, key=lambda s: (-give[s], s)):
        pins = [p for p in _order(owners.get(donor, ()), moves) if p.idle or not idle_only]
        per_donor.append([p.key for p in pins[:int(give[donor] + 0.5)]])
    total = min(sum(map(len, per_donor)), int(sum(take.values()) + 0.5))
    if total <= 0:
        return []
    # If fewer users are needed than offered, each donor gives in proportion to its offer.
    quota = _proportional(total, [len(keys) for keys in per_donor])
    offered = [k for keys, n in zip(per_donor, quota, strict=True) for k in keys[:n]]
    shares = allocate(total, counts, capacities, sorted(take))
    return _deal(offered, shares)


def _deal(keys: Sequence[str], shares: Mapping[str, int]) -> list[tuple[str, str]]:
    """Hand ``keys`` out to the receivers, each up to its share, interleaved in proportion to
    the shares (a receiver taking a third of the keys takes every third one): a partial send
    (an error half-way) still spreads users, no receiver gets a run of neighbouring keys, and
    since the keys come least-moved first, each receiver gets its proportion of the users
    moved least (not the first of them all because its share is small)."""
    total = sum(n for n in shares.values() if n > 0)
    # Receiver r's j-th key belongs at (j + 0.5) / share of the way through the keys.
    slots = sorted(((j + 0.5) / n, r) for r, n in shares.items() if n > 0 for j in range(n))
    return [(key, r) for key, (_, r) in zip(keys, slots[:total], strict=False)]


def level_by_rate(owners: Mapping[str, Sequence[Pin]], rates: Mapping[str, float],
                  capacities: Mapping[str, float], servers: Sequence[str], *,
                  moves: Mapping[str, int] | None = None, tolerance: float = 0.0,
                  max_moves: int | None = None) -> list[tuple[str, str]]:
    """Even out request *rates* (not user counts) of ``servers``, all of one version.

    Users are not alike (a browser loading a page with its assets sends four requests where an
    API client sends one), and a table entry does not say how busy its user is. Each donor's
    users are taken as its measured rate over its user count, so a donor gives
    ``excess / (rate per user)`` users, in hash order (an unbiased sample of its users); the
    receivers are filled by the rate each should gain. Repeated with fresh measurements this
    converges in expectation. Returns ``[(key, receiver), ...]``; idle entries only, and
    only users moved fewer than ``max_moves`` times so far (when given).
    """
    moves = moves or {}
    give, take = level_moves(rates, capacities, servers, tolerance=tolerance)
    if not give or not take:
        return []
    offered: list[tuple[str, float]] = []
    for donor in sorted(give, key=lambda s: (-give[s], s)):
        pins = [p for p in _order(owners.get(donor, ()), moves)
                if p.idle and (max_moves is None or moves.get(p.key, 0) < max_moves)]
        users = len(owners.get(donor, ()))
        if not users or rates.get(donor, 0.0) <= 0:
            continue
        per_user = rates[donor] / users
        n = min(len(pins), int(give[donor] / per_user + 0.5))
        offered += [(p.key, per_user) for p in pins[:n]]
    out: list[tuple[str, str]] = []
    need = dict(take)
    for key, weight in offered:
        receiver = max(sorted(need), key=lambda r: need[r])
        if need[receiver] < weight / 2:
            break  # nobody needs even half a user more
        out.append((key, receiver))
        need[receiver] -= weight
    return out


def moved_pins(owners: Mapping[str, Sequence[Pin]], moves: Sequence[tuple[str, str]]
               ) -> dict[str, list[Pin]]:
    """``owners`` as it is once ``moves`` (``[(key, receiver), ...]``) are applied: what a
    re-read of the table would show if no response pinned anyone back meanwhile."""
    target = dict(moves)
    out: dict[str, list[Pin]] = {s: [] for s in owners}
    for server, pins in owners.items():
        for p in pins:
            out.setdefault(target.get(p.key, server), []).append(p)
    return out


def _proportional(total: int, sizes: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``sizes`` (each at most its size), largest remainders
    first; sums to ``min(total, sum(sizes))``."""
    whole = sum(sizes)
    if whole <= 0:
        return [0 for _ in sizes]
    total = min(total, whole)
    exact = [total * n / whole for n in sizes]
    out = [min(int(e), n) for e, n in zip(exact, sizes, strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: -(exact[i] - out[i]))
    left = total - sum(out)
    for i in order:
        if left <= 0:
            break
        if out[i] < sizes[i]:
            out[i] += 1
            left -= 1
    return out
