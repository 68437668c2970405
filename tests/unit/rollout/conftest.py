"""Fixtures for the rollout unit tests (the simulator lives in ``sim.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from haproxyctl.rollout.options import RolloutOptions
from haproxyctl.rollout.plan import Plan

from .sim import SimHAProxy, make_servers


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "rollout-app-0123456789.jsonl"


@pytest.fixture
def plan4() -> Plan:
    """A plan for 4 checked servers with cookie persistence, one server per batch."""
    return SimHAProxy(make_servers(4)).plan(RolloutOptions())
