"""Re-spreading stick-table users onto servers that just came back. Pure.

Why: when a batch goes to maint, its pinned users are re-dispatched to the servers in service
and stay there; a server coming back from its update gets new users only. Without help, the
servers updated last end up nearly idle while the early ones carry everyone (the demo measured
a 3:1 spread on four servers). With stick-table persistence the entries can be rewritten: each
user moved is re-pinned (``clear table <t> key <k>`` then ``set table <t> key <k> data.server_id
<id>``; a fresh entry has no ``server_key``, so ``server_id`` decides, reference §7) from the
most loaded servers to the servers that just came back, until each of those has its fair share.

A stick rule stores its entry again when each response comes back (``process_store_rules`` in
HAProxy 2.6), so a user whose request was still running on the old server when we re-pinned
them is pinned straight back there by that response. The match releases its reference at
once, so ``use`` does not reveal requests in flight. The flow therefore repeats the
rebalance a few times, a second apart: each round re-pins the users the previous one lost, and
the number lost shrinks geometrically. Entries in use (``use>0``) are skipped.

Promise 1 is kept: users are only moved *between* servers that already run the new version (from
the busiest ones to those that just came back). A user still pinned to an old server is left
there: moving them while a request of theirs runs on it would let that response pin them back to
the old version after they saw the new one (HAProxy stores at response time); maint moves them
when their server's turn comes. The last batch's rebalance can use every server.
Cookies cannot be rewritten from HAProxy's CLI, so cookie backends are not rebalanced (see
docs/rollout.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from haproxyctl.models.table import TableEntry

__all__ = ["entry_owner", "plan_moves"]


def entry_owner(entry: TableEntry, names_by_id: Mapping[int, str]) -> str | None:
    """The server an entry sends its user to: ``server_key`` (the name) wins over
    ``server_id`` when both are set, as in HAProxy 2.4+."""
    if entry.server_key is not None:
        return entry.server_key
    if entry.server_id is not None:
        return names_by_id.get(entry.server_id)
    return None


def plan_moves(
    entries: Sequence[TableEntry],
    names_by_id: Mapping[int, str],
    *,
    in_service: Sequence[str],
    targets: Sequence[str],
    sources: Sequence[str] | None = None,
) -> list[tuple[str, str]]:
    """Which users (keys) to re-pin to which target server: ``[(key, target), ...]``.

    ``in_service`` are the servers users may currently be pinned to and count for the fair
    share; ``targets`` below it receive users until they hold ``len(entries_in_service) //
    len(in_service)``, taken from the most loaded of ``sources`` above it (default: every server
    in service that is not a target; sources and targets may overlap). Entries of other servers
    are left alone.

    The rollout passes only servers already on the new version as sources: a user moved off an
    *old* server while one of their requests is still running there is pinned back to it when
    that response comes back, and would then see the old version after the new one.
    """
    if not targets or not in_service:
        return []
    owned: dict[str, list[str]] = {s: [] for s in in_service}
    idle: dict[str, list[str]] = {s: [] for s in in_service}
    for e in entries:
        owner = entry_owner(e, names_by_id)
        if owner in owned:
            owned[owner].append(e.key)
            if not e.use:
                idle[owner].append(e.key)
    total = sum(len(keys) for keys in owned.values())
    fair = total // len(in_service)
    count = {s: len(keys) for s, keys in owned.items()}
    givers = [s for s in (sources if sources is not None else
                          [s for s in in_service if s not in targets]) if s in owned]
    moves: list[tuple[str, str]] = []
    for target in sorted((t for t in targets if t in owned), key=lambda t: count[t]):
        while count[target] < fair:
            candidates = [s for s in givers if s != target and count[s] > fair and idle[s]]
            if not candidates:
                break
            source = max(candidates, key=lambda s: count[s])
            key = idle[source].pop()
            count[source] -= 1
            count[target] += 1
            moves.append((key, target))
    return moves
