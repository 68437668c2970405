"""The controller itself goes away or is doubled: SIGKILL mid-batch then ``--resume`` or
``--abort``, Ctrl-C in a terminal, a second controller on the same backend. The journal and
its lock must keep every server's state explainable, and users must never notice."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from haproxyctl import Client
from haproxyctl.lab import Lab, LabSpec

from .support import (
    APP,
    Controller,
    DeployAgent,
    Users,
    all_servers,
    assert_no_disruption,
    assert_servers,
    cli_argv,
    cli_env,
    describe,
    journal_end,
    journal_phases,
    one_backend,
    run_cli,
    snapshot_states,
    started_lab,
    wait_journal_phase,
)

pytestmark = pytest.mark.e2e

NAMES = ("s1", "s2", "s3", "s4")
FAST = ("--drain-timeout", "1", "--sessions-timeout", "20", "--health-timeout", "15",
        "--poll-interval", "0.1")
WEIGHTS = dict.fromkeys(NAMES, 1)

#: Journaled phase -> the admin states a server may be in (HAProxy is only ever changed after
#: the journal says what is about to happen, and phases are journaled as soon as it happened).
ALLOWED_STATES = {
    "pending": {"ready"}, "restored": {"ready"}, "done": {"ready"},
    "draining": {"drain"}, "returning": {"drain"}, "healthy": {"drain"},
    "maint": {"maint"}, "drained": {"maint"}, "updating": {"maint"}, "updated": {"maint"},
    "failed": {"maint"},
}
#: Journaled phase -> the app versions a server may run.
ALLOWED_VERSIONS = {
    "pending": {"v1"}, "restored": {"v1"}, "draining": {"v1"}, "maint": {"v1"},
    "drained": {"v1"}, "updating": {"v1", "v2"}, "updated": {"v2"}, "returning": {"v2"},
    "healthy": {"v2"}, "done": {"v2"}, "failed": {"v1", "v2"},
}


def assert_consistent_with_journal(client: Client, lab: Lab, journal: Path) -> dict[str, str]:
    """Every server is where its journaled phase says (no server in drain or maint that the
    journal does not account for); returns the phases."""
    phases = journal_phases(journal)
    live = {s.name: s for s in client.servers(APP)}
    problems = []
    for name in NAMES:
        phase = phases.get(name, "pending")
        state, version = live[name].admin_state.value, lab.app(APP, name).version
        if state not in ALLOWED_STATES[phase] or version not in ALLOWED_VERSIONS[phase]:
            problems.append(f"{name}: journal says {phase}, HAProxy {state} "
                            f"({live[name].status}), app {version}")
    assert not problems, "\n".join(problems)
    return phases


def kill_during_update_of_s2(lab: Lab, agent: DeployAgent, journal: Path, env: dict[str, str],
                             logs: Path) -> tuple[str, ...]:
    """Start a rollout (one server per batch), SIGKILL the controller while s2's update runs;
    returns the rollout's arguments."""
    args = ("rollout", APP, "--exec", agent.command("v2"), "--journal", str(journal), *FAST)
    agent.hold("s2")
    with Controller(lab, args, env=env, logs=logs) as controller:
        agent.wait_started("s2")
        wait_journal_phase(journal, "s2", "updating")
        controller.proc.send_signal(signal.SIGKILL)
        assert controller.wait(10.0) == -signal.SIGKILL, controller.output()
    return args


def assert_left_by_the_kill(client: Client, lab: Lab, journal: Path) -> None:
    assert journal_phases(journal) == {"s1": "done", "s2": "updating"}
    assert journal_end(journal) is None
    assert_servers(client, lab, APP, {"s1": ("ready", "v2"), "s2": ("maint", "v1"),
                                      **all_servers(["s3", "s4"], "ready", "v1")})
    # The kill leaves the steering weights of batch 2 in place (--resume and --abort put them
    # back): users re-dispatched off s2 may only land on the new version, so the old servers
    # take no load-balanced user (weight 0) while still serving the users pinned to them.
    weights = {s.name: s.weight for s in client.servers(APP)}
    assert (weights["s1"] or 0) > 0, weights
    assert (weights["s3"], weights["s4"]) == (0, 0), weights


