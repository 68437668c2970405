"""Rollouts under load, through the Python API: the three promises, per persistence kind.

1. each user sees the old or the new version and never flips back from new to old;
2. load stays evenly spread over the servers in service;
3. no disruption: not one failed request.

Every update here kills the old app with SIGKILL (a crashing deploy) before starting v2, so
only the drain discipline keeps requests from failing.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from haproxyctl import Client
from haproxyctl.lab import Lab
from haproxyctl.rollout import (
    Event,
    Notice,
    Phase,
    PlanError,
    Rollout,
    RolloutOptions,
    RolloutReport,
    UpdateTarget,
)
from haproxyctl.rollout.progress import format_report

from .support import (
    APP,
    Browsers,
    Sampler,
    Users,
    all_servers,
    assert_no_disruption,
    assert_servers,
    cli_env,
    describe,
    one_backend,
    per_server_after,
    run_cli,
    servers_per_window,
    snapshot_states,
    started_lab,
)

pytestmark = [pytest.mark.e2e, pytest.mark.load]

NAMES = ("s1", "s2", "s3", "s4")


def kill_and_start_v2(lab: Lab) -> Callable[[UpdateTarget], None]:
    """The update: SIGKILL the v1 app (a crashing deploy), start v2 on the same port."""

    def update(target: UpdateTarget) -> None:
        lab.replace_app(target.backend, target.server, "v2", sig=signal.SIGKILL)

    return update


def options(**overrides: Any) -> RolloutOptions:
    base: dict[str, Any] = {"batch_size": 2, "drain_timeout": 1.0, "sessions_timeout": 20.0,
                            "health_timeout": 15.0, "poll_interval": 0.1}
    base.update(overrides)
    return RolloutOptions(**base)


def assert_report_done(report: RolloutReport, weights: dict[str, int]) -> None:
    assert report.ok, format_report(report)
    for name, weight in weights.items():
        o = report.outcome(name)
        assert (o.phase, o.admin_state, o.status, o.weight) == (
            Phase.DONE, "ready", "UP", weight), format_report(report)


def test_cookie_rolling_batch2_sigkill_under_load(tmp_path: Path) -> None:
    weights = {"s1": 10, "s2": 20, "s3": 10, "s4": 20}
    with started_lab(one_backend(NAMES, persistence="cookie", weights=weights)) as lab, \
            Client(lab.admin_socket) as client:
        events: list[Event] = []
        rollout = Rollout(client, APP, kill_and_start_v2(lab), options=options(ramp=0.4),
                          journal=tmp_path / "journal.jsonl")
        with Users(lab, APP, n_users=16, persistence="cookie", slow_fraction=0.1,
                   slow_seconds=1.5) as users, Sampler(lab, APP) as sampler, \
                Browsers(lab, APP, 3, persistence="cookie") as browsers:
            users.wait_warm()
            browsers.wait_warm()
            start, t_start = time.monotonic(), users.now()
            report = rollout.run(on_event=events.append)
            end, t_end = time.monotonic(), users.now()
            users.wait_requests_after(t_end, 100)
            load = users.stop()
            browsers.stop()
        assert_report_done(report, weights)
        assert_no_disruption(load)
        browsers.assert_no_disruption(start)
        assert_servers(client, lab, APP, all_servers(NAMES, "ready", "v2"), weights)
        # Promise 2, as far as cookies allow: two servers always in load balancing, at least
        # two always answering users, and every server served.
        sampler.assert_capacity(start, end, 2)
        for t, answered in servers_per_window(users.outcomes(), t_start, t_end):
            assert len(answered) >= 2, f"only {answered} answered at t={t - t_start:.1f}s"
        assert set(load.per_server) == set(NAMES), load.summary()
        # Cookies cannot be rewritten from the CLI: the rollout steers with temporary weights
        # and evens out at the end with maint pulses; it says so up front.
        assert any(isinstance(e, Notice) and "cookie persistence: while a batch is out, "
                   "temporary weights" in e.message for e in events), events
        # Every weight is the configured one again (checked by assert_servers above), and
        # every server serves users once the rollout is over.
        after = per_server_after(users.outcomes(), t_end)
        assert set(after) == set(NAMES), f"requests per server after the rollout: {after}"
        # New users (no cookie yet) are spread over every server again, all on v2. Enough of
        # them for more than one cycle of HAProxy's weighted round robin: a server whose weight
        # just rose (the ramp, the even-out's last pulse) is queued for the *next* cycle
        # (lb_fwrr.c, fwrr_queue_srv), so the first ~40 new users after the rollout may all
        # land on the servers that kept their weight (measured: 12 of 12 did).
        with Users(lab, APP, n_users=90, persistence="cookie", seed=7) as fresh:
            fresh.wait_warm(per_user=2)
            fresh_load = fresh.stop()
        assert_no_disruption(fresh_load)
        assert set(fresh_load.per_server) == set(NAMES), fresh_load.summary()
        assert set(fresh_load.per_version) == {"v2"}, fresh_load.summary()


def test_stick_src_rolling_batch2_rebalances_users(tmp_path: Path) -> None:
    with started_lab(one_backend(NAMES, persistence="stick-src")) as lab, \
            Client(lab.admin_socket) as client:
        rollout = Rollout(client, APP, kill_and_start_v2(lab), options=options(),
                          journal=tmp_path / "journal.jsonl")
        with Users(lab, APP, n_users=16, persistence="src", slow_fraction=0.1,
                   slow_seconds=1.5) as users, Sampler(lab, APP) as sampler:
            users.wait_warm()
            start, t_start = time.monotonic(), users.now()
            report = rollout.run()
            end, t_end = time.monotonic(), users.now()
            users.wait_requests_after(t_end + 1.0, 150)
            load = users.stop()
            table = client.table(APP)
            ids = {s.id: s.name for s in client.servers(APP)}
        assert_report_done(report, dict.fromkeys(NAMES, 1))
        assert_no_disruption(load)
        assert_servers(client, lab, APP, all_servers(NAMES, "ready", "v2"), dict.fromkeys(NAMES, 1))
        sampler.assert_capacity(start, end, 2)
        for t, answered in servers_per_window(users.outcomes(), t_start, t_end):
            assert len(answered) >= 2, f"only {answered} answered at t={t - t_start:.1f}s"
        # The rebalance: the users' stick entries are spread over every server...
        owners = [ids.get(e.server_id) for e in table.entries]
        per_server = {n: owners.count(n) for n in NAMES}
        assert sum(per_server.values()) == users.n_users, (per_server, table.entries)
        fair = users.n_users / len(NAMES)
        assert max(per_server.values()) <= 2 * fair, f"stick entries per server: {per_server}"
        # ...and every server serves users after the rollout.
        after = per_server_after(users.outcomes(), t_end + 1.0)
        assert set(after) == set(NAMES), f"requests per server after the rollout: {after}"


def test_halves_without_persistence(tmp_path: Path) -> None:
    with started_lab(one_backend(NAMES, persistence=None)) as lab, \
            Client(lab.admin_socket) as client:
        before = snapshot_states(client, APP)
        # rolling would make users flip between versions: refused, by the API and the CLI.
        with pytest.raises(PlanError, match="allow-version-flips"):
            Rollout(client, APP, kill_and_start_v2(lab),
                    options=RolloutOptions(batch_size=1)).plan()
        env = cli_env(tmp_path / "state")
        refused = run_cli(lab, "rollout", APP, "--exec", "true", "--batch-size", "1", env=env)
        assert refused.returncode == 1, describe(refused)
        assert "--allow-version-flips" in refused.stderr, describe(refused)
        assert "Traceback" not in refused.stderr, describe(refused)
        assert snapshot_states(client, APP) == before
        dry = run_cli(lab, "rollout", APP, "--exec", "true", "--dry-run",
                      "--allow-version-flips", env=env)
        assert dry.returncode == 0, describe(dry)
        assert snapshot_states(client, APP) == before

        rollout = Rollout(client, APP, kill_and_start_v2(lab),
                          options=options(strategy="halves", batch_size=None),
                          journal=tmp_path / "journal.jsonl")
        with Users(lab, APP, n_users=14, persistence=None, slow_fraction=0.1,
                   slow_seconds=1.5) as users, Sampler(lab, APP) as sampler, \
                Browsers(lab, APP, 3, persistence=None) as browsers:
            users.wait_warm()
            browsers.wait_warm()
            start = time.monotonic()
            report = rollout.run()
            end, t_end = time.monotonic(), users.now()
            users.wait_requests_after(t_end + 0.5, 200)
            load = users.stop()
            browsers.stop()
        assert_report_done(report, dict.fromkeys(NAMES, 1))
        assert_no_disruption(load)
        browsers.assert_no_disruption(start)
        assert_servers(client, lab, APP, all_servers(NAMES, "ready", "v2"), dict.fromkeys(NAMES, 1))
        sampler.assert_capacity(start, end, 2)
        # Without persistence every request is balanced: even over the 4 servers afterwards.
        after = per_server_after(users.outcomes(), t_end + 0.5)
        assert set(after) == set(NAMES), after
        mean = sum(after.values()) / len(NAMES)
        assert all(0.5 * mean <= n <= 1.5 * mean for n in after.values()), after


@pytest.mark.parametrize("rebalance", [
    # With the rebalance, users are only moved between servers already on v2: a move off an
    # old server while a request runs there would be undone by that response (HAProxy stores
    # at response time) and send the user back to v1.
    pytest.param(True, id="rebalance"),
    pytest.param(False, id="no-rebalance"),
])
def test_stick_src_browsers_with_parallel_requests(tmp_path: Path, rebalance: bool) -> None:
    """Users who, like browsers, have a long request in flight while they click on: a stick
    entry is per user (source address), not per connection."""
    with started_lab(one_backend(NAMES, persistence="stick-src")) as lab, \
            Client(lab.admin_socket) as client:
        rollout = Rollout(client, APP, kill_and_start_v2(lab),
                          options=options(rebalance=rebalance), journal=False)
        with Browsers(lab, APP, 6, persistence="src") as browsers:
            browsers.wait_warm()
            start = time.monotonic()
            report = rollout.run()
            browsers.stop()
        assert_report_done(report, dict.fromkeys(NAMES, 1))
        assert_servers(client, lab, APP, all_servers(NAMES, "ready", "v2"), dict.fromkeys(NAMES, 1))
        browsers.assert_no_disruption(start)
