"""A rollout of a backend whose stick table holds 100,000 users: what the re-pins cost per batch.

Run by hand (starts its own HAProxy and 4 app servers on 127.0.0.1)::

    .venv/bin/python bench/bench_rollout_table.py [--entries 100000] [--runs 3]

The backend has ``stick on src`` persistence; its table is filled with ``entries`` synthetic
users spread over the 4 servers (``set table ... data.server_id``, pipelined, not through the
client under test). The rollout (batch size 1, no traffic, the update restarts the app) runs
once with an empty table and once with the full one, ``runs`` times; the difference of the
medians, per batch, is what the table costs: reading who is pinned to the leaving server
(``show table app data.server_id eq N``, streamed), re-pinning them (``clear table`` +
``set table`` per key, pipelined), twice per batch, and the final even-out. Target (issue #6):
under 1 s per batch for 100,000 users.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time

from haproxyctl import Client
from haproxyctl.lab import BackendSpec, Lab, LabSpec, ServerSpec
from haproxyctl.lab.tables import fill_table, ip_key
from haproxyctl.rollout import Rollout, RolloutOptions, RolloutReport, UpdateTarget

SERVERS = 4


def one(entries: int) -> tuple[RolloutReport, float]:
    spec = LabSpec([BackendSpec("app", [ServerSpec(f"s{i}") for i in range(1, SERVERS + 1)],
                                persistence="stick-src", inter="100ms", rise=1, fall=1)])
    with Lab(spec, timeout=30.0) as lab, Client(lab.admin_socket, timeout=30.0) as haproxy:
        ids = [s.id for s in haproxy.servers("app") if s.id is not None]
        if entries:
            fill_table(lab.admin_socket, "app", (ip_key(i) for i in range(entries)), ids)
        assert haproxy.tables()[0].used == entries, haproxy.tables()

        def update(target: UpdateTarget) -> None:
            lab.replace_app(target.backend, target.server, "v2", sig=signal.SIGTERM)

        options = RolloutOptions(batch_size=1, poll_interval=0.05, health_timeout=20.0)
        t0 = time.monotonic()
        report = Rollout(haproxy, "app", update, options=options, journal=False).run()
        elapsed = time.monotonic() - t0
        assert report.ok, report.message
        pinned = sum(len(v) for v in haproxy.table_owners("app").values())
        assert pinned == entries, (pinned, entries)
        return report, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    empty, full = [], []
    for _ in range(args.runs):
        empty.append(one(0))
        full.append(one(args.entries))
    batches = SERVERS
    e = statistics.median(t for _, t in empty)
    f = statistics.median(t for _, t in full)
    eo = statistics.median(r.overhead for r, _ in empty)
    fo = statistics.median(r.overhead for r, _ in full)
    print(f"rollout of {SERVERS} servers, batch size 1, medians of {args.runs} runs")
    print(f"  empty table:          {e:6.2f} s total, overhead {eo * 1000:7.1f} ms")
    print(f"  {args.entries:>7,} users:        {f:6.2f} s total, overhead {fo * 1000:7.1f} ms")
    per_batch = (f - e) / batches
    print(f"  the table costs {per_batch * 1000:.0f} ms per batch "
          f"({(fo - eo) * 1000 / batches:.0f} ms of it outside waits)")
    ok = per_batch < 1.0
    print("target: under 1 s per batch: " + ("OK" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
