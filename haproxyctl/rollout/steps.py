"""The steps a rollout flow asks its runner to perform, and typed helpers to ask for them.

A flow is a generator: it yields a step and receives the step's result. It never touches a
socket, a clock or a process itself, which is what lets the unit tests drive a whole rollout
against a simulated HAProxy in microseconds. Use the helpers with ``yield from``::

    replies = yield from send(commands)     # list[Reply | CommandError]
    now, stats = yield from probe(refs)     # (float, list[ServerStat])
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, TypeVar, cast

import attrs

from haproxyctl.errors import CommandError
from haproxyctl.models.server import Server
from haproxyctl.models.stat import ServerStat
from haproxyctl.protocol.encode import Command, ServerRef
from haproxyctl.protocol.replies import Reply
from haproxyctl.rollout.events import Event
from haproxyctl.rollout.rebalance import Pin

__all__ = [
    "Emit",
    "Flow",
    "Now",
    "Probe",
    "ReadPins",
    "Send",
    "Sleep",
    "Snapshot",
    "Step",
    "Update",
    "UpdateOutcome",
    "UpdateTarget",
    "emit",
    "now",
    "probe",
    "read_pins",
    "send",
    "sleep",
    "snapshot",
    "update",
]

T = TypeVar("T")


@attrs.frozen
class Send:
    """Write these commands in one pipelined round trip; result: one Reply or CommandError each."""

    commands: tuple[Command, ...]
    #: Why: shown in dry runs and verbose logs.
    label: str = ""


@attrs.frozen
class Probe:
    """Read these servers' ``show stat`` rows (one round trip); result: (now, stats in order)."""

    refs: tuple[ServerRef, ...]


@attrs.frozen
class Snapshot:
    """Read the whole backend (stat + state); result: (now, servers)."""

    backend: str


@attrs.frozen
class ReadPins:
    """Read who a stick table pins where; result: (now, {server name: [Pin, ...]}).

    ``servers`` maps server names to their ids; only entries owned by those servers are
    returned (read with ``data.server_id`` filters when they are few), all of them when None.
    The owner is ``server_key`` if the entry has one, else the server of ``server_id``."""

    table: str
    servers: tuple[tuple[str, int], ...] | None
    #: Every server of the backend (name, id), to name the owners of ``server_id`` entries.
    names: tuple[tuple[str, int], ...] = ()


@attrs.frozen
class Sleep:
    """Wait (interruptible by a stop request); result: now."""

    seconds: float
    #: What the time is spent waiting for; counts as waiting, not overhead.
    reason: str = ""


@attrs.frozen
class Now:
    """Result: the runner's monotonic time."""


@attrs.frozen
class UpdateTarget:
    backend: str
    server: str
    address: str | None
    port: int | None


@attrs.frozen
class UpdateOutcome:
    server: str
    ok: bool
    detail: str = ""
    #: The update was killed by a signal while the rollout was being stopped: its result is
    #: unknown, so the server stays "updating" and --resume runs the update again.
    interrupted: bool = False
    #: The signal that ended the update command, if one did.
    signal: int | None = None


@attrs.frozen
class Update:
    """Run the update on these servers in parallel; result: one UpdateOutcome each, in order."""

    targets: tuple[UpdateTarget, ...]


@attrs.frozen
class Emit:
    """Report an event (progress views; phase changes are also journaled before continuing)."""

    event: Event


Step = Send | Probe | Snapshot | ReadPins | Sleep | Now | Update | Emit
Flow = Generator[Step, Any, T]


def send(commands: Sequence[Command], label: str = "") -> Flow[list[Reply | CommandError]]:
    result = yield Send(tuple(commands), label)
    return cast("list[Reply | CommandError]", result)


def probe(refs: Sequence[ServerRef]) -> Flow[tuple[float, list[ServerStat]]]:
    result = yield Probe(tuple(refs))
    return cast("tuple[float, list[ServerStat]]", result)


def snapshot(backend: str) -> Flow[tuple[float, list[Server]]]:
    result = yield Snapshot(backend)
    return cast("tuple[float, list[Server]]", result)


def read_pins(table: str, servers: Sequence[tuple[str, int]] | None,
              names: Sequence[tuple[str, int]]) -> Flow[tuple[float, dict[str, list[Pin]]]]:
    result = yield ReadPins(table, None if servers is None else tuple(servers), tuple(names))
    return cast("tuple[float, dict[str, list[Pin]]]", result)


def sleep(seconds: float, reason: str = "") -> Flow[float]:
    result = yield Sleep(seconds, reason)
    return cast(float, result)


def now() -> Flow[float]:
    result = yield Now()
    return cast(float, result)


def update(targets: Sequence[UpdateTarget]) -> Flow[list[UpdateOutcome]]:
    result = yield Update(tuple(targets))
    return cast("list[UpdateOutcome]", result)


def emit(event: Event) -> Flow[None]:
    yield Emit(event)
