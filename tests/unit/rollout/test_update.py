"""Running the update: template check, shell quoting, real ``/bin/sh`` subprocesses."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from haproxyctl.errors import UsageError
from haproxyctl.rollout.options import RolloutOptions
from haproxyctl.rollout.steps import UpdateTarget
from haproxyctl.rollout.update import CallableUpdater, ExecUpdater, check_template

T1 = UpdateTarget("app", "s1", "10.0.0.1", 8080)


def target(server: str = "s1", address: str | None = "10.0.0.1",
           port: int | None = 8080) -> UpdateTarget:
    return UpdateTarget("app", server, address, port)


# -- template ---------------------------------------------------------------------------------


@pytest.mark.parametrize("template", [
    "deploy {backend} {server} {address} {port}",
    "echo {{literal}} {server}",
    "ssh {address} 'sudo systemctl restart app'",
    "true",
])
def test_known_placeholders_are_accepted(template: str) -> None:
    assert check_template(template) == template


@pytest.mark.parametrize(("template", "words"), [
    ("deploy {host}", "unknown placeholder {host}"),
    ("deploy {0}", "unknown placeholder {0}"),
    ("deploy {}", "unknown placeholder {}"),
    ("deploy {server.name}", "unknown placeholder {server.name}"),
    ("deploy {server[0]}", "unknown placeholder"),
    ("deploy {server", "(write '{{' for a literal brace)"),
    ("deploy server}", "(write '{{' for a literal brace)"),
    ("   ", "--exec command is empty"),
])
def test_unknown_or_malformed_placeholders_are_refused(template: str, words: str) -> None:
    with pytest.raises(UsageError, match=re.escape(words)) as info:
        check_template(template)
    assert info.value.field == "exec"


@pytest.mark.parametrize("template", ["deploy {server!x}", "deploy {server:d}",
                                      "deploy {server:{nope}}", "deploy {address!r}"])
def test_conversions_and_format_specs_are_refused_before_anything_runs(template: str) -> None:
    with pytest.raises(UsageError):
        check_template(template)


def test_exec_updater_checks_its_template_up_front() -> None:
    with pytest.raises(UsageError, match="unknown placeholder"):
        ExecUpdater("deploy {nope}", timeout=1)


# -- quoting ----------------------------------------------------------------------------------


def test_values_are_shell_quoted() -> None:
    u = ExecUpdater("deploy {backend} {server} {address} {port}", timeout=5)
    assert u.command_for(T1) == "deploy app s1 10.0.0.1 8080"
    evil = target(address="10.0.0.1; touch /tmp/pwned", port=None)
    assert u.command_for(evil) == "deploy app s1 '10.0.0.1; touch /tmp/pwned' ''"
    assert u.command_for(target(address=None)) == "deploy app s1 '' 8080"
    assert u.command_for(target(address="a'b")) == "deploy app s1 'a'\"'\"'b' 8080"
    assert ExecUpdater("x {{{server}}}", timeout=1).command_for(T1) == "x {s1}"


def test_a_value_with_shell_metacharacters_stays_one_argument(tmp_path: Path) -> None:
    out = tmp_path / "args"
    canary = tmp_path / "pwned"
    address = f"1.2.3.4; touch {canary} $(touch {canary}) `touch {canary}` | cat"
    u = ExecUpdater(f"printf '%s\\n' {{address}} {{port}} > {out}", timeout=5)
    (outcome,) = u.run([target(address=address, port=None)])
    assert outcome.ok, outcome.detail
    assert out.read_text().split("\n") == [address, "", ""]
    assert not canary.exists()


def test_values_are_also_in_the_environment(tmp_path: Path) -> None:
    out = tmp_path / "env"
    u = ExecUpdater('echo "$HAPROXYCTL_BACKEND $HAPROXYCTL_SERVER $HAPROXYCTL_ADDRESS '
                    f'$HAPROXYCTL_PORT" > {out}', timeout=5)
    assert u.run([T1])[0].ok
    assert out.read_text() == "app s1 10.0.0.1 8080\n"


# -- running ----------------------------------------------------------------------------------


def test_exit_zero_is_success() -> None:
    (o,) = ExecUpdater("exit 0", timeout=5).run([T1])
    assert (o.server, o.ok, o.detail, o.signal, o.interrupted) == ("s1", True, "", None, False)


def test_a_non_zero_exit_fails_with_the_status_and_the_output_tail() -> None:
    (o,) = ExecUpdater("echo starting; echo 'disk full' >&2; exit 3", timeout=5).run([T1])
    assert not o.ok
    assert o.detail == "exit status 3; output: starting | disk full"


def test_the_output_kept_is_the_tail() -> None:
    (o,) = ExecUpdater("seq 1 2000; exit 1", timeout=5).run([T1])
    assert not o.ok
    assert o.detail.startswith("exit status 1; output: ...")
    assert o.detail.endswith("1999 | 2000")
    assert len(o.detail) < 450
    (quiet,) = ExecUpdater("exit 4", timeout=5).run([T1])
    assert quiet.detail == "exit status 4; output: (none)"


def test_a_command_killed_by_a_signal_reports_it() -> None:
    (o,) = ExecUpdater("kill -TERM $$", timeout=5).run([T1])
    assert not o.ok
    assert o.signal == signal.SIGTERM
    assert o.detail.startswith("killed by SIGTERM")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not reaped yet by its new parent) is dead for our purpose
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    u = ExecUpdater(f"sleep 30 & echo $! > {pidfile}; echo waiting; wait", timeout=0.5)
    t0 = time.monotonic()
    (o,) = u.run([T1])
    took = time.monotonic() - t0
    assert not o.ok
    assert o.detail.startswith("timed out after 0.5s and was killed; output: waiting")
    assert 0.5 <= took < 3
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(child), "the background child of the update survived the timeout"


def test_updates_of_a_batch_run_in_parallel_and_keep_their_order() -> None:
    u = ExecUpdater("sleep 0.5; test {server} != s2", timeout=5)
    targets = [target("s1"), target("s2"), target("s3")]
    t0 = time.monotonic()
    outcomes = u.run(targets)
    took = time.monotonic() - t0
    assert took < 0.9
    assert [(o.server, o.ok) for o in outcomes] == [("s1", True), ("s2", False), ("s3", True)]
    assert outcomes[1].detail.startswith("exit status 1")


def test_an_update_runs_in_its_own_session() -> None:
    (o,) = ExecUpdater(f'test "$(ps -o sid= -p $$)" -ne {os.getsid(0)}', timeout=5).run([T1])
    assert o.ok, o.detail


def test_describe() -> None:
    assert ExecUpdater("deploy {server}", timeout=1).describe() == "exec: deploy {server}"


# -- python callables -------------------------------------------------------------------------


def test_callable_updater_maps_exceptions_to_failures() -> None:
    seen: list[str] = []

    def deploy(t: UpdateTarget) -> None:
        seen.append(t.server)
        if t.server == "s2":
            raise RuntimeError(f"cannot reach {t.address}")

    u = CallableUpdater(deploy)
    outcomes = u.run([target("s1"), target("s2", address="10.9.9.9")])
    assert sorted(seen) == ["s1", "s2"]
    assert [(o.server, o.ok, o.detail) for o in outcomes] == [
        ("s1", True, ""), ("s2", False, "RuntimeError: cannot reach 10.9.9.9")]
    assert u.describe().startswith("python: ")
    assert "deploy" in u.describe()


def test_callable_updater_runs_a_batch_in_parallel() -> None:
    u = CallableUpdater(lambda t: time.sleep(0.4))
    t0 = time.monotonic()
    assert all(o.ok for o in u.run([target(f"s{i}") for i in range(4)]))
    assert time.monotonic() - t0 < 0.9


def test_running_no_target_returns_nothing() -> None:
    assert CallableUpdater(lambda t: None).run([]) == []


def test_the_updater_uses_the_options_the_rollout_runs_with() -> None:
    """On --resume the options come from the journal plus overrides: --exec-timeout given then
    must reach the update command (the updater is built from them, not from the defaults)."""
    from haproxyctl import Client
    from haproxyctl.rollout import Rollout

    rollout = Rollout(Client("/nonexistent/admin.sock"), "app", "sleep {server}")
    resumed = rollout._require_updater(RolloutOptions(exec_timeout=1.5))
    assert isinstance(resumed, ExecUpdater)
    assert resumed.timeout == 1.5
    default = rollout._require_updater()
    assert isinstance(default, ExecUpdater)
    assert default.timeout == RolloutOptions().exec_timeout
