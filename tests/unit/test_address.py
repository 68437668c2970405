"""Socket addresses as users type them (``-s``, ``HAPROXYCTL_SOCKET``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from haproxyctl.address import Address, parse_address
from haproxyctl.errors import UsageError


@pytest.mark.parametrize(
    ("text", "address", "route"),
    [
        ("/run/haproxy/admin.sock", Address("unix", path="/run/haproxy/admin.sock"), ""),
        ("unix:/p", Address("unix", path="/p"), ""),
        ("  /p  ", Address("unix", path="/p"), ""),
        ("relative.sock", Address("unix", path="relative.sock"), ""),
        ("tcp://h:1", Address("tcp", host="h", port=1), ""),
        ("tcp://127.0.0.1:9999", Address("tcp", host="127.0.0.1", port=9999), ""),
        ("tcp://[::1]:1", Address("tcp", host="::1", port=1), ""),
        ("tcp://[fe80::1:2]:65535", Address("tcp", host="fe80::1:2", port=65535), ""),
        ("master:/p", Address("unix", path="/p", master=True, worker="1"), "@1 "),
        ("master:/p@2", Address("unix", path="/p", master=True, worker="2"), "@2 "),
        ("master:/p@!123", Address("unix", path="/p", master=True, worker="!123"), "@!123 "),
        ("master:unix:/p@3", Address("unix", path="/p", master=True, worker="3"), "@3 "),
        ("master:tcp://h:1@1", Address("tcp", host="h", port=1, master=True, worker="1"), "@1 "),
        ("master:tcp://[::1]:7@!9", Address("tcp", host="::1", port=7, master=True,
                                             worker="!9"), "@!9 "),
    ],
)
def test_forms(text: str, address: Address, route: str) -> None:
    parsed = parse_address(text)
    assert parsed == address
    assert parsed.route_prefix == route
    assert parse_address(str(parsed)) == parsed


def test_path_like() -> None:
    assert parse_address(Path("/run/haproxy/admin.sock")) == Address(
        "unix", path="/run/haproxy/admin.sock")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("tcp://h", "expected tcp://host:port"),
        ("tcp://h:", "expected tcp://host:port"),
        ("tcp://:80", "expected tcp://host:port"),
        ("tcp://h:0", "must be 1-65535"),
        ("tcp://h:70000", "must be 1-65535"),
        ("tcp://h:65536", "must be 1-65535"),
        ("tcp://h:x", "expected tcp://host:port"),
        ("tcp://::1:80", "expected tcp://host:port"),
        ("http://x", "unsupported socket address"),
        ("udp://h:1", "unsupported socket address"),
        ("unix:", "empty path"),
        ("master:", "has no socket"),
        ("master:@1", "has no socket"),
        ("/p\n", "control character"),
        ("/p\rx", "control character"),
        ("/p\0", "control character"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_address(text)
    assert info.value.field == "socket"
    assert info.value.value == text


def test_str_forms() -> None:
    assert str(parse_address("/p")) == "unix:/p"
    assert str(parse_address("tcp://[::1]:1")) == "tcp://[::1]:1"
    assert str(parse_address("master:/p")) == "master:/p@1"
    assert str(parse_address("master:tcp://h:1@!5")) == "master:tcp://h:1@!5"


path_chars = st.sampled_from("abz019._-/ @!:")
paths = st.text(alphabet=path_chars, min_size=1, max_size=20).filter(
    lambda p: p.strip() == p and "://" not in p and not p.startswith(("unix:", "master:", "tcp:"))
)
hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9.\-]{0,15}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
ports = st.integers(min_value=1, max_value=65535)
workers = st.one_of(st.integers(min_value=1, max_value=64).map(str),
                    st.integers(min_value=1, max_value=4_194_304).map(lambda n: f"!{n}"))


@given(
    st.one_of(
        st.builds(lambda p: Address("unix", path=p), paths),
        st.builds(lambda h, p: Address("tcp", host=h, port=p), hosts, ports),
        st.builds(lambda p, w: Address("unix", path=p, master=True, worker=w), paths, workers),
        st.builds(lambda h, p, w: Address("tcp", host=h, port=p, master=True, worker=w), hosts,
                  ports, workers),
    )
)
def test_str_round_trips(address: Address) -> None:
    assert parse_address(str(address)) == address


@given(st.text(max_size=40))
@example("master:unix:tcp://h:1")
@example("master:unix:unix:p")
def test_parse_address_returns_or_raises_usage_error(text: str) -> None:
    try:
        address = parse_address(text)
    except UsageError:
        return
    assert address.kind in ("unix", "tcp")
    if address.kind == "tcp":
        assert address.port is not None
        assert 0 < address.port < 65536


@pytest.mark.parametrize(
    "text",
    [
        # A master socket whose path starts with "unix:" or contains "://" needs the explicit
        # "unix:" prefix; str() must keep it or the address changes meaning.
        "master:unix:tcp://h:1",
        "master:unix:unix:p",
        "master:unix:/odd://path",
    ],
)
def test_str_round_trips_for_master_paths_that_need_the_unix_prefix(text: str) -> None:
    address = parse_address(text)
    assert address.kind == "unix"
    assert parse_address(str(address)) == address
