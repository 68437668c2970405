"""Fixtures for the integration tests: real HAProxy labs, a reset between tests, small helpers.

Every test talks to a real HAProxy started by :mod:`haproxyctl.lab`. State is reset and checked
with the lab's own tiny socket helper (:func:`~haproxyctl.lab.raw_command`), never with the
client under test, so a client bug cannot hide itself.

The shared lab (``shared``: one HAProxy per test module; ``rig``: the same, reset after each
test) has:

* ``be_app``: 3 health-checked app servers behind a frontend, cookie persistence. It also looks
  up the map file (``Rig.map_path``) so that map commands have a map to work on;
* ``be_stick``: a stick table ``type ip`` (``stick on src``), servers without apps;
* ``be_static``: ``balance static-rr``, weight 10 (only 0%/100% accepted at runtime);
* ``be_agent``: ``s1`` without agent check, ``a1`` with one;
* ``be_dyn``: two servers of weight 10 (``del server``/``add server``, percentages);
* ``bk100``: 100 servers without checks (bulk changes, threads).

Servers without an app point at 127.0.0.1:9 (discard). Nothing ever connects there: their
backends have no health checks and no frontend (only ``a1``'s agent check tries, and fails
harmlessly: an agent that cannot be reached does not change the server's state).

The optional Docker path (``HAPROXYCTL_TEST_DOCKER=1``) is at the end of this file.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from haproxyctl import Client
from haproxyctl.lab import (
    BackendSpec,
    Lab,
    LabError,
    LabSpec,
    ServerSpec,
    find_haproxy,
    poll_until,
    raw_command,
)
from haproxyctl.transport import Channel

APP = "be_app"
STICK = "be_stick"
STATIC = "be_static"
AGENT = "be_agent"
DYN = "be_dyn"
MANY = "bk100"
SMALL = "bk"  # the only backend of small_spec()

#: Port of servers nobody serves (discard); see the module docstring.
DISCARD = 9
MAP_SEED = (("example.com", "be_app"),)

# srv_check_state / srv_agent_state bits that describe configuration, not a check in progress.
_CHECK_CONFIG_MASK = 0x02 | 0x04 | 0x08 | 0x10
_CHECK_ENABLED = 0x04
# show servers state columns that a test may change and the reset restores.
_RESET_FIELDS = ("srv_op_state", "srv_admin_state", "srv_uweight", "srv_addr", "srv_port")

ServerKey = tuple[str, str]


# --- specs -----------------------------------------------------------------------------------


def _no_app(name: str, *, weight: int = 1) -> ServerSpec:
    return ServerSpec(name, port=DISCARD, app=False, check=False, weight=weight)


def _map_lookup(map_path: str) -> str:
    # Any use of map(<file>) makes HAProxy load the map, which the runtime API then manages.
    return f"http-request set-var(txn.route) req.hdr(host),map({map_path},none)"


def main_spec(map_path: str) -> LabSpec:
    """The shared lab described in the module docstring."""
    quiet: dict[str, Any] = {"checks": False, "frontend": False}
    return LabSpec(
        [
            BackendSpec(
                APP,
                [ServerSpec(f"s{i}") for i in (1, 2, 3)],
                persistence="cookie",
                extra=[_map_lookup(map_path)],
            ),
            BackendSpec(STICK, [_no_app("s1"), _no_app("s2")], persistence="stick-src", **quiet),
            BackendSpec(
                STATIC,
                [_no_app("s1", weight=10), _no_app("s2", weight=10)],
                balance="static-rr",
                **quiet,
            ),
            BackendSpec(
                AGENT,
                [_no_app("s1")],
                # agent-inter also spreads the first checks of *every* server over that
                # interval: keep it short or the lab waits long for its servers to be UP.
                extra=[f"server a1 127.0.0.1:{DISCARD} agent-check agent-port {DISCARD} "
                       "agent-inter 1s"],
                **quiet,
            ),
            BackendSpec(DYN, [_no_app("d1", weight=10), _no_app("d2", weight=10)], **quiet),
            BackendSpec(MANY, [_no_app(f"s{i}") for i in range(1, 101)], **quiet),
        ]
    )


def small_spec(map_path: str, **lab_options: Any) -> LabSpec:
    """A lab without apps (starts fast): backend ``bk`` with ``s1``, ``s2`` and the map."""
    return LabSpec(
        [
            BackendSpec(
                SMALL,
                [_no_app("s1"), _no_app("s2")],
                checks=False,
                frontend=False,
                extra=[_map_lookup(map_path)],
            )
        ],
        **lab_options,
    )


# --- ground truth through the lab's raw socket helper -------------------------------------------


def raw_servers_state(address: str) -> dict[ServerKey, dict[str, str]]:
    """``show servers state`` as one dict of columns per (backend, server)."""
    lines = raw_command(address, "show servers state").splitlines()
    header = lines[1][2:].split(" ")
    rows = (dict(zip(header, line.split(" "), strict=True)) for line in lines[2:] if line)
    return {(r["be_name"], r["srv_name"]): r for r in rows}


def server_settings(address: str) -> dict[ServerKey, tuple[str, ...]]:
    """What a test can change about each server (states, weight, address, checks enabled),
    without the columns that move by themselves (time since last change, check results)."""
    return {
        key: (*(row[c] for c in _RESET_FIELDS),
              str(int(row["srv_check_state"]) & _CHECK_CONFIG_MASK),
              str(int(row["srv_agent_state"]) & _CHECK_CONFIG_MASK))
        for key, row in raw_servers_state(address).items()
    }


def admin_flags(address: str, backend: str, server: str) -> int:
    """The server's ``srv_admin_state`` bits, read without the client under test."""
    return int(raw_servers_state(address)[(backend, server)]["srv_admin_state"])


