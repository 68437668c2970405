"""The lab against the real HAProxy: if these fail, no other integration test can be trusted.

Read-only checks share one module-scoped lab; tests that change apps or HAProxy get a lab of
their own, so no test depends on another's leftovers.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import pytest

from haproxyctl.lab import (
    Address,
    BackendSpec,
    Lab,
    LabError,
    LabSpec,
    ServerSpec,
    UserSimulation,
    live_processes,
    poll_until,
    raw_command,
    synthetic_spec,
)

pytestmark = pytest.mark.integration

COOKIE = "be_cookie"
STICK = "be_stick"
HEADER = "be_header"


def _spec() -> LabSpec:
    return LabSpec(
        [
            BackendSpec(COOKIE, [ServerSpec(f"s{i}") for i in (1, 2, 3)], persistence="cookie"),
            BackendSpec(STICK, [ServerSpec("s1"), ServerSpec("s2")], persistence="stick-src"),
            BackendSpec(HEADER, [ServerSpec("s1"), ServerSpec("s2")], persistence="stick-header"),
        ]
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A lab shared by the tests that only read state or send traffic."""
    with Lab(_spec()) as shared:
        yield shared


@pytest.fixture
def own_lab() -> Iterator[Lab]:
    """A lab for a test that changes apps or server states."""
    with Lab(_spec()) as fresh:
        yield fresh


class Reply(NamedTuple):
    status: int
    server: str | None
    version: str | None
    set_cookie: str | None
    body: str


def _get(
    port: int,
    path: str = "/",
    *,
    headers: Mapping[str, str] | None = None,
    source_ip: str | None = None,
) -> Reply:
    """One request on a new connection (a new client, as far as HAProxy can tell)."""
    source = None if source_ip is None else (source_ip, 0)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=source)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        body = response.read().decode()
        return Reply(
            response.status,
            response.getheader("X-Server"),
            response.getheader("X-Version"),
            response.getheader("Set-Cookie"),
            body,
        )
    finally:
        conn.close()


def _sessions(lab: Lab, backend: str, server: str) -> int:
    """Current sessions on a server (``scur``)."""
    rows = lab.show_stat()
    return next(int(r["scur"]) for r in rows if (r["pxname"], r["svname"]) == (backend, server))


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


# --- sockets ----------------------------------------------------------------------------------


def test_each_cli_socket_has_its_level(lab: Lab) -> None:
    assert lab.tcp_admin is not None
    sockets: list[tuple[Address, str]] = [
        (lab.admin_socket, "admin"),
        (lab.operator_socket, "operator"),
        (lab.user_socket, "user"),
        (lab.tcp_admin, "admin"),
    ]
    for address, level in sockets:
        assert raw_command(address, "show cli level") == f"{level}\n\n", address


def test_master_cli_knows_master_and_worker(lab: Lab) -> None:
    show_proc = raw_command(lab.master_socket, "show proc")
    worker = lab.worker_pid()
    assert f"{lab.master_pid} " in show_proc
    assert f"{worker} " in show_proc
    assert worker != lab.master_pid
    # The admin socket is served by that very worker.
    assert f"\nPid: {worker}\n" in raw_command(lab.admin_socket, "show info")


def test_every_checked_server_is_up_after_start(lab: Lab) -> None:
    expected = {(b.name, s.name) for b in lab.spec.backends for s in b.servers}
    assert lab.server_statuses() == dict.fromkeys(expected, "UP")
    # The spec handed back has every port filled in, and each app listens there.
    for (backend, server), handle in lab.apps().items():
        assert lab.spec.backend(backend).server(server).port == handle.port
        assert handle.alive


# --- traffic ----------------------------------------------------------------------------------


def test_new_clients_reach_every_server_with_its_version(lab: Lab) -> None:
    port = lab.frontend_port(COOKIE)
    replies = [_get(port) for _ in range(6)]
    assert {r.status for r in replies} == {200}
    assert {r.server for r in replies} == {"s1", "s2", "s3"}
    assert {r.version for r in replies} == {"v1"}
    for r in replies:
        assert r.body == f"{r.server} v1\n"
        assert r.set_cookie is not None
        assert r.set_cookie.startswith(f"SRV={r.server};")


def test_cookie_pins_requests_to_its_server(lab: Lab) -> None:
    port = lab.frontend_port(COOKIE)
    servers = {_get(port, headers={"Cookie": "SRV=s2"}).server for _ in range(5)}
    assert servers == {"s2"}


