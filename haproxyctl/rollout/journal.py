"""The rollout journal: what lets ``--resume`` finish and ``--abort`` undo after a crash.

One JSON object per line, appended: the plan first (with every server's original state and
weight), then each phase change, then ``end`` when the rollout completed or was aborted. A
failed or interrupted rollout has no ``end``: it stays *unfinished* and blocks a new rollout of
the same backend until it is resumed or aborted.

Durability: records are flushed as they are written and ``fsync``-ed before the runner acts on
HAProxy or starts an update (:meth:`Journal.sync`), so after ``kill -9`` the journal is never
behind on anything that changed a server. Every step it replays is safe to repeat.

A lock (``flock`` on ``<journal>.lock``) is held while a controller runs: a second controller
on the same backend is refused at once, and the kernel releases the lock if the controller dies,
so ``--resume`` can take over.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import attrs

from haproxyctl.errors import HAProxyError
from haproxyctl.rollout.events import Phase
from haproxyctl.rollout.plan import Plan

__all__ = ["Journal", "JournalError", "JournalState", "default_journal_path", "read_journal"]

FORMAT = 1
ENV_STATE_DIR = "HAPROXYCTL_STATE_DIR"


class JournalError(HAProxyError):
    """The journal or its lock does not allow this operation (nothing was changed)."""

    exit_code = 1


def default_journal_path(instance: str, backend: str) -> Path:
    """``$HAPROXYCTL_STATE_DIR`` or ``$XDG_STATE_HOME/haproxyctl`` or
    ``~/.local/state/haproxyctl``, one file per (HAProxy instance, backend)."""
    base = os.environ.get(ENV_STATE_DIR)
    if not base:
        xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        base = str(Path(xdg) / "haproxyctl")
    tag = hashlib.sha256(instance.encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", backend)
    return Path(base) / f"rollout-{safe}-{tag}.jsonl"


@attrs.frozen
class JournalState:
    """What a journal says: the plan, each server's last phase, and whether it ended."""

    path: Path
    plan: Plan
    phases: Mapping[str, Phase]
    address: str
    started: str
    update: str
    ended: str | None  #: "completed" / "aborted", or None while unfinished
    last_status: str | None  #: last run's outcome ("failed", "interrupted"...)


def read_journal(path: Path) -> JournalState:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JournalError(f"no rollout journal at {path}") from None
    except OSError as exc:
        raise JournalError(f"cannot read rollout journal {path}: {exc.strerror}") from None
    plan: Plan | None = None
    phases: dict[str, Phase] = {}
    header: dict[str, Any] = {}
    ended: str | None = None
    last_status: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            # A torn last line after a crash mid-write: everything before it is intact.
            if n == len(text.splitlines()):
                break
            raise JournalError(f"rollout journal {path} is corrupt at line {n}") from None
        kind = rec.get("type")
        if kind == "plan":
            plan = Plan.from_dict(rec["plan"])
            header = rec
        elif kind == "phase":
            phases[rec["server"]] = Phase(rec["phase"])
        elif kind == "end":
            ended = rec["status"]
        elif kind == "status":
            last_status = rec["status"]
    if plan is None:
        raise JournalError(f"rollout journal {path} has no plan record")
    return JournalState(path=path, plan=plan, phases=phases, address=header.get("address", ""),
                        started=header.get("started", ""), update=header.get("update", ""),
                        ended=ended, last_status=last_status)


class Journal:
    """An open journal with its lock held. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None
        self._file: IO[str] | None = None
        self._dirty = False

    # -- locking --------------------------------------------------------------------------------

    def lock(self) -> Journal:
        """Take the per-backend lock or raise JournalError naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise JournalError(
                    f"another rollout of this backend is running (controller pid {holder}; "
                    f"lock {lock_path})") from None
            raise JournalError(f"cannot lock {lock_path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        return self

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------------

    def check_can_start(self) -> None:
        """Refuse a new rollout while the last one in this journal is unfinished."""
        if self.path.exists():
            state = read_journal(self.path)
            if state.ended is None:
                raise JournalError(
                    f"an unfinished rollout of backend {state.plan.backend!r} exists (started "
                    f"{state.started}, last status {state.last_status or 'running'}, journal "
                    f"{self.path}); finish it with --resume or undo it with --abort")

    def start(self, plan: Plan, *, address: str, update: str) -> None:
        """Begin a new journal (archiving a finished one) with the plan record."""
        if self.path.exists():
            self.check_can_start()
            stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
            archive = self.path.with_name(f"{self.path.name}.{stamp}")
            n = 1
            while archive.exists():  # two rollouts ended within one second
                n += 1
                archive = self.path.with_name(f"{self.path.name}.{stamp}-{n}")
            self.path.rename(archive)
        self._open()
        self.write({"type": "plan", "format": FORMAT, "address": address, "update": update,
                    "started": _now(), "pid": os.getpid(), "plan": plan.to_dict()})
        self.sync()

    def replan(self, plan: Plan, state: JournalState) -> None:
        """Record a plan whose options changed on resume; :func:`read_journal` uses the last
        plan record, so a later resume keeps them."""
        self.write({"type": "plan", "format": FORMAT, "address": state.address,
                    "update": state.update, "started": state.started, "pid": os.getpid(),
                    "plan": plan.to_dict()})
        self.sync()

    def reopen(self) -> None:
        """Continue an existing journal (resume/abort).

        A crash in the middle of a write leaves a torn last line, which :func:`read_journal`
        ignores; it is cut off here, or the next record would be glued onto it."""
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
        self._open()

    def _open(self) -> None:
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise JournalError("journal is not open")
        record.setdefault("t", _now())
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        self._dirty = True

    def phase(self, server: str, phase: Phase, detail: str = "") -> None:
        self.write({"type": "phase", "server": server, "phase": phase.value, "detail": detail})

    def status(self, status: str, message: str) -> None:
        self.write({"type": "status", "status": status, "message": message})

    def end(self, status: str, message: str) -> None:
        self.write({"type": "end", "status": status, "message": message})
        self.sync()

    def sync(self) -> None:
        """Make everything written so far durable (called before acting on HAProxy)."""
        if self._file is not None and self._dirty:
            with contextlib.suppress(OSError):
                os.fsync(self._file.fileno())
            self._dirty = False


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