def raw_stat(lab: Lab, backend: str, server: str) -> dict[str, str]:
    """The server's ``show stat`` row, read without the client under test."""
    for row in lab.show_stat():
        if (row["pxname"], row["svname"]) == (backend, server):
            return row
    raise AssertionError(f"{backend}/{server} is not in show stat")


def wait_scur(lab: Lab, backend: str, server: str, predicate: Callable[[int], bool],
              *, timeout: float = 5.0) -> int:
    """Poll the server's ``scur`` until ``predicate`` holds; return it."""

    def check() -> int | None:
        scur = int(raw_stat(lab, backend, server)["scur"])
        return scur if predicate(scur) else None

    return poll_until(check, timeout=timeout, what=f"scur of {backend}/{server}",
                      interval=0.02)


def wait_master_ready(lab: Lab, timeout: float = 10.0) -> None:
    """Wait until the master CLI accepts connections.

    HAProxy 2.6's master re-executes itself once its workers are up (and again on each
    reload); its CLI refuses connections in the meantime, even though the worker's sockets
    already answer.
    """

    def answers() -> bool | None:
        try:
            reply = raw_command(lab.master_socket, "show proc", timeout=2.0)
        except OSError:
            return None
        return True if "worker" in reply else None

    poll_until(answers, timeout=timeout, what="the master CLI to answer", interval=0.05)


def worker_pid_from(address: str) -> int:
    """The ``Pid`` of the worker answering on ``address`` (raw)."""
    for line in raw_command(address, "show info").splitlines():
        if line.startswith("Pid: "):
            return int(line[5:])
    raise AssertionError(f"no Pid in show info on {address}")


def version_from(address: str) -> tuple[int, int, int]:
    """(major, minor, patch) of the HAProxy answering on ``address``, from ``show info``'s
    ``Version`` (raw): ``2.6.12-1+deb12u4`` -> (2, 6, 12); ``3.1-dev9`` -> (3, 1, 0)."""
    for line in raw_command(address, "show info").splitlines():
        if line.startswith("Version: "):
            found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", line[9:])
            assert found, line
            major, minor, patch = found.groups()
            return int(major), int(minor), int(patch or 0)
    raise AssertionError(f"no Version in show info on {address}")


