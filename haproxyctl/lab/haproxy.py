"""The lab: one real HAProxy (master-worker) and one app process per server.

Typical use::

    spec = LabSpec([BackendSpec("web", [ServerSpec("s1"), ServerSpec("s2")], persistence="cookie")])
    with Lab(spec) as lab:
        raw_command(lab.admin_socket, "show stat")
        lab.replace_app("web", "s1", "v2")

Starting a lab returns only once it is in a steady state: every app answers, HAProxy's admin
socket answers, and every health-checked server is fully ``UP``. Tests can therefore start
asserting at once, without sleeps.

All files (config, sockets, logs, app ready/health files) live in one short directory under
``/tmp``: unix socket paths are limited to about 107 bytes, which a pytest ``tmp_path`` can
exceed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import weakref
from types import TracebackType

import attrs

from haproxyctl.lab.apps import APP_STOP_TIMEOUT, AppFleet, AppHandle, PortTaken, ServerKey
from haproxyctl.lab.config import BackendSpec, LabSpec, ServerSpec, render_config
from haproxyctl.lab.errors import LabError
from haproxyctl.lab.net import LOOPBACK, release_ports, reserve_port
from haproxyctl.lab.polling import poll_until
from haproxyctl.lab.process import ManagedProcess, read_log_tail
from haproxyctl.lab.rawcli import raw_command, show_stat

__all__ = ["HAPROXY_ENV", "Lab", "find_haproxy", "haproxy_version"]

# sizeof(sockaddr_un.sun_path) is 108 on Linux, including the terminating NUL.
_SOCKET_PATH_MAX = 107
# Fresh ports are tried this many times when another process takes one first.
_PORT_ATTEMPTS = 3
_HAPROXY_STOP_TIMEOUT = 5.0
_CONFIG_CHECK_TIMEOUT = 30.0


#: Environment variable naming the HAProxy binary the lab runs (e.g. one made by
#: ``scripts/haproxy-binaries.sh``); it wins over PATH.
HAPROXY_ENV = "HAPROXYCTL_HAPROXY"


def find_haproxy(explicit: str | None = None) -> str:
    """Path of the HAProxy binary: ``explicit``, else ``$HAPROXYCTL_HAPROXY``, else ``haproxy``
    on PATH, else /usr/sbin/haproxy.

    An explicit path or a set ``$HAPROXYCTL_HAPROXY`` that is not executable is an error, not a
    reason to fall back: tests meant for one HAProxy version must not quietly run on another.

    Raises:
        LabError: no binary found, with how to install one.
    """
    chosen = explicit or os.environ.get(HAPROXY_ENV) or None
    if chosen is not None:
        if os.access(chosen, os.X_OK) and os.path.isfile(chosen):
            return chosen
        origin = "given" if explicit else f"from ${HAPROXY_ENV}"
        raise LabError(f"HAProxy binary {chosen!r} ({origin}) is not an executable file")
    for candidate in (shutil.which("haproxy"), "/usr/sbin/haproxy"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise LabError(
        f"HAProxy binary not found (looked for ${HAPROXY_ENV}, haproxy on PATH and /usr/sbin); "
        "install it, e.g. `apt-get install haproxy`, or set "
        f"{HAPROXY_ENV} (scripts/haproxy-binaries.sh makes Debian's 3.0 and 3.2)"
    )


def haproxy_version(binary: str) -> str:
    """The version ``binary -v`` reports (e.g. ``2.6.12-1+deb12u4``).

    Raises:
        LabError: the binary does not run or does not say its version.
    """
    try:
        result = subprocess.run([binary, "-v"], stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=_CONFIG_CHECK_TIMEOUT, check=False)
    except OSError as exc:
        raise LabError(f"cannot run {binary}: {exc}") from exc
    words = result.stdout.split()
    if result.returncode != 0 or words[:2] != ["HAProxy", "version"] or len(words) < 3:
        raise LabError(f"{binary} -v did not say its version (exit {result.returncode}): "
                       f"{(result.stdout + result.stderr).strip()[:200]}")
    return words[2]


class Lab:
    """One HAProxy and its apps; a context manager (``with Lab(spec) as lab``).

    Args:
        spec: what to run. Server ports left at None are assigned at start.
        dir: where to put the lab's files. None: a new directory under /tmp, removed at stop.
            A given directory is kept (useful to inspect logs after a failure).
        haproxy_bin: the HAProxy binary; default: found by :func:`find_haproxy`
            (``$HAPROXYCTL_HAPROXY``, PATH, /usr/sbin). The config check (``-c``) and the
            master-worker start (``-W -S``) both run this binary, and so does every reload.
        timeout: bound, in seconds, of each startup wait (apps ready, HAProxy ready,
            servers UP).
    """

    def __init__(
        self,
        spec: LabSpec,
        dir: str | os.PathLike[str] | None = None,
        *,
        haproxy_bin: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._spec = spec
        self._requested_dir = None if dir is None else os.fspath(dir)
        self._haproxy_bin = haproxy_bin
        self.timeout = timeout
        self._dir: str | None = None
        self._owns_dir = False
        self._started = False
        self._haproxy: ManagedProcess | None = None
        self._fleet: AppFleet | None = None
        self._frontend_ports: dict[str, int] = {}
        self._tcp_admin_port: int | None = None
        self._reserved: set[int] = set()

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Lab:
        """Start the apps and HAProxy, and wait for a steady state. Returns ``self``.

        On any failure everything started so far is stopped before the error propagates.

        Raises:
            LabError: something could not start; the message carries the relevant log tail.
        """
        if self._started:
            raise LabError("this lab was already started; make a new Lab")
        binary = find_haproxy(self._haproxy_bin)
        self._haproxy_bin = binary
        self._started = True
        _running_labs.add(self)
        try:
            self._make_dir()
            self._fleet = AppFleet(self.dir, timeout=self.timeout)
            self._spec = _with_ports(self._spec, self._fleet.start_all(self._spec))
            self._start_haproxy(binary)
            self._wait_checked_servers_up()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop HAProxy and every app (by PID), and remove the directory if the lab made it.

        Safe to call more than once, and after a failed start.
        """
        _running_labs.discard(self)
        try:
            self._stop_haproxy()
        finally:
            try:
                if self._fleet is not None:
                    self._fleet.stop_all()
            finally:
                release_ports(self._reserved)
                self._reserved.clear()
                if self._owns_dir and self._dir is not None and os.path.isdir(self._dir):
                    shutil.rmtree(self._dir)

    def _stop_haproxy(self) -> None:
        if self._haproxy is None:
            return
        if self._haproxy.alive:
            # Resume workers a test may have paused (signal_workers(SIGSTOP)): a stopped
            # worker would sit on the SIGTERM until the timeout.
            self._haproxy.kill_group(signal.SIGCONT)
        # SIGTERM to the master: it forwards it to the workers, reaps them and exits.
        self._haproxy.stop(timeout=_HAPROXY_STOP_TIMEOUT)

    def __repr__(self) -> str:
        haproxy = "not started" if self._haproxy is None else repr(self._haproxy)
        return f"<Lab dir={self._dir} haproxy={haproxy}>"

    # --- paths and addresses --------------------------------------------------------------

    @property
    def spec(self) -> LabSpec:
        """The spec, with every server's port filled in once started."""
        return self._spec

    @property
    def dir(self) -> str:
        """The lab's directory."""
        if self._dir is None:
            raise LabError("the lab is not started")
        return self._dir

    @property
    def config_path(self) -> str:
        return os.path.join(self.dir, "haproxy.cfg")

    @property
    def admin_socket(self) -> str:
        return os.path.join(self.dir, "admin.sock")

    @property
    def operator_socket(self) -> str:
        return os.path.join(self.dir, "oper.sock")

    @property
    def user_socket(self) -> str:
        return os.path.join(self.dir, "user.sock")

    @property
    def master_socket(self) -> str:
        return os.path.join(self.dir, "master.sock")

    @property
    def haproxy_binary(self) -> str:
        """The HAProxy binary this lab runs (resolved at start, see :func:`find_haproxy`)."""
        return self._haproxy_bin or find_haproxy()

    @property
    def haproxy_log(self) -> str:
        """HAProxy's stdout/stderr (startup messages, alerts about servers going DOWN)."""
        return os.path.join(self.dir, "haproxy.log")

    @property
    def tcp_admin(self) -> tuple[str, int] | None:
        """Address of the TCP admin CLI socket, None if the spec has none."""
        if self._tcp_admin_port is None:
            return None
        return (LOOPBACK, self._tcp_admin_port)

    def frontend_port(self, backend: str) -> int:
        """Port of the frontend in front of ``backend``.

        Raises:
            KeyError: no such backend, or it has no frontend.
        """
        try:
            return self._frontend_ports[backend]
        except KeyError:
            raise KeyError(f"backend {backend!r} has no frontend in this lab") from None

    def frontend_url(self, backend: str) -> str:
        """``http://127.0.0.1:<port>`` of the frontend in front of ``backend``."""
        return f"http://{LOOPBACK}:{self.frontend_port(backend)}"

    # --- HAProxy processes ----------------------------------------------------------------

    @property
    def master_pid(self) -> int:
        """PID of HAProxy's master process (still known after it has stopped)."""
        return self._require_haproxy().pid

    @property
    def haproxy_alive(self) -> bool:
        return self._haproxy is not None and self._haproxy.alive

    def worker_pid(self) -> int:
        """PID of HAProxy's (single) worker, as the master CLI's ``show proc`` reports it."""
        pids = self._worker_pids()
        if not pids:
            raise LabError("the master reports no worker")
        return pids[0]

    def _worker_pids(self) -> list[int]:
        self._require_haproxy(alive=True)
        reply = raw_command(self.master_socket, "show proc", timeout=2.0)
        # Rows look like "4293   worker   0   0d00h00m01s   2.6.12-1+deb12u4".
        return [
            int(words[0])
            for words in (line.split() for line in reply.splitlines())
            if len(words) >= 2 and words[0].isdigit() and words[1] == "worker"
        ]

    def reload(self, *, timeout: float = 30.0) -> str:
        """Reload HAProxy through the master CLI (``reload``) and return its answer.

        HAProxy 2.6 answers nothing and closes the connection (the master re-executes itself
        and only then starts the new worker). From 2.7 on the master answers once the new
        worker is up or has failed: ``Success=1`` (or ``Success=0``), ``--``, then the
        startup logs. Both re-execute the binary the lab started (``-W``): the new master is
        the same binary, with the same loader and libraries.

        Does not wait for the new worker to answer on the admin socket (on 2.6 it may not be
        up yet when this returns).

        Raises:
            LabError: the master said the reload failed (``Success=0``), or answered what
                neither 2.6 nor 2.7+ answers; the message carries the answer.
        """
        self._require_haproxy(alive=True)
        reply = raw_command(self.master_socket, "reload", timeout=timeout)
        if reply == "" or reply.startswith("Success=1\n"):
            return reply
        raise LabError(f"HAProxy reload failed; the master CLI answered:\n{reply}")

    def signal_workers(self, sig: int) -> None:
        """Send ``sig`` to HAProxy's worker(s) only, e.g. SIGSTOP/SIGCONT to freeze the CLI."""
        for pid in self._worker_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill_haproxy(self, sig: int = signal.SIGKILL, *, timeout: float = 5.0) -> None:
        """Make HAProxy die abruptly, as in a crash, and wait (bounded) until it is gone.

        ``sig`` goes to the worker(s), the processes serving the CLI and the traffic, so a
        command in flight sees its connection break. The 2.6 master then exits by itself
        ("exit-on-failure") after reaping them, which leaves no orphaned zombie behind, unlike
        killing the master first. If that takes longer than ``timeout``, the whole process
        group gets SIGKILL.
        """
        haproxy = self._require_haproxy(alive=True)
        try:
            workers = self._worker_pids()
        except OSError:
            workers = []  # the master does not answer: fall back to the whole group
        if workers:
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        else:
            haproxy.kill_group(sig)
        if haproxy.wait(timeout) is None:
            haproxy.kill_group(signal.SIGKILL)
        haproxy.stop(timeout=_HAPROXY_STOP_TIMEOUT)  # reap and unregister

    def _require_haproxy(self, *, alive: bool = False) -> ManagedProcess:
        if self._haproxy is None or (alive and not self._haproxy.alive):
            raise LabError("HAProxy is not running in this lab")
        return self._haproxy

    # --- server state ---------------------------------------------------------------------

    def show_stat(self) -> list[dict[str, str]]:
        """``show stat`` rows of every server (admin socket), keyed by CSV header name."""
        return show_stat(self.admin_socket)

    def server_statuses(self) -> dict[ServerKey, str]:
        """The ``status`` column of every server, keyed by (backend, server)."""
        return {(row["pxname"], row["svname"]): row["status"] for row in self.show_stat()}

    def wait_for_status(
        self, backend: str, server: str, status: str, *, timeout: float = 10.0
    ) -> None:
        """Wait until the server's ``show stat`` status is exactly ``status`` (e.g. "DOWN").

        Raises:
            LabTimeout: it did not get there in time; the message has the last row seen.
        """
        last: dict[str, str] = {}

        def reached() -> bool | None:
            for row in self.show_stat():
                if (row["pxname"], row["svname"]) == (backend, server):
                    last.clear()
                    last.update(row)
            return True if last.get("status") == status else None

        def details() -> str:
            keys = ("status", "check_status", "check_health", "last_chk", "weight")
            seen = {k: last.get(k) for k in keys}
            return f"last seen: {seen}"

        poll_until(
            reached,
            timeout=timeout,
            what=f"{backend}/{server} to be {status}",
            details=details,
        )

    # --- apps -----------------------------------------------------------------------------

    def app(self, backend: str, server: str) -> AppHandle:
        """The current app process of ``backend/server`` (maybe stopped).

        Raises:
            KeyError: the server has no app.
        """
        return self._require_fleet().handle((backend, server))

    def apps(self) -> dict[ServerKey, AppHandle]:
        """The current app process of every server that has one."""
        return self._require_fleet().handles()

    def stop_app(
        self,
        backend: str,
        server: str,
        *,
        sig: int = signal.SIGTERM,
        timeout: float = APP_STOP_TIMEOUT,
    ) -> int:
        """Stop the app of ``backend/server`` and return its exit status.

        SIGTERM is graceful (requests in flight finish); SIGKILL simulates a crash. Either
        way the app gets SIGKILL after ``timeout`` seconds and is reaped before this returns.
        """
        return self._require_fleet().stop((backend, server), sig=sig, timeout=timeout)

    def start_app(
        self, backend: str, server: str, version: str, *, healthy: bool = True
    ) -> AppHandle:
        """Start a new app for ``backend/server`` on the server's port, reporting ``version``.

        ``healthy=False`` starts it with its health check failing (see :meth:`set_healthy`).

        Raises:
            LabError: the previous app is still running, or the new one did not get ready.
        """
        return self._require_fleet().start((backend, server), version, healthy=healthy)

    def replace_app(
        self,
        backend: str,
        server: str,
        version: str,
        *,
        sig: int = signal.SIGTERM,
        healthy: bool = True,
    ) -> AppHandle:
        """Stop the app of ``backend/server`` with ``sig``, then start ``version`` instead."""
        self.stop_app(backend, server, sig=sig)
        return self.start_app(backend, server, version, healthy=healthy)

    def set_healthy(self, backend: str, server: str, healthy: bool) -> None:
        """Make the app's ``/health`` answer 200 (True) or 503 (False) from now on.

        HAProxy notices at its next checks (``fall``/``rise`` checks ``inter`` apart). The
        setting survives app restarts.
        """
        self._require_fleet().set_healthy((backend, server), healthy)

    def _require_fleet(self) -> AppFleet:
        if self._fleet is None:
            raise LabError("the lab is not started")
        return self._fleet

    # --- startup internals ----------------------------------------------------------------

    def _make_dir(self) -> None:
        if self._requested_dir is not None:
            directory = os.path.abspath(self._requested_dir)
        else:
            # Under /tmp explicitly: $TMPDIR can be long (macOS) and the sockets live here.
            directory = tempfile.mkdtemp(prefix="hpx-", dir="/tmp")
            self._owns_dir = True
        self._dir = directory
        longest = max(len(p.encode()) for p in (self.admin_socket, self.master_socket))
        if longest > _SOCKET_PATH_MAX:
            raise LabError(
                f"lab directory {directory!r} is too long for unix socket paths "
                f"({longest} > {_SOCKET_PATH_MAX} bytes); use a shorter dir"
            )
        os.makedirs(directory, exist_ok=True)

    def _reserve(self) -> int:
        port = reserve_port()
        self._reserved.add(port)
        return port

    def _release(self, port: int) -> None:
        self._reserved.discard(port)
        release_ports([port])

    def _start_haproxy(self, binary: str) -> None:
        """Write and check the config, start HAProxy, wait until its admin socket answers.

        A frontend or TCP admin port taken between choosing it and HAProxy binding it (by
        another lab on the host) gets fresh ports and another attempt.
        """
        for _ in range(_PORT_ATTEMPTS):
            self._choose_haproxy_ports()
            self._write_config()
            self._check_config(binary)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.haproxy_log)  # keep only this attempt's messages
            # -W: master-worker, as in production (master CLI, workers as children);
            # -db: stay in the foreground so the lab owns the master's PID.
            argv = [binary, "-W", "-db", "-S", f"{self.master_socket},level,admin"]
            argv += ["-f", self.config_path]
            # Recorded at once, so that stop() also stops a HAProxy that fails to get ready.
            self._haproxy = ManagedProcess(argv, log_path=self.haproxy_log, name="haproxy")
            try:
                self._await_haproxy(self._haproxy)
            except PortTaken:
                self._haproxy.stop()
                continue
            return
        raise LabError(f"HAProxy could not bind free ports in {_PORT_ATTEMPTS} attempts")

    def _choose_haproxy_ports(self) -> None:
        for port in [*self._frontend_ports.values(), self._tcp_admin_port]:
            if port is not None:
                self._release(port)
        self._frontend_ports = {b.name: self._reserve() for b in self._spec.backends if b.frontend}
        self._tcp_admin_port = self._reserve() if self._spec.tcp_admin else None

    def _write_config(self) -> None:
        text = render_config(
            self._spec,
            dir=self.dir,
            frontend_ports=self._frontend_ports,
            tcp_admin_port=self._tcp_admin_port,
        )
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(text)

    def _check_config(self, binary: str) -> None:
        """``haproxy -c``: a config error then reads as such, not as a startup timeout."""
        result = subprocess.run(
            [binary, "-c", "-f", self.config_path],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_CONFIG_CHECK_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise LabError(
                f"HAProxy rejected {self.config_path} (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )

    def _await_haproxy(self, process: ManagedProcess) -> None:
        """Wait until the admin socket answers ``show info``."""

        def ready() -> bool | None:
            if not process.alive:
                tail = process.log_tail()
                error = PortTaken if "Address already in use" in tail else LabError
                raise error(f"HAProxy exited with status {process.returncode} at startup\n{tail}")
            try:
                reply = raw_command(self.admin_socket, "show info", timeout=1.0)
            except OSError:
                return None  # socket not there yet, or not accepting yet
            return True if "Pid:" in reply else None

        poll_until(
            ready,
            timeout=self.timeout,
            what=f"HAProxy's admin socket {self.admin_socket} to answer",
            details=process.log_tail,
        )

        def master_ready() -> bool | None:
            # The 2.6 master re-executes itself once the worker is up and refuses connections
            # meanwhile; tests that use the master CLI right after start() need it answering.
            try:
                return True if "worker" in raw_command(self.master_socket, "show proc",
                                                       timeout=1.0) else None
            except OSError:
                return None

        poll_until(master_ready, timeout=self.timeout,
                   what=f"the master CLI {self.master_socket} to answer",
                   details=process.log_tail)

    def _wait_checked_servers_up(self) -> None:
        """Wait until every health-checked server is fully ``UP`` (a check has passed)."""
        expected = [
            (b.name, s.name) for b in self._spec.backends for s in b.servers if b.checked(s)
        ]
        if not expected:
            return
        last: dict[ServerKey, str] = {}

        def all_up() -> bool | None:
            last.clear()
            last.update(self.server_statuses())
            return True if all(last.get(key) == "UP" for key in expected) else None

        def details() -> str:
            lines = []
            for key in expected:
                if last.get(key) != "UP":
                    lines.append(f"{key[0]}/{key[1]} is {last.get(key)!r}")
                    if self._fleet is not None and key in self._fleet.handles():
                        lines.append(read_log_tail(self._fleet.path(key, "log"), 10))
            lines.append(read_log_tail(self.haproxy_log, 20))
            return "\n".join(lines)

        poll_until(
            all_up, timeout=self.timeout, what="every checked server to be UP", details=details
        )


def _with_ports(spec: LabSpec, ports: dict[ServerKey, int]) -> LabSpec:
    """``spec`` with the app ports filled in; servers without an app must have a port."""

    def server(backend: BackendSpec, s: ServerSpec) -> ServerSpec:
        port = ports.get((backend.name, s.name), s.port)
        if port is None:
            raise LabError(f"server {backend.name}/{s.name} has no app and no port")
        return attrs.evolve(s, port=port)

    backends = [attrs.evolve(b, servers=[server(b, s) for s in b.servers]) for b in spec.backends]
    return attrs.evolve(spec, backends=backends)


# Labs started and not stopped yet. At interpreter exit (a test run that crashed or was
# interrupted) they are stopped properly, which also removes their directories; the process
# registry's own exit hook, registered earlier and therefore run later, then catches any
# process left over.
_running_labs: weakref.WeakSet[Lab] = weakref.WeakSet()


def _stop_running_labs() -> None:
    for lab in list(_running_labs):
        try:
            lab.stop()
        except Exception as exc:  # keep stopping the other labs
            print(f"haproxyctl.lab: could not stop {lab!r} at exit: {exc}", file=sys.stderr)


atexit.register(_stop_running_labs)
