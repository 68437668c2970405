"""What a rollout reports: server phases, events (for progress views and the journal) and the
final report. Plain frozen data, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "Balance",
    "BatchDone",
    "BatchStarted",
    "Event",
    "Notice",
    "Phase",
    "PhaseChanged",
    "RolloutFinished",
    "RolloutReport",
    "RolloutStarted",
    "ServerOutcome",
    "Waiting",
]


class Phase(str, enum.Enum):
    """Where a server is in its update. The order is the order of the happy path."""

    PENDING = "pending"  #: untouched, original state
    DRAINING = "draining"  #: set to drain: no new users, pinned users still served
    MAINT = "maint"  #: set to maint: persistence broken, in-flight requests finishing
    DRAINED = "drained"  #: no session, empty queue: safe to stop the app
    UPDATING = "updating"  #: update command running
    UPDATED = "updated"  #: update command succeeded
    RETURNING = "returning"  #: maint -> drain: health checks running, no new users
    HEALTHY = "healthy"  #: checks passed (or settle time elapsed for unchecked servers)
    DONE = "done"  #: ready, original weight restored, verified
    # terminal states off the happy path
    RESTORED = "restored"  #: not updated; put back to its original state
    FAILED = "failed"  #: update or health failed; left in maint
    SKIPPED = "skipped"  #: not part of the rollout (in maint/drain before it started)

    @property
    def updated(self) -> bool:
        """The new version is (or may be) installed on the server."""
        return self in _UPDATED

    @property
    def untouched(self) -> bool:
        """The update never started on this server."""
        return self in _UNTOUCHED


_UPDATED = frozenset({Phase.UPDATED, Phase.RETURNING, Phase.HEALTHY, Phase.DONE})
_UNTOUCHED = frozenset({Phase.PENDING, Phase.DRAINING, Phase.MAINT, Phase.DRAINED,
                        Phase.RESTORED, Phase.SKIPPED})


@attrs.frozen
class Event:
    """Base of all events. ``at`` is the runner's monotonic time (seconds) when emitted."""

    at: float = attrs.field(default=0.0, kw_only=True)

    @property
    def kind(self) -> str:
        return _KINDS[type(self)]

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self, recurse=True, value_serializer=_serialize)
        return {"event": self.kind, **d}


def _serialize(inst: object, field: object, value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    return value


@attrs.frozen
class RolloutStarted(Event):
    backend: str
    strategy: str
    batches: tuple[tuple[str, ...], ...]
    resumed: bool = False


@attrs.frozen
class BatchStarted(Event):
    index: int  #: 0-based
    total: int
    servers: tuple[str, ...]


@attrs.frozen
class PhaseChanged(Event):
    """A server entered a phase. These are what the journal records."""

    server: str
    phase: Phase
    detail: str = ""


@attrs.frozen
class Waiting(Event):
    """Progress of a wait: sessions left while draining, health while returning."""

    what: str  #: "drain", "sessions", "health", "settle"
    servers: Mapping[str, str]  #: server -> short status ("3 sessions", "DRAIN 1/2")
    elapsed: float
    timeout: float


@attrs.frozen
class Notice(Event):
    server: str | None
    message: str


@attrs.frozen
class Balance(Event):
    """The load of the servers in service at one stage of the rollout (promise 2).

    ``unit`` is "users" (stick-table entries per server, exact) or "req/s" (requests per
    second, measured over about a second: cookie users cannot be counted from HAProxy).
    ``imbalance`` is the busiest server's load per unit of weight over the mean (1.0 = even).
    """

    stage: str  #: e.g. "batch 2/3: before", "batch 2/3: taken out", "end"
    unit: str
    loads: Mapping[str, float]
    imbalance: float


@attrs.frozen
class BatchDone(Event):
    index: int
    total: int
    ok: bool


@attrs.frozen
class ServerOutcome:
    server: str
    phase: Phase
    admin_state: str | None  #: as read from HAProxy at the end
    status: str | None
    weight: int | None
    original_state: str
    original_weight: int | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self, value_serializer=_serialize)


@attrs.frozen
class RolloutReport:
    """How the rollout ended and where every server is."""

    backend: str
    status: str  #: "completed", "failed", "interrupted", "aborted", "refused"
    servers: tuple[ServerOutcome, ...]
    message: str
    elapsed: float = 0.0
    #: Seconds spent waiting on sessions, update commands and checks (the runner's measure).
    waited: float = 0.0
    batches_done: int = 0
    batches_total: int = 0
    #: Why a rollout stopped early when it was not a server's fault: "transport" (connection to
    #: HAProxy lost) or "timeout" (HAProxy did not answer in time). Resumable either way.
    cause: str | None = None
    #: The load measured at each stage (before the first batch, after each move, at the end).
    loads: tuple[Balance, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def overhead(self) -> float:
        """Time not spent waiting on HAProxy, users or update commands."""
        return max(self.elapsed - self.waited, 0.0)

    def outcome(self, server: str) -> ServerOutcome:
        return next(o for o in self.servers if o.server == server)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "status": self.status, "message": self.message,
            "elapsed": round(self.elapsed, 3), "waited": round(self.waited, 3),
            "overhead": round(self.overhead, 3), "batches_done": self.batches_done,
            "batches_total": self.batches_total, "cause": self.cause,
            "servers": [o.to_dict() for o in self.servers],
            "loads": [{"stage": b.stage, "unit": b.unit, "loads": dict(b.loads),
                       "imbalance": b.imbalance} for b in self.loads],
        }


@attrs.frozen
class RolloutFinished(Event):
    report: RolloutReport

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "at": self.at, "report": self.report.to_dict()}


_KINDS: dict[type, str] = {
    RolloutStarted: "rollout_started",
    BatchStarted: "batch_started",
    PhaseChanged: "phase",
    Waiting: "waiting",
    Notice: "notice",
    Balance: "balance",
    BatchDone: "batch_done",
    RolloutFinished: "rollout_finished",
}
