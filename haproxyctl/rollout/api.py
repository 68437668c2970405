"""The rollout API: plan, run (with events), resume and abort. The CLI is a thin layer on this.

Example::

    from haproxyctl import Client
    from haproxyctl.rollout import Rollout, RolloutOptions

    with Client("/run/haproxy/admin.sock") as haproxy:
        rollout = Rollout(haproxy, "app", update="deploy.sh {server}",
                          options=RolloutOptions(batch_size=2))
        print(rollout.plan().batches)
        report = rollout.run(on_event=print)
        assert report.ok, report.message
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from haproxyctl.client import Client
from haproxyctl.configcheck import check_file
from haproxyctl.errors import CommandError, UsageError
from haproxyctl.rollout.events import (
    Event,
    Phase,
    PhaseChanged,
    RolloutFinished,
    RolloutReport,
    ServerOutcome,
)
from haproxyctl.rollout.flow import rollout_flow
from haproxyctl.rollout.journal import Journal, JournalError, default_journal_path, read_journal
from haproxyctl.rollout.options import RolloutOptions
from haproxyctl.rollout.plan import Plan, PlanError, make_plan
from haproxyctl.rollout.runner import Runner, StopSignal, abort_targets
from haproxyctl.rollout.steps import UpdateTarget
from haproxyctl.rollout.update import CallableUpdater, ExecUpdater, Updater, check_template

__all__ = ["Rollout", "UpdateSpec"]

UpdateSpec = str | Callable[[UpdateTarget], object] | Updater


class Rollout:
    """A rolling update of one backend.

    Args:
        client: a connected :class:`~haproxyctl.Client` (admin-level socket).
        backend: the backend to update.
        update: a shell command template (``"deploy {server}"``), a callable taking an
            :class:`UpdateTarget` (raise to fail), or an :class:`Updater`. Not needed for
            :meth:`plan` and :meth:`abort`.
        options: see :class:`RolloutOptions`.
        journal: journal path; None for the default location, False for no journal (then there
            is no resume, abort or protection against a second rollout).
        persistence: override detection ("cookie", "stick-table", "none").
        haproxy_config: HAProxy's configuration file: read before planning for settings a
            rollout cannot make safe (``option persist``, ``force-persist`` refuse it; cookie
            ``prefix``/``rewrite`` and others become notes; see ``haproxyctl.configcheck``).
    """

    def __init__(
        self,
        client: Client,
        backend: str,
        update: UpdateSpec | None = None,
        *,
        options: RolloutOptions | None = None,
        journal: str | Path | Literal[False] | None = None,
        persistence: str | None = None,
        haproxy_config: str | Path | None = None,
    ) -> None:
        self.client = client
        self.haproxy_config = haproxy_config
        self.backend = backend
        self.options = options or RolloutOptions()
        self.persistence = persistence
        self._default_journal: Path | None = None
        #: The report of the last run, resume or abort (also returned by them): handy when
        #: iterating ``events()``, whose return value a ``for`` loop drops.
        self.report: RolloutReport | None = None
        self._update = update
        if isinstance(update, str):
            check_template(update)  # refuse a bad --exec before anything is read or changed
        self._journal_arg = journal

    # -- planning -------------------------------------------------------------------------------

    def plan(self) -> Plan:
        """Read the backend once and plan (raises PlanError; changes nothing)."""
        level = self.client.cli_level()
        if level != "admin":
            # An operator socket cannot change servers, and a user socket does not even see
            # the backend's cookie and algorithm: refuse before anything is read or changed.
            raise PlanError(f"a rollout needs an admin-level socket; {self.client.address} is "
                            f"'{level}' level (see 'stats socket ... level admin')")
        stats = self.client.stats(self.backend)
        backend_rows = [b for b in stats.backends if b.name == self.backend]
        if not backend_rows:
            raise UsageError(f"{self.backend!r} is not a backend (it has no BACKEND row)",
                             field="backend", value=self.backend)
        servers = self.client.servers(self.backend)
        findings = (check_file(self.haproxy_config, self.backend)
                    if self.haproxy_config is not None else [])
        return make_plan(self.backend, servers, backend_rows[0], self.client.tables(),
                         self.options, persistence=self.persistence, config_findings=findings)

    # -- running --------------------------------------------------------------------------------

    def events(self, *, stop: StopSignal | None = None) -> Generator[Event, None, RolloutReport]:
        """Plan and run, yielding events as they happen; the generator returns the report."""
        updater = self._require_updater()
        with self._journal() as journal:
            # Lock and check for an unfinished rollout before reading anything: its servers
            # would make the plan fail for the wrong reason (capacity).
            if journal is not None:
                journal.check_can_start()
            plan = self.plan()
            if journal is not None:
                journal.start(plan, address=str(self.client.address),
                              update=updater.describe())
            runner = Runner(self.client, updater, journal=journal, stop=stop)
            self.report = yield from runner.events(plan, rollout_flow(plan))
            return self.report

    def run(self, *, on_event: Callable[[Event], None] | None = None,
            stop: StopSignal | None = None) -> RolloutReport:
        """Plan and run to the end; returns the report (``report.ok`` tells success)."""
        return _drain(self.events(stop=stop), on_event)

    def resume_events(self, *, stop: StopSignal | None = None,
                      overrides: Mapping[str, Any] | None = None,
                      ) -> Generator[Event, None, RolloutReport]:
        """Continue an unfinished rollout from its journal.

        ``overrides`` replace options of the journaled plan for the rest of the rollout, e.g.
        ``{"sessions_timeout": 600, "kill_after": 30}`` after a sessions timeout; they are
        validated like any options and recorded in the journal.
        """
        self._require_updater()  # fail fast, before taking the lock
        path = self._journal_path_or_fail()
        with Journal(path).lock() as journal:
            state = read_journal(path)
            self._check_resumable(state.plan.backend, state.ended, path)
            plan = state.plan
            if overrides:
                plan = attrs.evolve(plan, options=attrs.evolve(plan.options, **overrides))
            updater = self._require_updater(plan.options)
            journal.reopen()
            journal.status("resumed", f"resumed by {updater.describe()}"
                           + (f" with {dict(overrides)}" if overrides else ""))
            if overrides:
                journal.replan(plan, state)
            runner = Runner(self.client, updater, journal=journal, stop=stop)
            flow = rollout_flow(plan, dict(state.phases))
            self.report = yield from runner.events(plan, flow)
            return self.report

    def resume(self, *, on_event: Callable[[Event], None] | None = None,
               stop: StopSignal | None = None,
               overrides: Mapping[str, Any] | None = None) -> RolloutReport:
        return _drain(self.resume_events(stop=stop, overrides=overrides), on_event)

    def abort(self, *, on_event: Callable[[Event], None] | None = None) -> RolloutReport:
        """Undo an unfinished rollout: servers whose update never started go back to their
        original state and weight; servers already updated (or being updated) are left as
        they are and reported."""
        path = self._journal_path_or_fail()
        with Journal(path).lock() as journal:
            state = read_journal(path)
            self._check_resumable(state.plan.backend, state.ended, path)
            journal.reopen()
            plan, phases = state.plan, dict(state.phases)
            servers, commands = abort_targets(plan, phases)
            replies = self.client.connection.execute_many(commands) if commands else []
            errors = [r for r in replies if isinstance(r, CommandError)]
            if errors:
                raise errors[0]
            for s in servers:
                phases[s] = Phase.RESTORED
                journal.phase(s, Phase.RESTORED, "restored by --abort")
                if on_event is not None:
                    on_event(PhaseChanged(s, Phase.RESTORED, "restored by --abort"))
            left = [s for s in plan.targets if phases.get(s) not in (Phase.RESTORED,
                                                                      Phase.DONE)]
            message = (f"restored {len(servers)} server(s) not yet updated"
                       + (f"; left as they are: {', '.join(left)}" if left else ""))
            journal.end("aborted", message)
            report = self._static_report(plan, "aborted", message, phases)
            self.report = report
            if on_event is not None:
                on_event(RolloutFinished(report))
            return report

    # -- helpers --------------------------------------------------------------------------------

    def _require_updater(self, options: RolloutOptions | None = None) -> Updater:
        """The updater, built with the options the rollout actually runs with (on resume,
        the journal's plus any overrides: --exec-timeout among them)."""
        if self._update is None:
            raise UsageError("no update given: pass --exec 'COMMAND' (or update= in Python)",
                             field="exec")
        return _updater(self._update, options or self.options)

    @property
    def journal_path(self) -> Path | None:
        """The journal file: the one given, or one per (HAProxy instance, backend).

        The instance is named by ``show info``'s node name, which is the same whichever
        socket reaches it (unix, TCP, master) and survives reloads, so the lock and the
        unfinished-rollout check hold across sockets. Resolved on first use (one query)."""
        if self._journal_arg is False:
            return None
        if self._journal_arg is not None:
            return Path(self._journal_arg)
        if self._default_journal is None:
            node = self.client.info().node
            self._default_journal = default_journal_path(
                f"node:{node}" if node else str(self.client.address), self.backend)
        return self._default_journal

    def _journal_path_or_fail(self) -> Path:
        path = self.journal_path
        if path is None:
            raise UsageError("resume and abort need the rollout journal", field="journal")
        return path

    def _check_resumable(self, backend: str, ended: str | None, path: Path) -> None:
        if backend != self.backend:
            raise JournalError(f"journal {path} is for backend {backend!r}, not "
                               f"{self.backend!r}")
        if ended is not None:
            raise JournalError(f"the rollout in {path} already ended ({ended}); nothing to "
                               "resume or abort")

    @contextlib.contextmanager
    def _journal(self) -> Iterator[Journal | None]:
        path = self.journal_path
        if path is None:
            yield None
            return
        with Journal(path).lock() as journal:
            yield journal

    def _static_report(self, plan: Plan, status: str, message: str,
                       phases: dict[str, Phase]) -> RolloutReport:
        live = {s.name: s for s in self.client.servers(plan.backend)}
        outcomes = []
        for name, snap in plan.servers.items():
            server = live.get(name)
            outcomes.append(ServerOutcome(
                server=name, phase=phases.get(name, Phase.SKIPPED if name in plan.skipped
                                              else Phase.PENDING),
                admin_state=server.admin_state.value if server else None,
                status=server.status if server else None,
                weight=server.weight if server else None,
                original_state=snap.admin_state.value, original_weight=snap.weight))
        done = sum(1 for b in plan.batches if all(phases.get(s) is Phase.DONE for s in b))
        return RolloutReport(backend=plan.backend, status=status, servers=tuple(outcomes),
                             message=message, batches_done=done,
                             batches_total=len(plan.batches))


def _updater(update: UpdateSpec, options: RolloutOptions) -> Updater:
    if isinstance(update, str):
        return ExecUpdater(update, timeout=options.exec_timeout)
    if isinstance(update, ExecUpdater | CallableUpdater):
        return update
    if hasattr(update, "run") and hasattr(update, "describe"):
        return update
    if callable(update):
        return CallableUpdater(update)
    raise UsageError(f"invalid update {update!r}: expected a command string or a callable",
                     field="update")


def _drain(events: Generator[Event, None, RolloutReport],
           on_event: Callable[[Event], None] | None) -> RolloutReport:
    while True:
        try:
            event = next(events)
        except StopIteration as done:
            report: RolloutReport = done.value
            return report
        if on_event is not None:
            on_event(event)
