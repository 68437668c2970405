"""Simulated users: steady HTTP traffic through a lab frontend, recorded request by request.

A rolling update is judged from the users' side: did any request fail, did any user who had
already received the new version get the old one again ("flip back"), and how was the load
spread? The definitions are in :mod:`haproxyctl.lab.analysis`; this module makes the traffic.

Two kinds of users, ``n_users`` in all:

* **Browser-like users** (the first ``browsers`` of them) load a page the way a browser
  does. A page view is one request for the page (``/``, or with probability
  ``slow_fraction`` ``/slow?s=<slow_seconds>``) on the user's connection 0; once its
  response has arrived (and only if it succeeded: an error page has no assets), ``K - 1``
  requests in parallel for its assets (``/asset/<n>``, each also slow with probability
  ``slow_fraction``), one on each of connections ``1 .. K-1`` (``K = connections``, 2 to 6
  like a browser's per-host limit). When all have answered, the user thinks, then starts
  its next page view.
* **One-request users** (the others) make one request per page view, on one connection.

Between page views every user thinks ``think_time`` seconds with a seeded +-25% jitter, and
its first page view starts after a random part of one think time, so users do not fire in
lockstep.

Each user has:

* keep-alive connections (:class:`~haproxyctl.lab.httpclient.Connection`), reopened after
  the server closed one, after ``Connection: close`` and after any error or timeout; the
  failed request still counts as failed (a real user would have seen it fail);
* **one cookie jar shared by all its connections**, as in a browser. A ``Set-Cookie`` is
  applied the moment its response arrives, so with parallel requests the last one to arrive
  wins; each request's ``Cookie`` header is built from the jar the moment it is written.
  This is what makes a browser's parallel requests dangerous during an update: when its
  server leaves service, each of them is balanced on its own, and the user may be re-pinned
  to whichever server answered last;
* for ``src`` persistence, its own loopback source address (:func:`source_address`) bound
  by every one of its connections, so ``stick on src`` sees one client per user (all of
  127.0.0.0/8 is local on Linux);
* for ``header`` persistence, an ``X-User: user<i>`` header.

Every user runs on **one asyncio event loop in one background thread**; the public API is
synchronous. Threads per connection would be 600 threads for 150 browsers with four
connections; on a loop a sleeping user costs a timer, an idle connection a file descriptor.

Measured cost (``bench/bench_users.py``, 2026-12-04, Python 3.11, on the 2-core machine that
also runs HAProxy 2.6 (2 threads) and the 6 app servers; 150 users: 100 browsers with K=4
and 50 one-request users, think time 0.5 s, 15 s runs, 450 connections open; four runs):

* cookie persistence: 13,364-13,417 requests, **894 requests/s**, 0 failed; the users'
  loop thread used **2.4-3.9 s of CPU per 15 s (16-26% of one core, 180-290 us per
  request)**; in the same runs HAProxy used 1.2-1.8 s and the 6 apps 2.8-4.4 s;
* ``stick-src`` with ``src`` users: 13,384-13,414 requests, 892-894 requests/s, 0 failed;
  loop thread 2.5-3.7 s (17-24% of one core, 190-275 us per request);
* 150 browsers with K=4 (600 connections), cookie persistence, 10 s: 1,178 requests/s,
  0 failed, 2.55 s of loop CPU (25% of one core, 216 us per request).

The spread is the machine's background load. About 220 us of a request's CPU is the floor
of any asyncio-streams client on this machine (a bare write/read loop with no parsing,
measured alike), most of it the kernel's loopback TCP; the thread-per-user
``http.client`` version this module replaced cost about the same per request (258 against
346 us for 150 one-request users at 300 requests/s, where every request wakes the loop on
its own), but needed a thread per connection.

A run is bounded both in requests and in seconds so a test on a 2-core machine cannot run
away.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Literal

from haproxyctl.lab.analysis import Flip, LoadReport, Outcome, Role, summarize
from haproxyctl.lab.httpclient import Connection, HTTPError, Response

__all__ = [
    "Flip",
    "LoadReport",
    "Outcome",
    "UserPersistence",
    "UserSimulation",
    "source_address",
]

#: How users identify themselves to a persistent backend (None: they do not).
UserPersistence = Literal["cookie", "src", "header"]

# Users 0..244 get 127.0.0.10 .. 127.0.0.254, the addresses users have always had (tests
# look them up in stick tables); further users get 127.1.x.y. 127.0.1.x is left to the e2e
# rig's own Browser class, so both can share one lab.
_LEGACY_SRC_USERS = 245
_PER_BLOCK = 250
_MAX_SRC_USERS = _LEGACY_SRC_USERS + 256 * _PER_BLOCK
_MIN_CONNECTIONS, _MAX_CONNECTIONS = 2, 6
_JITTER = 0.25
# Waited for the loop thread after a forced stop (cancelled tasks finish at once).
_FORCED_STOP_WAIT = 5.0
# How often the loop thread records its own CPU time while it runs.
_CPU_SAMPLE = 0.25


def source_address(index: int) -> str:
    """The loopback address user ``index`` binds with ``src`` persistence (unique per user)."""
    if not 0 <= index < _MAX_SRC_USERS:
        raise ValueError(f"no source address for user {index}")
    if index < _LEGACY_SRC_USERS:
        return f"127.0.0.{10 + index}"
    block, offset = divmod(index - _LEGACY_SRC_USERS, _PER_BLOCK)
    return f"127.1.{block}.{2 + offset}"


class _Clock:
    """Seconds since ``t0`` (monotonic), strictly increasing across calls.

    Strictness makes the order of timestamps the order of events on the loop: a response
    processed before a request is written always has ``received < sent``, which the flip
    definition relies on.
    """

    def __init__(self, t0: float) -> None:
        self._t0 = t0
        self._last = -math.inf

    def now(self) -> float:
        t = time.monotonic() - self._t0
        if t <= self._last:
            t = math.nextafter(self._last, math.inf)
        self._last = t
        return t


class _User:
    """One user's state; only ever touched on the loop thread."""

    def __init__(self, index: int, connections: list[Connection], seed: str,
                 persistence: UserPersistence | None) -> None:
        self.index = index
        self.connections = connections
        self.rng = random.Random(seed)
        self.jar: dict[str, str] = {}
        self.page_view = 0
        #: Requests started and not finished (connecting, sent, or reading).
        self.in_flight = 0
        self.task: asyncio.Task[None] | None = None
        self._x_user = f"user{index}" if persistence == "header" else None

    def headers(self) -> list[tuple[str, str]]:
        """The request headers, built from the jar as it is now."""
        headers = []
        if self.jar:
            headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in self.jar.items())))
        if self._x_user is not None:
            headers.append(("X-User", self._x_user))
        return headers

    def remember_cookies(self, set_cookies: Iterable[str]) -> None:
        """Apply ``Set-Cookie`` values to the jar (name=value; ``Max-Age<=0`` deletes)."""
        for header in set_cookies:
            pair, *attributes = header.split(";")
            name, eq, value = pair.partition("=")
            name = name.strip()
            if not eq or not name:
                continue
            if any(_expires_now(a) for a in attributes):
                self.jar.pop(name, None)
            else:
                self.jar[name] = value.strip()

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