def cut_requests_get_502(version: tuple[int, int, int]) -> bool:
    """Whether a request cut by ``shutdown sessions server`` gets a 502 from HAProxy.

    Up to 3.0.5 it does (seen on 2.6.12; eresp counts it). 3.1-dev9 made stream shutdown
    asynchronous ("BUG/MEDIUM: stream: make stream_shutdown() async-safe", backported to
    3.0.6): the client's connection is then closed with no response at all (seen on 3.0.11
    and 3.2.26; eresp does not count it). Nothing in HAProxy's replies tells the two apart,
    hence the version. 2.7-2.9 were not run; they are taken to answer 502 like 2.6.
    """
    return version < (3, 0, 6)


def assert_cut_off(rig: Rig, request: InFlight) -> None:
    """``request`` (finished) was cut by ``shutdown sessions server``, as this HAProxy cuts."""
    if cut_requests_get_502(version_from(rig.admin)):
        assert request.status == 502, (request.status, request.error)  # HAProxy answers
    else:
        # No response: RemoteDisconnected (a ConnectionResetError), or a reset.
        assert request.status is None, request.status
        assert isinstance(request.error, ConnectionResetError), request.error


# --- labs --------------------------------------------------------------------------------------


def _require_haproxy() -> None:
    try:
        find_haproxy()
    except LabError as exc:
        pytest.skip(f"integration tests need HAProxy: {exc}")


class Rig:
    """A started lab plus what is needed to put it back the way it started."""

    def __init__(self, lab: Lab, map_path: str) -> None:
        self.lab = lab
        self.map_path = map_path
        self.baseline = raw_servers_state(lab.admin_socket)
        self.settings = server_settings(lab.admin_socket)
        self.checked: list[ServerKey] = [
            (b.name, s.name) for b in lab.spec.backends for s in b.servers if b.checked(s)
        ]
        self.tables = [b.name for b in lab.spec.backends
                       if b.persistence in ("stick-src", "stick-header")]

    @property
    def admin(self) -> str:
        return self.lab.admin_socket

    def raw(self, line: str) -> str:
        return raw_command(self.admin, line)

    def app_port(self, backend: str, server: str) -> int:
        port = self.lab.spec.backend(backend).server(server).port
        assert port is not None
        return port

    def map_contents(self) -> list[tuple[str, str]]:
        """``show map`` as (key, value) pairs, raw."""
        reply = self.raw(f"show map {self.map_path}")
        pairs = []
        for line in reply.splitlines():
            if line:
                _ref, key, value = line.split(" ", 2)
                pairs.append((key, value))
        return pairs

    def reset(self) -> None:
        """Undo what a test changed: server states, weights, addresses, checks, the stick
        table and the map; then wait until every checked server is fully UP again."""
        for backend, server in self.lab.apps():
            self.lab.set_healthy(backend, server, True)
        current = raw_servers_state(self.admin)
        for key, base in self.baseline.items():
            ref = f"{key[0]}/{key[1]}"
            cur = current.get(key)
            if cur is None:  # a test deleted it
                self.raw(f"add server {ref} {base['srv_addr']}:{base['srv_port']} "
                         f"weight {base['srv_iweight']}")
                cur = {}
            if cur.get("srv_admin_state") != base["srv_admin_state"]:
                self.raw(f"set server {ref} state ready")
            if cur.get("srv_uweight") != base["srv_uweight"]:
                self.raw(f"set server {ref} weight {base['srv_uweight']}")
            if (cur.get("srv_addr"), cur.get("srv_port")) != (base["srv_addr"], base["srv_port"]):
                self.raw(f"set server {ref} addr {base['srv_addr']} port {base['srv_port']}")
            for column, verb in (("srv_check_state", "health"), ("srv_agent_state", "agent")):
                was_on = int(base[column]) & _CHECK_ENABLED
                if was_on and not int(cur.get(column, "0")) & _CHECK_ENABLED:
                    self.raw(f"enable {verb} {ref}")
            if cur.get("srv_op_state") != base["srv_op_state"] and key not in self.checked:
                self.raw(f"set server {ref} health up")  # forced down by a test
        for table in self.tables:
            self.raw(f"clear table {table}")
        self.raw(f"clear map {self.map_path}")
        for k, v in MAP_SEED:
            self.raw(f"add map {self.map_path} {k} {v}")
        self._wait_settled()

    def _differences(self) -> list[str]:
        current = server_settings(self.admin)
        diffs = [f"{key}: {current.get(key)} (was {base})"
                 for key, base in self.settings.items() if current.get(key) != base]
        statuses = self.lab.server_statuses()
        diffs += [f"{key}: status {statuses.get(key)!r}"
                  for key in self.checked if statuses.get(key) != "UP"]
        return diffs

    def _wait_settled(self) -> None:
        last: list[str] = []

        def settled() -> bool | None:
            last[:] = self._differences()
            return None if last else True

        poll_until(settled, timeout=10.0, what="the lab to be back to its initial state",
                   interval=0.05, details=lambda: "; ".join(last))


