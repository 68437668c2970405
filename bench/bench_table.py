"""Stick-table benchmark: listing, owners and bulk re-pin at real size, against raw sockets.

Run by hand (it starts its own HAProxy on unix sockets in a temp dir, fills a stick table of
100,000 entries with pipelined ``set table`` lines, and stops it)::

    .venv/bin/python bench/bench_table.py            # about a minute
    .venv/bin/python bench/bench_table.py --quick    # fewer repetitions
    .venv/bin/python bench/bench_table.py --quick --entries 1000000   # a million users

The contenders of one comparison run in turn, rep by rep (A B C, A B C, ...), so background
noise on a shared machine hits them alike; figures are medians. Targets:

- the typed listing of 100,000 entries (``Client.table()``) within 2x of the raw fetch;
- memory bounded while iterating (``iter_table()`` peak independent of the table's size);
- re-pinning 10,000 keys (``Client.repin()``) within 2x of the same raw pipelined lines.

The raw re-pin baselines use one prompt-mode session and write the lines in groups of at most
64 KB, reading each group's replies before writing the next (what ``execute_many`` does, and
what a careful script must do so that neither side blocks on a full buffer).
"""

from __future__ import annotations

import argparse
import gc
import socket
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence

from haproxyctl import Client
from haproxyctl.lab import BackendSpec, Lab, LabSpec, ServerSpec
from haproxyctl.lab.tables import fill_table, ip_key

TABLE = "app"
ENTRIES = 100_000  # default; --entries
MOVES = 10_000
SERVERS = 4
_PROMPT = b"\n> "


def spec(entries: int) -> LabSpec:
    servers = [ServerSpec(f"s{i}", port=9, app=False, check=False)
               for i in range(1, SERVERS + 1)]
    # What persistence="stick-src" writes (type ip, expire 30m, stick on src), sized to hold
    # every entry (its own size is 100k).
    table = [f"stick-table type ip size {max(entries, 102_400)} expire 30m", "stick on src"]
    return LabSpec([BackendSpec(TABLE, servers, checks=False, frontend=False, extra=table)],
                   tcp_admin=False)


def raw_fetch(path: str, line: str) -> bytes:
    """What a careful script does: one-shot connection, the line in one write, read to EOF."""
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


