"""Simulated users: steady HTTP traffic through a lab frontend, recorded request by request.

A rolling update is judged from the users' side: did any request fail, and did any user who
had already seen the new version get the old one again ("flip back")? Each simulated user
behaves like a browser tab with a keep-alive connection:

* its own ``http.client.HTTPConnection``, reused across requests and reopened after the
  server closes it or an error (the failed request still counts as failed: a real user
  would have seen it fail);
* its own cookie jar, so cookie persistence (``SRV=...``) works;
* for ``src`` persistence, its own loopback source address ``127.0.0.<10+i>``, so
  ``stick on src`` sees distinct clients (all of 127.0.0.0/8 is local on Linux);
* for ``header`` persistence, an ``X-User: user<i>`` header.

A run is bounded both in requests and in seconds so a test on a 2-core machine cannot run
away, and users pause ``think_time`` between requests to keep CPU use modest.
"""

from __future__ import annotations

import http.client
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Literal

import attrs

__all__ = ["Flip", "LoadReport", "Outcome", "UserPersistence", "UserSimulation"]

#: How users identify themselves to a persistent backend (None: they do not).
UserPersistence = Literal["cookie", "src", "header"]

_MAX_SRC_USERS = 245  # 127.0.0.10 ... 127.0.0.254
_FAILURE_EXAMPLES = 5


@attrs.frozen
class Outcome:
    """One request as a user saw it.

    Attributes:
        t: seconds since the simulation started, when the request was sent.
        user: the user's index.
        path: the path requested.
        status: HTTP status, None when no response arrived.
        server, version: ``X-Server`` / ``X-Version`` of the answer, if any.
        error: why the request failed (exception, or ``HTTP <status>``); None if it did not.
    """

    t: float
    user: int
    path: str
    status: int | None
    server: str | None = None
    version: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@attrs.frozen
class Flip:
    """A user who got an older version after having seen a newer one."""

    user: int
    versions: tuple[str, ...]  # the user's version sequence, repeats collapsed


