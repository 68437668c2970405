"""What simulated users saw, as pure functions over their recorded requests.

Every request a simulated user makes is one :class:`Outcome`: who sent it, in which page
view, on which of its connections, when it was sent and when its answer arrived (seconds on
the simulation's monotonic clock), and who answered (``X-Server``, ``X-Version``). The
rollout promises are judged from these records alone, with the definitions below; nothing
here does I/O or reads a clock, so each definition is unit-tested on hand-made records.

Definitions:

* **Answer**: a response that carried ``X-Version``. Versions compare in natural order
  (``v2 < v10``; see :func:`version_key`).
* **Flip back**: a request *sent* after its user had *received* an answer from a version
  newer than the one that answers it. A request sent before that may still be answered by
  the older version (it was already on its way): not a flip. For a user with one request
  at a time this is simply "an older version after a newer one"; for a browser-like user
  whose parallel requests overlap, only the send/receive order can tell.
* **Mixed page**: a page view whose answers came from more than one version.
* **Moves** of a user: how many times the server answering its *page* requests changes
  from one page view to the next (repeats collapsed: s1 s1 s2 s2 s1 is 2 moves). Failed
  page requests are skipped.
* **Load windows**: the successful requests per server in consecutive full windows of
  ``width`` seconds, by sent time; :func:`window_imbalance` then gives each window's
  ``max / mean`` over the servers that count as in service there.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Literal

import attrs

__all__ = [
    "Flip",
    "LoadReport",
    "LoadWindow",
    "Outcome",
    "Role",
    "collapse",
    "find_flips",
    "flip_backs",
    "load_windows",
    "mixed_pages",
    "moves_histogram",
    "summarize",
    "user_moves",
    "version_key",
    "window_imbalance",
]

#: What a request fetched: the page of a page view, or one of its assets.
Role = Literal["page", "asset"]

_FAILURE_EXAMPLES = 5


@attrs.frozen
class Outcome:
    """One request as a user saw it.

    Attributes:
        t: when the request was sent: seconds since the simulation started (monotonic).
            For a request that failed before it could be written (connect refused), when
            it was attempted.
        user: the user's index.
        path: the path requested.
        status: HTTP status, None when no response arrived.
        server, version: ``X-Server`` / ``X-Version`` of the answer, if any.
        error: why the request failed (exception, or ``HTTP <status>``); None if it did not.
        received: when the answer (or the failure) arrived, same clock; None in records
            made without it.
        page_view: the user's page view it belongs to (1, 2, ...).
        role: ``"page"`` or ``"asset"``.
        connection: index of the user's connection it went on (0 for pages).
        set_cookie: whether the response carried a ``Set-Cookie`` header.
    """

    t: float
    user: int
    path: str
    status: int | None
    server: str | None = None
    version: str | None = None
    error: str | None = None
    received: float | None = None
    page_view: int = 0
    role: Role = "page"
    connection: int = 0
    set_cookie: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def sent(self) -> float:
        """Same as :attr:`t`."""
        return self.t


@attrs.frozen
class Flip:
    """A user who got an older version after having received a newer one.

    Attributes:
        user: the user's index.
        versions: the versions of its successful requests in the order they were sent,
            repeats collapsed (``("v1", "v2", "v1")``).
        requests: how many of its requests were flips back.
        first: the first of them (by sent time).
        newest_received: the newest version the user had received when it sent ``first``.
    """

    user: int
    versions: tuple[str, ...]
    requests: int = 0
    first: Outcome | None = None
    newest_received: str | None = None


@attrs.frozen
class LoadWindow:
    """Successful requests per server sent in ``[start, end)``."""

    start: float
    end: float
    per_server: dict[str, int]


@attrs.frozen
class LoadReport:
    """What the users saw.

    Attributes:
        duration: seconds from start to the last request sent.
        total, failed: request counts.
        failure_examples: a few failures, ``user<i> t=<s> <path> <error>``.
        per_server, per_version: successful requests per ``X-Server`` / ``X-Version``.
        flips: one :class:`Flip` per user who flipped back (see the module docstring).
        version_sequences, server_sequences: per user, the versions / servers of its
            successful requests in sent order, consecutive repeats collapsed.
        unfinished_users: users stopped with a request still in flight (it hung past its
            timeout); that request is not counted.
        flipped_requests: requests that were flips back, over all users.
        mixed_pages: page views answered by more than one version.
        page_views: page views with at least one request.
        max_moves, moves_histogram: the most moves of any user, and {moves: users}.
        cpu_seconds: CPU time of the simulation's event-loop thread, if measured.
    """

    duration: float
    total: int
    failed: int
    failure_examples: tuple[str, ...]
    per_server: dict[str, int]
    per_version: dict[str, int]
    flips: tuple[Flip, ...]
    version_sequences: dict[int, tuple[str, ...]]
    server_sequences: dict[int, tuple[str, ...]]
    unfinished_users: tuple[int, ...] = ()
    flipped_requests: int = 0
    mixed_pages: int = 0
    page_views: int = 0
    max_moves: int = 0
    moves_histogram: dict[int, int] = attrs.field(factory=dict)
    cpu_seconds: float | None = None

    @property
    def ok(self) -> bool:
        """No failed request, no flip back, no hung user."""
        return self.failed == 0 and not self.flips and not self.unfinished_users

    @property
    def request_rate(self) -> float:
        """Requests per second over :attr:`duration` (0 for an empty run)."""
        return self.total / self.duration if self.duration > 0 else 0.0

    def summary(self) -> str:
        """A few lines for assertion messages and demo output."""
        lines = [
            f"{self.total} requests in {self.duration:.1f}s, {self.failed} failed",
            f"per server: {dict(sorted(self.per_server.items()))}",
            f"per version: {dict(sorted(self.per_version.items()))}",
            f"page views: {self.page_views}, mixed: {self.mixed_pages}, "
            f"moves: {dict(sorted(self.moves_histogram.items()))}, "
            f"flipped requests: {self.flipped_requests}",
        ]
        lines += [f"failure: {example}" for example in self.failure_examples]
        for f in self.flips:
            line = f"flip back: user{f.user} saw {' -> '.join(f.versions)}"
            if f.first is not None:
                line += (
                    f"; {f.requests} requests answered by an older version after it had "
                    f"received {f.newest_received}, first: {f.first.role} {f.first.path} on "
                    f"connection {f.first.connection} sent at t={f.first.t:.3f}s answered by "
                    f"{f.first.server} {f.first.version}"
                )
            lines.append(line)
        if self.unfinished_users:
            lines.append(f"unfinished users: {list(self.unfinished_users)}")
        return "\n".join(lines)


# --- versions ---------------------------------------------------------------------------------


def version_key(version: str) -> tuple[str | int, ...]:
    """Natural sort key: ``v2 < v10``, and plain ``v1 < v2`` as with strings.

    ``re.split`` with a capturing group alternates text and digit runs, always starting
    with text, so keys only ever compare str with str and int with int.
    """
    return tuple(int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", version)))


def collapse(items: Iterable[str]) -> tuple[str, ...]:
    """Drop consecutive repeats: a, a, b, a -> a, b, a."""
    out: list[str] = []
    for item in items:
        if not out or out[-1] != item:
            out.append(item)
    return tuple(out)


def _by_user(outcomes: Iterable[Outcome]) -> dict[int, list[Outcome]]:
    """Each user's requests in sent order (ties keep the input order)."""
    per_user: dict[int, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        per_user[o.user].append(o)
    for records in per_user.values():
        records.sort(key=lambda o: o.t)
    return dict(per_user)


# --- flips ------------------------------------------------------------------------------------


def _flips_of(records: Sequence[Outcome]) -> list[tuple[Outcome, str]]:
    """(flipped request, newest version received before it was sent), in sent order."""
    answers = sorted(
        (o.received, version_key(o.version), o.version)
        for o in records
        if o.version is not None and o.received is not None
    )
    if not answers:
        return []
    arrivals = [a[0] for a in answers]
    # newest[i]: the newest of the first i + 1 answers to arrive.
    newest: list[tuple[tuple[str | int, ...], str]] = []
    for _, key, version in answers:
        newest.append((key, version) if not newest or key > newest[-1][0] else newest[-1])
    flipped = []
    for o in records:
        if o.version is None:
            continue
        # Answers received strictly before this request was sent.
        n = bisect.bisect_left(arrivals, o.t)
        if n and version_key(o.version) < newest[n - 1][0]:
            flipped.append((o, newest[n - 1][1]))
    return flipped


def flip_backs(outcomes: Iterable[Outcome]) -> dict[int, list[Outcome]]:
    """Per user who flipped back, its flipped requests in sent order (module docstring)."""
    result = {}
    for user, records in _by_user(outcomes).items():
        flipped = _flips_of(records)
        if flipped:
            result[user] = [o for o, _ in flipped]
    return result


def find_flips(outcomes: Iterable[Outcome]) -> tuple[Flip, ...]:
    """One :class:`Flip` per user who flipped back, by user index."""
    flips = []
    for user, records in sorted(_by_user(outcomes).items()):
        flipped = _flips_of(records)
        if flipped:
            versions = collapse(o.version or "?" for o in records if o.ok)
            first, newest = flipped[0]
            flips.append(Flip(user, versions, len(flipped), first, newest))
    return tuple(flips)


# --- pages and moves --------------------------------------------------------------------------


def mixed_pages(outcomes: Iterable[Outcome]) -> list[tuple[int, int]]:
    """(user, page view) of every page view answered by more than one version, sorted."""
    versions: dict[tuple[int, int], set[str]] = defaultdict(set)
    for o in outcomes:
        if o.version is not None:
            versions[(o.user, o.page_view)].add(o.version)
    return sorted(key for key, seen in versions.items() if len(seen) > 1)


def user_moves(outcomes: Iterable[Outcome]) -> dict[int, int]:
    """Moves of every user that has a successful page request (module docstring)."""
    pages: dict[int, list[tuple[int, float, str]]] = defaultdict(list)
    for o in outcomes:
        if o.role == "page" and o.ok and o.server is not None:
            pages[o.user].append((o.page_view, o.t, o.server))
    return {user: len(collapse(s for _, _, s in sorted(seq))) - 1 for user, seq in pages.items()}


def moves_histogram(moves: Mapping[int, int]) -> dict[int, int]:
    """{number of moves: number of users}, sorted by moves."""
    return dict(sorted(Counter(moves.values()).items()))


# --- load -------------------------------------------------------------------------------------


def load_windows(
    outcomes: Iterable[Outcome], start: float, end: float, width: float = 1.0
) -> list[LoadWindow]:
    """Successful requests per server, by sent time, in each full window of ``[start, end)``.

    Windows are ``[start + k * width, start + (k + 1) * width)``; a last partial window is
    left out (it would look underloaded).
    """
    if not width > 0:
        raise ValueError("width must be positive")
    count = max(0, math.floor((end - start) / width))
    # The division may round either way; the bounds as computed below are the truth.
    while count > 0 and start + count * width > end:
        count -= 1
    while start + (count + 1) * width <= end:
        count += 1
    counters: list[Counter[str]] = [Counter() for _ in range(count)]
    for o in outcomes:
        if not (o.ok and o.server is not None and start <= o.t < start + count * width):
            continue
        k = min(count - 1, math.floor((o.t - start) / width))
        while k > 0 and start + k * width > o.t:
            k -= 1
        while k + 1 < count and start + (k + 1) * width <= o.t:
            k += 1
        counters[k][o.server] += 1
    return [
        LoadWindow(start + k * width, start + (k + 1) * width, dict(counters[k]))
        for k in range(count)
    ]


def window_imbalance(
    windows: Sequence[LoadWindow],
    in_service: Callable[[LoadWindow], Collection[str]]
    | Sequence[Collection[str]]
    | None = None,
) -> list[float | None]:
    """``max / mean`` of the requests per in-service server, for each window.

    ``in_service`` says which servers count in each window: a function of the window (e.g.
    built from a status sampler: the servers ready and UP throughout it), or one collection
    per window. By default, the servers that answered in the window. A server in service
    that got nothing counts as 0 (the worst imbalance); requests answered by servers not in
    the set are left out. 1.0 is perfectly even. None when no server counts or none of them
    answered.
    """
    if in_service is not None and not callable(in_service) and len(in_service) != len(windows):
        raise ValueError("in_service needs one collection of servers per window")
    ratios: list[float | None] = []
    for k, window in enumerate(windows):
        if in_service is None:
            servers: Collection[str] = window.per_server.keys()
        elif callable(in_service):
            servers = in_service(window)
        else:
            servers = in_service[k]
        counts = [window.per_server.get(s, 0) for s in set(servers)]
        total = sum(counts)
        ratios.append(max(counts) * len(counts) / total if total else None)
    return ratios


# --- the report -------------------------------------------------------------------------------


def summarize(
    outcomes: Iterable[Outcome],
    *,
    unfinished_users: Iterable[int] = (),
    cpu_seconds: float | None = None,
) -> LoadReport:
    """The :class:`LoadReport` of a set of requests."""
    records = sorted(outcomes, key=lambda o: o.t)
    per_user = _by_user(records)
    failures = [o for o in records if not o.ok]
    good = [o for o in records if o.ok]
    flips = find_flips(records)
    moves = user_moves(records)
    return LoadReport(
        duration=records[-1].t if records else 0.0,
        total=len(records),
        failed=len(failures),
        failure_examples=tuple(
            f"user{o.user} t={o.t:.2f}s {o.path} {o.error}" for o in failures[:_FAILURE_EXAMPLES]
        ),
        per_server=dict(Counter(o.server or "?" for o in good)),
        per_version=dict(Counter(o.version or "?" for o in good)),
        flips=flips,
        version_sequences={
            u: collapse(o.version or "?" for o in rs if o.ok) for u, rs in per_user.items()
        },
        server_sequences={
            u: collapse(o.server or "?" for o in rs if o.ok) for u, rs in per_user.items()
        },
        unfinished_users=tuple(sorted(set(unfinished_users))),
        flipped_requests=sum(f.requests for f in flips),
        mixed_pages=len(mixed_pages(records)),
        page_views=len({(o.user, o.page_view) for o in records}),
        max_moves=max(moves.values(), default=0),
        moves_histogram=moves_histogram(moves),
        cpu_seconds=cpu_seconds,
    )
