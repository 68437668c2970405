"""The end-to-end rig: a lab per test, simulated users, a capacity sampler, a deploy agent for
CLI controllers, and checks of every server's final state.

Ground truth is read without the client under test wherever it matters: server statuses by
the lab's raw socket helper (:class:`Sampler`), app versions from the lab's process handles
*and* by asking each app directly over HTTP (:func:`app_answer`), journals by parsing their
JSON lines here (:func:`journal_phases`).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs
import pytest

from haproxyctl import Client
from haproxyctl.lab import (
    BackendSpec,
    Lab,
    LabError,
    LabSpec,
    LabTimeout,
    LoadReport,
    Outcome,
    ServerSpec,
    UserSimulation,
    find_haproxy,
    poll_until,
)
from haproxyctl.lab.config import Persistence
from haproxyctl.lab.users import UserPersistence

APP = "app"
#: Health checks fast enough for quick rollouts: an updated server is UP ~0.6 s after it starts.
INTER = "300ms"
DEPLOY_SCRIPT = str(Path(__file__).with_name("deploy_app.py"))
#: Upper bound of any single CLI run in these tests.
CLI_TIMEOUT = 90.0


# --- labs ----------------------------------------------------------------------------------------


def one_backend(names: Sequence[str], *, persistence: Persistence | None,
                weights: Mapping[str, int] | None = None) -> LabSpec:
    """Backend :data:`APP` with one app per server (all v1), checked every :data:`INTER`."""
    servers = [ServerSpec(n, weight=(weights or {}).get(n, 1)) for n in names]
    return LabSpec([BackendSpec(APP, servers, persistence=persistence, inter=INTER, rise=2,
                                fall=2)])


@contextlib.contextmanager
def started_lab(spec: LabSpec) -> Iterator[Lab]:
    """A lab (skips when HAProxy is missing); every process stopped by PID at the end."""
    try:
        find_haproxy()
    except LabError as exc:
        pytest.skip(f"e2e tests need HAProxy: {exc}")
    with Lab(spec, timeout=30.0) as lab:
        yield lab


# --- users ---------------------------------------------------------------------------------------


class Users:
    """A :class:`UserSimulation` on one backend, with the clock its outcomes are stamped on.

    A context manager: the users are always stopped (bounded) when the block ends.
    """

    def __init__(self, lab: Lab, backend: str, *, n_users: int = 14,
                 persistence: UserPersistence | None, slow_fraction: float = 0.0,
                 slow_seconds: float = 0.0, max_seconds: float = 120.0, seed: int = 1,
                 think_time: float = 0.05, browsers: int = 0, connections: int = 4) -> None:
        self.sim = UserSimulation("127.0.0.1", lab.frontend_port(backend), n_users=n_users,
                                  persistence=persistence, slow_fraction=slow_fraction,
                                  slow_seconds=slow_seconds, max_requests=100_000,
                                  max_seconds=max_seconds, seed=seed, think_time=think_time,
                                  browsers=browsers, connections=connections)
        self.n_users = n_users
        self.t0 = 0.0
        self._report: LoadReport | None = None

    def __enter__(self) -> Users:
        self.t0 = time.monotonic()
        self.sim.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def now(self) -> float:
        """Seconds on the users' clock (``Outcome.t``)."""
        return time.monotonic() - self.t0

    def outcomes(self) -> list[Outcome]:
        return self.sim.outcomes()

    def wait_warm(self, per_user: int = 3, timeout: float = 20.0) -> None:
        """Wait until every user has had ``per_user`` answers (and so is pinned somewhere)."""

        def warm() -> bool | None:
            counts = Counter(o.user for o in self.outcomes() if o.ok)
            return True if len(counts) == self.n_users and min(counts.values()) >= per_user \
                else None

        poll_until(warm, timeout=timeout, what="every user to get answers", interval=0.05)

    def wait_requests_after(self, t: float, count: int = 50, timeout: float = 20.0) -> None:
        """Wait until ``count`` requests were sent after ``t`` (users' clock)."""
        poll_until(lambda: True if sum(o.t > t for o in self.outcomes()) >= count else None,
                   timeout=timeout, what=f"{count} requests after t={t:.1f}s", interval=0.05)

    def stop(self) -> LoadReport:
        if self._report is None:
            self.sim.stop()
            self._report = self.sim.report()
        return self._report


