"""A pytest plugin: the report of every test run names the HAProxy binary and version the labs
run (loaded by this project's pytest configuration, ``-p haproxyctl.lab.pytest_report``).

The binary is the lab's (:func:`haproxyctl.lab.find_haproxy`): ``$HAPROXYCTL_HAPROXY``, else
``haproxy`` on PATH, else /usr/sbin/haproxy.
"""

from __future__ import annotations

import pytest

from haproxyctl.lab import LabError, find_haproxy, haproxy_version


def pytest_report_header(config: pytest.Config) -> str:
    try:
        binary = find_haproxy()
        return f"haproxy: {haproxy_version(binary)} ({binary})"
    except LabError as exc:
        return f"haproxy: none ({exc})"
