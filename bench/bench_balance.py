"""What users see during a rollout under persistence: failures, flips back, load spread.

Run by hand (starts its own HAProxy, 6 app servers and 150 simulated users on 127.0.0.1)::

    .venv/bin/python bench/bench_balance.py                  # every scenario, once
    .venv/bin/python bench/bench_balance.py cookie-rolling   # scenarios whose name contains it
    .venv/bin/python bench/bench_balance.py --runs 3 stick

Each scenario: one backend of 6 servers (weight 1, checks every 200 ms), cookie or
``stick on src`` persistence; 150 users of which 100 browser-like (a page, then 3 assets in
parallel over 4 keep-alive connections sharing one cookie jar) and 50 one-request users,
think time 0.5 s, 2% of requests slow (1 s). The update SIGKILLs the v1 app and starts v2.
After 5 s of warm-up the rollout runs through the Python API with default options (but the
batch size or strategy of the scenario), then the users go on for 6 s.

Load is judged like the issue did: successful requests per server in 1-second windows (by
sent time), busiest server over the mean of the servers *in service* (UP, neither drained
nor in maint, throughout the window); the median window during the rollout and after it.
``floor`` is the "after" figure the same requests would give if users were spread perfectly
(user i on server i mod 6): what one-second windows cannot go below at this scale.
``no-rebalance`` rows run the same rollout with ``rebalance=False`` for comparison.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs

from haproxyctl import Client
from haproxyctl.lab import BackendSpec, Lab, LabSpec, ServerSpec, UserSimulation
from haproxyctl.lab.analysis import load_windows, window_imbalance
from haproxyctl.lab.config import Persistence
from haproxyctl.lab.users import UserPersistence
from haproxyctl.rollout import Rollout, RolloutOptions, UpdateTarget

SERVERS = tuple(f"s{i}" for i in range(1, 7))
WARM, AFTER = 5.0, 6.0


@attrs.frozen
class Scenario:
    name: str
    persistence: Persistence
    users: UserPersistence
    options: dict[str, Any]


SCENARIOS = [
    Scenario("cookie-rolling-2", "cookie", "cookie", {"batch_size": 2}),
    Scenario("cookie-rolling-2-no-rebalance", "cookie", "cookie",
             {"batch_size": 2, "rebalance": False}),
    Scenario("cookie-halves", "cookie", "cookie", {"strategy": "halves", "batch_size": None}),
    Scenario("stick-rolling-2", "stick-src", "src", {"batch_size": 2}),
    Scenario("stick-rolling-2-no-rebalance", "stick-src", "src",
             {"batch_size": 2, "rebalance": False}),
    Scenario("stick-halves", "stick-src", "src", {"strategy": "halves", "batch_size": None}),
]


class Sampler:
    """Server statuses from ``show stat`` every 50 ms (the lab's raw socket, not the client)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.samples: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            rows = self.lab.show_stat()
            self.samples.append((time.monotonic(), {
                r["svname"]: r["status"] for r in rows
                if r["pxname"] == "app" and r["svname"] in SERVERS}))
            self._stop.wait(0.05)

    def in_service(self, start: float, end: float) -> set[str]:
        """Servers UP (not DRAIN, not MAINT) in every sample of [start, end)."""
        inside = [s for t, s in self.samples if start <= t < end]
        return {n for n in SERVERS if inside and all(s.get(n) == "UP" for s in inside)}


@attrs.frozen
class Result:
    scenario: str
    ok: bool
    elapsed: float
    failed: int
    flips: int
    mixed: int
    pages: int
    max_moves: int
    moves: dict[int, int]
    during: float | None
    after: float | None
    floor: float | None
    last3: list[int]


def run(scenario: Scenario, seed: int) -> Result:
    spec = LabSpec([BackendSpec("app", [ServerSpec(n) for n in SERVERS],
                                persistence=scenario.persistence, inter="200ms", rise=2,
                                fall=2)])
    with Lab(spec, timeout=30.0) as lab, Client(lab.admin_socket) as client, \
            Sampler(lab) as sampler, \
            UserSimulation("127.0.0.1", lab.frontend_port("app"), n_users=150, browsers=100,
                           connections=4, persistence=scenario.users, think_time=0.5,
                           slow_fraction=0.02, slow_seconds=1.0, max_requests=200_000,
                           max_seconds=240, seed=seed) as users:
        def update(target: UpdateTarget) -> None:
            lab.replace_app(target.backend, target.server, "v2", sig=signal.SIGKILL)

        time.sleep(WARM)
        options = RolloutOptions(**{"sessions_timeout": 60.0, "health_timeout": 20.0,
                                    **scenario.options})
        start = time.monotonic()
        report = Rollout(client, "app", update, options=options, journal=False).run()
        end = time.monotonic()
        time.sleep(AFTER)
        users.stop()
        load = users.report()
        outcomes = users.outcomes()
        t0 = users.t0

    def median_imbalance(a: float, b: float) -> float | None:
        windows = load_windows(outcomes, a - t0, b - t0)
        ratios = window_imbalance(
            windows, lambda w: sampler.in_service(w.start + t0, w.end + t0))
        values = [r for r in ratios if r is not None]
        return statistics.median(values) if values else None

    # The noise floor: the same requests after the rollout, as if users were spread perfectly
    # (user i on server i mod 6: browsers and one-request users evenly over the servers).
    even = [attrs.evolve(o, server=SERVERS[o.user % len(SERVERS)]) for o in outcomes
            if o.ok and o.server]
    floor_ratios = [r for r in window_imbalance(load_windows(even, end - t0, end + AFTER - t0),
                                                lambda w: SERVERS) if r is not None]

    last = Counter(o.server for o in outcomes
                   if o.ok and o.server and o.t >= end + AFTER - 3 - t0)
    return Result(
        scenario=scenario.name, ok=report.ok, elapsed=end - start, failed=load.failed,
        flips=len(load.flips), mixed=load.mixed_pages, pages=load.page_views,
        max_moves=load.max_moves, moves=load.moves_histogram,
        during=median_imbalance(start, end), after=median_imbalance(end, end + AFTER),
        floor=statistics.median(floor_ratios) if floor_ratios else None,
        last3=[last.get(n, 0) for n in SERVERS])


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("only", nargs="*", help="run the scenarios whose name contains one")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.only or any(o in s.name for o in args.only)]
    print(f"{'scenario':<30} {'ok':>3} {'s':>5} {'failed':>6} {'flips':>5} {'mixed':>5} "
          f"{'moves≤':>6} {'during':>6} {'after':>6} {'floor':>6}  requests per server, last 3 s")
    say: Callable[[str], None] = print
    for scenario in chosen:
        for r in range(args.runs):
            res = run(scenario, seed=r + 1)
            say(f"{res.scenario:<30} {'y' if res.ok else 'N':>3} {res.elapsed:>5.1f} "
                f"{res.failed:>6} {res.flips:>5} {res.mixed:>5} {res.max_moves:>6} "
                f"{fmt(res.during):>6} {fmt(res.after):>6} {fmt(res.floor):>6}  "
                f"{'/'.join(map(str, res.last3))}  moves {res.moves}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
