"""Rollout overhead benchmark: what the rollout itself costs, apart from the waits it must make.

Run by hand (starts its own HAProxy, app servers and simulated users on 127.0.0.1)::

    .venv/bin/python bench/bench_rollout.py

The rollout's own overhead is its total time minus the time spent waiting on sessions, update
commands and health checks (``RolloutReport.overhead``: the runner counts sleeps between polls
and update commands as waiting; round trips to HAProxy, journaling and progress rendering are
overhead). Target (issue #3): under 5% of the total and under 100 ms per batch.

Each scenario runs a real rollout of 8 servers, cookie persistence, 20 users, the update
restarting the app (v1 -> v2), with the journal on and progress rendered to a null stream,
three times; medians are printed.
"""

from __future__ import annotations

import io
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from haproxyctl import Client
from haproxyctl.lab import BackendSpec, Lab, LabSpec, ServerSpec, UserSimulation
from haproxyctl.rollout import Rollout, RolloutOptions, RolloutReport, UpdateTarget
from haproxyctl.rollout.progress import PlainLines

SERVERS = 8


def one(batch_size: int, run: int) -> RolloutReport:
    spec = LabSpec(backends=(BackendSpec(
        "app", tuple(ServerSpec(f"s{i}") for i in range(1, SERVERS + 1)),
        persistence="cookie", inter="200ms", rise=2, fall=2),))
    with tempfile.TemporaryDirectory() as tmp, Lab(spec) as lab, \
            Client(lab.admin_socket) as haproxy, \
            UserSimulation("127.0.0.1", lab.frontend_port("app"), n_users=20,
                           persistence="cookie", max_requests=50_000, max_seconds=120,
                           seed=run) as users:
        time.sleep(0.5)
        version = f"v{run + 2}"

        def update(target: UpdateTarget) -> None:
            lab.replace_app(target.backend, target.server, version, sig=signal.SIGTERM)

        options = RolloutOptions(batch_size=batch_size, drain_timeout=1.0, poll_interval=0.1)
        rollout = Rollout(haproxy, "app", update, options=options,
                          journal=Path(tmp) / "journal.jsonl")
        report = rollout.run(on_event=PlainLines(io.StringIO()))
        users.stop()
        load = users.report()
        assert report.ok, report.message
        assert load.failed == 0, load.failure_examples
        return report


def main() -> int:
    print(f"rollout of {SERVERS} servers under load (20 users), 3 runs per line, medians")
    print(f"  {'batch size':>10} {'batches':>8} {'total s':>9} {'waited s':>9} "
          f"{'overhead ms':>12} {'% of total':>11} {'ms / batch':>11}")
    ok = True
    for batch_size in (1, 2, 4):
        reports = [one(batch_size, run) for run in range(3)]
        batches = reports[0].batches_total
        total = statistics.median(r.elapsed for r in reports)
        waited = statistics.median(r.waited for r in reports)
        overhead = statistics.median(r.overhead for r in reports)
        share = 100 * statistics.median(r.overhead / r.elapsed for r in reports)
        per_batch = 1000 * overhead / batches
        ok = ok and share < 5 and per_batch < 100
        print(f"  {batch_size:>10} {batches:>8} {total:>9.2f} {waited:>9.2f} "
              f"{overhead * 1000:>12.1f} {share:>10.2f}% {per_batch:>11.1f}")
    print("target: overhead < 5% of the total and < 100 ms per batch: "
          + ("OK" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
