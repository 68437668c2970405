"""The persistent session: reuse, reconnecting after HAProxy closes it, reloads, threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from conftest import (
    APP,
    MANY,
    Rig,
    raw_servers_state,
    small_spec,
    start_rig,
    wait_master_ready,
    worker_pid_from,
)

from haproxyctl import Client, Command, Weight
from haproxyctl.lab import poll_until, raw_command
from haproxyctl.protocol.encode import Expect

pytestmark = pytest.mark.integration


def _cli_streams(rig: Rig) -> int:
    """CLI sessions open on the worker, besides the one asking (raw ``show sess``)."""
    lines = rig.raw("show sess").splitlines()
    return sum(1 for line in lines if " proto=unix_stream " in line) - 1


def test_one_session_serves_many_commands(client: Client, rig: Rig) -> None:
    for _ in range(30):
        assert client.version()
        assert client.get_weight(f"{APP}/s1") == Weight(1, 1)
        assert len(client.servers(APP)) == 3
    assert client.connection.connects == 1
    assert _cli_streams(rig) == 1  # HAProxy sees one session from this client


def test_reconnects_after_haproxy_closes_the_idle_session(client: Client, rig: Rig) -> None:
    # HAProxy 2.6 applies "stats timeout" only until a session enters prompt mode, so the
    # idle timeout of this very session is lowered instead (it is per session).
    client.execute(Command.build("set timeout cli", "1", expect=Expect.EMPTY))
    assert client.connection.connects == 1
    assert _cli_streams(rig) == 1

    poll_until(lambda: True if _cli_streams(rig) == 0 else None, timeout=5, interval=0.1,
               what="HAProxy to close the idle CLI session")

    assert client.info().pid == worker_pid_from(rig.admin)  # no error
    assert client.connection.connects == 2
    assert client.server(f"{APP}/s1").status == "UP"
    assert client.connection.connects == 2


def test_threads_share_one_client(client: Client) -> None:
    n_threads, rounds = 8, 100  # 200 commands per thread, plus a big read now and then
    errors: list[str] = []

    def work(t: int) -> None:
        ref = f"{MANY}/s{t + 1}"
        try:
            for i in range(rounds):
                weight = (t * 37 + i * 11) % 257
                client.set_weight(ref, weight)
                got = client.get_weight(ref)
                if got != Weight(weight, 1):
                    errors.append(f"thread {t} round {i}: set {weight}, read {got}")
                if i % 25 == 0:
                    states = client.servers_state(MANY)
                    if [s.name for s in states] != [f"s{j}" for j in range(1, 101)]:
                        errors.append(f"thread {t} round {i}: bad servers state listing")
        except Exception as exc:
            errors.append(f"thread {t}: {exc!r}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert client.connection.connects == 1
    state = raw_servers_state(client.address.path or "")
    for t in range(n_threads):
        last = (t * 37 + (rounds - 1) * 11) % 257
        assert state[(MANY, f"s{t + 1}")]["srv_uweight"] == str(last)


# --- reload ------------------------------------------------------------------------------------


@pytest.fixture
def reloadable() -> Iterator[Rig]:
    """A lab whose old worker is stopped 1 s after a reload (``hard-stop-after``)."""
    with start_rig(lambda path: small_spec(path, extra_global=["hard-stop-after 1s"])) as rig:
        yield rig


def _reload(rig: Rig) -> tuple[int, int]:
    """Reload through the master CLI (raw); return (old, new) worker PIDs once the new
    worker answers on the admin socket."""
    old = worker_pid_from(rig.admin)
    rig.lab.reload()  # 2.6 answers nothing, 2.7+ Success=1 and the startup logs

    def new_worker() -> int | None:
        try:
            pid = worker_pid_from(rig.admin)
        except OSError:
            return None
        return pid if pid != old else None

    new = poll_until(new_worker, timeout=10, interval=0.02, what="the new worker to answer")
    return old, new


def _old_workers(rig: Rig) -> str:
    reply = raw_command(rig.lab.master_socket, "show proc")
    return reply.partition("# old workers")[2].partition("# programs")[0].strip()


def test_reconnects_after_a_reload(reloadable: Rig) -> None:
    rig = reloadable
    with Client(rig.admin) as worker_client, \
            Client(f"master:{rig.lab.master_socket}") as master_client:
        old = worker_client.info().pid
        assert master_client.info().pid == old
        _, new = _reload(rig)
        wait_master_ready(rig.lab)
        # Through the master, @1 is the new worker at once; the master's own session was
        # closed by the reload and the client reconnected by itself.
        assert master_client.info().pid == new
        assert master_client.connection.connects == 2

        # Idle, the worker client's session keeps the old worker alive until hard-stop-after
        # (1 s here) ends it; the closed session is noticed and reopened on the new worker.
        poll_until(lambda: True if _old_workers(rig) == "" else None, timeout=10,
                   interval=0.05, what="the old worker to exit")
        assert worker_client.info().pid == new  # no error
        assert worker_client.connection.connects == 2
        worker_client.set_state("bk/s1", "drain")
        assert raw_servers_state(rig.admin)[("bk", "s1")]["srv_admin_state"] == "8"


def test_leaves_a_stopping_worker_without_waiting_for_it_to_exit(small: Rig) -> None:
    # This lab's old worker lives up to 5 s after a reload (hard-stop-after 5s).
    with Client(small.admin) as client:
        client.version()
        old, new = _reload(small)

        def on_new_worker() -> bool | None:
            return True if client.info().pid == new else None

        start = time.monotonic()
        poll_until(on_new_worker, timeout=4, interval=0.05, what="the client to follow")
        assert time.monotonic() - start < 3  # long before hard-stop-after
        # No longer held by our session, the old worker exits by itself.
        wait_master_ready(small.lab)
        poll_until(lambda: True if str(old) not in _old_workers(small) else None, timeout=3,
                   interval=0.05, what="the old worker to exit")
        assert client.connection.process_changes == 1
        assert client.connection.worker_pid == new
        client.set_state("bk/s2", "maint")
        assert raw_servers_state(small.admin)[("bk", "s2")]["srv_admin_state"] == "1"


def test_after_a_reload_reads_reach_the_new_worker_within_the_identity_interval(
        reloadable: Rig) -> None:
    """The documented guarantee: the session is checked for a stopped worker at most every
    ``identity_interval`` (0.1 s), so a read more than that after a reload comes from the new
    worker. (A read inside that window may still come from the old one; writes never do, see
    test_a_write_right_after_a_reload_reaches_the_new_worker.)"""
    rig = reloadable
    with Client(rig.admin) as client:
        client.version()
        _, new = _reload(rig)
        time.sleep(client.connection.identity_interval)
        assert client.info().pid == new
        assert client.connection.worker_pid == new


def test_a_write_right_after_a_reload_reaches_the_new_worker(reloadable: Rig) -> None:
    """The old worker refuses changes ("Proxy is disabled."); the client moves to the new
    worker and sends them again instead of reporting a failure or losing them."""
    rig = reloadable
    with Client(rig.admin) as client:
        client.version()
        _, new = _reload(rig)
        client.set_state("bk/s2", "maint")
        assert client.connection.worker_pid == new
        assert raw_servers_state(rig.admin)[("bk", "s2")]["srv_admin_state"] == "1"
