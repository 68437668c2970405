"""``show servers state`` (management.txt §9.3): the exact admin and operational state bits.

Format (``shared/haproxy-runtime-api.md`` §5.2): a format version line (``1``, unchanged from 2.6
to 3.2), a ``# be_id be_name srv_id ...`` header, then one space-separated line per server with
``-`` for empty values. Columns are read by header name.

Admin state is a bit field (``include/haproxy/server-t.h``), printed in *decimal*: reading it as
hex is the bug that makes client-native report drained servers as "maint" (peers.md §2 #10).
"""

from __future__ import annotations

import enum

import attrs

from haproxyctl.errors import ProtocolError, UsageError
from haproxyctl.models._fields import Column, Columns, RowView, opt_int, opt_str, row_view, snippet

__all__ = [
    "AdminFlag",
    "AdminState",
    "CheckState",
    "OpState",
    "ServerState",
    "parse_servers_state",
    "server_names",
]


class AdminFlag(enum.IntFlag):
    """``srv_admin_state`` bits (SRV_ADMF_*)."""

    FMAINT = 0x01  #: forced maintenance (CLI ``state maint`` / ``disable server``)
    IMAINT = 0x02  #: maintenance inherited from a tracked server
    CMAINT = 0x04  #: ``disabled`` in the configuration
    FDRAIN = 0x08  #: forced drain (CLI ``state drain``)
    IDRAIN = 0x10  #: drain inherited from a tracked server
    RMAINT = 0x20  #: maintenance because DNS resolution failed
    HMAINT = 0x40  #: maintenance because the FQDN was changed from the CLI

    MAINT_MASK = FMAINT | IMAINT | CMAINT | RMAINT | HMAINT
    DRAIN_MASK = FDRAIN | IDRAIN


class AdminState(str, enum.Enum):
    """What ``set server ... state`` sets: in load balancing, draining, or in maintenance."""

    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"

    @classmethod
    def from_flags(cls, flags: int) -> AdminState:
        """Maintenance wins over drain, as in HAProxy (a drained server put in maint is MAINT)."""
        if flags & AdminFlag.MAINT_MASK:
            return cls.MAINT
        if flags & AdminFlag.DRAIN_MASK:
            return cls.DRAIN
        return cls.READY

    @classmethod
    def parse(cls, value: str | AdminState) -> AdminState:
        """Accept ``"ready"``/``"drain"``/``"maint"`` (any case) or an AdminState."""
        if isinstance(value, AdminState):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise UsageError(
                f"invalid server state {value!r}: expected ready, drain or maint",
                field="state", value=value,
            ) from None

    def __str__(self) -> str:
        return self.value


class OpState(enum.IntEnum):
    """``srv_op_state`` (SRV_ST_*)."""

    STOPPED = 0
    STARTING = 1
    RUNNING = 2
    STOPPING = 3


class CheckState(enum.IntFlag):
    """``srv_check_state`` / ``srv_agent_state`` bits (CHK_ST_*)."""

    INPROGRESS = 0x01
    CONFIGURED = 0x02
    ENABLED = 0x04
    PAUSED = 0x08
    AGENT = 0x10


def _op_state(raw: str) -> OpState:
    return OpState(int(raw))


def _admin_flags(raw: str) -> AdminFlag:
    return AdminFlag(int(raw))  # decimal, see module docstring


def _check_flags(raw: str) -> CheckState:
    return CheckState(int(raw) if raw not in ("", "-") else 0)


@row_view
@attrs.frozen(repr=False)
class ServerState(RowView):
    """One line of ``show servers state``."""

    values: tuple[str, ...]

    backend_id = Column("be_id", opt_int)
    backend = Column("be_name", str)
    id = Column("srv_id", opt_int)
    name = Column("srv_name", str)
    addr = Column("srv_addr", opt_str)
    op_state = Column("srv_op_state", _op_state)
    admin_flags = Column("srv_admin_state", _admin_flags)
    user_weight = Column("srv_uweight", opt_int)
    initial_weight = Column("srv_iweight", opt_int)
    seconds_since_change = Column("srv_time_since_last_change", opt_int)
    check_status_code = Column("srv_check_status", opt_int)
    check_result = Column("srv_check_result", opt_int)
    check_health = Column("srv_check_health", opt_int)
    check_state = Column("srv_check_state", _check_flags)
    agent_state = Column("srv_agent_state", _check_flags)
    fqdn = Column("srv_fqdn", opt_str)
    port = Column("srv_port", opt_int)
    check_port = Column("srv_check_port", opt_int)
    check_addr = Column("srv_check_addr", opt_str)

    REPR = ("backend", "name", "admin_state", "op_state", "user_weight", "initial_weight")

    @property
    def admin_state(self) -> AdminState:
        return AdminState.from_flags(self.admin_flags)

    @property
    def has_checks(self) -> bool:
        """A health check is configured (whether or not it is enabled right now)."""
        return bool(self.check_state & CheckState.CONFIGURED)

    @property
    def checks_enabled(self) -> bool:
        return bool(self.check_state & CheckState.ENABLED)

    @property
    def has_agent(self) -> bool:
        return bool(self.agent_state & CheckState.CONFIGURED)

    def to_dict(self) -> dict[str, object]:
        d = super().to_dict()
        d["admin_state"] = self.admin_state.value
        d["op_state"] = self.op_state.name.lower()
        d["admin_flags"] = int(self.admin_flags)
        d["check_state"] = int(self.check_state)
        d["agent_state"] = int(self.agent_state)
        return d


def parse_servers_state(reply: str) -> list[ServerState]:
    """Parse a ``show servers state`` reply."""
    lines = reply.split("\n")
    if len(lines) < 2 or not lines[1].startswith("# be_id "):
        raise ProtocolError("not a 'show servers state' reply: no '# be_id ...' header",
                            raw=snippet(reply))
    # lines[0] is the format version: "1" up to 3.2. A later format would still name its
    # columns in the header, so it is parsed by name rather than refused.
    columns = Columns(lines[1][2:].split(" "))
    out: list[ServerState] = []
    for line in lines[2:]:
        if not line:
            continue
        row = line.split(" ")
        row.append("")  # absent columns read as "" (position -1)
        out.append(ServerState.from_row(row, columns))
    return out


def server_names(reply: str) -> set[tuple[str, str]]:
    """``(backend, server)`` of every line of a ``show servers state`` reply, read by header
    name; the cheap check bulk changes make before sending anything."""
    lines = reply.split("\n")
    if len(lines) < 2 or not lines[1].startswith("# be_id "):
        raise ProtocolError("not a 'show servers state' reply: no '# be_id ...' header",
                            raw=snippet(reply))
    columns = Columns(lines[1][2:].split(" "))
    if "be_name" not in columns or "srv_name" not in columns:
        raise ProtocolError("'show servers state' header has no be_name/srv_name",
                            raw=snippet(lines[1]))
    b, s = columns.index["be_name"], columns.index["srv_name"]
    cut = max(b, s) + 1
    out: set[tuple[str, str]] = set()
    for line in lines[2:]:
        if line:
            row = line.split(" ", cut)
            if len(row) <= cut - 1:
                raise ProtocolError("'show servers state' line is shorter than its header",
                                    raw=snippet(line))
            out.add((row[b], row[s]))
    return out