def raw_pipelined(path: str, lines: Sequence[bytes]) -> None:
    """Prompt mode, lines in groups of <= 64 KB, each group's replies counted before the next
    group is written. Replies are not checked (a raw script would have to, too)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"prompt\n")
    buf = b""
    while _PROMPT not in buf:
        buf += s.recv(65536)
    start = 0
    while start < len(lines):
        end, size = start, 0
        while end < len(lines) and size + len(lines[end]) <= 65536:
            size += len(lines[end])
            end += 1
        s.sendall(b"".join(lines[start:end]))
        want, got, tail = end - start, 0, b""
        while got < want:
            data = s.recv(262144)
            got += (tail + data).count(_PROMPT)
            tail = data[-2:]
        start = end
    s.close()


def interleaved(contenders: dict[str, Callable[[int], object]], reps: int
                ) -> dict[str, list[float]]:
    """Run every contender once per rep, in turn; seconds per run. ``rep`` is passed so a
    contender can vary its input (re-pins move keys to another server each time)."""
    for fn in contenders.values():
        fn(-1)  # warm up
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for rep in range(reps):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn(rep)
            times[name].append(time.perf_counter() - t)
    return times


def peak_mib(fn: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak / 2**20


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def row(label: str, value: float, unit: str = "ms", note: str = "") -> None:
    print(f"  {label:<62} {value:>9.1f} {unit}  {note}")


def spread(a: list[float], b: list[float]) -> str:
    ratios = sorted(x / y for x, y in zip(a, b, strict=True))
    return f"(per-rep ratio {ratios[0]:.2f}-{ratios[-1]:.2f})"


def verdict(name: str, ratio: float, limit: float) -> str:
    return f"{name}: {ratio:.2f}x (target <= {limit:g}x) {'OK' if ratio <= limit else 'MISSED'}"


def bench(entries: int, reps: int, repin_reps: int) -> list[str]:
    verdicts: list[str] = []
    with Lab(spec(entries)) as lab, Client(lab.admin_socket, timeout=120) as c:
        path = lab.admin_socket
        keys = [ip_key(i) for i in range(entries)]
        t0 = time.perf_counter()
        fill_table(path, TABLE, keys, list(range(1, SERVERS + 1)))
        fill_s = time.perf_counter() - t0
        size = len(raw_fetch(path, f"show table {TABLE}"))
        print(f"  HAProxy {c.version()}, {entries} entries filled in {fill_s:.2f} s "
              f"(pipelined set table), 'show table {TABLE}' is {size / 1e6:.1f} MB")

        # Sanity: every contender sees the same table.
        assert len(c.table(TABLE).entries) == entries
        assert sum(len(v) for v in c.table_owners(TABLE).values()) == entries

        print(f"\n== listing {entries} entries ({reps} reps, interleaved) ==")
        listing = interleaved({
            "raw": lambda _: raw_fetch(path, f"show table {TABLE}"),
            "table": lambda _: c.table(TABLE),
            "iter": lambda _: sum(1 for _ in c.iter_table(TABLE)),
            "owners": lambda _: c.table_owners(TABLE),
            "owners1": lambda _: c.table_owners(TABLE, where=["server_id eq 2"]),
        }, reps)
        raw_ms = ms(listing["raw"])
        row(f"raw 'show table' fetch alone ({size / 1e6:.1f} MB)", raw_ms)
        row("Client.table() (typed, every entry kept)", ms(listing["table"]),
            note=f"{ms(listing['table']) / raw_ms:.2f}x {spread(listing['table'], listing['raw'])}")
        row("Client.iter_table() consumed (nothing kept)", ms(listing["iter"]),
            note=f"{ms(listing['iter']) / raw_ms:.2f}x {spread(listing['iter'], listing['raw'])}")
        row("Client.table_owners() whole table (no entry objects)", ms(listing["owners"]),
            note=f"{ms(listing['owners']) / raw_ms:.2f}x")
        row(f"Client.table_owners(where='server_id eq 2') ({entries // SERVERS} keys)",
            ms(listing["owners1"]), note=f"{ms(listing['owners1']) / raw_ms:.2f}x")
        verdicts.append(verdict(f"typed listing of {entries} entries vs raw fetch",
                                ms(listing["table"]) / raw_ms, 2))
        verdicts.append(verdict(f"iterating {entries} entries vs raw fetch",
                                ms(listing["iter"]) / raw_ms, 2))

        print("\n== peak memory (tracemalloc) ==")
        iter_peak = peak_mib(lambda: sum(1 for _ in c.iter_table(TABLE)))
        iter_small = peak_mib(lambda: sum(1 for _ in c.iter_table(
            TABLE, where=["server_id eq 1"])))
        table_peak = peak_mib(lambda: c.table(TABLE))
        owners_peak = peak_mib(lambda: c.table_owners(TABLE))
        raw_peak = peak_mib(lambda: raw_fetch(path, f"show table {TABLE}"))
        row(f"iter_table(), {entries} entries, nothing kept", iter_peak, "MiB")
        row(f"iter_table(where=server_id eq 1), {entries // SERVERS} entries", iter_small,
            "MiB")
        row(f"table(), {entries} entries kept", table_peak, "MiB")
        row("table_owners(), every key kept in lists", owners_peak, "MiB")
        row("raw fetch (the reply's bytes)", raw_peak, "MiB")
        bounded = iter_peak < 4 and iter_peak < table_peak / 5
        verdicts.append(f"memory bounded while iterating: {iter_peak:.1f} MiB for {entries} "
                        f"entries vs {table_peak:.1f} MiB materialised "
                        f"{'OK' if bounded else 'MISSED'}")

        print(f"\n== re-pin {MOVES} keys ({repin_reps} reps, interleaved) ==")
        moved = keys[:MOVES]

        def target(rep: int) -> int:
            return rep % SERVERS + 1 if rep >= 0 else SERVERS

        def raw_both(rep: int) -> None:
            sid = target(rep)
            raw_pipelined(path, [line for k in moved for line in (
                f"clear table {TABLE} key {k}\n".encode(),
                f"set table {TABLE} key {k} data.server_id {sid}\n".encode())])

        def raw_set(rep: int) -> None:
            sid = target(rep)
            raw_pipelined(path, [f"set table {TABLE} key {k} data.server_id {sid}\n".encode()
                                 for k in moved])

        def client_repin(rep: int) -> None:
            sid = target(rep)
            results = c.repin(TABLE, [(k, sid) for k in moved])
            assert len(results) == MOVES

        repins = interleaved({"raw_both": raw_both, "raw_set": raw_set, "repin": client_repin},
                             repin_reps)
        both_ms, set_ms, repin_ms = ms(repins["raw_both"]), ms(repins["raw_set"]), \
            ms(repins["repin"])
        row(f"raw pipelined clear+set lines ({2 * MOVES} lines)", both_ms)
        row(f"raw pipelined set-only lines ({MOVES} lines; keeps server_key)", set_ms)
        ratios = spread(repins["repin"], repins["raw_both"])
        row("Client.repin() (validated, escaped, per-key results)", repin_ms,
            note=f"{repin_ms / both_ms:.2f}x clear+set {ratios}, {repin_ms / set_ms:.2f}x "
                 "set-only")
        verdicts.append(verdict(f"re-pin {MOVES} keys vs raw pipelined clear+set",
                                repin_ms / both_ms, 2))
        print(f"  (for reference, not a target: repin vs raw set-only lines "
              f"{repin_ms / set_ms:.2f}x)")
        owners = c.table_owners(TABLE)
        assert sum(len(v) for v in owners.values()) == entries
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--entries", type=int, default=ENTRIES,
                        help=f"entries in the table (default {ENTRIES}; at least {MOVES})")
    args = parser.parse_args()
    if args.entries < MOVES:
        parser.error(f"--entries must be at least {MOVES}")
    reps, repin_reps = (5, 5) if args.quick else (21, 15)
    print(f"python {sys.version.split()[0]}, {args.entries} entries, {MOVES} re-pins")
    verdicts = bench(args.entries, reps, repin_reps)
    print("\n== targets ==")
    for v in verdicts:
        print("  " + v)
    return 0 if all(v.endswith("OK") for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
