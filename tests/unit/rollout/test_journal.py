"""The rollout journal: JSON lines, flock, torn last line, archive of finished journals."""

from __future__ import annotations

import datetime
import json
import os
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

from haproxyctl.rollout import journal as journal_mod
from haproxyctl.rollout.events import Phase
from haproxyctl.rollout.journal import (
    ENV_STATE_DIR,
    Journal,
    JournalError,
    default_journal_path,
    read_journal,
)
from haproxyctl.rollout.plan import Plan
from haproxyctl.rollout.runner import abort_targets


def write_journal(path: Path, plan: Plan, phases: Sequence[tuple[str, Phase]] = (), *,
                  end: str | None = None) -> None:
    with Journal(path).lock() as j:
        j.start(plan, address="/run/haproxy.sock", update="exec: deploy {server}")
        for server, phase in phases:
            j.phase(server, phase, "detail")
        if end is not None:
            j.end(end, "all done")


def test_plan_and_phases_read_back(journal_path: Path, plan4: Plan) -> None:
    write_journal(journal_path, plan4, [("s1", Phase.DRAINING), ("s1", Phase.MAINT),
                                        ("s2", Phase.DRAINING)])
    state = read_journal(journal_path)
    assert state.plan == plan4
    assert state.phases == {"s1": Phase.MAINT, "s2": Phase.DRAINING}
    assert state.address == "/run/haproxy.sock"
    assert state.update == "exec: deploy {server}"
    assert state.started
    assert state.ended is None
    assert state.last_status is None
    records = [json.loads(x) for x in journal_path.read_text().splitlines()]
    assert [r["type"] for r in records] == ["plan", "phase", "phase", "phase"]
    assert records[0]["pid"] == os.getpid()
    assert records[0]["format"] == 1


def test_status_and_end_records(journal_path: Path, plan4: Plan) -> None:
    with Journal(journal_path).lock() as j:
        j.start(plan4, address="a", update="u")
        j.status("failed", "batch 1 failed")
    assert read_journal(journal_path).last_status == "failed"
    with Journal(journal_path).lock() as j:
        j.reopen()
        j.end("completed", "ok")
    state = read_journal(journal_path)
    assert (state.ended, state.last_status) == ("completed", "failed")


def test_a_torn_last_line_is_ignored(journal_path: Path, plan4: Plan) -> None:
    write_journal(journal_path, plan4, [("s1", Phase.DRAINING)])
    with journal_path.open("a") as f:
        f.write('{"type":"phase","server":"s1","pha')  # killed mid-write
    assert read_journal(journal_path).phases == {"s1": Phase.DRAINING}


def test_a_corrupt_line_in_the_middle_is_an_error(journal_path: Path, plan4: Plan) -> None:
    write_journal(journal_path, plan4, [("s1", Phase.DRAINING)])
    lines = journal_path.read_text().splitlines()
    lines.insert(1, "{not json")
    journal_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JournalError, match="corrupt at line 2"):
        read_journal(journal_path)


def test_missing_journal_or_plan_record(journal_path: Path) -> None:
    with pytest.raises(JournalError, match="no rollout journal at"):
        read_journal(journal_path)
    journal_path.parent.mkdir(parents=True)
    journal_path.write_text('{"type":"phase","server":"s1","phase":"maint"}\n')
    with pytest.raises(JournalError, match="has no plan record"):
        read_journal(journal_path)


def test_records_written_after_resuming_a_torn_journal_are_kept(journal_path: Path,
                                                                plan4: Plan) -> None:
    write_journal(journal_path, plan4, [("s1", Phase.DRAINING)])
    with journal_path.open("a") as f:
        f.write('{"type":"phase","server":"s1","pha')
    with Journal(journal_path).lock() as j:  # --resume
        j.reopen()
        j.phase("s1", Phase.MAINT)
        j.phase("s2", Phase.DRAINING)
    assert read_journal(journal_path).phases == {"s1": Phase.MAINT, "s2": Phase.DRAINING}


def test_a_second_lock_is_refused_naming_the_holder_pid(journal_path: Path) -> None:
    first = Journal(journal_path).lock()
    try:
        lock_file = journal_path.with_name(journal_path.name + ".lock")
        assert lock_file.read_text().strip() == str(os.getpid())
        # flock belongs to the open file description: another open() conflicts, even here
        with pytest.raises(JournalError, match=rf"controller pid {os.getpid()}\b") as info:
            Journal(journal_path).lock()
        assert str(lock_file) in str(info.value)
    finally:
        first.close()
    Journal(journal_path).lock().close()  # released on close


