"""The runner: performs a flow's steps against HAProxy, the journal and the updater. Thin.

It is the only part of a rollout that does I/O or reads the clock. It also:

- journals every phase change, and ``fsync``s the journal before any step that acts (a write to
  HAProxy, an update), so the journal is never behind what changed;
- stops *between* steps when asked (Ctrl-C, SIGTERM, :meth:`StopSignal.request`): sleeps wake
  up at once, an update in progress is allowed to finish; the journal then allows
  ``--resume``/``--abort``;
- measures the time spent waiting (sleeps between polls, update commands) so the rollout's own
  overhead can be reported (``RolloutReport.overhead``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import attrs

from haproxyctl import commands as cmd
from haproxyctl.client import Client
from haproxyctl.errors import HAProxyError, HAProxyTimeout, TransportError
from haproxyctl.protocol.encode import Command
from haproxyctl.rollout.events import (
    Balance,
    Event,
    Phase,
    PhaseChanged,
    RolloutFinished,
    RolloutReport,
    ServerOutcome,
)
from haproxyctl.rollout.flow import FlowResult
from haproxyctl.rollout.journal import Journal
from haproxyctl.rollout.plan import Plan, ready_commands, restore_commands
from haproxyctl.rollout.rebalance import Pin
from haproxyctl.rollout.steps import (
    Emit,
    Flow,
    Now,
    Probe,
    ReadPins,
    Send,
    Sleep,
    Snapshot,
    Step,
    Update,
)
from haproxyctl.rollout.update import Updater

__all__ = ["Runner", "StopSignal", "abort_targets"]

_ACTIONS = (Send, Update)


class StopSignal:
    """A stop request shared with signal handlers or other threads."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def request(self, reason: str = "stop requested") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if a stop was requested."""
        return self._event.wait(seconds) if seconds > 0 else self._event.is_set()


class _Reloaded(HAProxyError):
    exit_code = 3


