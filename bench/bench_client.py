"""Client benchmark: haproxyctl against a raw Python socket and one socat process per command.

Run by hand (it starts its own HAProxy on 127.0.0.1 and unix sockets in a temp dir)::

    .venv/bin/python bench/bench_client.py            # 10x100 and 100x100 servers, no checks
    .venv/bin/python bench/bench_client.py --quick    # fewer repetitions

Every figure is a median over repeated runs, measured side by side in one process run against
the same HAProxy, so they compare fairly. Targets (issue #2):

- a command on the persistent connection within 1.5x of the raw socket;
- at least 20x faster than socat;
- a change of 100 servers within 2x of the raw ``;``-chained line;
- the typed listing of 10,000 servers within 2x of the raw ``show stat`` fetch alone.
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import shutil
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable

from haproxyctl import Client
from haproxyctl.lab import Lab, synthetic_spec

SOCAT = shutil.which("socat")


def raw(path: str, line: str) -> bytes:
    """The baseline: what a careful script does with a plain socket (one-shot mode)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(line.encode() + b"\n")
    chunks = []
    while True:
        data = s.recv(262144)
        if not data:
            break
        chunks.append(data)
    s.close()
    return b"".join(chunks)


def socat(path: str, line: str) -> bytes:
    assert SOCAT is not None
    return subprocess.run([SOCAT, "-t", "5", "stdio", f"unix-connect:{path}"],
                          input=line.encode() + b"\n", capture_output=True, check=True).stdout


