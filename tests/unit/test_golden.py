"""Golden replies: real HAProxy 2.6.12 bytes (``tests/fixtures/haproxy-2.6``, recorded by
``tests/fixtures/capture.py``) go through the library's pure pipeline -- framing, severity,
reply check, parser -- and must give these concrete values.

The lab that produced them: be_app (s1 weight 10 set to 50%, s2 drain, s3 maint, s4 unchecked,
cookie persistence, one request in flight on s1), be_stick (stick on src; s2 failing its checks
and drained), be_hdr (string stick table, ``srvkey name``), be_static (static-rr; t1 tracks
be_app/s3). Values that change with every capture (pids, ports, pointers) are cross-checked
against a naive independent reading of the same bytes instead of being hard-coded.
"""

from __future__ import annotations

import csv
import re

import pytest

from haproxyctl import commands as cmd
from haproxyctl import errors
from haproxyctl.models import (
    AdminFlag,
    AdminState,
    OpState,
    TableInfo,
    Weight,
    join_servers,
    parse_info,
    parse_map,
    parse_server_stats,
    parse_servers_conn,
    parse_servers_state,
    parse_sessions,
    parse_stats,
    parse_table,
    parse_tables,
    parse_weight,
)
from haproxyctl.models.backends import parse_backend_names
from haproxyctl.protocol.encode import Command, Expect
from haproxyctl.protocol.framing import MasterPromptFramer, OneShotFramer, PromptFramer, body_text
from haproxyctl.protocol.replies import check_reply, parse_reply

from ._helpers import GOLDEN_DIR, golden_bytes, golden_text, one_shot_text


def index() -> dict[str, tuple[str, str]]:
    """file -> (socket level, command line), from INDEX.txt."""
    out: dict[str, tuple[str, str]] = {}
    for line in golden_bytes("INDEX.txt").decode().splitlines():
        if line and not line.startswith("#"):
            name, level, command = line.split("\t")
            out[name] = (level, command)
    return out


INDEX = index()


def test_index_lists_every_file_and_the_version() -> None:
    files = {p.name for p in GOLDEN_DIR.glob("*.txt")} - {"INDEX.txt"}
    assert files == set(INDEX)
    assert "HAProxy 2.6.12-1+deb12u4" in golden_bytes("INDEX.txt").decode()
    assert one_shot_text(golden_bytes("show-version.txt")) == "2.6.12-1+deb12u4"


PROMPT_SESSIONS = ("prompt-session.txt", "master-prompt-session.txt")


@pytest.mark.parametrize("name", sorted(set(INDEX) - set(PROMPT_SESSIONS)))
def test_one_shot_framing_of_every_file_is_chunking_independent(name: str) -> None:
    raw = golden_bytes(name)
    whole = OneShotFramer()
    whole.feed(raw)
    whole.close()
    bytewise = OneShotFramer()
    for i in range(len(raw)):
        bytewise.feed(raw[i:i + 1])
    bytewise.close()
    assert whole.next_reply() == bytewise.next_reply() == raw[:-1]
    # HAProxy ends every one-shot reply with LF (2.6 errors without their own LF included).
    assert raw.endswith(b"\n")


# -- show stat ------------------------------------------------------------------------------------


def csv_rows(name: str) -> list[dict[str, str]]:
    """A naive, independent reading of a golden `show stat` (csv module, by header name)."""
    lines = [line for line in golden_text(name).split("\n") if line]
    header = next(csv.reader([lines[0][2:]]))
    return [dict(zip(header, row, strict=True)) for row in csv.reader(lines[1:])]


