"""Transports: connecting to a CLI socket and moving bytes, with every OSError translated here.

Unix and TCP transports differ only in :meth:`Transport._connect`. Everything else about a
socket (deadlines, sends, reads, half-close, spotting a connection HAProxy closed while it was
idle) lives in :class:`Channel`, and every ``OSError`` becomes a haproxyctl error in
:func:`translate_os_error`, so no other module touches ``socket`` or catches ``OSError``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import stat
import time

from haproxyctl.address import Address
from haproxyctl.errors import (
    ConnectError,
    ConnectionLost,
    HAProxyError,
    IOTimeout,
    TransportError,
)

__all__ = ["Channel", "TcpTransport", "Transport", "UnixTransport", "transport_for"]

_RECV_SIZE = 256 * 1024


def _unix_not_socket_hint(path: str) -> str | None:
    """Explain a refused unix connection when the path is not a socket at all."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a socket"
        return f"{path} is {kind}; pass the path of HAProxy's 'stats socket'"
    return None


def translate_os_error(
    exc: OSError,
    address: Address,
    *,
    phase: str,
    command: str | None = None,
    sent: bool = False,
    partial: bytes = b"",
    timeout: float = 0.0,
) -> HAProxyError:
    """Turn an OSError from ``phase`` (connect/send/recv) into the matching haproxyctl error."""
    where = str(address)
    if isinstance(exc, socket.timeout | TimeoutError):
        return IOTimeout(
            f"{where}: no {'connection' if phase == 'connect' else 'reply'} within {timeout:g}s"
            + (f" (command {command!r})" if command else ""),
            timeout=timeout, address=where, command=command,
        )
    code = exc.errno
    if phase == "connect":
        if isinstance(exc, socket.gaierror):
            return ConnectError(f"{where}: cannot resolve host: {exc.strerror}", address=where,
                                errno=code)
        if code == errno.ENOENT:
            msg = (f"{where}: socket does not exist (is HAProxy running, and is this its "
                   "'stats socket' path?)")
        elif code in (errno.EACCES, errno.EPERM):
            msg = (f"{where}: permission denied (run as a user allowed by the socket's "
                   "'mode'/'user'/'group', or use sudo)")
        elif code == errno.ECONNREFUSED:
            hint = _unix_not_socket_hint(address.path) if address.path else None
            msg = f"{where}: {hint}" if hint else (
                f"{where}: connection refused (HAProxy is not listening there; a leftover socket "
                "file stays behind after HAProxy stops)")
        elif code == errno.ENOTDIR:
            msg = f"{where}: a parent of the socket path is not a directory"
        else:
            msg = f"{where}: cannot connect: {exc.strerror or exc}"
        return ConnectError(msg, address=where, errno=code)
    if code in (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN) or isinstance(
        exc, ConnectionError
    ):
        return ConnectionLost(
            f"{where}: connection lost during {phase}"
            + (f" of {command!r}" if command else "")
            + ("; HAProxy may have run the command" if sent else ""),
            address=where, command=command, sent=sent, partial=partial,
        )
    return TransportError(f"{where}: {phase} failed: {exc.strerror or exc}", address=where,
                          command=command)


class Transport:
    """Opens connections to one address. Subclasses implement :meth:`_connect` only."""

    def __init__(self, address: Address, *, connect_timeout: float) -> None:
        self.address = address
        self.connect_timeout = connect_timeout

    def _connect(self, timeout: float) -> socket.socket:  # pragma: no cover - abstract
        raise NotImplementedError

    def open(self) -> Channel:
        """Connect and return a :class:`Channel`; raise ConnectError/IOTimeout on failure."""
        try:
            sock = self._connect(self.connect_timeout)
        except OSError as exc:
            raise translate_os_error(exc, self.address, phase="connect",
                                     timeout=self.connect_timeout) from None
        return Channel(sock, self.address)


class UnixTransport(Transport):
    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(self.address.path))
        except BaseException:
            sock.close()
            raise
        return sock


class TcpTransport(Transport):
    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((str(self.address.host), int(self.address.port or 0)),
                                        timeout=timeout)
        # Commands are small single writes; do not let Nagle delay them.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def transport_for(address: Address, *, connect_timeout: float) -> Transport:
    cls = UnixTransport if address.kind == "unix" else TcpTransport
    return cls(address, connect_timeout=connect_timeout)


class Channel:
    """One open socket with deadline-based I/O; every failure is a haproxyctl error."""

    def __init__(self, sock: socket.socket, address: Address) -> None:
        self._sock = sock
        self.address = address
        self.closed = False
        # poll(), not select(): select() fails for descriptors above 1023. Made once: the
        # check runs before every exchange on a persistent session.
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    def send(self, data: bytes, *, deadline: float, command: str | None = None) -> None:
        """Write ``data`` in one ``sendall``: HAProxy 2.6 drops the rest of a one-shot line that
        arrives in a later write (reference §1.4), so a line is never split by us."""
        timeout = max(deadline - time.monotonic(), 0.001)
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(data)
        except OSError as exc:
            self.close()
            raise translate_os_error(exc, self.address, phase="send", command=command,
                                     sent=True, timeout=timeout) from None

    def recv(self, *, deadline: float, command: str | None = None) -> bytes:
        """Read what is available (blocking until the deadline); b"" means the peer closed."""
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            self.close()
            raise IOTimeout(f"{self.address}: no complete reply"
                            + (f" to {command!r}" if command else "") + " in time",
                            timeout=0.0, address=str(self.address), command=command)
        try:
            self._sock.settimeout(timeout)
            return self._sock.recv(_RECV_SIZE)
        except OSError as exc:
            self.close()
            raise translate_os_error(exc, self.address, phase="recv", command=command,
                                     sent=True, timeout=timeout) from None

    def shutdown_write(self) -> None:
        """Half-close: the master CLI only ends a one-shot exchange when it sees our EOF."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.close()
            raise translate_os_error(exc, self.address, phase="send", sent=True) from None

    def idle_state(self) -> str:
        """``"ok"``, ``"closed"`` (HAProxy closed it: ``stats timeout``, reload) or ``"unexpected"``
        (bytes nobody asked for). Checked before reusing a persistent connection, so a command is
        not written into a socket that is already dead."""
        if self.closed:
            return "closed"
        try:
            if not self._poller.poll(0):
                return "ok"
            data = self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return "ok"
        except OSError:
            return "closed"
        return "closed" if data == b"" else "unexpected"

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self._sock.close()