def test_the_lock_is_released_when_the_holder_closes_even_after_writes(
        journal_path: Path, plan4: Plan) -> None:
    with Journal(journal_path).lock() as j:
        j.start(plan4, address="a", update="u")
    with Journal(journal_path).lock() as again:
        again.reopen()
        again.phase("s1", Phase.DRAINING)
    assert read_journal(journal_path).phases == {"s1": Phase.DRAINING}


def test_writing_to_a_journal_not_open_is_refused(journal_path: Path) -> None:
    with Journal(journal_path).lock() as j, pytest.raises(JournalError, match="not open"):
        j.phase("s1", Phase.DRAINING)


def test_an_unfinished_journal_blocks_a_new_start(journal_path: Path, plan4: Plan) -> None:
    write_journal(journal_path, plan4, [("s1", Phase.MAINT)])
    before = journal_path.read_text()
    with Journal(journal_path).lock() as j:
        with pytest.raises(JournalError, match=r"unfinished rollout of backend 'app'.*--resume"):
            j.check_can_start()
        with pytest.raises(JournalError, match="unfinished"):
            j.start(plan4, address="a", update="u")
    assert journal_path.read_text() == before
    assert list(journal_path.parent.glob(journal_path.name + ".*")) == [
        journal_path.with_name(journal_path.name + ".lock")]


def test_an_ended_journal_is_archived_with_a_timestamp(journal_path: Path, plan4: Plan) -> None:
    write_journal(journal_path, plan4, [("s1", Phase.DONE)], end="completed")
    old = journal_path.read_text()
    with Journal(journal_path).lock() as j:
        j.check_can_start()
        j.start(plan4, address="b", update="u2")
    archived = [p for p in journal_path.parent.iterdir()
                if p.name.startswith(journal_path.name + ".") and not p.name.endswith(".lock")]
    assert len(archived) == 1
    stamp = archived[0].name[len(journal_path.name) + 1:]
    datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%S")  # raises if not a timestamp
    assert archived[0].read_text() == old
    state = read_journal(journal_path)
    assert (state.address, state.phases, state.ended) == ("b", {}, None)


def test_two_archives_in_the_same_second_are_both_kept(journal_path: Path, plan4: Plan,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = datetime.datetime(2026, 1, 2, 3, 4, 5)

    class FrozenDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> FrozenDatetime:
            return cls.fromtimestamp(fixed.timestamp(), tz)

    monkeypatch.setattr(journal_mod, "datetime",
                        types.SimpleNamespace(datetime=FrozenDatetime,
                                              timezone=datetime.timezone))
    for n in range(3):
        with Journal(journal_path).lock() as j:
            j.start(plan4, address=f"run{n}", update="u")
            j.end("completed", "ok")
    archived = [p for p in journal_path.parent.iterdir()
                if p.name.startswith(journal_path.name + ".") and not p.name.endswith(".lock")]
    assert len(archived) == 2


def test_default_path_uses_the_state_dir_and_a_safe_name(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_STATE_DIR, str(tmp_path))
    p = default_journal_path("/run/haproxy.sock", "my app/../x")
    assert p.parent == tmp_path
    assert p.name.startswith("rollout-my_app_.._x-")
    assert p.suffix == ".jsonl"
    assert default_journal_path("/run/other.sock", "my app/../x") != p
    monkeypatch.delenv(ENV_STATE_DIR)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_journal_path("a", "b").parent == tmp_path / "xdg" / "haproxyctl"


def test_abort_targets_are_the_servers_whose_update_never_started(plan4: Plan) -> None:
    phases = {"s1": Phase.DONE, "s2": Phase.UPDATING, "s3": Phase.MAINT}
    servers, commands = abort_targets(plan4, phases)
    assert servers == ["s3", "s4"]  # s4: no phase journaled yet = pending
    assert [c.line for c in commands] == [
        "set server app/s3 weight 10", "set server app/s3 state ready",
        "set server app/s4 weight 10", "set server app/s4 state ready",
        # s1 is updated: back in service with its weight (temporary weights, pulses end)
        "set server app/s1 weight 10", "set server app/s1 state ready"]
    everything = {s: p for s, p in zip(plan4.targets, (Phase.FAILED, Phase.UPDATED,
                                                       Phase.HEALTHY, Phase.RETURNING),
                                       strict=True)}
    assert abort_targets(plan4, everything) == ([], [])
