"""The smaller replies: show info, show sess, show servers conn, show map, get weight,
show backend."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxyctl.errors import ProtocolError, UsageError
from haproxyctl.models.backends import parse_backend_names
from haproxyctl.models.conn import parse_servers_conn
from haproxyctl.models.info import Info, parse_info
from haproxyctl.models.maps import MapEntry, parse_map
from haproxyctl.models.session import parse_age, parse_sessions
from haproxyctl.models.weight import Weight, WeightSpec, parse_weight

# -- show info ------------------------------------------------------------------------------------

INFO = (
    "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nRelease_date: 2026/10/17\nNbthread: 2\n"
    "Nbproc: 1\nProcess_num: 1\nPid: 15522\nUptime: 0d 0h01m12s\nUptime_sec: 72\n"
    "Maxconn: 9970\nCurrConns: 0\nCumConns: 1049\nRun_queue: 1\nIdle_pct: 99\nnode: web1\n"
    "description:\nStopping: 0\nUnstoppable Jobs: 1\nTainted: 0\n"
)


def test_show_info() -> None:
    info = parse_info(INFO)
    assert (info.name, info.version, info.release_date) == ("HAProxy", "2.6.12-1+deb12u4",
                                                           "2026/10/17")
    assert (info.pid, info.process_num, info.nbthread, info.uptime_sec) == (15522, 1, 2, 72)
    assert (info.max_conn, info.current_conns, info.cumulative_conns) == (9970, 0, 1049)
    assert (info.run_queue, info.idle_pct) == (1, 99)
    assert info.stopping is False
    assert info.node == "web1"
    assert info.fields["description"] == ""
    assert info.fields["Unstoppable Jobs"] == "1"
    assert info.fields["Uptime"] == "0d 0h01m12s"
    assert info.version_tuple == (2, 6, 12)
    d = info.to_dict()
    assert d["pid"] == 15522
    assert d["fields"] == dict(info.fields)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("2.6.12-1+deb12u4", (2, 6, 12)), ("3.2.0", (3, 2, 0)), ("3.3-dev5-abc", (3, 3)),
     ("2.8.5-1ppa1~jammy", (2, 8, 5)), ("3.1.0.1", (3, 1, 0, 1)), ("weird", ()),
     ("2.9-dev12", (2, 9))],
)
def test_version_tuple(version: str, expected: tuple[int, ...]) -> None:
    assert parse_info(f"Version: {version}\n").version_tuple == expected


def test_version_tuple_never_crashes_on_odd_digits() -> None:
    """``str.isdigit`` is True for "²", which int() refuses: the property must not raise a bare
    ValueError on whatever text a version field holds."""
    info = parse_info("Version: 2.²\n")
    assert info.version_tuple[:1] == (2,)


def test_stopping() -> None:
    assert parse_info("Version: 1\nStopping: 1\n").stopping is True
    assert parse_info("Version: 1\n").stopping is False


@pytest.mark.parametrize(
    "reply", ["", "Pid: 1\n", "Version 2.6\n", "Version: 2.6\nPid: abc\n", "Version: 2\nxx\n"]
)
def test_bad_show_info(reply: str) -> None:
    with pytest.raises(ProtocolError):
        parse_info(reply)


def test_info_from_fields_requires_version() -> None:
    assert Info.from_fields({"Version": "3.0.0"}).pid is None
    with pytest.raises(ProtocolError, match="Version"):
        Info.from_fields({})


# -- show sess ------------------------------------------------------------------------------------

SESS = (
    "0x561129cfaa00: proto=tcpv4 src=127.0.0.1:33381 fe=fe_cookie be=be_cookie srv=s1 ts=00 "
    "epoch=0x2 age=1s calls=2 rate=0 cpu=0 lat=0 rq[f=49c40080h,i=0,an=8000h,rx=,wx=,ax=] "
    "rp[f=80400000h,i=0,an=1400000h,rx=29s,wx=,ax=] scf=[8,80h,fd=20] scb=[8,11h,fd=21] exp=1s "
    "rc=0 c_exp=\n"
    "0x7f043c053560: proto=unix_stream src=unix:1 fe=GLOBAL be=<NONE> srv=<none> ts=00 "
    "epoch=0x2 age=1d2h3m4s calls=1 rate=1 cpu=0 lat=0 rq[f=c08002h,i=0,an=00h,rx=30s,wx=,ax=] "
    "rp[f=80008002h] scf=[8,0h,fd=24] scb=[8,1h,fd=-1] exp=30s rc=0 c_exp=\n\n"
)


def test_show_sess() -> None:
    stream, cli = parse_sessions(SESS)
    assert (stream.id, stream.proto, stream.src) == ("0x561129cfaa00", "tcpv4", "127.0.0.1:33381")
    assert (stream.frontend, stream.backend, stream.server, stream.age) == (
        "fe_cookie", "be_cookie", "s1", 1)
    assert stream.raw.startswith("0x561129cfaa00: proto=tcpv4")
    assert (cli.frontend, cli.backend, cli.server) == ("GLOBAL", None, None)
    assert cli.age == ((1 * 24 + 2) * 60 + 3) * 60 + 4
    assert stream.to_dict()["server"] == "s1"


def test_show_sess_ignores_other_lines() -> None:
    assert parse_sessions("") == []
    assert parse_sessions("some banner\n  0x1: indented\n") == []


def test_show_sess_bad_line() -> None:
    with pytest.raises(ProtocolError):
        parse_sessions("0xnothex: proto=tcpv4\n")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("59s", 59), ("3m4s", 184), ("2h", 7200), ("1d", 86400), ("1d2h3m4s", 93784),
     ("", None), ("1x", None), ("s", None), ("-1s", None), ("1.5s", None)],
)
def test_parse_age(text: str, seconds: int | None) -> None:
    assert parse_age(text) == seconds


# -- show servers conn ----------------------------------------------------------------------------

CONN_HEADER = (
    "# bkname/svname bkid/svid addr port - purge_delay used_cur used_max need_est unsafe_nb "
    "safe_nb idle_lim idle_cur idle_per_thr[2]\n"
)


def test_show_servers_conn() -> None:
    conns = parse_servers_conn(
        CONN_HEADER
        + "be_cookie/s1 3/1 127.0.0.1 18081 - 5000 1 2 2 0 0 -1 0 0 0\n"
        # 2.6 printed fewer columns for dynamic servers (reference §5.3).
        "be_dyn/d2 11/1 127.0.0.1 18083 - 0 0 1 1 0 0 0 0\n"
    )
    s1, d2 = conns
    assert (s1.backend, s1.name, s1.addr, s1.port) == ("be_cookie", "s1", "127.0.0.1", 18081)
    assert (s1.purge_delay, s1.used_cur, s1.used_max, s1.need_est) == (5000, 1, 2, 2)
    assert (s1.unsafe_idle, s1.safe_idle, s1.idle_limit, s1.idle_cur) == (0, 0, -1, 0)
    assert (d2.backend, d2.name, d2.idle_limit, d2.idle_cur) == ("be_dyn", "d2", 0, 0)
    assert d2.to_dict()["port"] == 18083


def test_show_servers_conn_missing_columns_read_as_none() -> None:
    """Columns are found by header name and a column missing from the header must read as
    None -- also when the rows carry more values than the header has names, which is *always*
    the case with nbthread >= 2 (``idle_per_thr[2]`` is one name for two values)."""
    header = CONN_HEADER.replace(" idle_lim", "")
    (conn,) = parse_servers_conn(header + "be/s1 3/1 127.0.0.1 18081 - 5000 1 2 2 0 0 0 7 9\n")
    assert conn.idle_cur == 0
    assert conn.idle_limit is None


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "Can't find backend.",
        CONN_HEADER + "nodash 3/1 127.0.0.1 18081 - 5000 1 2 2 0 0 -1 0 0 0\n",
        CONN_HEADER + "be/s1 3/1 127.0.0.1 port - 5000 1 2 2 0 0 -1 0 0 0\n",
    ],
)
def test_bad_show_servers_conn(reply: str) -> None:
    with pytest.raises(ProtocolError):
        parse_servers_conn(reply)


# -- show map -------------------------------------------------------------------------------------


def test_show_map() -> None:
    entries = parse_map(
        "0x561129c17580 example.com be_cookie\n0x7f043c054bb0 semi.example.com "
        "value;with;semicolons\n0x561129e44e80 sp.example.com value with spaces\n"
        "0x7f043c054c00 q.example.com \"quoted\n0x561129e44ed0 bs.example.com back\\slash\n"
        "0x1 lonely\n\n"
    )
    assert entries[0] == MapEntry("0x561129c17580", "example.com", "be_cookie")
    assert entries[1].value == "value;with;semicolons"
    assert entries[2].value == "value with spaces"
    assert entries[3].value == '"quoted'
    assert entries[4].value == "back\\slash"
    assert entries[5] == MapEntry("0x1", "lonely", None)
    assert entries[0].to_dict() == {"ref": "0x561129c17580", "key": "example.com",
                                    "value": "be_cookie"}
    assert parse_map("") == []


@pytest.mark.parametrize(
    "reply",
    ["Unknown map identifier. Please use #<id> or <file>.",
     "# id (file) description\n2 (/x.map) pattern loaded from file", "0x1\n"],
)
def test_bad_show_map(reply: str) -> None:
    with pytest.raises(ProtocolError):
        parse_map(reply)


# -- get weight -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "weight"),
    [("1 (initial 1)", Weight(1, 1)), ("0 (initial 10)\n", Weight(0, 10)),
     ("256 (initial 100)", Weight(256, 100))],
)
def test_get_weight(reply: str, weight: Weight) -> None:
    assert parse_weight(reply) == weight


@pytest.mark.parametrize("reply", ["", "No such server.", "1", "1 (initial x)", "-1 (initial 1)"])
def test_bad_get_weight(reply: str) -> None:
    with pytest.raises(ProtocolError):
        parse_weight(reply)


@pytest.mark.parametrize(
    ("spec", "text"),
    [(0, "0"), (256, "256"), ("50%", "50%"), (" 7 ", "7"), ("100%", "100%"), ("0%", "0%"),
     ("25600%", "25600%"), (WeightSpec(3), "3")],
)
def test_weight_spec(spec: int | str | WeightSpec, text: str) -> None:
    assert str(WeightSpec.parse(spec)) == text


@pytest.mark.parametrize(
    "spec", [257, -1, "abc", True, False, "300", "-5", "5.5", "", "%", "50 %", "25601%", 1.5,
             None, "0x10"],
)
def test_weight_spec_refuses(spec: object) -> None:
    with pytest.raises(UsageError) as info:
        WeightSpec.parse(spec)  # type: ignore[arg-type]
    assert info.value.field == "weight"


@given(st.integers(min_value=0, max_value=256))
def test_weight_spec_absolute_range(value: int) -> None:
    assert WeightSpec.parse(value) == WeightSpec(value, False)
    assert WeightSpec.parse(f"{value}%") == WeightSpec(value, True)


# -- show backend ---------------------------------------------------------------------------------


def test_show_backend() -> None:
    assert parse_backend_names("# name\nbe_cookie\nbe_stick\n\n") == ["be_cookie", "be_stick"]
    assert parse_backend_names("# name\n") == []


@pytest.mark.parametrize("reply", ["", "be_cookie\nbe_stick", "Permission denied"])
def test_bad_show_backend(reply: str) -> None:
    with pytest.raises(ProtocolError):
        parse_backend_names(reply)