def _expires_now(attribute: str) -> bool:
    key, _, value = attribute.partition("=")
    if key.strip().lower() != "max-age":
        return False
    try:
        return int(value.strip()) <= 0
    except ValueError:
        return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "TimeoutError: no complete response in time"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _ensure_fd_limit(needed: int) -> None:
    """Raise the soft open-files limit if the run needs more sockets than it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class UserSimulation:
    """``n_users`` simulated users sending requests to ``url_host:url_port``.

    Args:
        url_host, url_port: the frontend to load (e.g. ``lab.frontend_port("web")``).
        n_users: number of users.
        persistence: how users identify themselves; see the module docstring.
        think_time: pause between two page views of one user, in seconds (+-25%).
        slow_fraction: probability that a request is ``/slow?s=<slow_seconds>``.
        slow_seconds: how long slow requests take.
        max_requests: total requests of the run, over all users.
        max_seconds: duration limit of the run: no request is started after it.
        request_timeout: bound of one request, from connecting to the end of its response
            (plus ``slow_seconds`` for a slow one).
        seed: makes the choices of every user (slow requests, think times) reproducible.
        browsers: how many of the ``n_users`` are browser-like (users ``0 .. browsers-1``).
        connections: connections per browser-like user (K, 2 to 6).
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
        browsers: int = 0,
        connections: int = 4,
    ) -> None:
        if n_users < 1:
            raise ValueError("n_users must be at least 1")
        if persistence not in (None, "cookie", "src", "header"):
            raise ValueError(f"persistence {persistence!r} is not cookie, src, header or None")
        if persistence == "src" and n_users > _MAX_SRC_USERS:
            raise ValueError(f"at most {_MAX_SRC_USERS} users with src persistence")
        if not 0.0 <= slow_fraction <= 1.0:
            raise ValueError("slow_fraction must be between 0 and 1")
        if max_requests < 1 or not max_seconds > 0:
            raise ValueError("max_requests and max_seconds must be positive")
        if not (think_time >= 0 and slow_seconds >= 0 and request_timeout > 0):
            raise ValueError("think_time and slow_seconds must be >= 0, request_timeout > 0")
        if not 0 <= browsers <= n_users:
            raise ValueError("browsers must be between 0 and n_users")
        if not _MIN_CONNECTIONS <= connections <= _MAX_CONNECTIONS:
            raise ValueError(
                f"connections must be between {_MIN_CONNECTIONS} and {_MAX_CONNECTIONS}"
            )
        self.host = url_host
        self.port = url_port
        self.n_users = n_users
        self.browsers = browsers
        self.connections = connections
        self.persistence = persistence
        self.think_time = think_time
        self.slow_fraction = slow_fraction
        self.slow_seconds = slow_seconds
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.request_timeout = request_timeout
        self.seed = seed
        #: ``time.monotonic()`` when :meth:`start` was called: ``Outcome.t`` counts from it.
        self.t0 = 0.0
        self._records: list[Outcome] = []  # appended on the loop thread only
        self._unfinished: list[int] = []  # idem
        self._crashes: list[BaseException] = []
        self._users: list[_User] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._call_lock = threading.Lock()  # loop closing vs. call_soon_threadsafe
        self._loop_closed = False
        self._cpu_seconds: float | None = None
        # Loop-thread state.
        self._clock = _Clock(0.0)
        self._left = max_requests
        self._winding_down = False

    # --- the synchronous API --------------------------------------------------------------

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
        """Start the users (on their own thread); returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("this simulation was already started")
        _ensure_fd_limit(self.browsers * self.connections + (self.n_users - self.browsers)
                         + 256)
        self._loop = asyncio.new_event_loop()
        self.t0 = time.monotonic()
        self._clock = _Clock(self.t0)
        self._thread = threading.Thread(target=self._thread_main, name="users", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run has used up its requests or seconds; False on ``timeout``."""
        if self._thread is None:
            return True
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Stop the users: no new request; requests in flight finish (bounded by their
        timeout). Users still busy after that are cancelled and reported as unfinished."""
        if self._thread is None:
            return
        self._call(self._wind_down)
        if not self.wait(self.request_timeout + self.slow_seconds + 1.0):
            self._call(self._force_stop)
            self.wait(_FORCED_STOP_WAIT)

    def run(self) -> LoadReport:
        """Start, let the run use up its limits, stop, and report."""
        self.start()
        try:
            self.wait(self.max_seconds + self.request_timeout)
        finally:
            self.stop()
        return self.report()

    def now(self) -> float:
        """Seconds on the users' clock (``Outcome.t``), from any thread."""
        return time.monotonic() - self.t0

    @property
    def requests_done(self) -> int:
        """Requests completed so far (any outcome)."""
        return len(self._records)

    @property
    def cpu_seconds(self) -> float | None:
        """CPU time used by the users' event-loop thread so far (None if unknown)."""
        # Sampled by the loop thread itself (exact once it has finished, at most
        # _CPU_SAMPLE seconds old before): reading another thread's CPU clock would need its
        # pthread id, which is not safe to use once that thread has exited.
        return self._cpu_seconds

    def outcomes(self) -> list[Outcome]:
        """Every request so far, in sent order."""
        # list() copies at once (under the GIL) while the loop may still be appending.
        return sorted(list(self._records), key=lambda o: o.t)

    def report(self) -> LoadReport:
        """Summarise what the users saw so far.

        Raises:
            RuntimeError: the simulation itself crashed (a bug, not something users saw).
        """
        if self._crashes:
            raise RuntimeError(f"the user simulation crashed: {self._crashes[0]!r}") \
                from self._crashes[0]
        return summarize(list(self._records), unfinished_users=list(self._unfinished),
                         cpu_seconds=self.cpu_seconds)

    def _call(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop thread, unless the loop has finished."""
        with self._call_lock:
            if self._loop is not None and not self._loop_closed:
                self._loop.call_soon_threadsafe(callback)

    # --- the loop thread ------------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = self._loop
        assert loop is not None
        cpu0 = time.thread_time()

        def sample_cpu() -> None:
            self._cpu_seconds = time.thread_time() - cpu0
            loop.call_later(_CPU_SAMPLE, sample_cpu)

        try:
            asyncio.set_event_loop(loop)
            loop.call_soon(sample_cpu)
            loop.run_until_complete(self._main())
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException as exc:
            self._crashes.append(exc)
        finally:
            with self._call_lock:
                self._loop_closed = True
            loop.close()
            self._cpu_seconds = time.thread_time() - cpu0
            self._done.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.n_users):
            source = source_address(i) if self.persistence == "src" else None
            k = self.connections if i < self.browsers else 1
            conns = [Connection(self.host, self.port, local_host=source) for _ in range(k)]
            self._users.append(_User(i, conns, f"{self.seed}:{i}", self.persistence))
        deadline = loop.call_later(max(0.0, self.max_seconds - self._clock.now()),
                                   self._wind_down)
        for user in self._users:
            user.task = loop.create_task(self._run_user(user))
        try:
            results = await asyncio.gather(
                *(u.task for u in self._users if u.task is not None), return_exceptions=True
            )
        finally:
            deadline.cancel()
            for user in self._users:
                user.close()
        self._crashes += [r for r in results if isinstance(r, BaseException)
                          and not isinstance(r, asyncio.CancelledError)]
        # Closed transports finish closing in callbacks of the next loop iterations.
        for _ in range(3):
            await asyncio.sleep(0)

    def _wind_down(self) -> None:
        """No new request from now on; users that are only thinking stop at once."""
        if self._winding_down:
            return
        self._winding_down = True
        for user in self._users:
            # Cancelling a user between requests loses nothing: it has nothing in flight.
            if user.in_flight == 0 and user.task is not None and not user.task.done():
                user.task.cancel()

    def _force_stop(self) -> None:
        """Cancel every user still running, with its requests in flight (unfinished)."""
        self._wind_down()
        for user in self._users:
            if user.task is not None and not user.task.done():
                self._unfinished.append(user.index)
                user.task.cancel()

    def _take(self) -> bool:
        """Claim one request of the budget; False once the run is over."""
        if self._winding_down or self._left <= 0 or self._clock.now() >= self.max_seconds:
            return False
        self._left -= 1
        if self._left == 0:
            # After the current step: the user that took the last request is not idle yet.
            asyncio.get_running_loop().call_soon(self._wind_down)
        return True

    def _think(self, user: _User) -> float:
        return self.think_time * user.rng.uniform(1 - _JITTER, 1 + _JITTER)

    async def _run_user(self, user: _User) -> None:
        try:
            await asyncio.sleep(self.think_time * user.rng.random())
            browser = user.index < self.browsers
            while not self._winding_down:
                user.page_view += 1
                page = await self._request(user, 0, "page", "/")
                if page is None:
                    break
                if browser and page.ok:
                    await asyncio.gather(*(
                        self._request(user, c, "asset", f"/asset/{c}")
                        for c in range(1, self.connections)
                    ))
                if self._winding_down:
                    break
                await asyncio.sleep(self._think(user))
        except asyncio.CancelledError:
            # A stop: from _wind_down (the user was idle) or _force_stop (it is recorded as
            # unfinished there). Either way the user just ends.
            pass
        finally:
            user.close()

    async def _request(self, user: _User, index: int, role: Role, path: str) -> Outcome | None:
        """One request on the user's connection ``index``; its record, or None if the run
        is over."""
        if not self._take():
            return None
        slow = self.slow_fraction > 0 and user.rng.random() < self.slow_fraction
        if slow:
            path = f"/slow?s={self.slow_seconds}" + ("" if role == "page" else f"&asset={index}")
        timeout = self.request_timeout + (self.slow_seconds if slow else 0.0)
        conn = user.connections[index]
        page_view = user.page_view
        attempted = self._clock.now()
        sent: float | None = None
        received = 0.0

        async def exchange() -> Response:
            nonlocal sent, received
            await conn.open()
            # The Cookie header comes from the jar as it is at this very moment...
            sent = self._clock.now()
            conn.send(path, user.headers())
            response = await conn.read_response()
            # ...and the answer's Set-Cookie goes into it at once, before any other
            # coroutine runs: the last response to arrive wins, as in a browser.
            received = self._clock.now()
            user.remember_cookies(response.get_all("set-cookie"))
            return response

        user.in_flight += 1
        try:
            if sys.version_info >= (3, 11):
                # One timer in this task; wait_for would run the exchange in a task of its
                # own (measured: about a tenth of the loop's CPU per request).
                async with asyncio.timeout(timeout):
                    response = await exchange()
            else:
                response = await asyncio.wait_for(exchange(), timeout)
        except (OSError, HTTPError, asyncio.TimeoutError) as exc:
            conn.close()
            outcome = Outcome(
                sent if sent is not None else attempted, user.index, path, None,
                error=_describe(exc), received=self._clock.now(), page_view=page_view,
                role=role, connection=index,
            )
        else:
            status = response.status
            outcome = Outcome(
                sent if sent is not None else attempted, user.index, path, status,
                response.header("x-server"), response.header("x-version"),
                None if status == 200 else f"HTTP {status}", received=received,
                page_view=page_view, role=role, connection=index,
                set_cookie=response.header("set-cookie") is not None,
            )
        finally:
            user.in_flight -= 1
        self._records.append(outcome)
        return outcome