def assert_no_disruption(load: LoadReport) -> None:
    """Promises 1 and 3 from the users' side: no failed request, nobody flipped back."""
    assert load.total > 0, "the users sent no request"
    assert load.failed == 0, load.summary()
    assert not load.flips, load.summary()
    assert not load.unfinished_users, load.summary()


def servers_per_window(outcomes: Iterable[Outcome], start: float, end: float,
                       width: float = 1.0) -> list[tuple[float, set[str]]]:
    """For each full ``width``-second window in [start, end): the servers that answered."""
    windows: list[tuple[float, set[str]]] = []
    t = start
    answered = [o for o in outcomes if o.ok and o.server is not None]
    while t + width <= end:
        windows.append((t, {o.server for o in answered if t <= o.t < t + width
                            and o.server is not None}))
        t += width
    return windows


def per_server_after(outcomes: Iterable[Outcome], t: float) -> Counter[str]:
    """Answers per server for requests sent after ``t``."""
    return Counter(o.server for o in outcomes if o.ok and o.t > t and o.server is not None)


# --- browsers: one user, several requests in parallel ---------------------------------------------


class BugSymptom(AssertionError):
    """The symptom of a known bug (tests marked ``xfail(raises=BugSymptom)``): any other
    assertion failing in such a test is a real failure, not the expected one."""


def symptom_unless(ok: bool, message: str) -> None:
    if not ok:
        raise BugSymptom(message)


class FlipBack(BugSymptom):
    """A user got the old version on a request sent after it had received the new one."""


@attrs.frozen
class Request:
    sent: float  #: monotonic
    received: float
    path: str
    status: int | None
    server: str | None
    version: str | None
    error: str | None


class Browser:
    """One user the way a browser is one: a few connections used in parallel (here a long
    request on one while clicking on the other) sharing one identity, a cookie jar or a source
    address. :class:`UserSimulation`'s users send one request at a time; a browser does not.

    Promise 1 for such a user: once it has *received* a v2 answer, no request it *sends* later
    may be answered by v1 (a request sent earlier may still finish on v1).
    """

    def __init__(self, port: int, index: int, *, persistence: UserPersistence | None,
                 paths: Sequence[str] = ("/slow?s=1.2", "/"), think: float = 0.05) -> None:
        self.port = port
        self.index = index
        self.persistence = persistence
        self.source = f"127.0.1.{10 + index}" if persistence == "src" else None
        self.think = think
        self.requests: list[Request] = []
        self._jar: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(p,), daemon=True,
                                          name=f"browser{index} {p}") for p in paths]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self._threads), f"browser{self.index} hung"

    def _loop(self, path: str) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                source = (self.source, 0) if self.source else None
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15,
                                                  source_address=source)
            headers = {}
            with self._lock:
                if self._jar:
                    headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self._jar.items())
            sent = time.monotonic()
            try:
                conn.request("GET", path, headers=headers)
                r = conn.getresponse()
                r.read()
            except (OSError, http.client.HTTPException) as exc:
                self.requests.append(Request(sent, time.monotonic(), path, None, None, None,
                                             repr(exc)))
                conn.close()
                conn = None
            else:
                with self._lock:
                    for header in r.headers.get_all("Set-Cookie") or []:
                        name, eq, value = header.split(";", 1)[0].strip().partition("=")
                        if eq:
                            self._jar[name] = value
                self.requests.append(Request(
                    sent, time.monotonic(), path, r.status, r.headers.get("X-Server"),
                    r.headers.get("X-Version"), None if r.status == 200 else f"HTTP {r.status}"))
                if r.will_close:
                    conn.close()
                    conn = None
            self._stop.wait(self.think)
        if conn is not None:
            conn.close()

    def flips(self) -> list[Request]:
        """Requests answered by v1 although sent after a v2 answer had been received."""
        done = sorted(self.requests, key=lambda r: r.sent)
        first_v2 = min((r.received for r in done if r.version == "v2"), default=None)
        if first_v2 is None:
            return []
        return [r for r in done if r.version == "v1" and r.sent > first_v2]