def median_ms(fn: Callable[[], object], n: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def peak_mib(fn: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak / 2**20


def row(label: str, value: float, unit: str = "ms", note: str = "") -> None:
    print(f"  {label:<58} {value:>10.3f} {unit}  {note}")


def verdict(name: str, ratio: float, limit: float, lower_is_better: bool = True) -> str:
    ok = ratio <= limit if lower_is_better else ratio >= limit
    return f"{name}: {ratio:.2f}x (target {'<=' if lower_is_better else '>='} {limit:g}x) " \
           f"{'OK' if ok else 'MISSED'}"


def bench(n_backends: int, n_servers: int, reps: int) -> list[str]:
    total = n_backends * n_servers
    print(f"\n== {n_backends} backends x {n_servers} servers = {total} servers (no checks) ==")
    verdicts: list[str] = []
    with Lab(synthetic_spec(n_backends, n_servers)) as lab, Client(lab.admin_socket) as c:
        path = lab.admin_socket
        print(f"  HAProxy {c.version()}, {path}")

        # 1. one small command
        t_raw = median_ms(lambda: raw(path, "show info"), reps)
        t_ctl = median_ms(c.info, reps)
        t_ctl_text = median_ms(lambda: c.execute_many([_SHOW_INFO]), reps)
        row("show info: raw socket, new connection", t_raw)
        row("show info: haproxyctl Client.info() (persistent, parsed)", t_ctl)
        row("show info: haproxyctl Connection (persistent, text)", t_ctl_text)
        if SOCAT:
            t_socat = median_ms(lambda: socat(path, "show info"), max(reps // 10, 5))
            row("show info: one socat process", t_socat)
            verdicts.append(verdict("show info on the persistent connection vs socat (speed-up)",
                                    t_socat / t_ctl_text, 20, lower_is_better=False))
        verdicts.append(verdict("show info on the persistent connection vs raw socket",
                                t_ctl_text / t_raw, 1.5))
        # info() also parses ~70 fields into a typed Info, which the raw socket does not do.
        print(f"  (Client.info() = exchange + parsing 70 fields: {t_ctl / t_raw:.2f}x raw)")

        # 2. drain + ready of one server
        ref = "bk1/s1"
        t_raw2 = median_ms(lambda: (raw(path, f"set server {ref} state drain"),
                                    raw(path, f"set server {ref} state ready")), reps)
        def drain_ready() -> None:
            c.set_state(ref, "drain")
            c.set_state(ref, "ready")

        t_ctl2 = median_ms(drain_ready, reps)
        row("drain+ready 1 server: raw socket, 2 connections", t_raw2)
        row("drain+ready 1 server: haproxyctl set_state x2", t_ctl2)
        verdicts.append(verdict("set_state (typed write, checked reply) vs raw socket",
                                t_ctl2 / t_raw2, 1.5))
        if SOCAT:
            t_socat2 = median_ms(lambda: (socat(path, f"set server {ref} state drain"),
                                          socat(path, f"set server {ref} state ready")),
                                 max(reps // 10, 5))
            row("drain+ready 1 server: socat x2", t_socat2)

        # 3. drain + ready of 100 servers
        refs = [f"bk1/s{i}" for i in range(1, min(n_servers, 100) + 1)]
        line_d = ";".join(f"set server {r} state drain" for r in refs)
        line_r = ";".join(f"set server {r} state ready" for r in refs)
        t_raw3 = median_ms(lambda: (raw(path, line_d), raw(path, line_r)), reps)
        t_ctl3 = median_ms(lambda: (c.set_state_many(refs, "drain", check_exists=False),
                                    c.set_state_many(refs, "ready", check_exists=False)), reps)
        t_ctl3c = median_ms(lambda: (c.set_state_many(refs, "drain"),
                                     c.set_state_many(refs, "ready")), reps)
        row(f"drain+ready {len(refs)} servers: raw ';'-chained line x2", t_raw3)
        row(f"drain+ready {len(refs)} servers: haproxyctl bulk, per-item results", t_ctl3)
        row(f"drain+ready {len(refs)} servers: same + existence check first", t_ctl3c)
        verdicts.append(verdict("100-server change vs raw chained line", t_ctl3 / t_raw3, 2))
        verdicts.append(verdict("100-server change (with existence check) vs raw chained",
                                t_ctl3c / t_raw3, 2))

        # 4. list every server with status and sessions
        lreps = max(reps // 10, 7)
        t_fetch = median_ms(lambda: raw(path, "show stat"), lreps)
        t_dict = median_ms(lambda: list(csv.DictReader(io.StringIO(
            raw(path, "show stat").decode()[2:]))), lreps)
        t_typed = median_ms(c.server_stats, lreps)
        t_joined = median_ms(c.servers, lreps)
        size = len(raw(path, "show stat"))
        row(f"list {total} servers: raw 'show stat' fetch alone ({size / 1e6:.1f} MB)", t_fetch)
        row(f"list {total} servers: raw fetch + csv.DictReader", t_dict)
        row(f"list {total} servers: haproxyctl server_stats() (typed)", t_typed)
        row(f"list {total} servers: haproxyctl servers() (typed + admin bits)", t_joined)
        verdicts.append(verdict(f"typed listing of {total} servers vs raw fetch",
                                t_typed / t_fetch, 2))
        stats = c.server_stats()
        assert len(stats) == total, (len(stats), total)
        assert sum(s.scur for s in stats) == 0
        row(f"memory: peak while listing {total} servers (server_stats)",
            peak_mib(c.server_stats), "MiB")
        row(f"memory: peak while listing {total} servers (servers)", peak_mib(c.servers), "MiB")

        # 5. one server read cheaply on a big config (what waits poll)
        t_one = median_ms(lambda: c.server_stat("bk1/s7"), reps)
        row("one server's row by id (wait poll): haproxyctl server_stat()", t_one)
    return verdicts


_SHOW_INFO = __import__("haproxyctl").Command.build("show info")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    reps = 50 if args.quick else 200
    print(f"python {sys.version.split()[0]}, socat: {SOCAT or 'not installed'}, {reps} reps")
    verdicts = bench(10, 100, reps) + bench(100, 100, reps)
    print("\n== targets ==")
    for v in verdicts:
        print("  " + v)
    return 0 if all(v.endswith("OK") for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