def test_show_stat_full() -> None:
    stats = parse_stats(golden_text("show-stat.txt"))
    assert [f.name for f in stats.frontends] == ["fe_be_app", "fe_be_stick", "fe_be_hdr"]
    assert [b.name for b in stats.backends] == ["be_app", "be_stick", "be_hdr", "be_static"]
    servers = {(s.backend, s.name): s for s in stats.servers}
    assert list(servers) == [
        ("be_app", "s1"), ("be_app", "s2"), ("be_app", "s3"), ("be_app", "s4"),
        ("be_stick", "s1"), ("be_stick", "s2"), ("be_hdr", "s1"), ("be_hdr", "s2"),
        ("be_static", "s1"), ("be_static", "t1"),
    ]
    status = {key: s.status for key, s in servers.items()}
    assert status == {
        ("be_app", "s1"): "UP", ("be_app", "s2"): "DRAIN", ("be_app", "s3"): "MAINT",
        ("be_app", "s4"): "no check", ("be_stick", "s1"): "UP", ("be_stick", "s2"): "DOWN",
        ("be_hdr", "s1"): "UP", ("be_hdr", "s2"): "UP", ("be_static", "s1"): "no check",
        ("be_static", "t1"): "MAINT (via be_app/s3)",
    }
    s1 = servers["be_app", "s1"]
    assert (s1.backend_id, s1.id, s1.weight, s1.scur, s1.qcur, s1.stot) == (3, 1, 5, 1, 0, 1)
    assert (s1.check_status, s1.check_code, s1.check_rise, s1.check_fall, s1.check_health) == (
        "L7OK", 200, 2, 2, 3)
    assert s1.cookie == "s1"
    assert s1.active is True
    assert s1.backup is False
    assert s1.drained is False
    assert servers["be_app", "s2"].drained is True
    assert servers["be_app", "s2"].weight == 10
    assert servers["be_app", "s3"].check_health is None
    assert servers["be_app", "s4"].check_status is None
    down = servers["be_stick", "s2"]
    assert (down.check_status, down.check_code, down.check_health, down.last_check) == (
        "L7STS", 503, 0, "Service Unavailable")
    assert down.fully_healthy is False
    assert servers["be_static", "t1"].tracked == "be_app/s3"
    assert servers["be_static", "s1"].addr == "127.0.0.1:9"

    app = stats.backends[0]
    # BACKEND weight/act count only usable servers: s1 (5) + s4 (5), not the drained s2.
    assert (app.status, app.weight, app.active_servers, app.backup_servers) == ("UP", 10, 2, 0)
    assert (app.algo, app.mode, app.cookie, app.scur, app.id) == ("roundrobin", "http", "SRV",
                                                                  1, 3)
    assert stats.backends[3].algo == "static-rr"
    fe = stats.frontends[0]
    assert (fe.status, fe.mode, fe.scur, fe.id) == ("OPEN", "http", 1, 2)


def test_show_stat_matches_an_independent_reading() -> None:
    rows = csv_rows("show-stat.txt")
    servers = parse_server_stats(golden_text("show-stat.txt"))
    raw_servers = [r for r in rows if r["type"] == "2"]
    assert len(servers) == len(raw_servers) == 10
    for parsed, raw in zip(servers, raw_servers, strict=True):
        assert parsed.backend == raw["pxname"]
        assert parsed.name == raw["svname"]
        assert parsed.status == raw["status"]
        assert str(parsed.weight) == raw["weight"]
        assert str(parsed.scur) == raw["scur"]
        assert str(parsed.id) == raw["sid"]
        assert str(parsed.backend_id) == raw["iid"]
        assert (parsed.addr or "") == raw["addr"]
        assert str(parsed.last_change) == raw["lastchg"]
        assert str(parsed.lbtot) == raw["lbtot"]


