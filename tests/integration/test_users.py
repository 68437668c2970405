"""The simulated users against real servers: the asyncio HTTP client against a scripted local
server, then browser-like and one-request users against a real HAProxy lab.

Every run is bounded in requests and seconds; labs are stopped by PID by the lab itself.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator

import pytest

from haproxyctl.lab import (
    BackendSpec,
    Lab,
    LabSpec,
    Outcome,
    ServerSpec,
    UserSimulation,
    load_windows,
    poll_until,
    raw_command,
    source_address,
    window_imbalance,
)
from haproxyctl.lab.httpclient import Connection, IncompleteResponse

pytestmark = pytest.mark.integration

COOKIE = "be_cookie"
STICK = "be_stick"
HEADER = "be_header"


# --- the HTTP client against a scripted server --------------------------------------------------

Handler = Callable[[str, asyncio.StreamWriter], Awaitable[bool]]  # True: keep the connection


async def scripted_server(
    answer: Handler,
) -> tuple[asyncio.AbstractServer, int, list[asyncio.Task[object]]]:
    """A local server answering each request with ``answer(path, writer)``; the list holds
    the task serving each connection accepted."""
    accepted: list[asyncio.Task[object]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        accepted.append(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                if not await answer(path, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port, accepted


async def lab_like(path: str, writer: asyncio.StreamWriter) -> bool:
    if path == "/chunked":
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"3\r\nabc\r\n", b"2\r\nde\r\n", b"0\r\n\r\n"):
            await writer.drain()
            await asyncio.sleep(0.01)  # separate reads on the client's side
            writer.write(part)
        return True
    if path == "/close":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        return False
    if path == "/eof":
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        await writer.drain()
        return False
    if path == "/hang":
        await asyncio.sleep(0.5)
        return False
    if path == "/drop":  # answers, then closes as if its keep-alive timeout had run out
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndrop")
        await writer.drain()
        return False
    if path == "/half":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal")
        await writer.drain()
        return False
    body = path.encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Server: t\r\n\r\n%s"
                 % (len(body), body))
    await writer.drain()
    return True


def test_connection_keep_alive_framings_and_reopening() -> None:
    async def scenario() -> None:
        server, port, accepted = await scripted_server(lab_like)
        conn = Connection("127.0.0.1", port)
        try:
            for path in ("/a", "/b", "/c"):
                r = await conn.get(path, timeout=5)
                assert (r.status, r.body, r.header("x-server")) == (200, path.encode(), "t")
            assert (conn.opens, len(accepted)) == (1, 1)  # one connection, kept alive
            r = await conn.get("/chunked", timeout=5)
            assert r.body == b"abcde"
            assert conn.is_open
            r = await conn.get("/close", timeout=5)
            assert r.will_close
            assert not conn.is_open
            r = await conn.get("/eof", timeout=5)
            assert (r.body, r.will_close, conn.is_open) == (b"until the end", True, False)
            # A server that closed an idle connection: the next request opens a new one
            # instead of failing on the dead one.
            await conn.get("/a", timeout=5)
            await conn.get("/drop", timeout=5)
            await asyncio.sleep(0.05)  # the FIN arrives
            assert (await conn.get("/a", timeout=5)).body == b"/a"
            assert conn.opens == len(accepted) == 4
            # Failures close the connection; the next request works on a new one.
            with pytest.raises(IncompleteResponse):
                await conn.get("/half", timeout=5)
            assert not conn.is_open
            with pytest.raises(asyncio.TimeoutError):
                await conn.get("/hang", timeout=0.2)
            assert not conn.is_open
            assert (await conn.get("/ok", timeout=5)).status == 200
        finally:
            conn.close()
            server.close()
            await asyncio.wait(accepted, timeout=5)  # the /hang handler ends by itself
            await server.wait_closed()

    asyncio.run(scenario())


def test_failed_requests_are_recorded_and_retried_on_new_connections() -> None:
    # A listener that accepts and never answers: every request times out.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        sim = UserSimulation("127.0.0.1", silent.getsockname()[1], n_users=2, browsers=1,
                             connections=2, think_time=0.05, request_timeout=0.3,
                             max_seconds=1.0, max_requests=20)
        report = sim.run()
    finally:
        silent.close()
    outcomes = sim.outcomes()
    assert report.total == report.failed >= 4
    assert all(o.error is not None and o.error.startswith("TimeoutError") for o in outcomes)
    assert all(o.received is not None and o.received - o.t >= 0.29 for o in outcomes)
    assert all(o.role == "page" for o in outcomes)  # no assets after a failed page
    assert not report.unfinished_users
    # Nothing listening at all: refused at once, recorded with its attempt time.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report = UserSimulation("127.0.0.1", port, n_users=1, think_time=0.05, max_seconds=0.5,
                            max_requests=3).run()
    assert report.total == report.failed == 3
    assert "ConnectionRefusedError" in report.failure_examples[0]


# --- users against a real lab -------------------------------------------------------------------


def _spec() -> LabSpec:
    return LabSpec([
        BackendSpec(COOKIE, [ServerSpec(f"s{i}") for i in (1, 2, 3)], persistence="cookie"),
        BackendSpec(STICK, [ServerSpec("s1"), ServerSpec("s2")], persistence="stick-src"),
        BackendSpec(HEADER, [ServerSpec("s1"), ServerSpec("s2")], persistence="stick-header"),
    ])


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(_spec()) as shared:
        yield shared


def _by_user(outcomes: list[Outcome]) -> dict[int, list[Outcome]]:
    users: dict[int, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        users[o.user].append(o)
    return users


def test_browsers_with_cookies_stay_on_their_server(lab: Lab) -> None:
    sim = UserSimulation("127.0.0.1", lab.frontend_port(COOKIE), n_users=16, browsers=12,
                         connections=4, persistence="cookie", think_time=0.1, max_seconds=2.5,
                         max_requests=4000, seed=3)
    report = sim.run()
    outcomes = sim.outcomes()
    assert report.ok, report.summary()
    assert (report.flipped_requests, report.mixed_pages, report.max_moves) == (0, 0, 0)
    assert report.moves_histogram == {0: 16}
    assert all(len(seq) == 1 for seq in report.server_sequences.values()), report.summary()
    assert set(report.per_server) == {"s1", "s2", "s3"}
    users = _by_user(outcomes)
    assert set(users) == set(range(16))
    for user, records in users.items():
        roles = Counter(o.role for o in records)
        pages = roles["page"]
        if user < 12:
            # Each page view: its page on connection 0, then 3 assets on connections 1..3.
            assert roles["asset"] >= 3 * (pages - 1), (user, roles)
            assert {o.connection for o in records if o.role == "asset"} == {1, 2, 3}
            assert all(o.connection == 0 for o in records if o.role == "page")
        else:
            assert roles == {"page": len(records)}
        # HAProxy inserts the cookie once, answering the first page (no cookie yet); every
        # later request carried it.
        cookies = [o for o in records if o.set_cookie]
        assert cookies == [records[0]], (user, cookies)
        assert (records[0].page_view, records[0].role) == (1, "page")
    # Assets really are in parallel: in most page views, every asset was sent before the
    # first of them was answered.
    parallel = 0
    views: dict[tuple[int, int], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if o.role == "asset":
            views[(o.user, o.page_view)].append(o)
    for assets in views.values():
        if max(o.t for o in assets) < min(o.received or 0 for o in assets):
            parallel += 1
    assert parallel > len(views) / 2, (parallel, len(views))
    # The page came first: assets were sent after the page's answer arrived.
    page_received = {(o.user, o.page_view): o.received for o in outcomes if o.role == "page"}
    assert all(o.t > (page_received[(o.user, o.page_view)] or 0) for o in outcomes
               if o.role == "asset")
    # Load windows over the run: three servers each answered in every full second.
    windows = load_windows(outcomes, 0.5, 2.5)
    assert len(windows) == 2
    assert all(set(w.per_server) == {"s1", "s2", "s3"} for w in windows), windows
    assert all(r is not None and r >= 1.0 for r in window_imbalance(windows))
    assert report.cpu_seconds is not None
    assert report.cpu_seconds > 0


def test_src_users_are_distinct_clients_beyond_the_first_245(lab: Lab) -> None:
    n = 260
    sim = UserSimulation("127.0.0.1", lab.frontend_port(STICK), n_users=n, browsers=20,
                         connections=3, persistence="src", think_time=0.5, max_seconds=2.0,
                         max_requests=3000, seed=4)
    report = sim.run()
    assert report.ok, report.summary()
    assert report.max_moves == 0, report.summary()
    assert len(report.server_sequences) == n
    table = raw_command(lab.admin_socket, f"show table {STICK}")
    entries = dict(re.findall(r"key=(\S+) .*server_key=(\S+)", table))
    assert len(entries) == n, table[:500]
    for i in range(n):
        # Every connection of a user came from its address: one entry, naming the server
        # that answered all of its requests.
        assert entries[source_address(i)] == report.server_sequences[i][0], i
    assert source_address(n - 1).startswith("127.1.")


def test_header_users_send_their_name(lab: Lab) -> None:
    report = UserSimulation("127.0.0.1", lab.frontend_port(HEADER), n_users=6, browsers=3,
                            connections=2, persistence="header", think_time=0.1,
                            max_seconds=1.0, max_requests=500).run()
    assert report.ok, report.summary()
    assert report.max_moves == 0
    table = raw_command(lab.admin_socket, f"show table {HEADER}")
    entries = dict(re.findall(r"key=(\S+) .*server_key=(\S+)", table))
    assert entries == {f"user{i}": report.server_sequences[i][0] for i in range(6)}, table


def test_stop_lets_requests_in_flight_finish(lab: Lab) -> None:
    sim = UserSimulation("127.0.0.1", lab.frontend_port(COOKIE), n_users=4, browsers=2,
                         connections=2, persistence="cookie", think_time=0.05,
                         slow_fraction=1.0, slow_seconds=0.8, max_seconds=20,
                         max_requests=1000)
    with sim:
        poll_until(lambda: True if sim.requests_done >= 4 else None, timeout=10,
                   what="a few slow requests")
        stopping = time.monotonic()
    waited = time.monotonic() - stopping
    report = sim.report()
    assert report.ok, report.summary()
    assert waited < 0.8 + 1.0, waited  # the slow requests in flight, not a think time more
    assert all(o.path.startswith("/slow?s=0.8") for o in sim.outcomes())
    assert any("&asset=" in o.path for o in sim.outcomes())
    assert sim.wait(0)
    done = sim.requests_done
    time.sleep(0.2)
    assert sim.requests_done == done  # nothing runs after stop()


def test_a_version_change_is_seen_by_the_users() -> None:
    # s1 is not health-checked: while its app restarts, HAProxy retries the connection to
    # it (after a 1 s turn-around) instead of marking it DOWN and redispatching its users.
    spec = LabSpec([BackendSpec(COOKIE, [ServerSpec("s1", check=False), ServerSpec("s2"),
                                         ServerSpec("s3")], persistence="cookie")])
    with Lab(spec) as lab:
        sim = UserSimulation("127.0.0.1", lab.frontend_port(COOKIE), n_users=12, browsers=9,
                             connections=4, persistence="cookie", think_time=0.1,
                             max_seconds=20, max_requests=20_000, seed=5)
        with sim:
            poll_until(lambda: True if len(sim.report().server_sequences) == 12 else None,
                       timeout=10, what="every user to get an answer")
            swap_start = sim.now()
            lab.replace_app(COOKIE, "s1", "v2")
            swapped = sim.now()
            poll_until(lambda: True if sum(o.t > swapped + 1.0 for o in sim.outcomes()) >= 200
                       else None, timeout=15, what="requests after the swap")
        report = sim.report()
    outcomes = sim.outcomes()
    assert report.flips == (), report.summary()
    on_s1 = [u for u, seq in report.server_sequences.items() if seq == ("s1",)]
    assert on_s1, report.summary()
    assert report.max_moves == 0, report.summary()
    for user, versions in report.version_sequences.items():
        assert versions == (("v1", "v2") if user in on_s1 else ("v1",)), report.summary()
    late = [o for o in outcomes if o.t > swapped + 1.0 and o.server == "s1"]
    assert late
    assert all(o.version == "v2" for o in late)
    assert report.per_version["v2"] >= len(late)
    # Replacing an app in service (no drain first, unlike a rollout) may fail the requests
    # that HAProxy had on its keep-alive connections to the old app: HAProxy then closes the
    # user's connection without an answer (a browser would retry; these users count it as
    # failed). Only s1's users, only around the swap.
    for o in outcomes:
        if not o.ok:
            assert o.user in on_s1, report.summary()
            assert swap_start <= (o.received or 0) <= swapped + 1.5, report.summary()
