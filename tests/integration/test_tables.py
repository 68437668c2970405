"""Stick tables at size against a real HAProxy: streamed listing, owners, bulk re-pin, the CLI.

The lab of this module (its own, see ``tables_spec``):

* ``web``: a string table on the ``X-User`` header (``srvkey name``), two app servers, so
  real traffic creates entries *with* ``server_key``;
* ``ipt``: an ip table (``stick on src``), three servers without apps;
* ``pins`` / ``users``: a table declared in ``pins`` and used by ``users`` (``stick on src
  table pins``), whose ids therefore name ``users``'s servers;
* ``tracked``: an ip table that stores no ``server_id`` (tracking only), where every ``set
  table ... data.server_id`` is refused;
* ``counted``: persistence on ``X-User`` whose table is also tracked (``track-sc0``), as
  sites do to rate-limit, so a running request holds its user's entry (``use=1``).

Ground truth is read with the lab's raw socket helpers, never with the client under test.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Rig, Wire, run_cli, start_rig

from haproxyctl import (
    Client,
    NoSuchBackend,
    NoSuchTable,
    PartialFailure,
    PermissionDenied,
    TableEntry,
    UsageError,
)
from haproxyctl.lab import BackendSpec, LabSpec, ServerSpec, raw_command
from haproxyctl.lab.tables import fill_table, ip_key, pipeline_lines
from haproxyctl.models.table import TableReader

pytestmark = pytest.mark.integration

WEB, IPT, PINS, USERS, TRACKED = "web", "ipt", "pins", "users", "tracked"
COUNTED = "counted"
TABLES = (WEB, IPT, PINS, TRACKED, COUNTED)


def _no_app(name: str) -> ServerSpec:
    return ServerSpec(name, port=9, app=False, check=False)


def tables_spec(map_path: str) -> LabSpec:
    quiet: dict[str, Any] = {"checks": False, "frontend": False}
    return LabSpec([
        BackendSpec(WEB, [ServerSpec("w1"), ServerSpec("w2")], persistence="stick-header",
                    checks=False),
        BackendSpec(IPT, [_no_app("s1"), _no_app("s2"), _no_app("s3")],
                    persistence="stick-src", **quiet),
        BackendSpec(PINS, [_no_app("p1")], extra=["stick-table type ip size 200k expire 30m"],
                    **quiet),
        BackendSpec(USERS, [_no_app("u1"), _no_app("u2")], extra=[f"stick on src table {PINS}"],
                    **quiet),
        BackendSpec(TRACKED, [_no_app("t1")],
                    extra=["stick-table type ip size 1k expire 30m store gpc0",
                           "http-request track-sc0 src"], **quiet),
        BackendSpec(COUNTED, [ServerSpec("c1")], checks=False,
                    extra=["stick-table type string len 64 size 1k expire 30m "
                           "store server_id,http_req_cnt",
                           "http-request track-sc0 req.hdr(X-User)",
                           "stick on req.hdr(X-User)"]),
    ])


@pytest.fixture(scope="module")
def lab_rig() -> Iterator[Rig]:
    with start_rig(tables_spec) as rig:
        yield rig


@pytest.fixture
def rig(lab_rig: Rig) -> Iterator[Rig]:
    yield lab_rig
    for table in TABLES:
        lab_rig.raw(f"clear table {table}")


@pytest.fixture
def client(rig: Rig) -> Iterator[Client]:
    with Client(rig.admin, timeout=30) as c:
        yield c


def raw_entries(rig: Rig, table: str) -> dict[str, str]:
    """``show table`` as {printed key: rest of the line}, read raw."""
    out = {}
    for line in rig.raw(f"show table {table}").splitlines()[1:]:
        if line:
            _ptr, _, rest = line.partition(": key=")
            key, _, fields = rest.partition(" use=")
            out[key] = fields
    return out


def visit(rig: Rig, user: str) -> str:
    """One request to ``web`` as ``user``; the name of the server that answered."""
    conn = http.client.HTTPConnection("127.0.0.1", rig.lab.frontend_port(WEB), timeout=10)
    try:
        conn.request("GET", "/", headers={"X-User": user})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        return str(response.getheader("X-Server"))
    finally:
        conn.close()


# --- iter_table / table ------------------------------------------------------------------------


def test_iter_table_yields_entries_while_haproxy_still_sends(client: Client, rig: Rig,
                                                             wire: Wire) -> None:
    n = 20_000
    fill_table(rig.admin, IPT, [ip_key(i) for i in range(n)], [1, 2, 3])
    total = len(raw_command(rig.admin, f"show table {IPT}").encode())
    client.version()
    wire.clear()
    with client.iter_table(IPT) as entries:
        assert entries.info.used == n
        first = next(entries)
        assert isinstance(first, TableEntry)
        # The first entry came out long before the 1.5 MB reply was all read.
        assert wire.bytes_received < total / 2
        rest = list(entries)
    got = {e.key: e.server_id for e in [first, *rest]}
    assert got == {ip_key(i): i % 3 + 1 for i in range(n)}
    assert wire.commands() == [f"show table {IPT}"]


def test_table_is_built_on_the_stream(client: Client, rig: Rig) -> None:
    fill_table(rig.admin, IPT, [ip_key(i) for i in range(3000)], [2])
    table = client.table(IPT)
    assert table.info.used == 3000
    assert len(table.entries) == 3000
    assert {e.server_id for e in table.entries} == {2}
    assert all(e.exp is not None and e.use == 0 for e in table.entries)


def test_abandoned_iteration_leaves_a_working_client(client: Client, rig: Rig) -> None:
    fill_table(rig.admin, IPT, [ip_key(i) for i in range(20_000)], [1])
    for entry in client.iter_table(IPT):
        assert entry.server_id == 1
        break  # the rest of the reply is still coming: the session is dropped
    assert sorted(t.name for t in client.tables()) == sorted(TABLES)
    with client.iter_table(IPT) as entries:
        next(entries)
    assert len(client.table(IPT).entries) == 20_000


def test_commands_from_inside_the_loop_are_refused_not_interleaved(client: Client,
                                                                   rig: Rig) -> None:
    fill_table(rig.admin, IPT, [ip_key(i) for i in range(5000)], [1])
    seen = 0
    with client.iter_table(IPT) as entries:
        for _ in entries:
            seen += 1
            if seen == 10:
                with pytest.raises(UsageError, match="streamed reply"):
                    client.tables()
    assert seen == 5000  # the refusal did not disturb the stream
    # and the client works afterwards
    assert {t.name: t.used for t in client.tables()}[IPT] == 5000


def test_iter_table_errors_raise_at_the_call(client: Client, rig: Rig) -> None:
    with pytest.raises(NoSuchTable):
        client.iter_table("nosuch")
    with pytest.raises(UsageError, match="not valid for stick table"):
        client.iter_table(IPT, key="notanip")
    with pytest.raises(UsageError):
        client.iter_table(IPT, where=["server_id == 2"])
    with Client(rig.lab.user_socket) as user, pytest.raises(PermissionDenied):
        user.iter_table(IPT)
    assert client.version()  # still usable


def raw_keys(address: str, table: str, *condition: str) -> list[str]:
    """The keys of ``table`` in the order HAProxy dumps them (raw ``show table``). 2.6 dumps
    an ip table in key order; 3.0 splits tables into shards and dumps shard after shard, so
    the order is HAProxy's, not the keys'. Only for keys printed without escapes."""
    reply = raw_command(address, " ".join(["show table", table, *condition]), timeout=30)
    return [line.split(" key=", 1)[1].split(" ", 1)[0]
            for line in reply.splitlines() if " key=" in line]


def test_iter_table_by_key_and_by_filter(client: Client, rig: Rig) -> None:
    fill_table(rig.admin, IPT, [ip_key(i) for i in range(30)], [1, 2, 3])
    (one,) = client.iter_table(IPT, key=ip_key(4))
    assert (one.key, one.server_id) == (ip_key(4), 2)
    absent = client.iter_table(IPT, key="10.9.9.9")
    assert absent.info.used == 30  # HAProxy printed nothing; the header comes from `show table`
    assert list(absent) == []
    twos = [e.key for e in client.iter_table(IPT, where=["server_id eq 2"])]
    assert sorted(twos) == sorted(ip_key(i) for i in range(30) if i % 3 == 1)
    assert twos == raw_keys(rig.admin, IPT, "data.server_id eq 2")  # in HAProxy's order


# --- owners --------------------------------------------------------------------------------------


def test_owners_by_server_id_and_filters(client: Client, rig: Rig, wire: Wire) -> None:
    fill_table(rig.admin, IPT, [ip_key(i) for i in range(3000)], [1, 2, 3, 7])
    rig.raw(f"set table {IPT} key 10.200.0.1 data.server_id 0")  # pinned nowhere
    owners = client.table_owners(IPT)
    assert {k: len(v) for k, v in owners.items()} == {"s1": 750, "s2": 750, "s3": 750,
                                                      "#7": 750}
    assert sorted(owners["s2"]) == sorted(ip_key(i) for i in range(3000) if i % 4 == 1)

    wire.clear()
    only_2 = client.table_owners(IPT, where=["server_id eq 2"])
    assert only_2 == {"s2": owners["s2"]}
    assert wire.commands() == [f"show servers state {IPT}", f"show table {IPT} data.server_id eq 2"]

    wire.clear()
    named = client.table_owners(IPT, where=["server_id ge 3"], servers={3: "x", 7: "y"})
    assert {k: len(v) for k, v in named.items()} == {"x": 750, "y": 750}
    assert wire.commands() == [f"show table {IPT} data.server_id ge 3"]


def test_owners_prefer_server_key_as_haproxy_does(client: Client, rig: Rig) -> None:
    """Traffic stores server_key (the name, ``srvkey name``); a server_id changed from the CLI
    does not move the user while server_key is set; a re-pin (clear + set) does."""
    users = [f"user {i};x" for i in range(6)]  # a space and a ';' in every key
    first = {u: visit(rig, u) for u in users}
    owners = client.table_owners(WEB)
    assert {u: o for o, keys in owners.items() for u in keys} == first
    alice = users[0]
    other = "w2" if first[alice] == "w1" else "w1"
    other_id = 2 if other == "w2" else 1
    client.table_set(WEB, alice, {"server_id": other_id})  # server_id changes, server_key not
    assert visit(rig, alice) == first[alice]
    assert alice in client.table_owners(WEB)[first[alice]]

    results = client.repin(WEB, [(alice, other_id)])
    assert [r.ok for r in results] == [True]
    assert alice in client.table_owners(WEB)[other]
    assert visit(rig, alice) == other  # HAProxy follows server_id now
    assert visit(rig, alice) == other


def test_owners_of_a_table_used_by_another_backend(client: Client, rig: Rig) -> None:
    fill_table(rig.admin, PINS, [ip_key(i) for i in range(10)], [1, 2])
    owners = client.table_owners(PINS, backend=USERS)
    assert {name: sorted(keys) for name, keys in owners.items()} == {
        "u1": [ip_key(i) for i in range(0, 10, 2)], "u2": [ip_key(i) for i in range(1, 10, 2)]}
    # Named after the table's own backend (one server, p1), id 2 is nobody there.
    assert set(client.table_owners(PINS)) == {"p1", "#2"}
    with pytest.raises(NoSuchBackend):
        client.table_owners(PINS, backend="nosuch")
    with pytest.raises(UsageError, match="not both"):
        client.table_owners(PINS, backend=USERS, servers={1: "a"})


# --- repin ---------------------------------------------------------------------------------------


def test_repin_10000_keys(client: Client, rig: Rig, wire: Wire) -> None:
    keys = [ip_key(i) for i in range(10_000)]
    fill_table(rig.admin, IPT, keys, [1])
    client.version()
    wire.clear()
    results = client.repin(IPT, [(k, 3) for k in keys])
    assert len(results) == 10_000
    assert all(r.ok for r in results)
    assert results[5].target == keys[5]
    assert results[5].command == f"set table {IPT} key {keys[5]} data.server_id 3"
    lines = wire.commands()
    assert lines[0] == "show table"  # the table's type, to check every key
    assert lines[1:5] == [f"clear table {IPT} key {keys[0]}",
                          f"set table {IPT} key {keys[0]} data.server_id 3",
                          f"clear table {IPT} key {keys[1]}",
                          f"set table {IPT} key {keys[1]} data.server_id 3"]
    assert len(lines) == 1 + 20_000
    # Written in groups of at most 64 KB (each read before the next is written).
    assert all(len(data) <= 64 * 1024 for data in wire.sent)
    assert set(raw_entries(rig, IPT)) == set(keys)
    assert {f.split(" server_id=")[1].split(" ")[0] for f in raw_entries(rig, IPT).values()} \
        == {"3"}


def test_repin_keys_with_a_space_and_a_semicolon(client: Client, rig: Rig, wire: Wire) -> None:
    keys = ["with space", "semi;clear table web", "back\\slash", "tab\there", "café"]
    rig.raw(f"set table {WEB} key keep data.server_id 1")
    wire.clear()
    results = client.repin(WEB, [(k, 2) for k in keys])
    assert all(r.ok for r in results)
    # One command per line, each key one escaped word: the ';' did not start a second command.
    assert [line for line in wire.commands() if line != "show table"] == [
        line for k in ["with\\ space", "semi\\;clear\\ table\\ web", "back\\\\slash",
                       "tab\\\there", "café"]
        for line in (f"clear table {WEB} key {k}", f"set table {WEB} key {k} data.server_id 2")]
    stored = raw_entries(rig, WEB)
    assert set(stored) == {"keep", "with\\ space", "semi;clear\\ table\\ web", "back\\\\slash",
                           "tab\\there", "caf\\xC3\\xA9"}
    assert {e.key for e in client.iter_table(WEB)} == {"keep", *keys}
    assert client.table_owners(WEB) == {"w1": ["keep"], "w2": client.table_owners(WEB)["w2"]}
    assert sorted(client.table_owners(WEB)["w2"]) == sorted(keys)


def test_repin_refuses_an_invalid_key_before_any_change(client: Client, rig: Rig,
                                                        wire: Wire) -> None:
    fill_table(rig.admin, IPT, [ip_key(i) for i in range(5)], [1])
    before = raw_entries(rig, IPT)
    client.version()
    bad_moves: list[list[tuple[str, int]]] = [
        [(ip_key(0), 2), ("notanip", 2)],
        [(ip_key(0), 2), ("10.0.0.1;clear table ipt", 2)],
        [(ip_key(0), 2), ("10.0.0.1\nclear table ipt", 2)],
        [(ip_key(0), 0)],
    ]
    for moves in bad_moves:
        wire.clear()
        with pytest.raises(UsageError):
            client.repin(IPT, moves)
        assert not [line for line in wire.commands() if not line.startswith("show ")]
    assert raw_entries(rig, IPT).keys() == before.keys()
    assert {f.split(" server_id=")[1].split(" ")[0] for f in raw_entries(rig, IPT).values()} \
        == {"1"}


def test_repin_reports_each_refused_key(client: Client, rig: Rig) -> None:
    """``tracked`` stores no server_id: every set is refused, after HAProxy created the entry
    (reference §7), which repin removes again."""
    with pytest.raises(PartialFailure) as info:
        client.repin(TRACKED, [("10.0.0.1", 1), ("10.0.0.2", 1)])
    results = info.value.results
    assert [(r.target, r.ok) for r in results] == [("10.0.0.1", False), ("10.0.0.2", False)]
    assert results[0].error is not None
    assert "not stored" in results[0].error.reason
    assert raw_entries(rig, TRACKED) == {}
    again = client.repin(TRACKED, [("10.0.0.1", 1)], raise_on_error=False)
    assert not again[0].ok
    assert raw_entries(rig, TRACKED) == {}


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_table_show_streams_text_and_json(rig: Rig) -> None:
    n = 2500  # more than the 1,000 rows the text output sizes its columns on
    fill_table(rig.admin, IPT, [ip_key(i) for i in range(n)], [1, 2])
    text = run_cli("-s", rig.admin, "table", "show", IPT)
    assert (text.returncode, text.stderr) == (0, "")
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["KEY", "SERVER_ID", "SERVER_KEY", "EXPIRES(MS)", "DATA"]
    assert len(lines) == n + 1
    order = raw_keys(rig.admin, IPT)  # the CLI prints in HAProxy's order
    server_of = {ip_key(i): str(i % 2 + 1) for i in range(n)}
    assert [line.split()[0] for line in lines[1:]] == order
    assert lines[1].split()[:3] == [order[0], server_of[order[0]], "-"]
    assert lines[-1].split()[:3] == [order[-1], server_of[order[-1]], "-"]

    shown = run_cli("-s", rig.admin, "--json", "table", "show", IPT)
    assert (shown.returncode, shown.stderr) == (0, "")
    doc = json.loads(shown.stdout)
    assert list(doc) == ["name", "type", "size", "used", "entries"]
    assert (doc["name"], doc["type"], doc["used"]) == (IPT, "ip", n)
    assert [(e["key"], e["data"]["server_id"]) for e in doc["entries"]] == [
        (key, int(server_of[key])) for key in order]
    assert set(doc["entries"][0]) == {"ptr", "key", "use", "exp", "shard", "data"}

    filtered = run_cli("-s", rig.admin, "--json", "table", "show", IPT, "--where",
                       "server_id eq 2")
    assert len(json.loads(filtered.stdout)["entries"]) == n // 2
    missing = run_cli("-s", rig.admin, "table", "show", "nosuch")
    assert missing.returncode == 1
    assert missing.stdout == ""


def test_cli_table_show_into_a_closed_pipe(rig: Rig) -> None:
    fill_table(rig.admin, IPT, [ip_key(i) for i in range(20_000)], [1])
    shown = subprocess.run(
        f"{sys.executable} -m haproxyctl -s {rig.admin} table show {IPT} | head -2",
        shell=True, capture_output=True, text=True, timeout=30, check=False)
    assert shown.stdout.splitlines()[1].split()[0] == raw_keys(rig.admin, IPT)[0]
    assert shown.stderr == ""  # no traceback, no "Exception ignored" at exit
    assert raw_command(rig.admin, "show table").count("used:20000") == 1


def test_reader_on_raw_pipelined_reply(rig: Rig) -> None:
    """The reader parses what a plain prompt-mode session receives, too."""
    fill_table(rig.admin, IPT, [ip_key(i) for i in range(100)], [3])
    (body,) = pipeline_lines(rig.admin, [f"show table {IPT}\n".encode()])
    entries = TableReader([body + b"\n"]).read_all()
    assert [e.key for e in entries] == raw_keys(rig.admin, IPT)
    assert sorted(e.key for e in entries) == sorted(ip_key(i) for i in range(100))


def _slow_request(rig: Rig, backend: str, user: str) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", rig.lab.frontend_port(backend), timeout=10)
    conn.request("GET", "/slow?s=1.5", headers={"X-User": user})
    return conn


def _visit(rig: Rig, backend: str, user: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", rig.lab.frontend_port(backend), timeout=10)
    try:
        conn.request("GET", "/", headers={"X-User": user})
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_pins_mark_the_users_whose_request_is_running(client: Client, rig: Rig) -> None:
    """``table_pins`` says whose entry a stream holds right now (``use`` > 0). HAProxy holds
    an entry for a whole request only when the request *tracks* it (``track-sc``, here on the
    same table); a re-pin of that user would be undone by its response."""
    _visit(rig, COUNTED, "idle one")
    _visit(rig, COUNTED, "busy one")
    conn = _slow_request(rig, COUNTED, "busy one")
    try:
        deadline = time.monotonic() + 5
        pins = client.table_pins(COUNTED)
        while not pins.busy and time.monotonic() < deadline:
            time.sleep(0.05)
            pins = client.table_pins(COUNTED)
        assert pins.busy == {"busy one"}
        assert pins.idle("idle one")
        assert not pins.idle("busy one")
        assert set(pins.owners) == {"c1"}
        assert sorted(pins.owners["c1"]) == ["busy one", "idle one"]
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    after = client.table_pins(COUNTED)
    assert after.busy == frozenset()
    assert after.owners == client.table_owners(COUNTED)


def test_plain_stick_on_holds_no_entry_while_a_request_runs(client: Client, rig: Rig) -> None:
    """With ``stick on`` alone HAProxy takes the entry and lets it go at once
    (``process_sticking_rules``: ``stktable_touch_local(..., 1)``), and stores a fresh one
    when the response comes: ``use`` stays 0 while the request runs, so nobody looks busy
    and a re-pin made meanwhile is undone by the response (what the rollout's re-reads are
    for)."""
    assert visit(rig, "slow one") in ("w1", "w2")
    conn = _slow_request(rig, WEB, "slow one")
    try:
        time.sleep(0.5)
        assert client.table_pins(WEB).busy == frozenset()
        assert rig.raw(f"show table {WEB}").count(" use=0 ") == 1
        assert conn.getresponse().status == 200
    finally:
        conn.close()
