"""The app processes behind a lab's servers: one per server, restartable on the same port.

Each server that has an app owns, under ``<lab dir>/apps/<backend>/``:

* ``<server>.port``: written by the app once it listens (readiness + the port it got);
* ``<server>.down``: while it exists, the app's ``/health`` answers 503;
* ``<server>.log``: the app's output.

One directory per backend because server names may contain ``-`` or ``.``: joining backend
and server names into one file name could make two servers collide.
"""

from __future__ import annotations

import contextlib
import os
import sys

import attrs

from haproxyctl.lab.config import LabSpec
from haproxyctl.lab.errors import LabError
from haproxyctl.lab.net import release_ports, reserve_port
from haproxyctl.lab.polling import poll_until
from haproxyctl.lab.process import ManagedProcess, stop_processes

__all__ = ["APP_STOP_TIMEOUT", "AppFleet", "AppHandle", "PortTaken", "ServerKey"]

#: (backend name, server name)
ServerKey = tuple[str, str]

#: An app finishes its requests in flight within 30 s (``app.GRACE_SECONDS``) before exiting.
APP_STOP_TIMEOUT = 35.0
# Fresh ports are tried this many times when another process takes one first.
_PORT_ATTEMPTS = 3


# haproxyctl.lab.app is imported lazily, in the functions below: importing it while the
# package initialises would make ``python -m haproxyctl.lab.app`` warn that the module was
# imported before being run.


def _app_script() -> str:
    """Path of app.py."""
    from haproxyctl.lab import app

    return app.__file__


def _exit_addr_in_use() -> int:
    """The app's exit status when its port is taken."""
    from haproxyctl.lab.app import EXIT_ADDR_IN_USE

    return EXIT_ADDR_IN_USE


class PortTaken(LabError):
    """A process could not bind its port because another process took it first."""


