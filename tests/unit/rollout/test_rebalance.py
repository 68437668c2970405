"""``plan_moves``: which stick-table users to re-pin onto servers that came back. Pure."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from haproxyctl.models.table import TableEntry, parse_table
from haproxyctl.rollout.rebalance import entry_owner, plan_moves

NAMES = [f"s{i}" for i in range(1, 7)]
IDS = {i: f"s{i}" for i in range(1, 7)}


def entry(key: str, *, sid: int | None = None, skey: str | None = None,
          use: int | None = 0) -> TableEntry:
    data: dict[str, int | str | None] = {}
    if sid is not None:
        data["server_id"] = sid
    if skey is not None:
        data["server_key"] = skey
    return TableEntry(ptr="0x1", key=key, use=use, exp=1000, shard=None, data=data)


def test_server_key_wins_over_server_id() -> None:
    (e,) = parse_table("# table: app, type: ip, size:10, used:1\n"
                       "0x55: key=10.0.0.9 use=0 exp=10 server_id=1 server_key=s2\n").entries
    assert entry_owner(e, IDS) == "s2"
    assert entry_owner(entry("k", sid=3), IDS) == "s3"
    assert entry_owner(entry("k", sid=99), IDS) is None
    assert entry_owner(entry("k"), IDS) is None


def test_moves_users_from_the_busiest_servers_to_the_returning_one() -> None:
    entries = ([entry(f"a{i}", sid=1) for i in range(6)]
               + [entry(f"b{i}", sid=2) for i in range(3)]
               + [entry(f"c{i}", sid=3) for i in range(3)])
    moves = plan_moves(entries, IDS, in_service=["s1", "s2", "s3", "s4"], targets=["s4"])
    assert len(moves) == 3  # fair share 12 // 4
    assert all(t == "s4" for _, t in moves)
    assert {k[0] for k, _ in moves} == {"a"}  # s1 is the busiest all along (6 -> 3)


def test_nothing_to_do_without_targets_or_servers_in_service() -> None:
    entries = [entry("k", sid=1)]
    assert plan_moves(entries, IDS, in_service=["s1", "s2"], targets=[]) == []
    assert plan_moves(entries, IDS, in_service=[], targets=["s2"]) == []


def test_busy_entries_and_entries_of_servers_out_of_service_stay() -> None:
    entries = ([entry(f"a{i}", sid=1, use=1) for i in range(6)]
               + [entry(f"m{i}", sid=5) for i in range(6)])
    # s5 is not in service (maint): its users are not counted nor moved; s1's are all busy
    assert plan_moves(entries, IDS, in_service=["s1", "s2"], targets=["s2"]) == []


entry_lists = st.lists(
    st.tuples(st.sampled_from([*range(1, 7), 42, None]),  # server_id (42: unknown)
              st.sampled_from([None, None, None, *NAMES]),  # server_key
              st.sampled_from([0, 0, 0, 1, 3, None])),  # use
    max_size=60)


@given(entry_lists, st.sets(st.sampled_from(NAMES), min_size=1),
       st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
def test_plan_moves_properties(raw: list[tuple[int | None, str | None, int | None]],
                               in_service_set: set[str], targets: list[str]) -> None:
    in_service = sorted(in_service_set)
    entries = [entry(f"u{i}", sid=sid, skey=skey, use=use)
               for i, (sid, skey, use) in enumerate(raw)]
    by_key = {e.key: e for e in entries}
    moves = plan_moves(entries, IDS, in_service=in_service, targets=targets)

    owners = {e.key: entry_owner(e, IDS) for e in entries}
    before = Counter(o for o in owners.values() if o in in_service)
    fair = sum(before.values()) // len(in_service)
    keys = [k for k, _ in moves]
    assert len(keys) == len(set(keys))  # each user moved once at most
    for key, target in moves:
        assert target in targets
        assert target in in_service
        source = owners[key]
        assert source in in_service
        assert source not in targets
        assert not by_key[key].use  # only idle users
    after = dict(owners)
    after.update(dict(moves))
    count = Counter(o for o in after.values() if o in in_service)
    assert sum(count.values()) == sum(before.values())  # conserved
    assert len(after) == len(entries)
    received = Counter(t for _, t in moves)
    for t in targets:
        if received[t]:
            assert count[t] <= fair  # up to the fair share, not beyond
        assert count[t] <= max(before[t], fair)
    for s in in_service:
        if s not in targets and count[s] < before[s]:
            assert count[s] >= fair  # a source is never drained below the fair share
    # moves stop only when no target lacks users that some source could give
    for t in (t for t in targets if t in in_service):
        if count[t] < fair:
            idle_left = Counter(after[k] for k, e in by_key.items() if not e.use
                                and k not in dict(moves))
            assert not any(count[s] > fair and idle_left[s] for s in in_service
                           if s not in targets)