def test_show_stat_filters() -> None:
    app_servers = parse_stats(golden_text("show-stat-be_app-servers.txt"))
    assert (app_servers.frontends, app_servers.backends) == ((), ())
    assert [s.name for s in app_servers.servers] == ["s1", "s2", "s3", "s4"]

    assert INDEX["show-stat-id-filter.txt"][1] == "show stat 3 4 2"
    (s2,) = parse_server_stats(golden_text("show-stat-id-filter.txt"))
    assert (s2.backend, s2.name, s2.backend_id, s2.id, s2.status) == ("be_app", "s2", 3, 2,
                                                                      "DRAIN")

    backends = parse_stats(golden_text("show-stat-backends.txt"))
    assert [b.name for b in backends.backends] == ["be_app", "be_stick", "be_hdr", "be_static"]
    assert backends.servers == ()
    assert backends.frontends == ()
    assert parse_server_stats(golden_text("show-stat-backends.txt")) == []

    frontends = parse_stats(golden_text("show-stat-frontends.txt"))
    assert [f.name for f in frontends.frontends] == ["fe_be_app", "fe_be_stick", "fe_be_hdr"]

    empty = parse_stats(golden_text("show-stat-no-rows.txt"))
    assert empty.servers == ()
    assert empty.backends == ()
    assert empty.frontends == ()


# -- show servers state / conn --------------------------------------------------------------------


def test_show_servers_state() -> None:
    states = {(s.backend, s.name): s for s in parse_servers_state(
        golden_text("show-servers-state.txt"))}
    assert len(states) == 10
    admin = {key: s.admin_state for key, s in states.items()}
    assert admin == {
        ("be_app", "s1"): AdminState.READY, ("be_app", "s2"): AdminState.DRAIN,
        ("be_app", "s3"): AdminState.MAINT, ("be_app", "s4"): AdminState.READY,
        ("be_stick", "s1"): AdminState.READY, ("be_stick", "s2"): AdminState.DRAIN,
        ("be_hdr", "s1"): AdminState.READY, ("be_hdr", "s2"): AdminState.READY,
        ("be_static", "s1"): AdminState.READY, ("be_static", "t1"): AdminState.MAINT,
    }
    assert states["be_app", "s2"].admin_flags == AdminFlag.FDRAIN
    assert states["be_app", "s3"].admin_flags == AdminFlag.FMAINT
    assert states["be_static", "t1"].admin_flags == AdminFlag.IMAINT
    assert states["be_stick", "s2"].op_state is OpState.STOPPED
    assert states["be_app", "s3"].op_state is OpState.STOPPED
    assert states["be_app", "s1"].op_state is OpState.RUNNING
    s1 = states["be_app", "s1"]
    assert (s1.backend_id, s1.id, s1.user_weight, s1.initial_weight) == (3, 1, 5, 10)
    assert (s1.check_status_code, s1.check_result, s1.check_health) == (15, 3, 3)  # L7OK, PASSED
    assert s1.has_checks
    assert s1.checks_enabled
    assert states["be_app", "s3"].check_state == 14  # configured, enabled, paused (MAINT)
    assert states["be_app", "s4"].has_checks is False
    assert states["be_stick", "s2"].check_status_code == 17  # L7STS
    assert all(s.fqdn is None and s.addr == "127.0.0.1" for s in states.values())
    assert states["be_static", "s1"].port == 9
    only_app = parse_servers_state(golden_text("show-servers-state-be_app.txt"))
    assert [s.name for s in only_app] == ["s1", "s2", "s3", "s4"]
    # Ports agree with show stat's addr column.
    for stat in parse_server_stats(golden_text("show-stat.txt")):
        state = states[stat.backend, stat.name]
        assert stat.addr == f"{state.addr}:{state.port}"


def test_show_servers_conn() -> None:
    conns = parse_servers_conn(golden_text("show-servers-conn.txt"))
    states = parse_servers_state(golden_text("show-servers-state.txt"))
    assert [(c.backend, c.name) for c in conns] == [(s.backend, s.name) for s in states]
    assert [c.port for c in conns] == [s.port for s in states]
    assert all(c.purge_delay == 5000 and c.idle_limit == -1 for c in conns)
    assert all(c.addr == "127.0.0.1" for c in conns)
    assert conns[0].used_max == 2


