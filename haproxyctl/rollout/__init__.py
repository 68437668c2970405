"""Safe rolling updates of a backend: plan, run with progress, resume and abort after a crash.

See ``docs/rollout.md`` for how it works and what HAProxy configuration it expects.
"""

from haproxyctl.rollout.api import Rollout, UpdateSpec
from haproxyctl.rollout.events import (
    BatchDone,
    BatchStarted,
    Event,
    Notice,
    Phase,
    PhaseChanged,
    RolloutFinished,
    RolloutReport,
    RolloutStarted,
    ServerOutcome,
    Waiting,
)
from haproxyctl.rollout.journal import JournalError, default_journal_path, read_journal
from haproxyctl.rollout.options import RolloutOptions
from haproxyctl.rollout.plan import Plan, PlanError, make_plan
from haproxyctl.rollout.runner import StopSignal
from haproxyctl.rollout.steps import UpdateOutcome, UpdateTarget
from haproxyctl.rollout.update import CallableUpdater, ExecUpdater, Updater

__all__ = [
    "BatchDone",
    "BatchStarted",
    "CallableUpdater",
    "Event",
    "ExecUpdater",
    "JournalError",
    "Notice",
    "Phase",
    "PhaseChanged",
    "Plan",
    "PlanError",
    "Rollout",
    "RolloutFinished",
    "RolloutOptions",
    "RolloutReport",
    "RolloutStarted",
    "ServerOutcome",
    "StopSignal",
    "UpdateOutcome",
    "UpdateSpec",
    "UpdateTarget",
    "Updater",
    "Waiting",
    "default_journal_path",
    "make_plan",
    "read_journal",
]
