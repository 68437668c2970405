"""A local HAProxy lab: a real HAProxy, tiny app servers behind it, and simulated users.

Used by the integration tests, the end-to-end rollout tests, the benchmarks and the demo.
It drives HAProxy only through its own minimal socket helper (:func:`raw_command`), never
through the haproxyctl client it exists to test.

Start with :class:`Lab` and :class:`LabSpec`; see ``haproxyctl/lab/haproxy.py``.
"""

from __future__ import annotations

from haproxyctl.lab.analysis import (
    LoadWindow,
    find_flips,
    flip_backs,
    load_windows,
    mixed_pages,
    summarize,
    user_moves,
    window_imbalance,
)
from haproxyctl.lab.apps import AppHandle
from haproxyctl.lab.config import (
    BackendSpec,
    LabSpec,
    Persistence,
    ServerSpec,
    frontend_name,
    render_config,
    synthetic_spec,
)
from haproxyctl.lab.errors import LabError, LabTimeout
from haproxyctl.lab.haproxy import HAPROXY_ENV, Lab, find_haproxy, haproxy_version
from haproxyctl.lab.polling import poll_until
from haproxyctl.lab.process import ManagedProcess, live_processes, stop_all
from haproxyctl.lab.rawcli import Address, parse_show_stat, raw_command, show_stat
from haproxyctl.lab.users import (
    Flip,
    LoadReport,
    Outcome,
    UserPersistence,
    UserSimulation,
    source_address,
)

__all__ = [
    "HAPROXY_ENV",
    "Address",
    "AppHandle",
    "BackendSpec",
    "Flip",
    "Lab",
    "LabError",
    "LabSpec",
    "LabTimeout",
    "LoadReport",
    "LoadWindow",
    "ManagedProcess",
    "Outcome",
    "Persistence",
    "ServerSpec",
    "UserPersistence",
    "UserSimulation",
    "find_flips",
    "find_haproxy",
    "flip_backs",
    "frontend_name",
    "haproxy_version",
    "live_processes",
    "load_windows",
    "mixed_pages",
    "parse_show_stat",
    "poll_until",
    "raw_command",
    "render_config",
    "show_stat",
    "source_address",
    "stop_all",
    "summarize",
    "synthetic_spec",
    "user_moves",
    "window_imbalance",
]
