"""Events and the report: plain data, serialisable for ``--json`` and the journal."""

from __future__ import annotations

import json

from haproxyctl.rollout.events import (
    BatchStarted,
    Notice,
    Phase,
    PhaseChanged,
    RolloutFinished,
    RolloutReport,
    ServerOutcome,
    Waiting,
)


def test_phase_groups() -> None:
    updated = {p for p in Phase if p.updated}
    untouched = {p for p in Phase if p.untouched}
    assert updated == {Phase.UPDATED, Phase.RETURNING, Phase.HEALTHY, Phase.DONE}
    assert untouched == {Phase.PENDING, Phase.DRAINING, Phase.MAINT, Phase.DRAINED,
                         Phase.RESTORED, Phase.SKIPPED}
    # an update in progress or failed is neither: its version is unknown
    assert Phase.UPDATING not in updated | untouched
    assert Phase.FAILED not in updated | untouched


def test_events_serialise_with_their_kind_and_plain_values() -> None:
    e = PhaseChanged("s1", Phase.DRAINED, "ok", at=1.5)
    assert e.to_dict() == {"event": "phase", "at": 1.5, "server": "s1", "phase": "drained",
                           "detail": "ok"}
    w = Waiting("sessions", {"s1": "2 sessions, 0 queued"}, 3.0, 120.0)
    assert w.to_dict()["event"] == "waiting"
    assert w.to_dict()["servers"] == {"s1": "2 sessions, 0 queued"}
    assert BatchStarted(0, 2, ("s1", "s2")).kind == "batch_started"
    assert Notice(None, "hello").to_dict() == {"event": "notice", "at": 0.0, "server": None,
                                                "message": "hello"}
    json.dumps([e.to_dict(), w.to_dict()])


def _report(status: str, elapsed: float, waited: float) -> RolloutReport:
    outcome = ServerOutcome(server="s1", phase=Phase.FAILED, admin_state="maint",
                            status="MAINT", weight=10, original_state="ready",
                            original_weight=10, error="update failed: exit status 1")
    return RolloutReport(backend="app", status=status, servers=(outcome,), message="m",
                         elapsed=elapsed, waited=waited, batches_done=0, batches_total=2)


def test_report_ok_overhead_and_json() -> None:
    report = _report("failed", 10.0004, 9.5)
    assert not report.ok
    assert _report("completed", 1, 1).ok
    assert report.overhead == 10.0004 - 9.5
    assert _report("failed", 1.0, 2.0).overhead == 0.0  # never negative
    assert report.outcome("s1").error == "update failed: exit status 1"
    d = report.to_dict()
    assert (d["elapsed"], d["waited"], d["overhead"]) == (10.0, 9.5, 0.5)
    assert d["servers"][0]["phase"] == "failed"
    finished = RolloutFinished(report, at=2.0).to_dict()
    assert finished["event"] == "rollout_finished"
    assert finished["report"] == d
    json.dumps(finished)
