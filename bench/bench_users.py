"""What the simulated users cost: CPU and request rate of 150 users on one event loop.

Run by hand (starts its own HAProxy and 6 app servers on 127.0.0.1, stops them by PID)::

    .venv/bin/python bench/bench_users.py [--seconds 15]

Two runs of 150 users (100 browser-like with 4 connections each, 50 one-request users,
think time 0.5 s), one against a backend with cookie persistence, one against a stick table
on the source address (users with ``src`` persistence). For each it prints the request rate
and the CPU seconds of the users' event-loop thread, of this whole process, of HAProxy and
of the 6 apps, all over the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

from haproxyctl.lab import BackendSpec, Lab, LabSpec, ServerSpec, UserSimulation
from haproxyctl.lab.config import Persistence
from haproxyctl.lab.users import UserPersistence

SERVERS = 6
USERS, BROWSERS, CONNECTIONS = 150, 100, 4
THINK = 0.5
_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one(persistence: Persistence, users: UserPersistence, seconds: float) -> str:
    spec = LabSpec([BackendSpec("app", [ServerSpec(f"s{i}") for i in range(1, SERVERS + 1)],
                                persistence=persistence)])
    with Lab(spec) as lab:
        haproxy = [lab.master_pid, lab.worker_pid()]
        apps = [h.pid for h in lab.apps().values()]
        sim = UserSimulation("127.0.0.1", lab.frontend_port("app"), n_users=USERS,
                             browsers=BROWSERS, connections=CONNECTIONS, persistence=users,
                             think_time=THINK, max_seconds=seconds, max_requests=200_000,
                             seed=1)
        before = (_self_cpu(), sum(map(_process_cpu, haproxy)), sum(map(_process_cpu, apps)))
        wall = time.monotonic()
        report = sim.run()
        wall = time.monotonic() - wall
        after = (_self_cpu(), sum(map(_process_cpu, haproxy)), sum(map(_process_cpu, apps)))
        latencies = sorted(o.received - o.t for o in sim.outcomes()
                           if o.ok and o.received is not None)
    loop_cpu = report.cpu_seconds or 0.0
    own, hap, app = (b - a for a, b in zip(before, after, strict=True))
    p50 = statistics.median(latencies) * 1000 if latencies else 0.0
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else 0.0
    return (
        f"{persistence:<10} {report.total:>7} {report.failed:>6} {report.request_rate:>7.0f} "
        f"{loop_cpu:>8.2f} {100 * loop_cpu / wall:>6.1f}% "
        f"{1e6 * loop_cpu / max(1, report.total):>7.0f} {own:>7.2f} {hap:>8.2f} {app:>7.2f} "
        f"{p50:>6.1f} {p99:>6.1f}  flips={len(report.flips)} mixed={report.mixed_pages} "
        f"max_moves={report.max_moves}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    print(f"{USERS} users ({BROWSERS} browsers x {CONNECTIONS} connections, "
          f"{USERS - BROWSERS} one-request), think {THINK}s, {args.seconds:.0f}s, "
          f"{SERVERS} servers; CPU in seconds over the run")
    print(f"{'backend':<10} {'requests':>7} {'failed':>6} {'req/s':>7} {'loop cpu':>8} "
          f"{'of 1 core':>7} {'us/req':>7} {'process':>7} {'haproxy':>8} {'apps':>7} "
          f"{'p50 ms':>6} {'p99 ms':>6}")
    print(one("cookie", "cookie", args.seconds), flush=True)
    print(one("stick-src", "src", args.seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