class Browsers:
    """A few :class:`Browser` users on one frontend; a context manager."""

    def __init__(self, lab: Lab, backend: str, n: int, *,
                 persistence: UserPersistence | None) -> None:
        self.browsers = [Browser(lab.frontend_port(backend), i, persistence=persistence)
                         for i in range(n)]

    def __enter__(self) -> Browsers:
        for b in self.browsers:
            b.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for b in self.browsers:
            b.stop()

    def stop(self) -> None:
        for b in self.browsers:
            b.stop()

    def wait_warm(self, timeout: float = 20.0) -> None:
        poll(lambda: all(sum(r.status == 200 for r in b.requests) >= 3 for b in self.browsers),
             "every browser to get answers", timeout)

    def failures(self) -> list[str]:
        return [f"browser{b.index} {r.path}: {r.error}" for b in self.browsers
                for r in b.requests if r.error is not None]

    def assert_no_disruption(self, t0: float) -> None:
        """No failed request; no flip back (raises :class:`FlipBack`)."""
        assert sum(len(b.requests) for b in self.browsers) > 0
        assert not self.failures(), self.failures()[:5]
        flips = [(b, b.flips()) for b in self.browsers]
        described = [
            f"browser{b.index} ({b.source or 'cookie jar'}): {len(f)} requests sent after its "
            f"first v2 answer got v1, first: {f[0].path} sent at t={f[0].sent - t0:.2f}s "
            f"answered by {f[0].server} {f[0].version}"
            for b, f in flips if f]
        if described:
            raise FlipBack("\n".join(described))


# --- capacity sampler ----------------------------------------------------------------------------


class Sampler:
    """Polls ``show stat`` (the lab's raw helper, not the client under test) in a thread and
    keeps every server's status over time. A context manager."""

    def __init__(self, lab: Lab, backend: str, interval: float = 0.05) -> None:
        self.lab = lab
        self.backend = backend
        self.interval = interval
        self.samples: list[tuple[float, dict[str, str]]] = []  #: (monotonic, server -> status)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rows = self.lab.show_stat()
            except OSError as exc:  # reported by in_service_between, never hidden
                self.errors.append(repr(exc))
            else:
                self.samples.append((time.monotonic(), {
                    r["svname"]: r["status"] for r in rows if r["pxname"] == self.backend}))
            self._stop.wait(self.interval)

    def in_service_between(self, start: float, end: float) -> list[tuple[float, list[str]]]:
        """(time, servers in load balancing: ready and UP) for each sample in [start, end]."""
        assert not self.errors, self.errors
        return [(t, sorted(s for s, status in statuses.items() if status.startswith("UP")))
                for t, statuses in self.samples if start <= t <= end]

    def assert_capacity(self, start: float, end: float, minimum: int) -> None:
        samples = self.in_service_between(start, end)
        assert len(samples) >= 5, f"too few samples ({len(samples)}) to judge capacity"
        worst = min(samples, key=lambda s: len(s[1]))
        assert len(worst[1]) >= minimum, (
            f"only {worst[1]} in service at t={worst[0] - start:.2f}s into the rollout")


# --- the deploy agent (CLI controllers' update command) ----------------------------------------


@attrs.frozen
class Swap:
    server: str
    version: str
    healthy: bool
    at: float  #: monotonic