def test_stick_tables_pin_source_address_and_header(lab: Lab) -> None:
    by_source = {_get(lab.frontend_port(STICK), source_ip="127.0.0.250").server for _ in range(4)}
    assert len(by_source) == 1
    header = {"X-User": "alice"}
    by_header = {_get(lab.frontend_port(HEADER), headers=header).server for _ in range(4)}
    assert len(by_header) == 1
    assert "key=alice" in raw_command(lab.admin_socket, f"show table {HEADER}")


# --- apps -------------------------------------------------------------------------------------


def test_replace_app_changes_version_on_the_same_port(own_lab: Lab) -> None:
    old = own_lab.app(COOKIE, "s2")
    new = own_lab.replace_app(COOKIE, "s2", "v2")
    assert (new.port, new.version) == (old.port, "v2")
    assert new.pid != old.pid
    assert not old.alive
    assert old.process.returncode == 0  # SIGTERM is a graceful stop
    reply = _get(own_lab.frontend_port(COOKIE), headers={"Cookie": "SRV=s2"})
    assert (reply.status, reply.server, reply.version) == (200, "s2", "v2")

    crashed = own_lab.replace_app(COOKIE, "s2", "v3", sig=signal.SIGKILL)
    assert new.process.returncode == -signal.SIGKILL
    assert crashed.port == old.port
    reply = _get(own_lab.frontend_port(COOKIE), headers={"Cookie": "SRV=s2"})
    assert (reply.server, reply.version) == ("s2", "v3")


def test_graceful_stop_finishes_requests_in_flight(own_lab: Lab) -> None:
    replies: list[Reply] = []
    port = own_lab.frontend_port(COOKIE)
    slow = threading.Thread(
        target=lambda: replies.append(_get(port, "/slow?s=1", headers={"Cookie": "SRV=s3"}))
    )
    slow.start()

    poll_until(
        lambda: True if _sessions(own_lab, COOKIE, "s3") == 1 else None,
        timeout=5,
        what="the slow request to reach s3",
    )
    assert own_lab.stop_app(COOKIE, "s3") == 0
    slow.join(10)
    assert replies == [Reply(200, "s3", "v1", None, "s3 v1\n")]


def test_set_healthy_drives_haproxy_checks(own_lab: Lab) -> None:
    own_lab.set_healthy(COOKIE, "s1", False)
    own_lab.wait_for_status(COOKIE, "s1", "DOWN", timeout=5)
    port = own_lab.frontend_port(COOKIE)
    assert "s1" not in {_get(port).server for _ in range(6)}
    own_lab.set_healthy(COOKIE, "s1", True)
    own_lab.wait_for_status(COOKIE, "s1", "UP", timeout=5)


def test_stopped_app_goes_down_and_an_unhealthy_start_stays_down(own_lab: Lab) -> None:
    own_lab.stop_app(STICK, "s2")
    own_lab.wait_for_status(STICK, "s2", "DOWN", timeout=5)
    handle = own_lab.start_app(STICK, "s2", "v2", healthy=False)
    assert handle.alive
    with pytest.raises(LabError, match="still running"):
        own_lab.start_app(STICK, "s2", "v3")
    own_lab.set_healthy(STICK, "s2", True)
    own_lab.wait_for_status(STICK, "s2", "UP", timeout=5)
    # The health file is the only thing keeping it down: the server answered all along.
    reply = _get(handle.port)
    assert (reply.status, reply.version) == (200, "v2")


# --- processes --------------------------------------------------------------------------------


def test_stop_leaves_no_process_and_no_directory() -> None:
    lab = Lab(_spec()).start()
    apps = list(lab.apps().values())
    pids = [lab.master_pid, lab.worker_pid(), *(a.pid for a in apps)]
    directory = lab.dir
    lab.stop()
    assert _pids_alive(pids) == []
    assert not os.path.exists(directory)
    assert not {p.pid for p in live_processes()} & set(pids)
    assert [a.process.returncode for a in apps] == [0] * len(apps)  # all graceful
    lab.stop()  # idempotent


def test_kill_haproxy_kills_master_and_worker_but_not_apps() -> None:
    with Lab(_spec()) as lab:
        master, worker = lab.master_pid, lab.worker_pid()
        lab.kill_haproxy()
        assert _pids_alive([master, worker]) == []
        assert not lab.haproxy_alive
        with pytest.raises(ConnectionRefusedError):
            raw_command(lab.admin_socket, "show info")
        assert all(handle.alive for handle in lab.apps().values())


def _exe_and_libraries(pid: int) -> tuple[str, set[str]]:
    """The executable of ``pid`` and the shared objects (loader included) it has mapped."""
    with open(f"/proc/{pid}/maps", encoding="utf-8") as maps:
        paths = {line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6}
    return os.path.realpath(f"/proc/{pid}/exe"), {p for p in paths if ".so" in p}