@attrs.frozen
class AppHandle:
    """One app process behind a server. Each start of the server's app makes a new handle.

    Attributes:
        backend, server: the server it serves.
        port: its port on 127.0.0.1 (the same for every handle of one server).
        version: the version it reports.
        process: the process itself.
    """

    backend: str
    server: str
    port: int
    version: str
    process: ManagedProcess = attrs.field(eq=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.alive


class AppFleet:
    """Starts, stops and restarts the apps of one lab.

    Args:
        dir: the lab's directory.
        timeout: how long an app may take to get ready.
    """

    def __init__(self, dir: str, *, timeout: float) -> None:
        self._dir = dir
        self._timeout = timeout
        self._handles: dict[ServerKey, AppHandle] = {}
        self._ports: dict[ServerKey, int] = {}
        self._reserved: set[int] = set()

    def start_all(self, spec: LabSpec) -> dict[ServerKey, int]:
        """Start the app of every server with ``app=True``; return their ports.

        All apps are launched before waiting for any: Python start-up time then overlaps.
        """
        servers = [(b.name, s) for b in spec.backends for s in b.servers if s.app]
        for backend, server in servers:
            port = server.port if server.port is not None else self._reserve()
            self._launch((backend, server.name), server.version, port)
        for backend, server in servers:
            self._finish_first_start((backend, server.name), fixed_port=server.port is not None)
        return dict(self._ports)

    def handle(self, key: ServerKey) -> AppHandle:
        """The current app of ``key`` (maybe stopped).

        Raises:
            KeyError: the server has no app.
        """
        try:
            return self._handles[key]
        except KeyError:
            raise KeyError(f"no app for {key[0]}/{key[1]} in this lab") from None

    def handles(self) -> dict[ServerKey, AppHandle]:
        return dict(self._handles)

    def stop(self, key: ServerKey, *, sig: int, timeout: float) -> int:
        """Stop the app of ``key`` with ``sig`` (SIGKILL after ``timeout``); its exit status."""
        return self.handle(key).process.stop(timeout=timeout, sig=sig)

    def start(self, key: ServerKey, version: str, *, healthy: bool) -> AppHandle:
        """Start a new app for ``key`` on the server's port.

        Raises:
            LabError: the current app is still running, or the new one did not get ready.
        """
        if self.handle(key).alive:
            raise LabError(f"the app of {key[0]}/{key[1]} is still running; stop it first")
        self.set_healthy(key, healthy)
        handle = self._launch(key, version, self._ports[key])
        self._await(handle)
        return handle

    def set_healthy(self, key: ServerKey, healthy: bool) -> None:
        """Make ``/health`` of ``key``'s app answer 200 (True) or 503 (False)."""
        self.handle(key)  # KeyError for a server without an app
        path = self.path(key, "down")
        if healthy:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            with open(path, "w", encoding="ascii") as f:
                f.write("down\n")

    def stop_all(self, timeout: float = APP_STOP_TIMEOUT) -> None:
        """Stop every app (in parallel) and release their ports."""
        stop_processes([h.process for h in self._handles.values()], timeout)
        release_ports(self._reserved)
        self._reserved.clear()

    def path(self, key: ServerKey, suffix: str) -> str:
        """Path of one of ``key``'s files: ``port``, ``down`` or ``log``."""
        backend_dir = os.path.join(self._dir, "apps", key[0])
        os.makedirs(backend_dir, exist_ok=True)
        return os.path.join(backend_dir, f"{key[1]}.{suffix}")

    # --- internals ------------------------------------------------------------------------

    def _reserve(self) -> int:
        port = reserve_port()
        self._reserved.add(port)
        return port

    def _finish_first_start(self, key: ServerKey, *, fixed_port: bool) -> None:
        """Wait for a launched app; relaunch it on a fresh port if its port was taken."""
        for _ in range(_PORT_ATTEMPTS):
            handle = self._handles[key]
            try:
                self._await(handle)
            except PortTaken:
                if fixed_port:
                    raise  # the spec asked for this very port
                self._reserved.discard(handle.port)
                release_ports([handle.port])
                self._launch(key, handle.version, self._reserve())
                continue
            return
        raise LabError(f"no free port for the app of {key[0]}/{key[1]}")

    def _launch(self, key: ServerKey, version: str, port: int) -> AppHandle:
        """Start an app process and make it the server's current app at once.

        Recorded before it is known to work, so that a failed start is still stopped by
        :meth:`stop_all`.
        """
        previous = self._handles.get(key)
        if previous is not None:
            # Callers only relaunch after the previous app exited: this just reaps it and
            # takes it off the process registry.
            previous.process.stop(timeout=0.0)
        ready_file = self.path(key, "port")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ready_file)  # left by the previous app of this server
        # Run as a script in isolated mode (-I) rather than with -m: it then needs neither an
        # installed package nor PYTHONPATH, skips importing the package (half its start-up
        # time; the lab starts several apps per test), and -I keeps the script's directory
        # off sys.path so the lab's modules cannot shadow standard ones (app.py imports only
        # the standard library for this reason).
        argv = [sys.executable, "-I", _app_script(), "--name", key[1]]
        argv += ["--version", version, "--port", str(port), "--ready-file", ready_file]
        argv += ["--health-file", self.path(key, "down")]
        process = ManagedProcess(
            argv, log_path=self.path(key, "log"), name=f"app {key[0]}/{key[1]}"
        )
        handle = AppHandle(key[0], key[1], port, version, process)
        self._handles[key] = handle
        self._ports[key] = port
        return handle

    def _await(self, handle: AppHandle) -> None:
        """Wait until the app has written its ready file.

        Raises:
            PortTaken: the app exited because its port was in use.
            LabError: the app died or did not get ready in time (with its log tail).
        """
        name = f"{handle.backend}/{handle.server}"
        ready_file = self.path((handle.backend, handle.server), "port")
        process = handle.process

        def ready() -> bool | None:
            if os.path.exists(ready_file):
                return True
            if process.alive:
                return None
            taken = process.returncode == _exit_addr_in_use()
            error = PortTaken if taken else LabError
            raise error(
                f"app {name} exited with status {process.returncode} while starting\n"
                f"{process.log_tail()}"
            )

        poll_until(
            ready,
            timeout=self._timeout,
            what=f"app {name} to write {ready_file}",
            details=process.log_tail,
        )
