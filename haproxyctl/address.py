"""Socket addresses: parsing the strings users type (``-s``, ``HAPROXYCTL_SOCKET``).

Accepted forms:

- ``/run/haproxy/admin.sock`` or ``unix:/run/haproxy/admin.sock``: a worker's stats socket.
- ``tcp://127.0.0.1:9999`` or ``tcp://[::1]:9999``: a stats socket bound with ``ipv4@``/``ipv6@``.
- ``master:/run/haproxy-master.sock`` (or ``master:tcp://host:port``): the master CLI
  (management.txt §9.4), with the worker selected by a suffix: ``@1`` (the default: the current
  worker, by relative number) or ``@!<pid>`` (any worker by PID, including one still draining
  after a reload, which is reachable only by PID).
"""

from __future__ import annotations

import os
import re
from typing import Literal

import attrs

from haproxyctl.errors import UsageError

__all__ = ["DEFAULT_SOCKET", "Address", "parse_address"]

#: Where Debian's packaged HAProxy puts its admin socket.
DEFAULT_SOCKET = "/run/haproxy/admin.sock"

_TCP_RE = re.compile(r"tcp://(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:/\[\]]+)):(?P<port>[0-9]+)")
_WORKER_RE = re.compile(r"@(?P<sel>!?[0-9]+)$")

_FORMS = (
    "expected a socket path (/run/haproxy/admin.sock), unix:/path, tcp://host:port, "
    "or master:/path[@N|@!PID]"
)


@attrs.frozen
class Address:
    """Where a CLI socket is and how to talk to it.

    Attributes:
        kind: ``"unix"`` or ``"tcp"``: how to connect.
        path: the socket path (unix).
        host, port: the TCP endpoint (tcp).
        master: True for the master CLI; commands are then routed to ``worker``.
        worker: the master CLI selector without ``@``: ``"1"`` (relative) or ``"!1234"`` (PID).
    """

    kind: Literal["unix", "tcp"]
    path: str | None = None
    host: str | None = None
    port: int | None = None
    master: bool = False
    worker: str = "1"

    def __str__(self) -> str:
        """The canonical form, which :func:`parse_address` reads back to an equal Address."""
        if self.kind == "tcp":
            endpoint = self._tcp_text()
        elif self.master and self.path and self.path.startswith("/") and "://" not in self.path:
            endpoint = self.path  # the short form users type: master:/path@1
        else:
            endpoint = f"unix:{self.path}"
        return f"master:{endpoint}@{self.worker}" if self.master else endpoint

    def _tcp_text(self) -> str:
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    @property
    def route_prefix(self) -> str:
        """The master CLI prefix put before each command (``"@1 "``), or ``""`` for a worker."""
        return f"@{self.worker} " if self.master else ""


def _parse_tcp(text: str, original: str) -> Address:
    m = _TCP_RE.fullmatch(text)
    if m is None:
        raise UsageError(
            f"invalid TCP socket address {original!r}: expected tcp://host:port",
            field="socket", value=original,
        )
    port = int(m.group("port"))
    if not 0 < port < 65536:
        raise UsageError(
            f"invalid TCP port {port} in {original!r}: must be 1-65535", field="socket",
            value=original,
        )
    return Address(kind="tcp", host=m.group("v6") or m.group("host"), port=port)


def parse_address(text: str | os.PathLike[str]) -> Address:
    """Parse a socket address (see module docstring); raise UsageError naming what is wrong."""
    original = os.fspath(text)
    if not isinstance(original, str) or not original.strip():
        raise UsageError(f"socket address is empty; {_FORMS}", field="socket", value=original)
    if any(c in original for c in "\r\n\0"):
        raise UsageError(f"socket address {original!r} contains a control character",
                         field="socket", value=original)
    rest = original.strip()
    master = False
    worker = "1"
    if rest.startswith("master:"):
        master = True
        rest = rest[len("master:"):]
        m = _WORKER_RE.search(rest)
        if m is not None:
            worker = m.group("sel")
            rest = rest[: m.start()]
        if not rest:
            raise UsageError(f"master address {original!r} has no socket; {_FORMS}",
                             field="socket", value=original)
    if rest.startswith("tcp://"):
        addr = _parse_tcp(rest, original)
    elif rest.startswith("unix:"):
        addr = Address(kind="unix", path=rest[len("unix:"):])
    elif "://" in rest:
        raise UsageError(f"unsupported socket address {original!r}; {_FORMS}", field="socket",
                         value=original)
    else:
        addr = Address(kind="unix", path=rest)
    if addr.kind == "unix" and not addr.path:
        raise UsageError(f"socket address {original!r} has an empty path; {_FORMS}",
                         field="socket", value=original)
    if master:
        addr = attrs.evolve(addr, master=True, worker=worker)
    return addr
