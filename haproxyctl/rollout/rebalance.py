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

Promise 1 is kept: users are only ever moved *to* servers that already run the new version.
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
) -> list[tuple[str, str]]:
    """Which users (keys) to re-pin to which target server: ``[(key, target), ...]``.

    ``in_service`` are the servers users may currently be pinned to and count for the fair
    share; ``targets`` (a subset, all on the new version) receive users until they hold
    ``len(entries_in_service) // len(in_service)`` each, taken from the most loaded servers
    first. Entries of servers not in service are left alone.
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
    moves: list[tuple[str, str]] = []
    for target in targets:
        if target not in owned:
            continue
        while count[target] < fair:
            sources = [s for s in in_service
                       if s not in targets and count[s] > fair and idle[s]]
            if not sources:
                break
            source = max(sources, key=lambda s: count[s])
            key = idle[source].pop()
            count[source] -= 1
            count[target] += 1
            moves.append((key, target))
    return moves