@contextlib.contextmanager
def map_file() -> Iterator[str]:
    """A map file with :data:`MAP_SEED`, in a short directory of its own (removed after)."""
    directory = tempfile.mkdtemp(prefix="hpxmap-", dir="/tmp")
    try:
        path = os.path.join(directory, "routes.map")
        with open(path, "w", encoding="ascii") as f:
            f.writelines(f"{k} {v}\n" for k, v in MAP_SEED)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def start_rig(make_spec: Callable[[str], LabSpec]) -> Iterator[Rig]:
    """Start a lab for ``make_spec(map_path)`` and wait until its master CLI answers too."""
    _require_haproxy()
    with map_file() as path, Lab(make_spec(path)) as lab:
        wait_master_ready(lab)
        yield Rig(lab, path)


@pytest.fixture(scope="module")
def shared() -> Iterator[Rig]:
    """The shared lab of this test module (see the module docstring); prefer ``rig``."""
    with start_rig(main_spec) as rig:
        yield rig


@pytest.fixture
def rig(shared: Rig) -> Iterator[Rig]:
    """The shared lab, reset to its initial state after the test."""
    yield shared
    shared.reset()


@pytest.fixture
def client(rig: Rig) -> Iterator[Client]:
    """A client on the shared lab's admin socket (closed before the lab is reset)."""
    with Client(rig.admin) as c:
        yield c


@pytest.fixture
def small() -> Iterator[Rig]:
    """A lab of its own, without apps (fast to start), for tests that stop or kill HAProxy."""
    with start_rig(small_spec) as rig:
        yield rig


# --- traffic -----------------------------------------------------------------------------------


