"""The demo: a live rolling update under load, and what the users saw.

It starts a local HAProxy (the lab) with three backends of four app servers each, all running
"v1", sends simulated users at them, and updates every server to "v2" with haproxyctl while the
users keep clicking:

- ``shop``: cookie persistence, ``rolling`` two servers at a time;
- ``api``: stick-table persistence on the source address, ``rolling`` two at a time;
- ``assets``: no persistence, ``halves`` (blue/green inside one backend).

The update of each server stops its v1 app with SIGKILL, the harshest way (as a crashing deploy
would), and starts v2: only the drain discipline keeps requests from failing. Some users make
slow requests (over a second) to prove in-flight requests are waited for. Two thirds of the
users behave like browsers: a page, then 3 assets in parallel over 4 keep-alive connections that
share one cookie jar, so each of those requests is load balanced on its own whenever persistence
does not apply. At the end it prints, per backend: requests, failed requests, users who saw v2
and then v1 again, pages answered by both versions, the most moves of one user between servers,
and the load per server after the update. Everything runs on 127.0.0.1 and every process is
stopped by PID at the end.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

import attrs

from haproxyctl.client import Client
from haproxyctl.lab import BackendSpec, Lab, LabSpec, LoadReport, ServerSpec, UserSimulation
from haproxyctl.lab.config import Persistence
from haproxyctl.lab.users import UserPersistence
from haproxyctl.rollout import Event, Rollout, RolloutOptions, RolloutReport, UpdateTarget
from haproxyctl.rollout.progress import renderer_for

__all__ = ["DemoResult", "run_demo"]


@attrs.frozen
class _Case:
    backend: str
    prefix: str
    persistence: Persistence | None
    users: UserPersistence | None
    strategy: str


CASES = (
    _Case("shop", "web", "cookie", "cookie", "rolling"),
    _Case("api", "api", "stick-src", "src", "rolling"),
    _Case("assets", "static", None, None, "halves"),
)


@attrs.frozen
class DemoResult:
    rollouts: tuple[RolloutReport, ...]
    loads: tuple[tuple[str, LoadReport], ...]
    #: Requests per server after each backend's update finished (how even the load is now).
    after: tuple[tuple[str, Mapping[str, int]], ...] = ()

    @property
    def ok(self) -> bool:
        return (all(r.ok for r in self.rollouts)
                and all(load.failed == 0 and not load.flips for _, load in self.loads))


def _spec(servers: int) -> LabSpec:
    return LabSpec(backends=tuple(
        BackendSpec(c.backend, tuple(ServerSpec(f"{c.prefix}{i}")
                                     for i in range(1, servers + 1)),
                    persistence=c.persistence, inter="300ms", rise=2, fall=2)
        for c in CASES))


def run_demo(*, users: int = 20, servers: int = 4, out: TextIO = sys.stdout,
             json_mode: bool = False,
             on_event: Callable[[Event], None] | None = None) -> DemoResult:
    """Run the whole demo; returns what happened (``result.ok``: no failure, no flip)."""
    def say(text: str) -> None:
        if not json_mode:
            print(text, file=out, flush=True)

    say(f"Starting HAProxy with {len(CASES)} backends x {servers} app servers (v1) on "
        "127.0.0.1...")
    reports: list[RolloutReport] = []
    loads: list[tuple[str, LoadReport]] = []
    with Lab(_spec(servers)) as lab, Client(lab.admin_socket) as haproxy:
        say(f"  HAProxy {haproxy.version()}, config {lab.config_path}")
        browsers = users * 2 // 3
        sims = {c.backend: UserSimulation(
            "127.0.0.1", lab.frontend_port(c.backend), n_users=users, persistence=c.users,
            think_time=0.2, slow_fraction=0.05, slow_seconds=1.2, max_requests=60_000,
            max_seconds=150.0, seed=k, browsers=browsers, connections=4)
            for k, c in enumerate(CASES)}
        say(f"Simulated users: {users} per backend ({browsers} browser-like: a page, then 3 "
            "assets in parallel over 4 connections, one cookie jar), 5% of requests take "
            "1.2 s.\n")
        for sim in sims.values():
            sim.start()
        t0 = time.monotonic()
        finished: dict[str, float] = {}
        try:
            time.sleep(1.0)  # let every user pick a server and get pinned
            render = on_event or renderer_for(out, json_mode=json_mode)
            for case in CASES:
                say(f"\n== {case.backend}: {case.strategy} update v1 -> v2 "
                    f"({case.persistence or 'no'} persistence) ==")
                reports.append(_rollout(haproxy, lab, case, render, servers))
                finished[case.backend] = time.monotonic() - t0
            time.sleep(2.0)  # users keep browsing on v2 for a moment
        finally:
            for sim in sims.values():
                sim.stop()
        loads = [(c.backend, sims[c.backend].report()) for c in CASES]
        after = [(c.backend, _per_server_after(sims[c.backend], finished.get(c.backend)))
                 for c in CASES]
    result = DemoResult(tuple(reports), tuple(loads), tuple(after))
    if not json_mode:
        print(format_result(result), file=out, flush=True)
    return result


def _rollout(haproxy: Client, lab: Lab, case: _Case,
             render: Callable[[Event], None], servers: int) -> RolloutReport:
    def update(target: UpdateTarget) -> None:
        # The deploy kills v1 outright and starts v2 on the same port.
        lab.replace_app(target.backend, target.server, "v2", sig=signal.SIGKILL)

    options = RolloutOptions(
        strategy="halves" if case.strategy == "halves" else "rolling",
        batch_size=None if case.strategy == "halves" else min(2, servers - 1),
        # The automatic grace: 0 where haproxyctl moves the users itself, 10 s otherwise.
        drain_timeout=None if case.persistence else 2.0,
        sessions_timeout=30.0, health_timeout=20.0, poll_interval=0.1)
    rollout = Rollout(haproxy, case.backend, update, options=options, journal=False)
    return rollout.run(on_event=render)


def _per_server_after(sim: UserSimulation, since: float | None) -> dict[str, int]:
    if since is None:
        return {}
    counts: dict[str, int] = {}
    for o in sim.outcomes():
        if o.t >= since and o.server is not None:
            counts[o.server] = counts.get(o.server, 0) + 1
    return dict(sorted(counts.items()))


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]


def format_result(result: DemoResult) -> str:
    rows = [["backend", "strategy", "requests", "failed", "flipped back", "mixed pages",
             "max moves", "v1/v2 answers", "busiest/mean after",
             "requests per server after the update"]]
    after = dict(result.after)
    for (backend, load), report, case in zip(result.loads, result.rollouts, CASES, strict=True):
        per_server = " ".join(f"{s}:{n}" for s, n in after.get(backend, {}).items())
        versions = f"{load.per_version.get('v1', 0)}/{load.per_version.get('v2', 0)}"
        counts = list(after.get(backend, {}).values())
        spread = (f"{max(counts) * len(counts) / sum(counts):.2f}x"
                  if counts and sum(counts) else "-")
        rows.append([backend, f"{case.strategy} ({report.status})", str(load.total),
                     str(load.failed), str(len(load.flips)), str(load.mixed_pages),
                     # Without persistence every request is balanced: "moves" mean nothing.
                     str(load.max_moves) if case.persistence else "-", versions, spread,
                     per_server or "-"])
    lines = ["", "What the users saw:", *("  " + line for line in _table(rows))]
    servers_of = {r.backend: [o.server for o in r.servers] for r in result.rollouts}
    for case in CASES:
        idle = [s for s in servers_of.get(case.backend, []) if not after.get(case.backend, {})
                .get(s)]
        if idle:
            lines.append(f"  note: {case.backend}: {', '.join(idle)} served nobody after the "
                         "update")
    lines.append("  (mixed pages: a page answered by v1 and its assets by v2, which promise 1 "
                 "allows; a flip back is v1 after v2; max moves: the most times one user "
                 "changed server)")
    for backend, load in result.loads:
        for example in load.failure_examples:
            lines.append(f"  {backend}: failed request: {example}")
        for flip in load.flips[:3]:
            lines.append(f"  {backend}: user {flip.user} flipped back: {flip.versions}")
    total = sum(load.total for _, load in result.loads)
    failed = sum(load.failed for _, load in result.loads)
    flips = sum(len(load.flips) for _, load in result.loads)
    verdict = ("OK: no failed request, nobody saw v1 after v2" if result.ok
               else "PROBLEM: see above")
    lines.append(f"\n{total} requests, {failed} failed, {flips} users flipped back. {verdict}")
    return "\n".join(lines)