class DeployAgent:
    """Performs the app swaps that ``deploy_app.py`` asks for (see that script).

    The CLI controller runs ``--exec`` commands in processes of their own; the apps belong to
    this process's lab, so the script hands each swap over through files in ``directory``.
    Swaps stop the old app with SIGKILL (a crashing deploy), then start the new version.
    """

    def __init__(self, lab: Lab, backend: str, directory: Path) -> None:
        self.lab = lab
        self.backend = backend
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.swaps: list[Swap] = []
        self.errors: list[str] = []
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deploy-agent", daemon=True)

    def __enter__(self) -> DeployAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(40.0)
        self.kill_leftover_scripts()

    def command(self, version: str = "v2") -> str:
        """The ``--exec`` template."""
        head = " ".join(shlex.quote(a) for a in (sys.executable, DEPLOY_SCRIPT, "--dir",
                                                  str(self.dir)))
        return f"{head} --server {{server}} --version {shlex.quote(version)}"

    # what the test controls
    def hold(self, server: str) -> None:
        (self.dir / f"hold-{server}").write_text("hold\n")

    def release(self, server: str) -> None:
        (self.dir / f"hold-{server}").unlink(missing_ok=True)

    def break_app(self, server: str) -> None:
        """The next versions deployed on ``server`` start with a failing health check."""
        (self.dir / f"broken-{server}").write_text("broken\n")

    def fix_app(self, server: str) -> None:
        (self.dir / f"broken-{server}").unlink(missing_ok=True)

    def started(self, server: str) -> list[int]:
        """PIDs of the deploy scripts started for ``server`` so far."""
        return sorted(int(p.read_text()) for p in self.dir.glob(f"started-{server}-*"))

    def wait_started(self, server: str, count: int = 1, timeout: float = 60.0) -> None:
        poll_until(lambda: True if len(self.started(server)) >= count else None,
                   timeout=timeout, what=f"the update of {server} to start", interval=0.05)

    def swapped(self, server: str) -> list[Swap]:
        return [s for s in self.swaps if s.server == server]

    def wait_swapped(self, server: str, count: int = 1, timeout: float = 30.0) -> None:
        poll_until(lambda: True if len(self.swapped(server)) >= count else None,
                   timeout=timeout, what=f"{server} to be swapped", interval=0.05)

    def wait_scripts_done(self, timeout: float = 30.0) -> None:
        """Wait until no deploy script of ours is running (orphans of a killed controller)."""
        poll_until(lambda: None if self._live_scripts() else True, timeout=timeout,
                   what="the deploy scripts to exit", interval=0.05)

    def kill_leftover_scripts(self) -> None:
        for pid in self._live_scripts():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _live_scripts(self) -> list[int]:
        pids = []
        for p in self.dir.glob("started-*"):
            pid = int(p.read_text())
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            # The PID is ours only if it still runs this script with our directory (PIDs are
            # reused); a zombie (state Z) is already dead.
            state = stat.rsplit(")", 1)[1].split()[0]
            if DEPLOY_SCRIPT.encode() in cmdline and str(self.dir).encode() in cmdline \
                    and state != "Z":
                pids.append(pid)
        return pids

    def _run(self) -> None:
        while not self._stop.is_set():
            for request in sorted(self.dir.glob("req-*.json")):
                if request.name in self._seen:
                    continue
                self._seen.add(request.name)
                self._serve(request)
            self._stop.wait(0.02)

    def _serve(self, request: Path) -> None:
        answer = "ok"
        try:
            r = json.loads(request.read_text())
            self.lab.replace_app(self.backend, r["server"], r["version"], sig=signal.SIGKILL,
                                 healthy=r["healthy"])
            self.swaps.append(Swap(r["server"], r["version"], r["healthy"], time.monotonic()))
        except Exception as exc:
            answer = f"error: {type(exc).__name__}: {exc}"
            self.errors.append(f"{request.name}: {answer}")
        tmp = request.with_name(request.name + ".done.tmp")
        tmp.write_text(answer + "\n")
        os.replace(tmp, request.with_name(request.name + ".done"))


# --- final state ---------------------------------------------------------------------------------