def test_join() -> None:
    servers = join_servers(parse_server_stats(golden_text("show-stat.txt")),
                           parse_servers_state(golden_text("show-servers-state.txt")))
    assert len(servers) == 10
    by_ref = {s.ref: s for s in servers}
    assert by_ref["be_app/s1"].to_dict() == {
        "backend": "be_app", "server": "s1", "id": 1, "address": "127.0.0.1",
        "port": by_ref["be_app/s1"].port, "status": "UP", "admin_state": "ready",
        "op_state": "running", "weight": 5, "effective_weight": 5, "initial_weight": 10,
        "scur": 1, "qcur": 0, "stot": 1, "check_status": "L7OK", "check_health": 3,
        "check_rise": 2, "check_fall": 2, "has_checks": True, "checks_enabled": True,
        "has_agent": False,
    }
    assert [s.ref for s in servers if s.up] == [
        "be_app/s1", "be_app/s2", "be_app/s4", "be_stick/s1", "be_hdr/s1", "be_hdr/s2",
        "be_static/s1"]


# -- small replies ---------------------------------------------------------------------------------


def test_show_info() -> None:
    text = golden_text("show-info.txt")
    info = parse_info(text)
    assert (info.name, info.version, info.release_date) == ("HAProxy", "2.6.12-1+deb12u4",
                                                           "2026/10/17")
    assert info.version_tuple == (2, 6, 12)
    assert (info.nbthread, info.process_num, info.stopping) == (2, 1, False)
    pid = re.search(r"^Pid: (\d+)$", text, re.M)
    assert pid is not None
    assert info.pid == int(pid.group(1))
    assert info.idle_pct is not None
    assert 0 <= info.idle_pct <= 100
    assert info.fields["Tainted"] == "0"
    assert info.fields["Unstoppable Jobs"] == "1"
    assert info.node
    assert info.to_dict()["version"] == "2.6.12-1+deb12u4"


def test_show_backend_and_weights() -> None:
    assert parse_backend_names(golden_text("show-backend.txt")) == [
        "be_app", "be_stick", "be_hdr", "be_static"]
    assert parse_weight(golden_text("get-weight-s1.txt")) == Weight(5, 10)
    assert parse_weight(golden_text("get-weight-s4.txt")) == Weight(5, 5)
    assert golden_text("show-cli-level-user.txt") == "user"


def test_show_sess() -> None:
    sessions = parse_sessions(golden_text("show-sess.txt"))
    assert len(sessions) == 2
    (request,) = [s for s in sessions if s.backend == "be_app"]
    assert (request.proto, request.frontend, request.server) == ("tcpv4", "fe_be_app", "s1")
    assert request.src is not None
    assert request.src.startswith("127.0.0.1:")
    assert request.age == 0
    (cli,) = [s for s in sessions if s.frontend == "GLOBAL"]
    assert (cli.proto, cli.backend, cli.server) == ("unix_stream", None, None)
    assert all(re.fullmatch(r"0x[0-9a-f]+", s.id) for s in sessions)


def test_show_map() -> None:
    entries = parse_map(golden_text("show-map.txt"))
    assert [(e.key, e.value) for e in entries] == [
        ("example.com", "be_app"), ("foo.example.com", "be_stick"),
        ("sp.example.com", "with-dash")]
    assert all(re.fullmatch(r"0x[0-9a-f]+", e.ref) for e in entries)


# -- stick tables ---------------------------------------------------------------------------------


def test_show_table_list() -> None:
    assert parse_tables(golden_text("show-table.txt")) == [
        TableInfo("be_hdr", "string", 102400, 4), TableInfo("be_stick", "ip", 102400, 2)]


def test_show_table_contents() -> None:
    table = parse_table(golden_text("show-table-be_hdr.txt"))
    assert table.info == TableInfo("be_hdr", "string", 102400, 4)
    assert [(e.key, e.server_id, e.server_key) for e in table.entries] == [
        ("alice", 1, None), ("carol", 1, "s1"), ("dave", 2, "s2"), ("with space", 2, None)]
    assert all(e.use == 0 and e.exp is not None and e.shard is None for e in table.entries)

    stick = parse_table(golden_text("show-table-be_stick.txt"))
    assert [(e.key, e.server_id, e.server_key) for e in stick.entries] == [
        ("10.0.0.1", 2, None), ("127.0.0.1", 1, "s1")]


