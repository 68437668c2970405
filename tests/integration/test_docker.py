"""The Docker path: the official haproxy:2.6 image from docker-compose.yml, over TCP.

Skipped unless ``HAPROXYCTL_TEST_DOCKER=1``; pytest-docker then starts the compose project
(``docker compose up``) for the session and removes it afterwards. Without the variable no
Docker command runs. Kept thin: the local-lab tests cover behaviour; this checks the same
client against a stock container, as users run it.
"""

from __future__ import annotations

import os

import pytest
from conftest import run_cli

from haproxyctl import AdminState, Client, NoSuchServer, Weight

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.environ.get("HAPROXYCTL_TEST_DOCKER") != "1",
                       reason="set HAPROXYCTL_TEST_DOCKER=1 to run the docker-compose tests"),
]


def test_reads(docker_haproxy: str) -> None:
    with Client(docker_haproxy) as client:
        assert client.cli_level() == "admin"
        assert client.version().startswith("2.6")
        assert "web" in client.backends()
        servers = client.servers("web")
        assert [s.name for s in servers] == ["web1", "web2"]
        assert all(s.has_checks for s in servers)
        assert client.get_weight("web/web1") == Weight(1, 1)


def test_drain_wait_ready(docker_haproxy: str) -> None:
    with Client(docker_haproxy) as client:
        try:
            client.set_state("web/web1", "drain")
            assert client.server("web/web1").admin_state is AdminState.DRAIN
            assert client.wait_drained("web/web1", timeout=10).observation.scur == 0
            client.set_weight("web/web2", 0)
            assert client.get_weight("web/web2") == Weight(0, 1)
            results = client.set_state_many(["web/web1", "web/web2"], "ready")
            assert all(r.ok for r in results)
            assert {s.admin_state for s in client.servers("web")} == {AdminState.READY}
            with pytest.raises(NoSuchServer):
                client.set_state("web/nosuch", "drain")
        finally:
            client.set_state_many(["web/web1", "web/web2"], "ready")
            client.set_weight("web/web2", "100%")


def test_cli(docker_haproxy: str) -> None:
    result = run_cli("-s", docker_haproxy, "servers", "web")
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines()[1:]] == ["web1", "web2"]
