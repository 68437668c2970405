"""Running the update on servers: a shell command template or a Python callable, in parallel.

``--exec 'CMD'`` placeholders: ``{backend}``, ``{server}``, ``{address}``, ``{port}`` (``{{``
for a literal brace). Values are shell-quoted, and also passed as ``HAPROXYCTL_BACKEND``,
``HAPROXYCTL_SERVER``, ``HAPROXYCTL_ADDRESS`` and ``HAPROXYCTL_PORT``. Each command runs in its
own session, so a Ctrl-C aimed at the controller does not kill an update half-way (the
controller stops *after* the running step); a command that outlives ``exec_timeout`` is killed
with its whole process group and counts as failed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import string
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from haproxyctl.errors import UsageError
from haproxyctl.rollout.steps import UpdateOutcome, UpdateTarget

__all__ = ["CallableUpdater", "ExecUpdater", "Updater", "check_template"]

PLACEHOLDERS = ("backend", "server", "address", "port")
_TAIL = 400  # characters of output kept for the report


class Updater(Protocol):
    """Something that updates servers. ``describe`` goes into the journal."""

    def describe(self) -> str: ...

    def run(self, targets: Sequence[UpdateTarget]) -> list[UpdateOutcome]: ...


def check_template(template: str) -> str:
    """Refuse a template with an unknown or malformed placeholder before anything runs."""
    if not template.strip():
        raise UsageError("--exec command is empty", field="exec")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(f"--exec command {template!r}: {exc} (write '{{{{' for a literal "
                         "brace)", field="exec", value=template) from None
    fields = [f for _, f, _, _ in parsed if f is not None]
    for _, name, spec, conversion in parsed:
        if name is not None and (spec or conversion):
            # {server!r} would quote a value already shell-quoted; {port:d} fails on text.
            raise UsageError(f"--exec command: placeholder {{{name}}} takes no conversion or "
                             "format spec; write it plain", field="exec", value=template)
    bad = [f for f in fields if f not in PLACEHOLDERS]
    if bad:
        raise UsageError(f"--exec command uses unknown placeholder {{{bad[0]}}}; available: "
                         + ", ".join("{" + p + "}" for p in PLACEHOLDERS), field="exec",
                         value=template)
    return template


def _values(t: UpdateTarget) -> dict[str, str]:
    return {"backend": t.backend, "server": t.server, "address": t.address or "",
            "port": "" if t.port is None else str(t.port)}


def _parallel(targets: Sequence[UpdateTarget],
              one: Callable[[UpdateTarget], UpdateOutcome]) -> list[UpdateOutcome]:
    if not targets:
        return []
    if len(targets) == 1:
        return [one(targets[0])]
    with ThreadPoolExecutor(max_workers=min(len(targets), 32),
                            thread_name_prefix="haproxyctl-update") as pool:
        return list(pool.map(one, targets))


class ExecUpdater:
    def __init__(self, template: str, *, timeout: float) -> None:
        self.template = check_template(template)
        self.timeout = timeout

    def describe(self) -> str:
        return f"exec: {self.template}"

    def command_for(self, target: UpdateTarget) -> str:
        return self.template.format(**{k: shlex.quote(v) for k, v in _values(target).items()})

    def run(self, targets: Sequence[UpdateTarget]) -> list[UpdateOutcome]:
        return _parallel(targets, self._one)

    def _one(self, target: UpdateTarget) -> UpdateOutcome:
        env = dict(os.environ)
        env.update({f"HAPROXYCTL_{k.upper()}": v for k, v in _values(target).items()})
        try:
            command = self.command_for(target)
        except (KeyError, ValueError, IndexError) as exc:  # refused by check_template already
            return UpdateOutcome(target.server, False, f"cannot build the command: {exc}")
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        except OSError as exc:
            return UpdateOutcome(target.server, False, f"cannot run /bin/sh: {exc.strerror}")
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return UpdateOutcome(target.server, False,
                                 f"timed out after {self.timeout:g}s and was killed; "
                                 f"output: {_tail(out)}")
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            return UpdateOutcome(target.server, False, f"killed by {name}; output: {_tail(out)}",
                                 signal=-proc.returncode)
        if proc.returncode != 0:
            return UpdateOutcome(target.server, False,
                                 f"exit status {proc.returncode}; output: {_tail(out)}")
        return UpdateOutcome(target.server, True, "")


class CallableUpdater:
    """Wraps ``fn(target)``; an exception means the update failed."""

    def __init__(self, fn: Callable[[UpdateTarget], object]) -> None:
        self.fn = fn

    def describe(self) -> str:
        return f"python: {getattr(self.fn, '__qualname__', repr(self.fn))}"

    def run(self, targets: Sequence[UpdateTarget]) -> list[UpdateOutcome]:
        return _parallel(targets, self._one)

    def _one(self, target: UpdateTarget) -> UpdateOutcome:
        try:
            self.fn(target)
        except Exception as exc:
            return UpdateOutcome(target.server, False, f"{type(exc).__name__}: {exc}")
        return UpdateOutcome(target.server, True, "")


def _tail(data: bytes | None) -> str:
    text = (data or b"").decode("utf-8", "replace").strip().replace("\n", " | ")
    return ("..." + text[-_TAIL:]) if len(text) > _TAIL else (text or "(none)")