class InFlight:
    """One HTTP request through a lab frontend, sent from a thread (e.g. ``/slow?s=2``)."""

    def __init__(self, port: int, path: str, *, cookie: str | None = None) -> None:
        self.status: int | None = None
        self.body = ""
        self.error: BaseException | None = None
        self._port = port
        self._path = path
        self._headers = {"Cookie": f"SRV={cookie}"} if cookie else {}
        self._thread = threading.Thread(target=self._run, name=f"GET {path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
        try:
            conn.request("GET", self._path, headers=self._headers)
            response = conn.getresponse()
            self.body = response.read().decode()
            self.status = response.status
        except (OSError, http.client.HTTPException) as exc:
            self.error = exc
        finally:
            conn.close()

    def join(self, timeout: float = 30.0) -> InFlight:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"request {self._path} still running"
        return self


def slow_requests(rig: Rig, server: str, seconds: float, count: int = 1) -> list[InFlight]:
    """``count`` slow requests pinned (by cookie) to ``be_app/<server>``, once all of them
    are in flight (HAProxy counts them in ``scur``)."""
    before = int(raw_stat(rig.lab, APP, server)["scur"])
    port = rig.lab.frontend_port(APP)
    requests = [InFlight(port, f"/slow?s={seconds}", cookie=server) for _ in range(count)]
    wait_scur(rig.lab, APP, server, lambda n: n >= before + count)
    return requests


# --- what the client writes and reads ----------------------------------------------------------


# Written by the connection itself: the session set-up, and the "show info" that checks at
# most every second which HAProxy process answers (reload detection).
_HOUSEKEEPING = ("prompt", "set severity-output number", "show info")


class Wire:
    """A spy on :class:`~haproxyctl.transport.Channel`: what clients wrote and read.

    The real socket I/O still happens; this only records it.
    """

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.sent_event = threading.Event()

    def clear(self) -> None:
        self.sent.clear()
        self.received.clear()
        self.sent_event.clear()

    def lines(self) -> list[str]:
        """Every line written, in order."""
        return [line for data in self.sent for line in data.decode().splitlines()]

    def commands(self) -> list[str]:
        """The lines written, without the connection's housekeeping (session set-up and
        ``show info`` identity checks): what the calls under test sent."""
        return [line for line in self.lines() if line not in _HOUSEKEEPING]

    @property
    def bytes_received(self) -> int:
        return sum(len(d) for d in self.received)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    recorder = Wire()
    real_send = Channel.send
    real_recv = Channel.recv

    # Arguments are passed through untouched: the spy must not depend on their exact names.
    def send(self: Channel, data: bytes, *args: Any, **kwargs: Any) -> None:
        real_send(self, data, *args, **kwargs)
        recorder.sent.append(data)
        recorder.sent_event.set()

    def recv(self: Channel, *args: Any, **kwargs: Any) -> bytes:
        data = real_recv(self, *args, **kwargs)
        recorder.received.append(data)
        return data

    monkeypatch.setattr(Channel, "send", send)
    monkeypatch.setattr(Channel, "recv", recv)
    return recorder


# --- the CLI -----------------------------------------------------------------------------------

NOBODY = 65534


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    as_nobody: bool = False,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m haproxyctl ARGS`` and capture its output.

    ``HAPROXYCTL_SOCKET`` from the caller's environment is dropped unless ``env`` sets it.
    ``as_nobody`` runs it as user nobody (uid/gid 65534, no groups) through ``setpriv``.
    """
    argv = [sys.executable, "-m", "haproxyctl", *args]
    if as_nobody:
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    full_env = {k: v for k, v in os.environ.items() if k != "HAPROXYCTL_SOCKET"}
    full_env["PYTHONDONTWRITEBYTECODE"] = "1"
    full_env.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env,
                          stdin=subprocess.DEVNULL, check=False)


def assert_cli_error(result: subprocess.CompletedProcess[str], exit_code: int,
                     *fragments: str) -> str:
    """The run failed with ``exit_code`` and exactly one ``haproxyctl: error:`` line on
    stderr (no traceback) containing every fragment (case-insensitive); return that line."""
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("haproxyctl: error: "), lines[0]
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), (fragment, lines[0])
    return lines[0]


def refs(backend: str, names: Sequence[str]) -> list[str]:
    return [f"{backend}/{n}" for n in names]


def free_tcp_port_refusing() -> tuple[socket.socket, int]:
    """A bound but not listening TCP socket on 127.0.0.1: connecting to it is refused.

    Keep the socket open while the port is in use (no other process can take it)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    return holder, int(holder.getsockname()[1])


# --- optional Docker path ----------------------------------------------------------------------

DOCKER_ENV = "HAPROXYCTL_TEST_DOCKER"
#: The admin stats socket published by docker-compose.yml (container port).
DOCKER_ADMIN_PORT = 9999


def docker_enabled() -> bool:
    return os.environ.get(DOCKER_ENV) == "1"


@pytest.fixture(scope="session")
def docker_compose_file(pytestconfig: pytest.Config) -> str:
    """pytest-docker: the compose file at the repository root (not tests/)."""
    return str(pytestconfig.rootpath / "docker-compose.yml")


@pytest.fixture(scope="session")
def docker_haproxy(request: pytest.FixtureRequest) -> str:
    """``tcp://host:port`` of the admin socket of the compose HAProxy.

    Skips unless ``HAPROXYCTL_TEST_DOCKER=1``. Only then are pytest-docker's fixtures
    requested, so without it nothing talks to Docker.
    """
    if not docker_enabled():
        pytest.skip(f"set {DOCKER_ENV}=1 to run the docker-compose tests")
    services = request.getfixturevalue("docker_services")
    host = request.getfixturevalue("docker_ip")
    address = f"tcp://{host}:{services.port_for('haproxy', DOCKER_ADMIN_PORT)}"

    def answers() -> bool:
        try:
            with Client(address, timeout=2.0) as c:
                return c.cli_level() == "admin" and len(c.servers("web")) == 2
        except Exception:
            return False

    services.wait_until_responsive(check=answers, timeout=90.0, pause=0.5)
    return address
