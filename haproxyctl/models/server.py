"""The server as an operator thinks of it: ``show stat`` traffic joined with ``show servers
state`` bits. Both readings are kept whole (``stat``, ``state``) for anything not surfaced here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from haproxyctl.errors import ProtocolError
from haproxyctl.models.stat import ServerStat
from haproxyctl.models.state import AdminFlag, AdminState, OpState, ServerState

__all__ = ["Server", "join_servers"]


@attrs.frozen(repr=False)
class Server:
    """One server: identity, admin and operational state, weights, load and health.

    Attributes are read from the two snapshots; nothing here does I/O.
    """

    stat: ServerStat
    state: ServerState

    @classmethod
    def from_parts(cls, stat: ServerStat, state: ServerState) -> Server:
        """Join the two readings of the same server (same backend id and server id)."""
        if (stat.backend_id, stat.id) != (state.backend_id, state.id):
            raise ProtocolError(
                f"cannot join {stat.backend}/{stat.name} (ids {stat.backend_id}/{stat.id}) with "
                f"{state.backend}/{state.name} (ids {state.backend_id}/{state.id})"
            )
        return cls(stat, state)

    # identity
    @property
    def backend(self) -> str:
        return self.stat.backend

    @property
    def name(self) -> str:
        return self.stat.name

    @property
    def id(self) -> int | None:
        return self.stat.id

    @property
    def backend_id(self) -> int | None:
        return self.stat.backend_id

    @property
    def ref(self) -> str:
        """``backend/server``."""
        return f"{self.backend}/{self.name}"

    @property
    def address(self) -> str | None:
        return self.state.addr

    @property
    def port(self) -> int | None:
        return self.state.port

    # state
    @property
    def admin_state(self) -> AdminState:
        """ready/drain/maint, from the admin bits (not from the status text)."""
        return self.state.admin_state

    @property
    def admin_flags(self) -> AdminFlag:
        return self.state.admin_flags

    @property
    def op_state(self) -> OpState:
        return self.state.op_state

    @property
    def status(self) -> str:
        """HAProxy's status text (UP, UP 1/2, DRAIN, MAINT, DOWN, no check...)."""
        return self.stat.status

    # weights
    @property
    def weight(self) -> int | None:
        """The current weight as set by config, ``set server ... weight`` or an agent."""
        return self.state.user_weight

    @property
    def effective_weight(self) -> int | None:
        """The weight HAProxy balances with now (``show stat`` ``weight``)."""
        return self.stat.weight

    @property
    def initial_weight(self) -> int | None:
        """The weight from the configuration (what ``100%`` means)."""
        return self.state.initial_weight

    # load
    @property
    def scur(self) -> int:
        return self.stat.scur

    @property
    def qcur(self) -> int:
        return self.stat.qcur

    @property
    def stot(self) -> int:
        return self.stat.stot

    @property
    def drained(self) -> bool:
        """No active session and an empty queue."""
        return self.stat.drained

    # health
    @property
    def has_checks(self) -> bool:
        """A health check is configured (it may be disabled, or paused by MAINT)."""
        return self.state.has_checks

    @property
    def checks_enabled(self) -> bool:
        return self.state.checks_enabled

    @property
    def has_agent(self) -> bool:
        return self.state.has_agent

    @property
    def check_status(self) -> str | None:
        return self.stat.check_status

    @property
    def check_health(self) -> int | None:
        return self.stat.check_health

    @property
    def check_rise(self) -> int | None:
        return self.stat.check_rise

    @property
    def check_fall(self) -> int | None:
        return self.stat.check_fall

    @property
    def fully_healthy(self) -> bool | None:
        return self.stat.fully_healthy

    @property
    def up(self) -> bool:
        """HAProxy considers the server running (UP, DRAIN, NOLB or no check), not DOWN/MAINT."""
        return self.op_state in (OpState.RUNNING, OpState.STARTING, OpState.STOPPING) and (
            self.admin_state is not AdminState.MAINT
        )

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape used by ``haproxyctl servers --json``."""
        return {
            "backend": self.backend,
            "server": self.name,
            "id": self.id,
            "address": self.address,
            "port": self.port,
            "status": self.status,
            "admin_state": self.admin_state.value,
            "op_state": self.op_state.name.lower(),
            "weight": self.weight,
            "effective_weight": self.effective_weight,
            "initial_weight": self.initial_weight,
            "scur": self.scur,
            "qcur": self.qcur,
            "stot": self.stot,
            "check_status": self.check_status,
            "check_health": self.check_health,
            "check_rise": self.check_rise,
            "check_fall": self.check_fall,
            "has_checks": self.has_checks,
            "checks_enabled": self.checks_enabled,
            "has_agent": self.has_agent,
        }

    def __repr__(self) -> str:
        return (f"Server({self.ref!r}, admin_state={self.admin_state.value!r}, "
                f"status={self.status!r}, weight={self.weight}, scur={self.scur}, "
                f"qcur={self.qcur})")


def join_servers(stats: Iterable[ServerStat], states: Iterable[ServerState]) -> list[Server]:
    """Join the two listings on (backend id, server id), keeping ``show stat`` order.

    A server present in one listing only (it was added or deleted between the two reads) is
    left out rather than half-described.
    """
    by_id = {(s.backend_id, s.id): s for s in states}
    out: list[Server] = []
    for st in stats:
        state = by_id.get((st.backend_id, st.id))
        if state is not None and state.name == st.name:
            out.append(Server(st, state))
    return out
