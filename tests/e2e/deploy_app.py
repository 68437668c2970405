"""The update command of the e2e tests' CLI rollouts (``haproxyctl rollout --exec``).

A CLI controller runs in its own process, but the apps behind the lab's servers belong to the
test process (the lab starts, tracks and stops them by PID). So this script does not touch an
app itself: it asks the test process's :class:`~e2e.support.DeployAgent` to swap it, through
files in a shared directory, and reports the agent's answer through its exit status::

    python deploy_app.py --dir DIR --server {server} --version v2

1. writes ``started-<server>-<pid>`` (the test waits on it; the agent kills leftovers by PID);
2. waits while ``hold-<server>`` exists (the test holds an update to act in the middle of it);
3. writes ``req-<server>-<pid>.json``; the app starts unhealthy while ``broken-<server>``
   exists;
4. waits for the agent's ``req-<server>-<pid>.json.done``: ``ok`` exits 0, anything else 1.

Standard library only: it runs as a plain script, outside the test process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_POLL = 0.02


def _write_atomic(path: Path, text: str) -> None:
    # A hidden temp name: readers glob "started-<server>-*" and must never see a half-written file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _wait(condition_met: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition_met():
            return True
        time.sleep(_POLL)
    return bool(condition_met())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--server", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--timeout", type=float, default=60.0, help="bound of each wait")
    args = p.parse_args(argv)
    d: Path = args.dir
    pid = os.getpid()
    _write_atomic(d / f"started-{args.server}-{pid}", f"{pid}\n")
    hold = d / f"hold-{args.server}"
    if not _wait(lambda: not hold.exists(), args.timeout):
        print(f"held for more than {args.timeout}s", file=sys.stderr)
        return 1
    request = d / f"req-{args.server}-{pid}.json"
    healthy = not (d / f"broken-{args.server}").exists()
    _write_atomic(request, json.dumps({"server": args.server, "version": args.version,
                                       "healthy": healthy}))
    done = request.with_name(request.name + ".done")
    if not _wait(done.exists, args.timeout):
        print(f"no answer from the deploy agent in {args.timeout}s", file=sys.stderr)
        return 1
    answer = done.read_text(encoding="utf-8").strip()
    print(f"deploy {args.server} {args.version}: {answer}")
    return 0 if answer == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
