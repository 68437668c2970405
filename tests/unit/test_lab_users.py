"""The pure parts of the user simulation (haproxyctl.lab.users): source addresses, the cookie
jar, the clock, argument checks. The simulation itself runs against a real lab in
tests/integration/test_users.py."""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import pytest

from haproxyctl.lab.users import UserSimulation, _Clock, _User, source_address


def test_source_addresses_are_unique_loopback_addresses() -> None:
    addresses = [source_address(i) for i in range(5000)]
    assert len(set(addresses)) == len(addresses)
    for text in addresses:
        address = ipaddress.IPv4Address(text)
        assert address.is_loopback
        assert text.rsplit(".", 1)[1] not in ("0", "1", "255")  # never HAProxy's 127.0.0.1
    # The first 245 users keep the addresses they always had; 127.0.1.x is left to the e2e
    # rig's Browser class.
    assert addresses[:3] == ["127.0.0.10", "127.0.0.11", "127.0.0.12"]
    assert addresses[244] == "127.0.0.254"
    assert not any(a.startswith("127.0.1.") for a in addresses)
    with pytest.raises(ValueError, match="no source address"):
        source_address(-1)


def test_cookie_jar() -> None:
    user = _User(3, [], "0:3", "header")
    assert user.headers() == [("X-User", "user3")]
    user.remember_cookies(["SRV=s1; path=/", "other=1", "broken", "=x"])
    assert user.jar == {"SRV": "s1", "other": "1"}
    assert user.headers()[0] == ("Cookie", "SRV=s1; other=1")
    # The last Set-Cookie applied wins; Max-Age=0 deletes.
    user.remember_cookies(["SRV=s2; path=/"])
    user.remember_cookies(["other=; Max-Age=0"])
    assert user.jar == {"SRV": "s2"}
    assert _User(0, [], "0:0", "cookie").headers() == []


def test_clock_is_strictly_increasing() -> None:
    clock = _Clock(0.0)
    readings = [clock.now() for _ in range(10_000)]
    assert all(a < b for a, b in itertools.pairwise(readings))


@pytest.mark.parametrize("kwargs", [
    {"n_users": 0},
    {"n_users": 2, "browsers": 3},
    {"n_users": 2, "browsers": 1, "connections": 1},
    {"n_users": 2, "connections": 7},
    {"n_users": 2, "slow_fraction": 1.5},
    {"n_users": 2, "max_requests": 0},
    {"n_users": 2, "think_time": -1},
    {"n_users": 2, "persistence": "cookies"},
])
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        UserSimulation("127.0.0.1", 1, **kwargs)


def test_not_started() -> None:
    sim = UserSimulation("127.0.0.1", 1, n_users=1)
    assert sim.wait(0) is True
    sim.stop()
    assert sim.report().total == 0
    assert sim.outcomes() == []
    assert sim.requests_done == 0
    assert sim.cpu_seconds is None
