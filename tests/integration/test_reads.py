"""Every read of the client against a real HAProxy, with concrete values."""

from __future__ import annotations

import pytest
from conftest import (
    AGENT,
    APP,
    DYN,
    MANY,
    STATIC,
    STICK,
    Rig,
    Wire,
    raw_stat,
    slow_requests,
    wait_scur,
)

from haproxyctl import (
    AdminFlag,
    AdminState,
    Client,
    NoSuchServer,
    OpState,
    ServerRef,
    TableFilter,
    TableInfo,
)

pytestmark = pytest.mark.integration

ALL_BACKENDS = [APP, STICK, STATIC, AGENT, DYN, MANY]
N_SERVERS = 3 + 2 + 2 + 2 + 2 + 100


# --- process -----------------------------------------------------------------------------------


def test_info_describes_the_worker_serving_the_socket(client: Client, rig: Rig) -> None:
    info = client.info()
    assert info.name == "HAProxy"
    assert info.pid == rig.lab.worker_pid()
    assert info.pid != rig.lab.master_pid
    assert info.version == client.version() == rig.raw("show version").strip()
    assert info.version_tuple[:2] >= (2, 6)
    assert info.nbthread == 2
    assert info.stopping is False
    assert info.uptime_sec is not None
    assert info.uptime_sec >= 0
    assert info.fields["Pid"] == str(info.pid)


@pytest.mark.parametrize("which", ["admin", "operator", "user"])
def test_cli_level_of_each_socket(rig: Rig, which: str) -> None:
    path = {"admin": rig.lab.admin_socket, "operator": rig.lab.operator_socket,
            "user": rig.lab.user_socket}[which]
    with Client(path) as c:
        assert c.cli_level() == which


def test_backends_in_config_order(client: Client) -> None:
    assert client.backends() == ALL_BACKENDS


# --- show stat ---------------------------------------------------------------------------------


def test_stats_are_split_by_row_type(client: Client) -> None:
    stats = client.stats()
    assert [f.name for f in stats.frontends] == [f"fe_{APP}"]
    assert [b.name for b in stats.backends] == ALL_BACKENDS
    assert len(stats.servers) == N_SERVERS

    app = client.stats(APP)
    assert app.frontends == ()
    assert [b.name for b in app.backends] == [APP]
    assert [(s.backend, s.name) for s in app.servers] == [(APP, "s1"), (APP, "s2"), (APP, "s3")]


def test_server_stats_of_checked_servers(client: Client, rig: Rig) -> None:
    assert len(client.server_stats()) == N_SERVERS
    rows = client.server_stats(APP)
    assert [r.name for r in rows] == ["s1", "s2", "s3"]
    ids = {k: v for k, v in rig.baseline.items() if k[0] == APP}
    for r in rows:
        assert r.status == "UP"
        assert r.check_status == "L7OK"
        assert (r.check_rise, r.check_fall, r.check_health) == (2, 2, 3)
        assert r.fully_healthy is True
        assert (r.weight, r.scur, r.qcur) == (1, 0, 0)
        assert r.drained
        state = ids[(APP, r.name)]
        assert (r.backend_id, r.id) == (int(state["be_id"]), int(state["srv_id"]))
        assert r.addr == f"127.0.0.1:{rig.app_port(APP, r.name)}"


def test_server_stats_of_unchecked_servers(client: Client) -> None:
    rows = client.server_stats(STATIC)
    assert [(r.name, r.status, r.weight, r.check_status, r.fully_healthy) for r in rows] == [
        ("s1", "no check", 10, None, None),
        ("s2", "no check", 10, None, None),
    ]


def test_backend_stats_count_only_usable_servers(client: Client) -> None:
    by_name = {b.name: b for b in client.backend_stats()}
    assert list(by_name) == ALL_BACKENDS
    app = by_name[APP]
    assert (app.status, app.active_servers, app.weight, app.algo, app.mode) == (
        "UP", 3, 3, "roundrobin", "http")
    assert (by_name[STATIC].algo, by_name[STATIC].weight) == ("static-rr", 20)
    assert by_name[MANY].active_servers == 100

    client.set_state(f"{APP}/s1", "drain")
    app = {b.name: b for b in client.backend_stats()}[APP]
    # A drained server stays UP but no longer counts for load balancing.
    assert (app.active_servers, app.weight) == (2, 2)


def test_frontend_stats(client: Client) -> None:
    (fe,) = client.frontend_stats()
    assert (fe.name, fe.status, fe.mode) == (f"fe_{APP}", "OPEN", "http")