@attrs.frozen
class LoadReport:
    """What the users saw.

    Attributes:
        duration: seconds from start to the last request.
        total, failed: request counts.
        failure_examples: a few failures, ``user<i> t=<s> <error>``.
        per_server, per_version: successful requests per ``X-Server`` / ``X-Version``.
        flips: users who went back to an older version (versions compare in natural order:
            ``v2 < v10``).
        version_sequences, server_sequences: per user, the versions / servers seen, in
            order, with consecutive repeats collapsed (``("v1", "v2")``).
        unfinished_users: users whose thread was still running when the simulation stopped
            (a request hung past its timeout); their last request is not counted.
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

    @property
    def ok(self) -> bool:
        """No failed request, no flip back, no hung user."""
        return self.failed == 0 and not self.flips and not self.unfinished_users

    def summary(self) -> str:
        """A few lines for assertion messages and demo output."""
        lines = [
            f"{self.total} requests in {self.duration:.1f}s, {self.failed} failed",
            f"per server: {dict(sorted(self.per_server.items()))}",
            f"per version: {dict(sorted(self.per_version.items()))}",
        ]
        lines += [f"failure: {example}" for example in self.failure_examples]
        lines += [f"flip back: user{f.user} saw {' -> '.join(f.versions)}" for f in self.flips]
        if self.unfinished_users:
            lines.append(f"unfinished users: {list(self.unfinished_users)}")
        return "\n".join(lines)


def _version_key(version: str) -> tuple[str | int, ...]:
    """Natural sort key: ``v2 < v10``, and plain ``v1 < v2`` as with strings.

    ``re.split`` with a capturing group alternates text and digit runs, always starting
    with text, so keys only ever compare str with str and int with int.
    """
    return tuple(int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", version)))


def _collapse(items: Iterable[str]) -> tuple[str, ...]:
    """Drop consecutive repeats: a, a, b, a -> a, b, a."""
    out: list[str] = []
    for item in items:
        if not out or out[-1] != item:
            out.append(item)
    return tuple(out)


def _flipped(versions: Sequence[str]) -> bool:
    """Whether a version older than one already seen appears."""
    newest: tuple[str | int, ...] | None = None
    for version in versions:
        key = _version_key(version)
        if newest is not None and key < newest:
            return True
        newest = key if newest is None else max(newest, key)
    return False


class _Budget:
    """The shared limits of a run: a request count and a deadline."""

    def __init__(self, max_requests: int, max_seconds: float) -> None:
        self._lock = threading.Lock()
        self._left = max_requests
        self.deadline = time.monotonic() + max_seconds

    def take(self) -> bool:
        """Claim one request; False once the run is over."""
        if time.monotonic() >= self.deadline:
            return False
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


@attrs.frozen
class _Settings:
    host: str
    port: int
    persistence: UserPersistence | None
    think_time: float
    slow_fraction: float
    slow_seconds: float
    request_timeout: float


class _User:
    """One simulated user; :meth:`run` is its thread's body."""

    def __init__(
        self, index: int, settings: _Settings, budget: _Budget, stop: threading.Event, seed: int
    ) -> None:
        self.index = index
        self.outcomes: list[Outcome] = []  # appended by this user's thread only
        self._settings = settings
        self._budget = budget
        self._stop = stop
        self._rng = random.Random(seed)
        self._cookies: dict[str, str] = {}
        self._conn: http.client.HTTPConnection | None = None

    def run(self, t0: float) -> None:
        try:
            while not self._stop.is_set() and self._budget.take():
                self._request(t0)
                if self._stop.wait(self._settings.think_time):
                    break
        finally:
            self._drop_connection()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            s = self._settings
            source = (f"127.0.0.{10 + self.index}", 0) if s.persistence == "src" else None
            self._conn = http.client.HTTPConnection(
                s.host, s.port, timeout=s.request_timeout + s.slow_seconds, source_address=source
            )
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _headers(self) -> dict[str, str]:
        headers = {}
        if self._cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self._cookies.items())
        if self._settings.persistence == "header":
            headers["X-User"] = f"user{self.index}"
        return headers

    def _remember_cookies(self, set_cookies: list[str]) -> None:
        for header in set_cookies:
            name, sep, value = header.split(";", 1)[0].strip().partition("=")
            if sep:
                self._cookies[name] = value

    def _request(self, t0: float) -> None:
        s = self._settings
        slow = s.slow_fraction > 0 and self._rng.random() < s.slow_fraction
        path = f"/slow?s={s.slow_seconds}" if slow else "/"
        t = time.monotonic() - t0
        try:
            conn = self._connection()
            conn.request("GET", path, headers=self._headers())
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            # The connection is in an unknown state: a new one for the next request.
            self._drop_connection()
            self.outcomes.append(Outcome(t, self.index, path, None, error=_describe(exc)))
            return
        self._remember_cookies(response.headers.get_all("Set-Cookie") or [])
        if response.will_close:
            self._drop_connection()
        server = response.headers.get("X-Server")
        version = response.headers.get("X-Version")
        error = None if response.status == 200 else f"HTTP {response.status}"
        self.outcomes.append(Outcome(t, self.index, path, response.status, server, version, error))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class UserSimulation:
    """``n_users`` simulated users sending requests to ``url_host:url_port`` in threads.

    Args:
        url_host, url_port: the frontend to load (e.g. ``lab.frontend_port("web")``).
        n_users: number of users (threads).
        persistence: how users identify themselves; see the module docstring.
        think_time: pause between two requests of one user, in seconds.
        slow_fraction: probability that a request is ``/slow?s=<slow_seconds>``.
        slow_seconds: how long slow requests take.
        max_requests: total requests of the run, over all users.
        max_seconds: duration limit of the run.
        request_timeout: per-request socket timeout (plus ``slow_seconds``).
        seed: makes the choice of slow requests reproducible.
    """

    def __init__(
        self,
        url_host: str,
        url_port: int,
        *,
        n_users: int,
        persistence: UserPersistence | None = None,
        think_time: float = 0.05,
        slow_fraction: float = 0.0,
        slow_seconds: float = 0.0,
        max_requests: int = 5000,
        max_seconds: float = 30.0,
        request_timeout: float = 10.0,
        seed: int = 0,
    ) -> None:
        if n_users < 1:
            raise ValueError("n_users must be at least 1")
        if persistence == "src" and n_users > _MAX_SRC_USERS:
            raise ValueError(f"at most {_MAX_SRC_USERS} users with src persistence")
        if not 0.0 <= slow_fraction <= 1.0:
            raise ValueError("slow_fraction must be between 0 and 1")
        if max_requests < 1 or max_seconds <= 0:
            raise ValueError("max_requests and max_seconds must be positive")
        self._settings = _Settings(
            host=url_host,
            port=url_port,
            persistence=persistence,
            think_time=think_time,
            slow_fraction=slow_fraction,
            slow_seconds=slow_seconds,
            request_timeout=request_timeout,
        )
        self._n_users = n_users
        self._max_requests = max_requests
        self._max_seconds = max_seconds
        self._seed = seed
        self._stop = threading.Event()
        self._users: list[_User] = []
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0

    def __enter__(self) -> UserSimulation:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> UserSimulation:
        """Start every user's thread; returns ``self``."""
        if self._threads:
            raise RuntimeError("this simulation was already started")
        budget = _Budget(self._max_requests, self._max_seconds)
        self._t0 = time.monotonic()
        for i in range(self._n_users):
            user = _User(i, self._settings, budget, self._stop, seed=self._seed * 1000 + i)
            thread = threading.Thread(
                target=user.run, args=(self._t0,), name=f"user{i}", daemon=True
            )
            self._users.append(user)
            self._threads.append(thread)
            thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run has used up its requests or seconds; False on ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(thread.is_alive() for thread in self._threads)

    def stop(self) -> None:
        """Ask every user to stop and wait for them (bounded by the request timeout)."""
        self._stop.set()
        self.wait(self._settings.request_timeout + self._settings.slow_seconds + 1.0)

    def run(self) -> LoadReport:
        """Start, let the run use up its limits, stop, and report."""
        self.start()
        try:
            self.wait(self._max_seconds + self._settings.request_timeout)
        finally:
            self.stop()
        return self.report()

    @property
    def requests_done(self) -> int:
        """Requests completed so far (any outcome)."""
        return sum(len(user.outcomes) for user in self._users)

    def outcomes(self) -> list[Outcome]:
        """Every request so far, in time order."""
        # list() copies: users may still be appending (appends are atomic under the GIL).
        merged = [o for user in self._users for o in list(user.outcomes)]
        return sorted(merged, key=lambda o: o.t)

    def report(self) -> LoadReport:
        """Summarise what the users saw so far."""
        per_user = {user.index: list(user.outcomes) for user in self._users}
        outcomes = sorted((o for os_ in per_user.values() for o in os_), key=lambda o: o.t)
        failures = [o for o in outcomes if not o.ok]
        good = [o for o in outcomes if o.ok]
        versions = {u: [o.version or "?" for o in os_ if o.ok] for u, os_ in per_user.items()}
        servers = {u: [o.server or "?" for o in os_ if o.ok] for u, os_ in per_user.items()}
        return LoadReport(
            duration=outcomes[-1].t if outcomes else 0.0,
            total=len(outcomes),
            failed=len(failures),
            failure_examples=tuple(
                f"user{o.user} t={o.t:.2f}s {o.path} {o.error}"
                for o in failures[:_FAILURE_EXAMPLES]
            ),
            per_server=dict(Counter(o.server or "?" for o in good)),
            per_version=dict(Counter(o.version or "?" for o in good)),
            flips=tuple(
                Flip(u, _collapse(seq)) for u, seq in sorted(versions.items()) if _flipped(seq)
            ),
            version_sequences={u: _collapse(seq) for u, seq in versions.items()},
            server_sequences={u: _collapse(seq) for u, seq in servers.items()},
            unfinished_users=tuple(
                user.index
                for user, thread in zip(self._users, self._threads, strict=True)
                if thread.is_alive()
            ),
        )
