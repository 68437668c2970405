"""Re-pin planning for stick tables (``rollout/rebalance.py``). Pure."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from haproxyctl.models.table import TableEntry, parse_table
from haproxyctl.rollout.rebalance import (
    Pin,
    entry_owner,
    evacuate,
    level,
    level_by_rate,
    moved_pins,
    owners_of,
)

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


def pins(server: str, n: int, *, busy: int = 0) -> list[Pin]:
    return [Pin(f"{server}-{i}", idle=i >= busy) for i in range(n)]


def test_server_key_wins_over_server_id() -> None:
    (e,) = parse_table("# table: app, type: ip, size:10, used:1\n"
                       "0x55: key=10.0.0.9 use=0 exp=10 server_id=1 server_key=s2\n").entries
    assert entry_owner(e, IDS) == "s2"
    assert entry_owner(entry("k", sid=3), IDS) == "s3"
    assert entry_owner(entry("k", sid=99), IDS) is None
    assert entry_owner(entry("k"), IDS) is None


def test_owners_groups_entries_and_marks_busy_ones() -> None:
    owners = owners_of([entry("a", sid=1), entry("b", sid=1, use=2), entry("c", skey="s3"),
                        entry("d", sid=42)], IDS)
    assert owners == {"s1": [Pin("a", True), Pin("b", False)], "s3": [Pin("c", True)]}


def test_evacuate_fills_the_emptiest_receivers_first() -> None:
    moves = evacuate({"s1": pins("s1", 30)}, {"s2": 0, "s3": 20, "s4": 20},
                     {"s2": 1, "s3": 1, "s4": 1}, ["s2", "s3", "s4"])
    got = Counter(t for _, t in moves)
    # 70 users over 3 servers: 23.3 each; s2 (empty) takes 23, s3 and s4 3-4 each
    assert sum(got.values()) == 30
    assert got["s2"] in (23, 24)
    assert got["s3"] + got["s4"] == 30 - got["s2"]
    assert abs(got["s3"] - got["s4"]) <= 1


def test_evacuate_gives_every_receiver_its_share_of_the_least_moved() -> None:
    """Users moved once and users never moved leave together. Each receiver gets the never
    moved in proportion to what it takes (the even-out can then move never-moved users off
    every server), not the first of them all while the others get only the moved ones."""
    sources = {"s4": pins("a", 30), "s5": pins("b", 30)}
    moved_once = {p.key: 1 for p in sources["s4"]}
    moves = evacuate(sources, {"s1": 0.0, "s2": 30.0}, {"s1": 1.0, "s2": 1.0}, ["s1", "s2"],
                     moves=moved_once)
    per = Counter(t for _, t in moves)
    fresh = Counter(t for k, t in moves if k not in moved_once)
    assert dict(per) == {"s1": 45, "s2": 15}  # 90 users, 45 each
    assert fresh["s1"] in (22, 23)
    assert fresh["s2"] in (7, 8)
    assert fresh["s1"] + fresh["s2"] == 30


def test_evacuate_follows_capacities() -> None:
    moves = evacuate({"s1": pins("s1", 30)}, {"s2": 0, "s3": 0}, {"s2": 1, "s3": 2},
                     ["s2", "s3"])
    assert Counter(t for _, t in moves) == {"s2": 10, "s3": 20}


def test_level_moves_only_idle_users_and_prefers_the_least_moved() -> None:
    owners = {"s1": pins("s1", 10, busy=2), "s2": []}
    moves = level(owners, {"s1": 1, "s2": 1}, ["s1", "s2"], moves={"s1-9": 1, "s1-8": 2})
    moved = [k for k, _ in moves]
    assert len(moved) == 5
    assert all(t == "s2" for _, t in moves)
    assert not {"s1-0", "s1-1"} & set(moved)  # busy
    assert not {"s1-8", "s1-9"} & set(moved)  # moved before: the others go first


def test_level_respects_receivers_and_tolerance() -> None:
    owners = {"s1": pins("s1", 12), "s2": pins("s2", 6), "s3": pins("s3", 0)}
    caps = {"s1": 1, "s2": 1, "s3": 1}
    moves = level(owners, caps, ["s1", "s2", "s3"], receivers=["s3"])
    assert Counter(t for _, t in moves) == {"s3": 6}
    assert {k.split("-")[0] for k, _ in moves} == {"s1"}
    assert level({"s1": pins("s1", 10), "s2": pins("s2", 9)}, caps, ["s1", "s2"],
                 tolerance=0.1) == []


pin_maps = st.dictionaries(
    st.sampled_from(NAMES),
    st.tuples(st.integers(0, 40), st.integers(0, 5)),  # users, of which busy
    min_size=1)
caps_maps = st.dictionaries(st.sampled_from(NAMES), st.integers(1, 5))


def _build(raw: dict[str, tuple[int, int]]) -> dict[str, list[Pin]]:
    return {s: pins(s, n, busy=min(b, n)) for s, (n, b) in raw.items()}


@given(pin_maps, caps_maps)
def test_level_properties(raw: dict[str, tuple[int, int]], caps: dict[str, int]) -> None:
    owners = _build(raw)
    group = sorted(owners)
    capacities = {s: float(caps.get(s, 1)) for s in group}
    moves = level(owners, capacities, group)
    keys = [k for k, _ in moves]
    assert len(keys) == len(set(keys))
    busy = {p.key for ps in owners.values() for p in ps if not p.idle}
    assert not busy & set(keys)
    owner = {p.key: s for s, ps in owners.items() for p in ps}
    before = Counter(owner.values())
    after = Counter({**owner, **dict(moves)}.values())
    assert sum(after.values()) == sum(before.values())
    total = sum(before.values())
    fair = {s: total * capacities[s] / sum(capacities.values()) for s in group}
    for key, target in moves:
        source = owner[key]
        assert source != target
        # users only flow from above the fair share to below it, and nobody crosses it
        assert before[source] > fair[source] - 1e-9
        assert before[target] < fair[target] + 1e-9
    for s in group:
        if after[s] > before[s]:
            assert after[s] <= fair[s] + 1
        if after[s] < before[s]:
            assert after[s] >= fair[s] - 1


@given(st.integers(0, 200), st.dictionaries(st.sampled_from(NAMES[1:]), st.integers(0, 50),
                                            min_size=1), caps_maps)
def test_evacuate_properties(n: int, counts: dict[str, int], caps: dict[str, int]) -> None:
    receivers = sorted(counts)
    capacities = {s: float(caps.get(s, 1)) for s in receivers}
    moves = evacuate({"s1": pins("s1", n)}, {s: float(v) for s, v in counts.items()},
                     capacities, receivers)
    assert sorted(k for k, _ in moves) == sorted(f"s1-{i}" for i in range(n))
    assert {t for _, t in moves} <= set(receivers)
    after = Counter(counts) + Counter(t for _, t in moves)
    lvl = (sum(counts.values()) + n) / sum(capacities.values())
    for s in receivers:
        got = after[s] - counts[s]
        if got:  # a receiver never ends above the common level (but for rounding)
            assert after[s] <= lvl * capacities[s] + 1


def test_level_by_rate_moves_users_off_the_busiest_by_their_average_weight() -> None:
    # Same user counts, but a's users are twice as busy: a gives a few to c (below level).
    owners = {"a": [Pin(f"a{i}") for i in range(10)], "b": [Pin(f"b{i}") for i in range(10)],
              "c": [Pin(f"c{i}") for i in range(10)]}
    rates = {"a": 200.0, "b": 100.0, "c": 60.0}
    moves = level_by_rate(owners, rates, {}, ["a", "b", "c"])
    assert moves, moves
    assert {k[0] for k, _ in moves} == {"a"}
    assert {r for _, r in moves} <= {"b", "c"}
    # a's excess is 200 - 120 = 80 req/s at 20 req/s a user: 4 users, none above the need.
    assert len(moves) == 4
    assert sum(r == "c" for _, r in moves) >= 2


def test_level_by_rate_leaves_an_even_group_and_busy_entries_alone() -> None:
    owners = {"a": [Pin("a0", idle=False), Pin("a1", idle=False)], "b": [Pin("b0")]}
    assert level_by_rate(owners, {"a": 10.0, "b": 10.0}, {}, ["a", "b"]) == []
    assert level_by_rate(owners, {"a": 30.0, "b": 1.0}, {}, ["a", "b"]) == []


def test_level_by_rate_never_moves_a_user_past_max_moves() -> None:
    owners = {"a": [Pin(f"a{i}") for i in range(10)], "b": [Pin(f"b{i}") for i in range(10)]}
    twice = {f"a{i}": 2 for i in range(8)}
    out = level_by_rate(owners, {"a": 40.0, "b": 10.0}, {}, ["a", "b"], moves=twice,
                        max_moves=2)
    assert out
    assert {k for k, _ in out} <= {"a8", "a9"}
    assert level_by_rate(owners, {"a": 40.0, "b": 10.0}, {}, ["a", "b"],
                         moves={f"a{i}": 2 for i in range(10)}, max_moves=2) == []


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 30), min_size=2),
       st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.floats(0, 500), min_size=2))
def test_level_by_rate_only_moves_existing_idle_keys_once_each(
        counts: dict[str, int], rates: dict[str, float]) -> None:
    owners = {s: [Pin(f"{s}{i}") for i in range(n)] for s, n in counts.items()}
    servers = sorted(set(counts) | set(rates))
    moves = level_by_rate(owners, rates, {}, servers)
    keys = [k for k, _ in moves]
    assert len(keys) == len(set(keys))
    owner_of = {p.key: s for s, pins in owners.items() for p in pins}
    assert all(owner_of[k] != r for k, r in moves)
    assert all(r in servers for _, r in moves)


@given(st.dictionaries(st.sampled_from(["s1", "s2", "s3"]),
                       st.lists(st.integers(0, 30), unique=True, max_size=10)),
       st.data())
def test_moved_pins_is_what_a_reread_would_show(raw: dict[str, list[int]],
                                                data: st.DataObject) -> None:
    """Every key stays exactly once, moved keys sit at their receiver, the others where they
    were, and each keeps its idle flag."""
    seen: set[int] = set()
    owners: dict[str, list[Pin]] = {}
    for server, ids in raw.items():
        owners[server] = [Pin(f"k{i}", i % 2 == 0) for i in ids if i not in seen]
        seen.update(ids)
    keys = [p.key for ps in owners.values() for p in ps]
    moved = data.draw(st.lists(st.sampled_from(keys), unique=True) if keys else st.just([]))
    moves = [(k, data.draw(st.sampled_from(["s1", "s2", "s3", "s4"]))) for k in moved]
    out = moved_pins(owners, moves)
    where = {p.key: (s, p.idle) for s, ps in out.items() for p in ps}
    assert sorted(where) == sorted(keys)
    target = dict(moves)
    for s, ps in owners.items():
        for p in ps:
            assert where[p.key] == (target.get(p.key, s), p.idle)
