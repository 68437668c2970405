"""The same client over every transport: unix socket, TCP socket, master CLI."""

from __future__ import annotations

import pytest
from conftest import APP, MANY, STATIC, Rig, admin_flags, raw_servers_state, refs

from haproxyctl import (
    Address,
    Client,
    InvalidArgument,
    NoSuchBackend,
    NoSuchProcess,
    NoSuchServer,
    UsageError,
    parse_address,
)

pytestmark = pytest.mark.integration

TRICKY_VALUES = ["a;b", "x;y z\\w", "two words", "ends<<", "a\\;b;set server be_app/s1 state maint"]


def _exercise(client: Client, rig: Rig, tag: str) -> None:
    """Reads, a write, a bulk write and escaped map values, checked through the raw socket."""
    assert client.cli_level() == "admin"
    assert client.info().pid == rig.lab.worker_pid()
    assert [s.name for s in client.servers(APP)] == ["s1", "s2", "s3"]

    client.set_state(f"{APP}/s2", "drain")
    assert admin_flags(rig.admin, APP, "s2") == 0x08
    assert client.server(f"{APP}/s2").status == "DRAIN"

    targets = refs(MANY, [f"s{i}" for i in range(1, 11)])
    results = client.set_state_many(targets, "maint")
    assert [r.ok for r in results] == [True] * 10
    state = raw_servers_state(rig.admin)
    assert {state[(MANY, f"s{i}")]["srv_admin_state"] for i in range(1, 11)} == {"1"}

    for i, value in enumerate(TRICKY_VALUES):
        client.map_add(rig.map_path, f"{tag}{i}.example", value)
    expected = [(f"{tag}{i}.example", v) for i, v in enumerate(TRICKY_VALUES)]
    assert rig.map_contents()[1:] == expected
    assert [(e.key, e.value) for e in client.map_entries(rig.map_path)][1:] == expected
    assert admin_flags(rig.admin, APP, "s1") == 0  # nothing after a ';' ran

    with pytest.raises(NoSuchServer):
        client.set_state(f"{APP}/nosuch", "drain")
    with pytest.raises(NoSuchBackend):
        client.set_state("nosuch/s1", "drain")
    with pytest.raises(InvalidArgument, match="static LB algorithm"):
        client.set_weight(f"{STATIC}/s1", 5)
    with pytest.raises(UsageError):
        client.set_state(f"{APP}/s1;x", "maint")
    assert client.connection.connects == 1

    assert client.raw("show version").strip() == rig.raw("show version").strip()


@pytest.mark.parametrize("prefix", ["", "unix:"])
def test_unix_socket(rig: Rig, prefix: str) -> None:
    with Client(f"{prefix}{rig.admin}") as client:
        assert client.address == Address(kind="unix", path=rig.admin)
        assert parse_address(str(client.address)) == client.address
        _exercise(client, rig, "unix")


def test_tcp_socket(rig: Rig) -> None:
    assert rig.lab.tcp_admin is not None
    host, port = rig.lab.tcp_admin
    with Client(f"tcp://{host}:{port}") as client:
        assert client.address == Address(kind="tcp", host="127.0.0.1", port=port)
        assert parse_address(str(client.address)) == client.address
        _exercise(client, rig, "tcp")


def test_master_cli_routes_to_the_current_worker(rig: Rig) -> None:
    with Client(f"master:{rig.lab.master_socket}") as client:
        assert client.address == Address(kind="unix", path=rig.lab.master_socket, master=True,
                                         worker="1")
        assert parse_address(str(client.address)) == client.address
        _exercise(client, rig, "master")


def test_master_cli_by_worker_pid(rig: Rig) -> None:
    pid = rig.lab.worker_pid()
    with Client(f"master:{rig.lab.master_socket}@!{pid}") as client:
        assert (client.address.master, client.address.worker) == (True, f"!{pid}")
        assert client.info().pid == pid
        client.set_state(f"{APP}/s3", "maint")
        assert admin_flags(rig.admin, APP, "s3") == 0x01


def test_master_cli_unknown_pid(rig: Rig) -> None:
    address = f"master:{rig.lab.master_socket}@!99999"
    with Client(address) as client, pytest.raises(NoSuchProcess) as caught:
        client.version()
    assert caught.value.reason == "Can't find the target PID matching the prefix '@!99999'"
    assert caught.value.exit_code == 1
    with Client(address) as client, pytest.raises(NoSuchProcess):
        client.set_state(f"{APP}/s1", "maint")
    assert admin_flags(rig.admin, APP, "s1") == 0


def test_master_cli_unknown_pid_twice_on_one_client(rig: Rig) -> None:
    with Client(f"master:{rig.lab.master_socket}@!99999") as client:
        with pytest.raises(NoSuchProcess):
            client.version()
        with pytest.raises(NoSuchProcess):
            client.version()
