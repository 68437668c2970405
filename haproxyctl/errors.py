"""One error tree for everything haproxyctl can fail at.

Every failure raises a subclass of :class:`HAProxyError`; no function returns ``False`` or ``None``
to signal failure. The tree follows what a caller can *do* about the error:

- :class:`UsageError`: the caller's input is invalid; nothing was sent. Fix the input.
- :class:`TransportError`: the socket could not be reached or the connection broke. Retry
  later or fix the address/permissions. :class:`ConnectionLost` says whether HAProxy may have
  received the command (``sent``).
- :class:`HAProxyTimeout`: no answer in time (:class:`IOTimeout`) or a wait condition did not
  hold in time (:class:`WaitTimeout`).
- :class:`ProtocolError`: HAProxy answered with bytes we cannot frame or parse.
- :class:`CommandError`: HAProxy refused the command. Subclasses name the reason
  (no such backend/server/table/map, permission denied, unknown command, invalid argument).

Every error keeps the context needed to act on it: the socket address, the command line as it
was sent, and for command errors the raw reply text exactly as HAProxy wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CommandError",
    "ConnectError",
    "ConnectionLost",
    "HAProxyError",
    "HAProxyTimeout",
    "IOTimeout",
    "InvalidArgument",
    "NoSuchBackend",
    "NoSuchMap",
    "NoSuchObject",
    "NoSuchProcess",
    "NoSuchServer",
    "NoSuchSession",
    "NoSuchTable",
    "PartialFailure",
    "PermissionDenied",
    "ProtocolError",
    "StateError",
    "TransportError",
    "UnknownCommand",
    "UsageError",
    "WaitTimeout",
]


class HAProxyError(Exception):
    """Root of every error raised by haproxyctl.

    Attributes:
        address: the socket address the error relates to, when known (``"unix:/run/..."``).
        command: the command line as sent (without the trailing newline), when known.
    """

    #: CLI exit code for this class of error (see ``docs/cli.md``).
    exit_code: int = 1

    def __init__(
        self, message: str, *, address: str | None = None, command: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.address = address
        self.command = command

    def __str__(self) -> str:
        return self.message


# --- input -----------------------------------------------------------------------------------


class UsageError(HAProxyError, ValueError):
    """The caller's input is invalid; nothing was sent to HAProxy.

    Attributes:
        field: what was wrong (``"server name"``, ``"weight"``, ...).
        value: the offending value.
    """

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


# --- transport ---------------------------------------------------------------------------------


class TransportError(HAProxyError):
    """The socket could not be used: missing, refused, not permitted, or the connection broke."""

    exit_code = 3


class ConnectError(TransportError):
    """Connecting failed; HAProxy received nothing.

    Attributes:
        errno: the OS error number when the failure came from the OS (``ENOENT``, ...).
    """

    def __init__(
        self, message: str, *, address: str | None = None, errno: int | None = None
    ) -> None:
        super().__init__(message, address=address)
        self.errno = errno


class ConnectionLost(TransportError):
    """The connection closed or broke before the reply was complete.

    Attributes:
        sent: True when the command line was written, so HAProxy may have run it.
        partial: the reply bytes received before the connection broke.
    """

    def __init__(
        self,
        message: str,
        *,
        address: str | None = None,
        command: str | None = None,
        sent: bool = False,
        partial: bytes = b"",
    ) -> None:
        super().__init__(message, address=address, command=command)
        self.sent = sent
        self.partial = partial


# --- time --------------------------------------------------------------------------------------


class HAProxyTimeout(HAProxyError, TimeoutError):
    """Something did not happen in time."""

    exit_code = 4

    def __init__(
        self,
        message: str,
        *,
        timeout: float,
        address: str | None = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message, address=address, command=command)
        self.timeout = timeout


class IOTimeout(HAProxyTimeout):
    """Connecting, sending or reading the reply took longer than the timeout."""


class WaitTimeout(HAProxyTimeout):
    """A wait condition (drained, up, predicate) did not hold before the deadline.

    Attributes:
        last: the last observation made before giving up (a model object), if any.
        condition: a short description of what was waited for.
    """

    def __init__(
        self,
        message: str,
        *,
        timeout: float,
        condition: str,
        last: Any = None,
        address: str | None = None,
    ) -> None:
        super().__init__(message, timeout=timeout, address=address)
        self.condition = condition
        self.last = last


# --- protocol --------------------------------------------------------------------------------


class ProtocolError(HAProxyError):
    """HAProxy answered with something that cannot be framed or parsed.

    Attributes:
        raw: the text (or a prefix of it) that failed to parse.
    """

    exit_code = 5

    def __init__(
        self,
        message: str,
        *,
        raw: str = "",
        address: str | None = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message, address=address, command=command)
        self.raw = raw


# --- commands ----------------------------------------------------------------------------------


class CommandError(HAProxyError):
    """HAProxy refused the command.

    Attributes:
        reply: HAProxy's reply text exactly as received (severity prefix included).
        reason: the reply's message without the severity prefix, on one line.
        severity: the syslog severity HAProxy attached (3 = error), when it sent one.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        reply: str,
        reason: str,
        severity: int | None = None,
        address: str | None = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message, address=address, command=command)
        self.reply = reply
        self.reason = reason
        self.severity = severity


class NoSuchObject(CommandError):
    """HAProxy does not know the named object."""


class NoSuchBackend(NoSuchObject):
    """No backend (proxy) by that name or id."""


class NoSuchServer(NoSuchObject):
    """The backend has no server by that name or id."""


class NoSuchTable(NoSuchObject):
    """No stick table by that name."""


class NoSuchMap(NoSuchObject):
    """No map or ACL by that file name or ``#id``."""


class NoSuchSession(NoSuchObject):
    """No session (stream) with that id."""


class NoSuchProcess(NoSuchObject):
    """The master CLI has no process matching the ``@`` selector."""


class PermissionDenied(CommandError):
    """The socket's level (user/operator/admin) is too low for the command."""


class UnknownCommand(CommandError):
    """This HAProxy version (or this socket: master vs worker) does not know the command."""


class InvalidArgument(CommandError):
    """HAProxy rejected an argument of the command (bad value, bad syntax)."""


class StateError(HAProxyError):
    """The object is in a state where the request cannot succeed (waiting for a server in
    service to drain, waiting for health checks of a server in maintenance...).

    Attributes:
        target: what the error is about (``"backend/server"``).
        state: the state observed.
    """

    exit_code = 1

    def __init__(self, message: str, *, target: str, state: str,
                 address: str | None = None) -> None:
        super().__init__(message, address=address)
        self.target = target
        self.state = state


class PartialFailure(HAProxyError):
    """Some items of a bulk operation failed; the others were applied.

    Attributes:
        results: one result per item, in request order (see :class:`haproxyctl.BulkResult`).
    """

    exit_code = 1

    def __init__(self, message: str, *, results: Sequence[Any], address: str | None = None) -> None:
        super().__init__(message, address=address)
        self.results = list(results)

    @property
    def failed(self) -> list[Any]:
        return [r for r in self.results if not r.ok]