# --- joined servers ----------------------------------------------------------------------------


def test_servers_join_traffic_with_exact_admin_state(client: Client) -> None:
    client.set_state(f"{APP}/s1", "drain")
    client.set_state(f"{APP}/s2", "maint")
    servers = {s.name: s for s in client.servers(APP)}
    assert list(servers) == ["s1", "s2", "s3"]

    s1, s2, s3 = servers["s1"], servers["s2"], servers["s3"]
    assert (s1.admin_state, s1.status, s1.op_state) == (AdminState.DRAIN, "DRAIN",
                                                       OpState.RUNNING)
    assert s1.admin_flags == AdminFlag.FDRAIN
    assert s1.up
    assert (s2.admin_state, s2.status, s2.op_state) == (AdminState.MAINT, "MAINT",
                                                       OpState.STOPPED)
    assert s2.admin_flags == AdminFlag.FMAINT
    assert not s2.up
    assert (s3.admin_state, s3.status) == (AdminState.READY, "UP")
    assert s3.admin_flags == AdminFlag(0)
    assert len(client.servers()) == N_SERVERS


def test_a_drained_server_failing_its_checks_shows_down_but_is_drain(client: Client,
                                                                     rig: Rig) -> None:
    client.set_state(f"{APP}/s3", "drain")
    rig.lab.set_healthy(APP, "s3", False)
    rig.lab.wait_for_status(APP, "s3", "DOWN", timeout=5)

    s3 = client.server(f"{APP}/s3")
    # The status text says DOWN; only the admin bits tell that it is drained.
    assert s3.status == "DOWN"
    assert s3.admin_state is AdminState.DRAIN
    assert s3.op_state is OpState.STOPPED
    assert s3.check_status == "L7STS"
    assert not s3.up


def test_server_reads_one_server(client: Client, rig: Rig) -> None:
    for ref in (f"{APP}/s2", (APP, "s2"), ServerRef(APP, "s2")):
        s = client.server(ref)
        assert (s.backend, s.name, s.ref) == (APP, "s2", f"{APP}/s2")
        assert (s.address, s.port) == ("127.0.0.1", rig.app_port(APP, "s2"))
        assert (s.weight, s.initial_weight, s.effective_weight) == (1, 1, 1)
        assert s.has_checks
        assert s.checks_enabled
        assert not s.has_agent
        assert (s.check_rise, s.check_fall, s.check_health) == (2, 2, 3)
        assert s.fully_healthy is True

    a1 = client.server(f"{AGENT}/a1")
    assert a1.has_agent
    assert not a1.has_checks
    assert a1.status == "no check"
    assert not client.server(f"{AGENT}/s1").has_agent

    with pytest.raises(NoSuchServer):
        client.server(f"{APP}/s9")


def test_server_stat_is_read_by_id(client: Client, rig: Rig, wire: Wire) -> None:
    base = rig.baseline[(MANY, "s42")]
    wire.clear()
    stat = client.server_stat(f"{MANY}/s42")
    assert (stat.backend, stat.name, stat.status) == (MANY, "s42", "no check")
    assert (stat.backend_id, stat.id) == (int(base["be_id"]), 42)
    # ids resolved once (show servers state <backend>), then one row by id
    assert wire.commands() == [f"show servers state {MANY}", f"show stat {base['be_id']} 4 42"]

    wire.clear()
    assert client.server_stat(f"{MANY}/s42").id == 42
    assert wire.commands() == [f"show stat {base['be_id']} 4 42"]  # ids cached


def test_server_stat_follows_a_server_recreated_with_another_id(client: Client,
                                                                rig: Rig) -> None:
    assert client.server_stat(f"{DYN}/d2").id == 2  # ids now cached
    rig.raw(f"set server {DYN}/d2 state maint")
    assert rig.raw(f"del server {DYN}/d2").strip() == "Server deleted."
    added = rig.raw(f"add server {DYN}/d2 127.0.0.1:9 weight 10 id 42")
    assert added.strip() == "New server registered."

    stat = client.server_stat(f"{DYN}/d2")
    assert (stat.name, stat.id, stat.status) == ("d2", 42, "MAINT")
    assert client.server(f"{DYN}/d2").id == 42