def test_show_table_filters() -> None:
    filtered = parse_table(golden_text("show-table-be_hdr-filter.txt"))
    assert [e.key for e in filtered.entries] == ["dave", "with space"]
    assert INDEX["show-table-be_hdr-filter.txt"][1] == cmd.show_table(
        "be_hdr", where=[cmd.TableFilter.parse("server_id eq 2")]).line
    by_key = parse_table(golden_text("show-table-be_hdr-key.txt"))
    assert [e.key for e in by_key.entries] == ["with space"]
    assert INDEX["show-table-be_hdr-key.txt"][1] == cmd.show_table("be_hdr", key="with space").line
    assert parse_table(golden_text("show-table-be_stick-badkey.txt"), name="be_stick").entries == ()


def test_show_table_user_level() -> None:
    assert INDEX["show-table-be_stick-user.txt"][0] == "user"
    with pytest.raises(errors.PermissionDenied):
        parse_table(golden_text("show-table-be_stick-user.txt"))


# -- errors ---------------------------------------------------------------------------------------

ERRORS: list[tuple[str, Expect, type[errors.CommandError], str]] = [
    ("error-no-such-backend.txt", Expect.EMPTY, errors.NoSuchBackend, "No such backend."),
    ("error-no-such-server.txt", Expect.EMPTY, errors.NoSuchServer, "No such server."),
    ("error-bad-state.txt", Expect.EMPTY, errors.InvalidArgument,
     "'set server <srv> state' expects 'ready', 'drain' and 'maint'."),
    ("error-weight-garbage.txt", Expect.EMPTY, errors.InvalidArgument,
     "Empty weight string empty or preceded by garbage"),
    ("error-weight-range.txt", Expect.EMPTY, errors.InvalidArgument,
     "Absolute weight can only be between 0 and 256 inclusive."),
    ("error-weight-static.txt", Expect.EMPTY, errors.InvalidArgument,
     "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'."),
    ("error-servers-state-backend.txt", Expect.DATA, errors.NoSuchBackend, "Can't find backend."),
    ("error-stat-proxy.txt", Expect.DATA, errors.NoSuchBackend, "No such proxy."),
    ("error-no-such-table.txt", Expect.DATA, errors.NoSuchTable, "No such table"),
    ("error-table-filter.txt", Expect.DATA, errors.InvalidArgument,
     "Filter entry #1: Unknown data type"),
    ("error-no-such-map.txt", Expect.DATA, errors.NoSuchMap,
     "Unknown map identifier. Please use #<id> or <file>."),
    ("error-session-not-found.txt", Expect.DATA, errors.NoSuchSession, "Session not found."),
    ("error-no-such-session.txt", Expect.EMPTY, errors.NoSuchSession,
     "No such session (use 'show sess')."),
    ("error-unknown-command.txt", Expect.DATA, errors.UnknownCommand, "Unknown command"),
    ("error-del-server.txt", Expect.EMPTY, errors.NoSuchServer, "No such server."),
    ("error-add-server-backend.txt", Expect.MESSAGE, errors.NoSuchBackend, "No such backend."),
    ("error-permission-set.txt", Expect.EMPTY, errors.PermissionDenied, "Permission denied"),
    ("error-permission-sess.txt", Expect.DATA, errors.PermissionDenied, "Permission denied"),
]


def test_every_error_file_is_covered() -> None:
    assert {name for name, *_ in ERRORS} == {n for n in INDEX if n.startswith("error-")}


@pytest.mark.parametrize(("name", "expect", "cls", "reason"), ERRORS)
def test_error_replies(
    name: str, expect: Expect, cls: type[errors.CommandError], reason: str
) -> None:
    command = Command.raw(INDEX[name][1], expect=expect)
    raw = golden_bytes(name)
    framer = OneShotFramer()
    framer.feed(raw)
    framer.close()
    body = framer.next_reply()
    assert body is not None
    with pytest.raises(errors.CommandError) as info:
        check_reply(command, parse_reply(body_text(body)))
    assert type(info.value) is cls
    assert info.value.reason == reason
    assert info.value.severity is None  # one-shot: no severity-output
    assert info.value.command == INDEX[name][1]


