"""HAProxy frozen or killed in the middle of a call: the exact error, within the timeout.

Each test gets a lab of its own (``small``): the worker is frozen with SIGSTOP so a call is
certainly in flight (written, no reply yet), then killed with SIGKILL. The ``wire`` spy says
when the client has written; nothing is mocked.
"""

from __future__ import annotations

import errno
import signal
import threading
import time
from collections.abc import Callable

import pytest
from conftest import SMALL, Rig, Wire, worker_pid_from

from haproxyctl import Client, ConnectError, ConnectionLost, HAProxyError, IOTimeout

pytestmark = pytest.mark.integration


class Call:
    """Runs ``fn`` in a thread and records how it ended, and when."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.error: BaseException | None = None
        self.ended_at = 0.0
        self._fn = fn
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    def join(self, timeout: float) -> HAProxyError:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the call did not return"
        assert isinstance(self.error, HAProxyError), self.error
        return self.error


def _kill_while_in_flight(rig: Rig, wire: Wire, fn: Callable[[], object]) -> tuple[HAProxyError,
                                                                                   float]:
    """Freeze the worker, start ``fn``, kill HAProxy once ``fn`` has written; return the
    error and how long after the kill it was raised."""
    rig.lab.signal_workers(signal.SIGSTOP)
    wire.clear()
    call = Call(fn)
    assert wire.sent_event.wait(5), "the client never wrote"
    killed_at = time.monotonic()
    rig.lab.kill_haproxy()
    error = call.join(timeout=15)
    return error, call.ended_at - killed_at


def test_a_frozen_worker_gives_io_timeout(small: Rig) -> None:
    with Client(small.admin, timeout=1.0) as client:
        pid = client.info().pid
        small.lab.signal_workers(signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(IOTimeout) as caught:
                client.servers(SMALL)
            elapsed = time.monotonic() - start
            # A new connection is accepted by the kernel, then waits for its reply too.
            with Client(small.admin, timeout=0.5) as fresh, pytest.raises(IOTimeout):
                fresh.version()
        finally:
            small.lab.signal_workers(signal.SIGCONT)
        assert 0.9 <= elapsed < 2.5
        assert caught.value.exit_code == 4
        assert "show stat" in str(caught.value)
        # Thawed: the same client works again, on a new session.
        assert client.info().pid == pid
        assert client.connection.connects == 2


def test_killed_during_the_first_exchange(small: Rig, wire: Wire) -> None:
    with Client(small.admin, timeout=10) as client:
        error, after = _kill_while_in_flight(small, wire, client.version)
    assert type(error) is ConnectionLost
    assert error.sent is True
    assert after < 3.0  # long before the 10 s timeout


def test_killed_during_a_read_retries_once_then_cannot_connect(small: Rig, wire: Wire) -> None:
    with Client(small.admin, timeout=10) as client:
        assert client.info().pid == worker_pid_from(small.admin)  # a live session
        error, after = _kill_while_in_flight(small, wire, client.server_stats)
    # The read is idempotent and no reply byte had arrived, so the client tried once more on a
    # new connection. The socket file left behind refuses it (ConnectError), unless the dying
    # worker's listener still took the connection for a moment and then dropped it while the
    # session was being set up (ConnectionLost). Either way: a transport error, and the
    # command itself was written once.
    assert after < 3.0
    assert wire.commands() == ["show stat -1 4 -1"]
    assert error.exit_code == 3
    if type(error) is ConnectError:
        assert isinstance(error, ConnectError)
        assert error.errno == errno.ECONNREFUSED
        assert "connection refused" in str(error)
    else:
        assert type(error) is ConnectionLost
        assert isinstance(error, ConnectionLost)
        assert error.command == "prompt"


def test_killed_during_a_non_idempotent_command(small: Rig, wire: Wire) -> None:
    with Client(small.admin, timeout=10) as client:
        client.version()
        error, after = _kill_while_in_flight(
            small, wire, lambda: client.map_add(small.map_path, "k.example", "v"))
    # "add map" may have run (HAProxy keeps duplicate keys), so it is not sent again.
    assert type(error) is ConnectionLost
    assert isinstance(error, ConnectionLost)
    assert (error.sent, error.partial) == (True, b"")
    assert error.command == f"add map {small.map_path} k.example v"
    assert "HAProxy may have run the command" in str(error) or "closed the connection" in str(
        error)
    assert after < 3.0
    assert wire.commands() == [f"add map {small.map_path} k.example v"]


def test_io_timeout_names_the_callers_command_and_timeout(small: Rig) -> None:
    small.lab.signal_workers(signal.SIGSTOP)
    try:
        with Client(small.admin, timeout=0.5) as client, pytest.raises(IOTimeout) as caught:
            client.info()
    finally:
        small.lab.signal_workers(signal.SIGCONT)
    assert caught.value.command == "show info"
    assert caught.value.timeout == 0.5
    assert "0.5s" in str(caught.value)


def test_a_timeout_during_the_identity_check_does_not_break_the_client(small: Rig) -> None:
    with Client(small.admin, timeout=0.5) as client:
        pid = client.info().pid
        client.connection.identity_interval = 0.0  # check which process answers on every call
        small.lab.signal_workers(signal.SIGSTOP)
        try:
            with pytest.raises(IOTimeout):
                client.version()
        finally:
            small.lab.signal_workers(signal.SIGCONT)
        assert client.info().pid == pid
