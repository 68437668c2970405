"""Child processes that are always stopped, by PID, even when a test crashes.

Every process the lab starts (HAProxy, the apps) is a :class:`ManagedProcess`. Each one:

* runs in its **own session and process group** (``start_new_session=True``). A Ctrl-C typed
  at the terminal goes to the foreground process group, i.e. to the controller under test;
  it must not also kill HAProxy and the apps behind the controller's back. Being a group
  leader also lets the lab reach the children a process leaves behind (HAProxy's workers):
  the group ID is the leader's PID.
* is signalled **only by its PID or its own group ID**, never by name: other labs (and other
  people's HAProxy) may run on the same host.
* is recorded in a module-level registry until it has been stopped and reaped; an ``atexit``
  hook stops whatever is left, so a test that dies half-way does not leak processes.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

from haproxyctl.lab.errors import LabError

__all__ = ["ManagedProcess", "live_processes", "stop_all", "stop_processes"]

# After SIGKILL a process dies as soon as it is scheduled; this only guards against a
# process stuck in uninterruptible sleep, which the lab reports instead of hanging on.
_KILL_WAIT = 5.0
_LOG_TAIL_BYTES = 16384


class ManagedProcess:
    """One started child process, with its output in a log file.

    The process starts in the constructor, so an instance always has a valid :attr:`pid`.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: str,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        """Start ``argv``; stdout and stderr are appended to ``log_path``.

        Raises:
            OSError: the program could not be executed.
        """
        self.argv: tuple[str, ...] = tuple(argv)
        self.name = name or os.path.basename(self.argv[0])
        self.log_path = log_path
        self._stopped = False
        with open(log_path, "ab") as log:
            # The child gets its own copy of the log descriptor; ours is closed right away.
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        _register(self)

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"exited {self.returncode}"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"

    @property
    def pid(self) -> int:
        """The process ID, which is also its process group ID."""
        return self._popen.pid

    @property
    def alive(self) -> bool:
        """Whether the process is still running (reaps it if it has exited)."""
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped (negative: killed by that signal), else None."""
        return self._popen.poll()

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the process to exit; its status or None."""
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process itself (not its group); no-op once it has exited.

        ``Popen.send_signal`` checks the process has not been reaped first, so the signal can
        never hit an unrelated process that reused the PID.
        """
        self._popen.send_signal(sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process and every process left in its group.

        Safe against PID reuse in practice: while the leader is not reaped its PID is
        reserved; once it is, the kernel keeps the group ID reserved as long as any member is
        alive, and a group with no members left gives ESRCH (only a wrap-around of the whole
        PID space between the reap and this call could make the ID name another group).
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self, timeout: float = 5.0, *, sig: int = signal.SIGTERM) -> int:
        """Stop gracefully: ``sig``, then SIGKILL to the group after ``timeout``; reap.

        Any process still in the group afterwards (children orphaned by a crash of the
        leader) gets SIGKILL too. Returns the exit status. Calling it again only returns the
        status: no signal is sent to a PID that may have been reused since.

        Raises:
            LabError: the process survived SIGKILL (stuck in the kernel).
        """
        if self._stopped:
            return self._exit_status()
        if self.alive:
            self.kill(sig)
            if self.wait(timeout) is None:
                self.kill_group(signal.SIGKILL)
                if self.wait(_KILL_WAIT) is None:
                    raise LabError(f"{self!r} survived SIGKILL for {_KILL_WAIT}s")
        self.kill_group(signal.SIGKILL)
        self._stopped = True
        _unregister(self)
        return self._exit_status()

    def _exit_status(self) -> int:
        status = self._popen.returncode
        if status is None:
            raise LabError(f"{self!r} has not been reaped")
        return status

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the process's output (for error messages)."""
        return read_log_tail(self.log_path, lines)


def read_log_tail(path: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note saying why there are none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            data = f.read()
    except OSError as exc:
        return f"(no log: {exc})"
    text = data.decode("utf-8", errors="replace").rstrip("\n")
    if not text:
        return f"({path} is empty)"
    tail = text.splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


def stop_processes(processes: Iterable[ManagedProcess], timeout: float = 5.0) -> None:
    """Stop several processes in parallel: SIGTERM to all first, then one shared deadline.

    Stopping one at a time would add up their shutdown times. Processes that already exited
    are reaped and unregistered too.
    """
    processes = list(processes)
    for process in processes:
        process.kill(signal.SIGTERM)  # a no-op for those that already exited
    deadline = time.monotonic() + timeout
    for process in processes:
        process.wait(max(0.0, deadline - time.monotonic()))
        process.stop(timeout=0.0)  # SIGKILL if still running; reap; unregister


# --- registry ---------------------------------------------------------------------------------

_registry_lock = threading.Lock()
_registry: dict[int, ManagedProcess] = {}


def _register(process: ManagedProcess) -> None:
    with _registry_lock:
        _registry[process.pid] = process


def _unregister(process: ManagedProcess) -> None:
    with _registry_lock:
        if _registry.get(process.pid) is process:
            del _registry[process.pid]


def live_processes() -> tuple[ManagedProcess, ...]:
    """Processes this Python process started and has not stopped yet.

    Some may have exited on their own since; :func:`stop_all` reaps those too.
    """
    with _registry_lock:
        return tuple(_registry.values())


def stop_all(timeout: float = 2.0) -> None:
    """Stop every process not stopped yet; runs at interpreter exit."""
    stop_processes(live_processes(), timeout)


atexit.register(stop_all)