def app_answer(port: int, timeout: float = 5.0) -> str:
    """What the app listening on ``port`` answers to ``GET /``, asked directly (no HAProxy)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode().strip()
    finally:
        conn.close()


def assert_servers(client: Client, lab: Lab, backend: str,
                   expected: Mapping[str, tuple[str, str]],
                   weights: Mapping[str, int] | None = None) -> None:
    """Every server's final state: ``expected`` maps server -> (admin state, app version).

    Checks HAProxy's admin state (``Client.servers``; a ready server must also be fully UP),
    the weight (the original one when ``weights`` is given), the lab's app handle (alive, that
    version) and the app's own answer over HTTP.
    """
    ready = [n for n, (state, _) in expected.items() if state == "ready"]

    def ready_up() -> bool:
        statuses = {s.name: s.status for s in client.servers(backend)}
        return all(statuses.get(n) == "UP" for n in ready)

    # A check that times out on a busy 2-core machine makes a server "UP 1/2" for a moment;
    # that is not the rollout's doing, so give it a few checks to be fully UP again.
    with contextlib.suppress(LabTimeout):
        poll(ready_up, "ready servers to be fully UP", timeout=3.0)
    live = {s.name: s for s in client.servers(backend)}
    assert set(live) == set(expected), (sorted(live), sorted(expected))
    problems = []
    for name, (state, version) in expected.items():
        s = live[name]
        if s.admin_state.value != state:
            problems.append(f"{name}: admin state {s.admin_state.value}, expected {state} "
                            f"(status {s.status})")
        if state == "ready" and s.status != "UP":
            problems.append(f"{name}: status {s.status!r}, expected 'UP'")
        if weights is not None and s.weight != weights[name]:
            problems.append(f"{name}: weight {s.weight}, expected {weights[name]}")
        handle = lab.app(backend, name)
        if not handle.alive or handle.version != version:
            problems.append(f"{name}: app {handle.version} alive={handle.alive}, expected "
                            f"{version}")
        elif (answer := app_answer(handle.port)) != f"{name} {version}":
            problems.append(f"{name}: app answers {answer!r}, expected '{name} {version}'")
    assert not problems, "\n".join(problems)


def all_servers(names: Iterable[str], state: str, version: str) -> dict[str, tuple[str, str]]:
    return {n: (state, version) for n in names}


def snapshot_states(client: Client, backend: str) -> dict[str, tuple[str, int | None]]:
    """(admin state, weight) of every server: to show that something changed nothing."""
    return {s.name: (s.admin_state.value, s.weight) for s in client.servers(backend)}


# --- journals ------------------------------------------------------------------------------------


def journal_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def journal_phases(path: Path) -> dict[str, str]:
    """The last journaled phase of each server (parsed here, not by the library)."""
    return {r["server"]: r["phase"] for r in journal_records(path) if r["type"] == "phase"}


def journal_end(path: Path) -> str | None:
    ends = [r["status"] for r in journal_records(path) if r["type"] == "end"]
    return ends[-1] if ends else None


def wait_journal_phase(path: Path, server: str, phase: str, timeout: float = 60.0) -> None:
    def reached() -> bool | None:
        try:
            return True if journal_phases(path).get(server) == phase else None
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    poll_until(reached, timeout=timeout, what=f"journal: {server} {phase}", interval=0.02)


# --- the CLI -------------------------------------------------------------------------------------


def cli_env(state_dir: Path) -> dict[str, str]:
    """The environment of CLI runs: default journals under ``state_dir``, no ambient socket."""
    env = {k: v for k, v in os.environ.items() if k != "HAPROXYCTL_SOCKET"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["HAPROXYCTL_STATE_DIR"] = str(state_dir)
    return env


def cli_argv(lab: Lab, *args: str) -> list[str]:
    return [sys.executable, "-m", "haproxyctl", "-s", lab.admin_socket, *args]


def run_cli(lab: Lab, *args: str, env: Mapping[str, str],
            timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(lab, *args), capture_output=True, text=True,
                          timeout=timeout, env=dict(env), stdin=subprocess.DEVNULL, check=False)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def json_report(stdout: str) -> dict[str, Any]:
    """The report of a ``--json`` rollout: its last ``rollout_finished`` event."""
    finished = [e for e in (json.loads(line) for line in stdout.splitlines() if line.strip())
                if e.get("event") == "rollout_finished"]
    assert finished, f"no rollout_finished event in:\n{stdout}"
    report: dict[str, Any] = finished[-1]["report"]
    return report


class Controller:
    """A CLI rollout running in the background (stdout/stderr to files). Always killed by PID
    when the block ends if it is still running."""

    def __init__(self, lab: Lab, args: Sequence[str], *, env: Mapping[str, str],
                 logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.out_path = logs / "stdout"
        self.err_path = logs / "stderr"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cli_argv(lab, *args), stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=dict(env))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10.0)

    def wait(self, timeout: float = CLI_TIMEOUT) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        return (f"--- stdout\n{self.out_path.read_text(errors='replace')}\n--- stderr\n"
                f"{self.err_path.read_text(errors='replace')}")


def poll(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Bounded wait for a boolean condition."""
    poll_until(lambda: True if check() else None, timeout=timeout, what=what, interval=0.05)


def raw_row(lab: Lab, backend: str, server: str) -> dict[str, str]:
    """The server's ``show stat`` row, read with the lab's raw helper."""
    for row in lab.show_stat():
        if (row["pxname"], row["svname"]) == (backend, server):
            return row
    raise AssertionError(f"{backend}/{server} is not in show stat")


class LongRequest:
    """One request sent from a thread, pinned to a server by cookie (e.g. ``/slow?s=20``)."""

    def __init__(self, port: int, path: str, *, cookie: str) -> None:
        self.status: int | None = None
        self.server: str | None = None
        self.error: str | None = None
        self._args = (port, path, cookie)
        self._thread = threading.Thread(target=self._run, name=f"GET {path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        port, path, cookie = self._args
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("GET", path, headers={"Cookie": f"SRV={cookie}"})
            response = conn.getresponse()
            response.read()
            self.status = response.status
            self.server = response.headers.get("X-Server")
        except (OSError, http.client.HTTPException) as exc:
            self.error = repr(exc)
        finally:
            conn.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> LongRequest:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the long request is still running"
        return self