def test_sigkill_controller_mid_batch_then_resume(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    env = cli_env(tmp_path / "state")
    with started_lab(_spec()) as lab, Client(lab.admin_socket) as client, \
            DeployAgent(lab, APP, tmp_path / "deploy") as agent, \
            Users(lab, APP, n_users=14, persistence="cookie", slow_fraction=0.1,
                  slow_seconds=1.5) as users:
        users.wait_warm()
        args = kill_during_update_of_s2(lab, agent, journal, env, tmp_path / "killed")
        assert_left_by_the_kill(client, lab, journal)
        # A new rollout is refused while the journal has an unfinished one; nothing changes.
        before = snapshot_states(client, APP)
        refused = run_cli(lab, *args, env=env)
        assert refused.returncode == 1, describe(refused)
        assert "an unfinished rollout of backend 'app' exists" in refused.stderr
        assert "--resume" in refused.stderr, describe(refused)
        assert snapshot_states(client, APP) == before
        # The orphaned update command (its own session) finishes by itself...
        agent.release("s2")
        agent.wait_swapped("s2")
        agent.wait_scripts_done()
        # ...and --resume runs it again (its outcome was never journaled), then the rest.
        resumed = run_cli(lab, *args, "--resume", env=env)
        t_end = users.now()
        assert resumed.returncode == 0, describe(resumed)
        assert "resuming rolling rollout of app" in resumed.stdout, describe(resumed)
        assert journal_end(journal) == "completed"
        assert [len(agent.swapped(n)) for n in NAMES] == [1, 2, 1, 1]
        users.wait_requests_after(t_end, 100)
        load = users.stop()
        assert_servers(client, lab, APP, all_servers(NAMES, "ready", "v2"), WEIGHTS)
        assert_no_disruption(load)


def test_sigkill_controller_mid_batch_then_abort(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    env = cli_env(tmp_path / "state")
    with started_lab(_spec()) as lab, Client(lab.admin_socket) as client, \
            DeployAgent(lab, APP, tmp_path / "deploy") as agent, \
            Users(lab, APP, n_users=14, persistence="cookie", slow_fraction=0.1,
                  slow_seconds=1.5) as users:
        users.wait_warm()
        args = kill_during_update_of_s2(lab, agent, journal, env, tmp_path / "killed")
        assert_left_by_the_kill(client, lab, journal)
        agent.release("s2")
        agent.wait_swapped("s2")
        agent.wait_scripts_done()
        aborted = run_cli(lab, *args, "--abort", env=env)
        t_end = users.now()
        assert aborted.returncode == 0, describe(aborted)
        assert "aborted: restored 2 server(s) not yet updated; left as they are: s2" \
            in aborted.stdout, describe(aborted)
        assert journal_end(journal) == "aborted"
        assert journal_phases(journal) == {"s1": "done", "s2": "updating", "s3": "restored",
                                           "s4": "restored"}
        users.wait_requests_after(t_end, 100)
        load = users.stop()
        # s1 done (v2), s2 left in maint with whatever its update did, s3/s4 never touched.
        assert_servers(client, lab, APP, {"s1": ("ready", "v2"), "s2": ("maint", "v2"),
                                          **all_servers(["s3", "s4"], "ready", "v1")}, WEIGHTS)
        assert_no_disruption(load)


def _spawn(lab: Lab, args: tuple[str, ...], env: dict[str, str]) -> pexpect.spawn:
    argv = cli_argv(lab, *args)
    return pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8", timeout=60,
                         dimensions=(50, 200))


def _interrupt(child: pexpect.spawn, wait_for: str,
               before: Callable[[], None] | None = None,
               while_stopping: Callable[[], None] | None = None) -> tuple[int, str]:
    """Ctrl-C once ``wait_for`` shows up (and ``before`` returned); returns (exit status,
    everything printed)."""
    try:
        child.expect(wait_for)
        seen = str(child.before) + str(child.after)
        if before is not None:
            before()
        child.sendintr()
        child.expect("stopping after the current step")
        seen += str(child.before) + str(child.after)
        if while_stopping is not None:
            while_stopping()
        child.expect(pexpect.EOF, timeout=60)
        seen += str(child.before)
        child.close()
        return int(child.exitstatus), seen
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_ctrl_c_in_a_terminal_stops_after_the_current_step(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    env = cli_env(tmp_path / "state")
    with started_lab(_spec()) as lab, Client(lab.admin_socket) as client, \
            DeployAgent(lab, APP, tmp_path / "deploy") as agent, \
            Users(lab, APP, n_users=14, persistence="cookie", slow_fraction=0.1,
                  slow_seconds=1.5) as users:
        users.wait_warm()
        args = ("rollout", APP, "--exec", agent.command("v2"), "--batch-size", "2",
                "--journal", str(journal), "--drain-timeout", "2", "--sessions-timeout", "20",
                "--health-timeout", "15", "--poll-interval", "0.1")
        # 1. Ctrl-C during the drain grace: stops at once, servers stay in drain, journaled.
        status, seen = _interrupt(_spawn(lab, args, env), "draining")
        assert status == 130, seen
        assert "--resume" in seen, seen
        phases = assert_consistent_with_journal(client, lab, journal)
        assert phases == {"s1": "draining", "s2": "draining"}, phases

        # 2. Ctrl-C while the update runs: the update is not killed, the controller waits for
        # it, journals its outcome, then stops.
        agent.hold("s1")
        agent.hold("s2")

        def updates_started() -> None:
            agent.wait_started("s1")
            agent.wait_started("s2")

        def updates_survive() -> None:
            assert child.isalive()
            assert agent.started("s1")
            assert agent.started("s2")
            assert not agent.swaps
            agent.release("s1")
            agent.release("s2")

        child = _spawn(lab, (*args, "--resume"), env)
        status, seen = _interrupt(child, "updating", updates_started, updates_survive)
        assert status == 130, seen
        assert "--resume" in seen, seen
        phases = assert_consistent_with_journal(client, lab, journal)
        assert phases == {"s1": "updated", "s2": "updated"}, phases
        assert sorted(s.server for s in agent.swaps) == ["s1", "s2"]

        # 3. --resume finishes.
        resumed = run_cli(lab, *args, "--resume", env=env)
        t_end = users.now()
        assert resumed.returncode == 0, describe(resumed)
        assert journal_end(journal) == "completed"
        users.wait_requests_after(t_end, 100)
        load = users.stop()
        assert_servers(client, lab, APP, all_servers(NAMES, "ready", "v2"), WEIGHTS)
        assert sorted(s.server for s in agent.swaps) == list(NAMES)
        assert_no_disruption(load)


def test_second_controller_is_refused_while_one_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = cli_env(state)
    with started_lab(_spec()) as lab, Client(lab.admin_socket) as client, \
            DeployAgent(lab, APP, tmp_path / "deploy") as agent, \
            Users(lab, APP, n_users=12, persistence="cookie") as users:
        users.wait_warm()
        # Both use the default journal (one per socket and backend, under the state dir).
        args = ("rollout", APP, "--exec", agent.command("v2"), "--batch-size", "2", *FAST)
        agent.hold("s1")
        with Controller(lab, args, env=env, logs=tmp_path / "first") as first:
            agent.wait_started("s1")
            during = snapshot_states(client, APP)
            for extra in ((), ("--resume",), ("--abort",)):
                second = run_cli(lab, *args, *extra, env=env)
                assert second.returncode == 1, describe(second)
                assert "another rollout of this backend is running (controller pid " \
                    f"{first.pid};" in second.stderr, describe(second)
            assert snapshot_states(client, APP) == during
            assert first.proc.poll() is None, first.output()
            agent.release("s1")
            assert first.wait() == 0, first.output()
        t_end = users.now()
        assert len(list(state.glob("rollout-app-*.jsonl"))) == 1
        users.wait_requests_after(t_end, 100)
        load = users.stop()
        assert_servers(client, lab, APP, all_servers(NAMES, "ready", "v2"), WEIGHTS)
        assert_no_disruption(load)


def _spec() -> LabSpec:
    return one_backend(NAMES, persistence="cookie")