class Runner:
    def __init__(
        self,
        client: Client,
        updater: Updater | None,
        *,
        journal: Journal | None,
        stop: StopSignal | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.updater = updater
        self.journal = journal
        self.stop = stop or StopSignal()
        self.clock = clock
        self.waited = 0.0
        self._start = 0.0
        self._process_changes = 0

    def events(self, plan: Plan, flow: Flow[FlowResult]) -> Generator[Event, None, RolloutReport]:
        """Run ``flow`` to the end (or a stop), yielding its events; return the report."""
        self._start = self.clock()
        self.waited = 0.0
        phases: dict[str, Phase] = {}
        self._loads: list[Balance] = []
        result: FlowResult | None = None
        status, message, cause = "failed", "", None
        try:
            self.client.info()  # also records which worker answers
            self._process_changes = self.client.connection.process_changes
            step: Step = next(flow)
            while True:
                if self.stop.requested and not isinstance(step, Emit | Now):
                    status = "interrupted"
                    message = (f"{self.stop.reason}: stopped after the last completed step; "
                               + self._next_steps())
                    break
                if isinstance(step, Emit):
                    event = attrs.evolve(step.event, at=self.clock() - self._start)
                    if isinstance(event, Balance):
                        self._loads.append(event)
                    if isinstance(event, PhaseChanged):
                        phases[event.server] = event.phase
                        if self.journal is not None:
                            self.journal.phase(event.server, event.phase, event.detail)
                    yield event
                    step = flow.send(None)
                    continue
                if isinstance(step, _ACTIONS):
                    # Never act on a reloaded HAProxy with this rollout's assumptions.
                    self.client.connection.current_process()
                self._check_same_process()
                value = self.perform(step)
                self._check_same_process()
                step = flow.send(value)
        except StopIteration as done:
            result = done.value
        except _Reloaded as exc:
            cause = "reload"
            message = str(exc)
        except (TransportError, HAProxyTimeout) as exc:
            cause = "transport" if isinstance(exc, TransportError) else "timeout"
            message = f"lost contact with HAProxy: {exc}; the rollout stopped; " + \
                self._next_steps()
        except HAProxyError as exc:
            message = f"{type(exc).__name__}: {exc}"
        finally:
            flow.close()
            if self.journal is not None:
                self.journal.sync()
        if result is not None:
            status, message = result.status, result.message
            phases.update(result.phases)
        report = self._report(plan, status, message, phases, result, cause)
        if self.journal is not None:
            if status == "completed":
                self.journal.end(status, message)
            else:
                self.journal.status(status, message)
                self.journal.sync()
        yield RolloutFinished(report, at=self.clock() - self._start)
        return report

    def _next_steps(self) -> str:
        if self.journal is None:
            return ("there is no journal, so no --resume or --abort: check the servers in the "
                    "report and set them back as needed")
        return "finish with --resume or undo with --abort"

    def _check_same_process(self) -> None:
        """Stop if HAProxy was reloaded: a new worker starts from its configuration (and the
        server-state-file, if any), so servers this rollout put in drain or maint may be back
        in service, and going on could update a live server. The connection notices reloads
        (it checks which process answers, see Connection._check_identity)."""
        changes = self.client.connection.process_changes
        if changes == self._process_changes:
            return
        self._process_changes = changes
        raise _Reloaded(
            f"HAProxy was reloaded during the rollout (now worker pid "
            f"{self.client.connection.worker_pid}); runtime server states may have been reset. "
            "The rollout stopped: check the servers, then --resume (it sets every server's "
            "expected state again) or --abort" if self.journal is not None else
            "The rollout stopped (no journal): check the servers")

    def perform(self, step: Step) -> Any:
        """Perform one step (not an Emit) and return what the flow gets back."""
        if isinstance(step, _ACTIONS) and self.journal is not None:
            self.journal.sync()
        if isinstance(step, Send):
            return self.client.connection.execute_many(step.commands)
        if isinstance(step, Probe):
            stats = self.client.server_stats_of(step.refs)
            return self.clock(), stats
        if isinstance(step, ReadPins):
            return self.clock(), read_pins(self.client, step)
        if isinstance(step, Snapshot):
            servers = self.client.servers(step.backend)
            return self.clock(), servers
        if isinstance(step, Sleep):
            t0 = self.clock()
            self.stop.wait(step.seconds)
            t1 = self.clock()
            self.waited += t1 - t0
            return t1
        if isinstance(step, Now):
            return self.clock()
        if isinstance(step, Update):
            if self.updater is None:
                raise TypeError("this flow has no updater")  # pragma: no cover
            t0 = self.clock()
            outcomes = self.updater.run(step.targets)
            self.waited += self.clock() - t0
            if self.stop.requested:
                # Update commands run in their own session so a Ctrl-C does not reach them, but
                # one that lands while a command is being forked still can. Its result is then
                # unknown, not a failure of the new version.
                outcomes = [attrs.evolve(o, interrupted=True)
                            if not o.ok and o.signal in (signal.SIGINT, signal.SIGTERM) else o
                            for o in outcomes]
            return outcomes
        raise TypeError(f"unknown step {step!r}")  # pragma: no cover

    def _report(self, plan: Plan, status: str, message: str, phases: dict[str, Phase],
                result: FlowResult | None, cause: str | None) -> RolloutReport:
        errors = dict(result.errors) if result is not None else {}
        live: dict[str, Any] = {}
        # HAProxy unreachable: the report says so with None fields.
        with contextlib.suppress(HAProxyError):
            live = {s.name: s for s in self.client.servers(plan.backend)}
        outcomes = []
        for name, snap in plan.servers.items():
            default = Phase.SKIPPED if name in plan.skipped else Phase.PENDING
            server = live.get(name)
            outcomes.append(ServerOutcome(
                server=name, phase=phases.get(name, default),
                admin_state=server.admin_state.value if server is not None else None,
                status=server.status if server is not None else None,
                weight=server.weight if server is not None else None,
                original_state=snap.admin_state.value, original_weight=snap.weight,
                error=errors.get(name)))
        return RolloutReport(
            backend=plan.backend, status=status, servers=tuple(outcomes), message=message,
            elapsed=self.clock() - self._start, waited=self.waited,
            batches_done=result.batches_done if result is not None else sum(
                1 for b in plan.batches if all(phases.get(s) is Phase.DONE for s in b)),
            batches_total=len(plan.batches), cause=cause, loads=tuple(self._loads))


def read_pins(client: Client, step: ReadPins) -> dict[str, list[Pin]]:
    """Who the table pins where: one filtered read per server when a few are asked for (a
    big table is then not read whole), else one read of the whole table. Streamed, without
    building entry objects (a table of 100,000 users is read in about 0.1 s)."""
    names = dict((i, n) for n, i in step.names)

    def pins(where: list[str]) -> dict[str, list[Pin]]:
        read = client.table_pins(step.table, where=where, servers=names)
        return {s: [Pin(k, read.idle(k)) for k in keys] for s, keys in read.owners.items()}

    if step.servers is None or len(step.servers) * 4 > max(len(step.names), 1):
        found = pins([])
        if step.servers is None:
            return found
        return {n: found.get(n, []) for n, _ in step.servers}
    out: dict[str, list[Pin]] = {}
    for name, sid in step.servers:
        out[name] = pins([f"server_id eq {sid}"]).get(name, [])
    return out


def abort_targets(plan: Plan, phases: dict[str, Phase]) -> tuple[list[str], list[Command]]:
    """What ``--abort`` does: the servers whose update never started, and the commands that put
    them back to their original weight and state."""
    servers = [s for s in plan.targets
               if phases.get(s, Phase.PENDING).untouched and phases.get(s) is not Phase.SKIPPED]
    # Temporary weights and even-out pulses end too: servers already updated go back in
    # service with their weight, and servers outside the rollout get their weight back.
    done = [s for s in plan.targets if phases.get(s) is Phase.DONE]
    outside = [s for s in plan.servers
               if s not in plan.targets and s not in plan.skipped]
    commands = restore_commands(plan, servers) + ready_commands(plan, done, ramped=False)
    commands += [cmd.set_weight(plan.ref(s), plan.weight(s)) for s in outside]
    return servers, commands