def test_a_reload_re_executes_the_same_binary_and_libraries(own_lab: Lab) -> None:
    """Master-worker reload (the master re-executes itself): the same binary, loader and
    libraries before and after, also for a binary patched to use its own root's loader and
    libraries (scripts/haproxy-binaries.sh: its interpreter and rpath are in the file)."""
    master, old_worker = own_lab.master_pid, own_lab.worker_pid()
    exe, libraries = _exe_and_libraries(master)
    assert exe == os.path.realpath(own_lab.haproxy_binary)
    assert any("/libc.so" in p for p in libraries)
    assert _exe_and_libraries(old_worker) == (exe, libraries)

    reply = own_lab.reload()
    assert reply == "" or reply.startswith("Success=1\n--\n")  # 2.6: nothing; 2.7+: this

    def new_worker() -> int | None:
        try:
            pid = own_lab.worker_pid()
        except (OSError, LabError):
            return None  # the 2.6 master refuses connections while it re-executes
        return pid if pid != old_worker else None

    worker = poll_until(new_worker, timeout=10, interval=0.05, what="the new worker")
    assert own_lab.master_pid == master
    assert own_lab.haproxy_alive
    assert _exe_and_libraries(master) == (exe, libraries)  # the re-executed master
    assert _exe_and_libraries(worker) == (exe, libraries)
    (master_row,) = [line.split() for line in raw_command(own_lab.master_socket, "show proc")
                     .splitlines() if line.startswith(f"{master} ")]
    assert master_row[1:5] == ["master", "1", "[failed:", "0]"]  # one reload, none failed
    assert f"\nPid: {worker}\n" in raw_command(own_lab.admin_socket, "show info")


def test_rejected_config_reports_haproxy_output_and_cleans_up() -> None:
    before = set(live_processes())
    spec = LabSpec([BackendSpec("be", [ServerSpec("s1")], extra=["no-such-keyword 1"])])
    with pytest.raises(LabError, match="no-such-keyword"):
        Lab(spec).start()
    assert set(live_processes()) == before


def test_synthetic_spec_starts_without_apps() -> None:
    with Lab(synthetic_spec(20, 10)) as lab:
        assert lab.apps() == {}
        statuses = lab.server_statuses()
        assert len(statuses) == 200
        assert set(statuses.values()) == {"no check"}


# --- simulated users --------------------------------------------------------------------------


def test_cookie_users_see_no_failure_and_stay_on_their_server(lab: Lab) -> None:
    report = UserSimulation(
        "127.0.0.1",
        lab.frontend_port(COOKIE),
        n_users=8,
        persistence="cookie",
        max_seconds=1.5,
        max_requests=300,
    ).run()
    assert report.ok, report.summary()
    assert 8 <= report.total <= 300
    assert report.per_version == {"v1": report.total}
    assert all(len(seq) == 1 for seq in report.server_sequences.values()), report.server_sequences
    assert set(report.per_server) == {"s1", "s2", "s3"}


def test_stick_src_users_are_distinct_clients(lab: Lab) -> None:
    report = UserSimulation(
        "127.0.0.1",
        lab.frontend_port(STICK),
        n_users=6,
        persistence="src",
        max_seconds=1.5,
        max_requests=300,
    ).run()
    assert report.ok, report.summary()
    assert all(len(seq) == 1 for seq in report.server_sequences.values()), report.server_sequences
    assert len({seq[0] for seq in report.server_sequences.values()}) > 1
    table = raw_command(lab.admin_socket, f"show table {STICK}")
    assert all(f"key=127.0.0.{10 + i} " in table for i in range(6)), table


def test_report_detects_a_flip_back(own_lab: Lab) -> None:
    # Every server goes v1 -> v2 -> v1 while cookie-pinned users keep sending requests.
    sim = UserSimulation(
        "127.0.0.1",
        own_lab.frontend_port(COOKIE),
        n_users=3,
        persistence="cookie",
        max_seconds=8,
        max_requests=2000,
    )

    def wait_until_everyone_saw(version: str) -> None:
        def latest_is_version() -> bool | None:
            sequences = sim.report().version_sequences
            latest = {seq[-1] for seq in sequences.values() if seq}
            return True if len(sequences) == 3 and latest == {version} else None

        poll_until(latest_is_version, timeout=5, what=f"every user to get {version}")

    with sim:
        wait_until_everyone_saw("v1")
        for version in ("v2", "v1"):
            for server in ("s1", "s2", "s3"):
                own_lab.replace_app(COOKIE, server, version)
            wait_until_everyone_saw(version)
    report = sim.report()
    assert {f.user for f in report.flips} == {0, 1, 2}, report.summary()
    assert all(f.versions[-2:] == ("v2", "v1") for f in report.flips), report.flips
    assert not report.unfinished_users