def test_servers_state(client: Client, rig: Rig) -> None:
    assert len(client.servers_state()) == N_SERVERS
    states = client.servers_state(STATIC)
    assert [(s.name, s.addr, s.port, s.user_weight, s.initial_weight) for s in states] == [
        ("s1", "127.0.0.1", 9, 10, 10),
        ("s2", "127.0.0.1", 9, 10, 10),
    ]
    assert all(s.admin_state is AdminState.READY and s.op_state is OpState.RUNNING
               for s in states)

    client.set_state(f"{STATIC}/s2", "drain")
    s2 = client.servers_state(STATIC)[1]
    assert (s2.admin_flags, s2.admin_state) == (AdminFlag.FDRAIN, AdminState.DRAIN)
    assert int(rig.baseline[(STATIC, "s2")]["be_id"]) == s2.backend_id


def test_servers_conn(client: Client, rig: Rig) -> None:
    conns = client.servers_conn(APP)
    assert [(c.backend, c.name, c.addr, c.port) for c in conns] == [
        (APP, name, "127.0.0.1", rig.app_port(APP, name)) for name in ("s1", "s2", "s3")
    ]
    assert all(c.used_cur == 0 for c in conns)
    assert len(client.servers_conn()) == N_SERVERS


def test_get_weight(client: Client) -> None:
    w = client.get_weight(f"{STATIC}/s1")
    assert (w.current, w.initial) == (10, 10)
    client.set_weight(f"{STATIC}/s1", 0)
    w = client.get_weight(f"{STATIC}/s1")
    assert (w.current, w.initial) == (0, 10)


# --- sessions ----------------------------------------------------------------------------------


def test_sessions_while_slow_requests_are_in_flight(client: Client, rig: Rig) -> None:
    on_s2 = slow_requests(rig, "s2", 1.0, count=2)
    on_s3 = slow_requests(rig, "s3", 1.0)

    s2 = client.sessions(f"{APP}/s2")
    assert len(s2) == 2
    for sess in s2:
        assert (sess.proto, sess.frontend, sess.backend, sess.server) == (
            "tcpv4", f"fe_{APP}", APP, "s2")
        assert sess.id.startswith("0x")
        assert sess.src is not None
        assert sess.src.startswith("127.0.0.1:")
        assert sess.age is not None
        assert sess.age >= 0
    assert [s.server for s in client.sessions(f"{APP}/s3")] == ["s3"]
    assert client.sessions(f"{APP}/s1") == []

    everything = client.sessions()
    assert {s.id for s in s2} < {s.id for s in everything}
    # The CLI session that asked is a stream too (frontend GLOBAL, no backend).
    assert any(s.frontend == "GLOBAL" and s.backend is None for s in everything)

    for request in [*on_s2, *on_s3]:
        request.join()
        assert (request.status, request.error) == (200, None)
    wait_scur(rig.lab, APP, "s2", lambda n: n == 0)
    assert client.sessions(f"{APP}/s2") == []
    assert int(raw_stat(rig.lab, APP, "s2")["stot"]) >= 2

    with pytest.raises(NoSuchServer):
        client.sessions(f"{APP}/s9")


# --- stick tables and maps ---------------------------------------------------------------------


def test_tables_and_table_filters(client: Client, rig: Rig) -> None:
    assert client.tables() == [TableInfo(STICK, "ip", 102400, 0)]
    for key, sid in (("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.3", 2)):
        assert rig.raw(f"set table {STICK} key {key} data.server_id {sid}") == "\n"
    assert client.tables() == [TableInfo(STICK, "ip", 102400, 3)]

    table = client.table(STICK)
    assert table.info.used == 3
    assert sorted((e.key, e.server_id) for e in table.entries) == [
        ("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.3", 2)]
    assert all(e.exp is not None and e.exp > 0 and e.use == 0 for e in table.entries)

    (one,) = client.table(STICK, key="10.0.0.2").entries
    assert (one.key, one.server_id, one.server_key) == ("10.0.0.2", 2, None)
    assert client.table(STICK, key="10.9.9.9").entries == ()

    pinned_to_2 = client.table(STICK, where=["server_id eq 2"])
    assert sorted(e.key for e in pinned_to_2.entries) == ["10.0.0.2", "10.0.0.3"]
    typed = client.table(STICK, where=[TableFilter("server_id", "lt", 2)])
    assert [e.key for e in typed.entries] == ["10.0.0.1"]
    assert client.table(STICK, where=["server_id gt 2"]).entries == ()


def test_map_entries(client: Client, rig: Rig) -> None:
    entries = client.map_entries(rig.map_path)
    assert [(e.key, e.value) for e in entries] == [("example.com", "be_app")]
    assert entries[0].ref.startswith("0x")
