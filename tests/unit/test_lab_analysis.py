"""What simulated users saw (haproxyctl.lab.analysis): the definitions of flips back, mixed
pages, moves and load windows, on hand-made records."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from haproxyctl.lab.analysis import (
    Flip,
    LoadReport,
    LoadWindow,
    Outcome,
    Role,
    find_flips,
    flip_backs,
    load_windows,
    mixed_pages,
    moves_histogram,
    summarize,
    user_moves,
    version_key,
    window_imbalance,
)


def req(sent: float, received: float, version: str | None = "v1", *, user: int = 0,
        server: str | None = "s1", page_view: int = 0, role: Role = "page",
        connection: int = 0, error: str | None = None, path: str = "/") -> Outcome:
    status = None if error else 200
    return Outcome(sent, user, path, status, server, version, error, received=received,
                   page_view=page_view, role=role, connection=connection)


def failed(sent: float, received: float, *, user: int = 0) -> Outcome:
    return Outcome(sent, user, "/", None, error="ConnectionRefusedError", received=received)


# --- flips: examples --------------------------------------------------------------------------


def test_one_request_at_a_time_flips_on_an_older_version_after_a_newer_one() -> None:
    records = [req(0, 1, "v1"), req(2, 3, "v2"), req(4, 5, "v1"), req(6, 7, "v1")]
    assert flip_backs(records) == {0: [records[2], records[3]]}
    (flip,) = find_flips(records)
    assert flip == Flip(0, ("v1", "v2", "v1"), 2, records[2], "v2")


def test_a_request_sent_before_the_newer_answer_arrived_is_no_flip() -> None:
    page = req(0.0, 1.0, "v1", page_view=1)
    asset_v2 = req(1.1, 1.5, "v2", page_view=1, role="asset", connection=1)
    asset_v1 = req(1.2, 1.9, "v1", page_view=1, role="asset", connection=2)  # in flight
    assert flip_backs([page, asset_v2, asset_v1]) == {}
    # The same answer for a request sent once v2 had arrived is a flip.
    late = req(1.6, 2.0, "v1", page_view=2)
    assert flip_backs([page, asset_v2, asset_v1, late]) == {0: [late]}
    # Sent at the very instant the v2 answer arrived: not after it.
    tie = req(1.5, 2.0, "v1", page_view=2)
    assert flip_backs([page, asset_v2, asset_v1, tie]) == {}


def test_versions_compare_in_natural_order() -> None:
    assert version_key("v2") < version_key("v10") < version_key("v10.1")
    records = [req(0, 1, "v10"), req(2, 3, "v9")]
    assert [f.newest_received for f in find_flips(records)] == ["v10"]
    assert find_flips([req(0, 1, "v9"), req(2, 3, "v10")]) == ()


def test_failed_requests_and_answers_without_version_do_not_count() -> None:
    records = [req(0, 1, "v2"), failed(2, 3), req(4, 5, None), req(6, 7, "v2")]
    assert find_flips(records) == ()
    # An error page from v1 is still v1 answering.
    error_page = Outcome(8, 0, "/", 500, "s1", "v1", "HTTP 500", received=9)
    assert flip_backs([*records, error_page]) == {0: [error_page]}


def test_newer_versions_than_v2_generalise_the_definition() -> None:
    records = [req(0, 1, "v1"), req(2, 3, "v3"), req(4, 5, "v2"), req(6, 7, "v3")]
    (flip,) = find_flips(records)
    assert (flip.requests, flip.first, flip.newest_received) == (1, records[2], "v3")


def test_users_are_judged_separately() -> None:
    a = [req(0, 1, "v2", user=1), req(2, 3, "v1", user=1)]
    b = [req(0, 1, "v1", user=2), req(2, 3, "v2", user=2)]
    assert [f.user for f in find_flips(a + b)] == [1]


# --- flips: properties ------------------------------------------------------------------------

VERSIONS = ["v1", "v2", "v10"]
times = st.integers(0, 40).map(lambda n: n / 4)  # coarse, so that ties happen


@st.composite
def user_records(draw: st.DrawFn, versions: Sequence[str] = VERSIONS,
                 user: int = 0) -> list[Outcome]:
    records = []
    for _ in range(draw(st.integers(0, 12))):
        sent = draw(times)
        received = sent + draw(times)
        if draw(st.integers(0, 9)) == 0:
            records.append(failed(sent, received, user=user))
        else:
            records.append(req(sent, received, draw(st.sampled_from(list(versions))),
                               user=user))
    return records


def reference_flips(records: Sequence[Outcome]) -> list[Outcome]:
    """The definition, word for word: answered by a version older than one of the answers
    the user had received strictly before this request was sent."""
    return [o for o in records if o.version is not None and any(
        a.version is not None and a.received is not None and a.received < o.t
        and version_key(a.version) > version_key(o.version) for a in records)]


def as_set(flips: dict[int, list[Outcome]]) -> set[int]:
    return {id(o) for os_ in flips.values() for o in os_}


@given(user_records())
def test_flips_match_the_definition(records: list[Outcome]) -> None:
    assert as_set(flip_backs(records)) == {id(o) for o in reference_flips(records)}
    flips = find_flips(records)
    assert sum(f.requests for f in flips) == len(reference_flips(records))


@given(user_records(versions=["v7"]))
def test_a_user_who_only_receives_one_version_never_flips(records: list[Outcome]) -> None:
    assert find_flips(records) == ()


@given(user_records(versions=["v1", "v2"]), times, times)
def test_a_v1_request_sent_before_the_first_v2_arrival_never_creates_a_flip(
        records: list[Outcome], sent: float, took: float) -> None:
    first_v2 = min((o.received for o in records if o.version == "v2" and o.received is not None),
                   default=None)
    assume(first_v2 is None or sent < first_v2)
    extra = req(sent, sent + took, "v1")
    assert as_set(flip_backs([*records, extra])) == as_set(flip_backs(records))


@given(user_records())
def test_order_of_records_and_shift_of_the_clock_do_not_matter(records: list[Outcome]) -> None:
    base = as_set(flip_backs(records))
    assert as_set(flip_backs(list(reversed(records)))) == base
    shifted = [req(o.t + 100, (o.received or 0) + 100, o.version, error=o.error)
               for o in records]
    assert {i for i, o in enumerate(shifted) if id(o) in as_set(flip_backs(shifted))} == \
        {i for i, o in enumerate(records) if id(o) in base}


@given(st.lists(st.sampled_from(VERSIONS), max_size=10), st.lists(times, min_size=10,
                                                                 max_size=10))
def test_sequential_users_flip_exactly_when_their_versions_go_down(
        versions: list[str], gaps: list[float]) -> None:
    """One request at a time (each sent after the previous answer arrived, as the one-request
    users do): the old definition, "an older version after a newer one", holds."""
    records, t = [], 0.0
    for version, gap in zip(versions, gaps, strict=False):
        records.append(req(t, t + 0.1 + gap, version))
        t += 0.2 + gap
    keys = [version_key(v) for v in versions]
    went_down = any(later < earlier for earlier, later in itertools.combinations(keys, 2))
    assert bool(find_flips(records)) == went_down


# --- mixed pages ------------------------------------------------------------------------------


def test_mixed_pages() -> None:
    records = [
        req(0, 1, "v1", page_view=1), req(1.1, 1.2, "v1", page_view=1, role="asset"),
        req(2, 3, "v1", page_view=2), req(3.1, 3.2, "v2", page_view=2, role="asset"),
        failed(3.1, 3.3),  # page view 0: no version, no mix
        req(4, 5, "v2", page_view=3), req(4, 5, "v2", page_view=3, user=1),
        req(4, 5, "v1", page_view=3, user=1, role="asset"),
    ]
    assert mixed_pages(records) == [(0, 2), (1, 3)]


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(VERSIONS)), max_size=30))
def test_one_request_per_page_view_is_never_mixed(pages: list[tuple[int, str]]) -> None:
    records = [req(i, i + 0.5, v, user=u, page_view=i) for i, (u, v) in enumerate(pages)]
    assert mixed_pages(records) == []


# --- moves ------------------------------------------------------------------------------------


def test_moves_count_changes_of_the_page_server_between_page_views() -> None:
    servers = ["s1", "s1", "s2", "s2", "s1"]
    records = [req(i, i + 0.5, server=s, page_view=i + 1) for i, s in enumerate(servers)]
    # Assets and failed pages do not count.
    records += [req(0.6, 0.7, server="s3", page_view=1, role="asset"), failed(9, 9.5)]
    records += [req(0, 1, server="s4", user=1, page_view=1)]
    assert user_moves(records) == {0: 2, 1: 0}
    assert moves_histogram(user_moves(records)) == {0: 1, 2: 1}
    # Page views, not send times, give the order.
    shuffled = [req(10 - i, 10.5 - i, server=s, page_view=i + 1)
                for i, s in enumerate(["s1", "s2", "s1"])]
    assert user_moves(shuffled) == {0: 2}


# --- load windows -----------------------------------------------------------------------------


def test_load_windows_count_successful_requests_by_sent_time() -> None:
    records = [req(0.0, 0.1, server="a"), req(0.99, 1.2, server="b"), req(1.0, 1.1, server="a"),
               req(1.5, 1.6, server="a"), failed(1.7, 1.8), req(2.0, 2.2, server=None),
               req(2.5, 3.5, server="b"), req(3.2, 3.3, server="a")]
    windows = load_windows(records, 0.0, 3.0)
    assert windows == [LoadWindow(0.0, 1.0, {"a": 1, "b": 1}), LoadWindow(1.0, 2.0, {"a": 2}),
                       LoadWindow(2.0, 3.0, {"b": 1})]
    assert load_windows(records, 0.5, 3.4, width=1.5) == [
        LoadWindow(0.5, 2.0, {"a": 2, "b": 1}), ]
    assert load_windows(records, 1.0, 1.5) == []
    with pytest.raises(ValueError, match="width"):
        load_windows(records, 0, 1, width=0)


@given(st.lists(st.tuples(st.floats(-5, 20), st.sampled_from(["a", "b", "c"]))),
       st.floats(-2, 5), st.floats(0, 15), st.sampled_from([0.1, 0.3, 1.0, 2.5]))
def test_every_request_is_in_the_window_that_contains_its_sent_time(
        sent: list[tuple[float, str]], start: float, length: float, width: float) -> None:
    records = [req(t, t + 1, server=s) for t, s in sent]
    windows = load_windows(records, start, start + length, width)
    assert all(w.end <= start + length + 1e-9 for w in windows)
    assert [w.start for w in windows] == [start + k * width for k in range(len(windows))]
    for w in windows:
        inside = Counter(s for t, s in sent if w.start <= t < w.end)
        assert w.per_server == dict(inside)


def test_window_imbalance() -> None:
    windows = [LoadWindow(0, 1, {"a": 4, "b": 2}), LoadWindow(1, 2, {"a": 3, "b": 3}),
               LoadWindow(2, 3, {})]
    # Default: the servers that answered in each window.
    assert window_imbalance(windows) == [4 / 3, 1.0, None]
    # A server in service that got nothing is the worst case; servers out of service are
    # left out.
    in_service = [{"a", "b", "c"}, {"b"}, {"a"}]
    assert window_imbalance(windows, in_service) == [2.0, 1.0, None]
    assert window_imbalance(windows, lambda w: {"a", "c"} if w.start == 0 else set()) == \
        [2.0, None, None]
    with pytest.raises(ValueError, match="per window"):
        window_imbalance(windows, [{"a"}])


# --- the report -------------------------------------------------------------------------------


def test_summarize() -> None:
    records = [
        req(0.0, 0.1, "v1", page_view=1, server="s1"),
        req(0.2, 0.3, "v1", page_view=1, server="s1", role="asset", connection=1),
        req(1.0, 1.1, "v2", page_view=2, server="s2"),
        req(1.2, 1.5, "v1", page_view=2, server="s1", role="asset", connection=1),
        failed(2.0, 2.1),
        req(0.5, 0.6, "v1", user=1, page_view=1, server="s3"),
    ]
    report = summarize(records, unfinished_users=[3, 3], cpu_seconds=0.25)
    assert (report.total, report.failed, report.duration) == (6, 1, 2.0)
    assert report.per_server == {"s1": 3, "s2": 1, "s3": 1}
    assert report.per_version == {"v1": 4, "v2": 1}
    assert report.version_sequences == {0: ("v1", "v2", "v1"), 1: ("v1",)}
    assert report.server_sequences == {0: ("s1", "s2", "s1"), 1: ("s3",)}
    assert [(f.user, f.requests) for f in report.flips] == [(0, 1)]
    assert report.flipped_requests == 1
    assert report.mixed_pages == 1
    assert report.page_views == 4  # the failed request is page view 0
    assert (report.max_moves, report.moves_histogram) == (1, {0: 1, 1: 1})
    assert report.unfinished_users == (3,)
    assert report.cpu_seconds == 0.25
    assert report.request_rate == 3.0
    assert not report.ok
    text = report.summary()
    assert "flip back: user0 saw v1 -> v2 -> v1; 1 requests" in text
    assert "asset /" in text
    assert "after it had received v2" in text
    assert "failure: user0 t=2.00s / ConnectionRefusedError" in text


def test_reports_keep_their_old_shape() -> None:
    """Callers that build reports (or flips) the old way keep working."""
    report = LoadReport(1.0, 0, 0, (), {}, {}, (), {}, {})
    assert report.ok
    assert report.flipped_requests == 0
    assert report.request_rate == 0.0
    assert Flip(1, ("v2", "v1")).requests == 0
    assert summarize([]).total == 0
    old = Outcome(0.5, 1, "/", 200, "s1", "v1")
    assert (old.ok, old.sent, old.role, old.received) == (True, 0.5, "page", None)