# -- prompt-mode sessions -------------------------------------------------------------------------


def frame_all(framer: PromptFramer | MasterPromptFramer, data: bytes, step: int) -> list[bytes]:
    replies: list[bytes] = []
    for i in range(0, len(data), step):
        framer.feed(data[i:i + step])
        while (reply := framer.next_reply()) is not None:
            replies.append(reply)
    return replies


WORKER_COMMANDS: list[tuple[Command, type[errors.CommandError] | None, str]] = [
    (Command.build("prompt"), None, ""),
    (Command.build("set severity-output", "number", expect=Expect.EMPTY), None, ""),
    (Command.build("show version"), None, "2.6.12-1+deb12u4"),
    (cmd.set_weight("be_app/s4", 5), None, ""),
    (cmd.set_state("nosuch/s1", "drain"), errors.NoSuchBackend, "No such backend."),
    (Command.build("del server", "be_app/nosuch", expect=Expect.EMPTY), errors.NoSuchServer,
     "No such server."),
    (Command.raw("set server be_app/s1 weight abc", expect=Expect.EMPTY),
     errors.InvalidArgument, "Empty weight string empty or preceded by garbage"),
    (Command.raw("foobar"), errors.UnknownCommand, "Unknown command"),
    (Command.build("show backend"), None, "# name\nbe_app\nbe_stick\nbe_hdr\nbe_static"),
    (cmd.get_weight("be_app/s1"), None, "5 (initial 10)"),
]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 10_000])
def test_worker_prompt_session(step: int) -> None:
    """A real prompt-mode session with `set severity-output number` (what Connection does)."""
    stream = golden_bytes("prompt-session.txt")
    framer = PromptFramer()
    replies = frame_all(framer, stream, step)
    assert framer.pending == b""  # "quit" closed the session with no output
    assert len(replies) == len(WORKER_COMMANDS)
    for body, (command, cls, text) in zip(replies, WORKER_COMMANDS, strict=True):
        reply = parse_reply(body_text(body))
        if cls is None:
            assert check_reply(command, reply).text == text
        else:
            with pytest.raises(cls) as info:
                check_reply(command, reply)
            assert info.value.severity in (3, 6)
            assert info.value.reason == text
    # The informational tag on data, the error tag on refusals, the 2.6 missing LF:
    assert replies[2] == b"[6]: 2.6.12-1+deb12u4\n"
    assert replies[4] == b"[3]: No such backend.\n"
    assert replies[5] == b"[3]: No such server."
    assert parse_weight(parse_reply(body_text(replies[9])).text) == Weight(5, 10)


@pytest.mark.parametrize("step", [1, 2, 5, 64, 10_000])
def test_master_prompt_session(step: int) -> None:
    """A real master CLI session: every command routed with `@1 `, the last one to a PID that
    does not exist, after which the master closes without a prompt."""
    stream = golden_bytes("master-prompt-session.txt")
    framer = MasterPromptFramer()
    replies = frame_all(framer, stream, step)
    assert [body_text(r) for r in replies] == [
        "", "2.6.12-1+deb12u4", "", "No such backend.", "No such server.",
        "# name\nbe_app\nbe_stick\nbe_hdr\nbe_static", "5 (initial 10)",
    ]
    # No severity on the master: EMPTY commands still fail on the error text.
    with pytest.raises(errors.NoSuchBackend):
        check_reply(cmd.set_state("nosuch/s1", "drain"), parse_reply(body_text(replies[3])))
    # What Connection does when the master closes after an error without a prompt.
    partial = parse_reply(body_text(framer.pending))
    with pytest.raises(errors.NoSuchProcess) as info:
        check_reply(Command.build("show version"), partial, strict=False)
    assert info.value.reason == "Can't find the target PID matching the prefix '@!1'"
