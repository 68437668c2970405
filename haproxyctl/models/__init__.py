"""Typed, frozen models of HAProxy's replies, each built by a named constructor or parser."""

from haproxyctl.models.conn import ServerConn, parse_servers_conn
from haproxyctl.models.info import Info, parse_info
from haproxyctl.models.maps import MapEntry, parse_map
from haproxyctl.models.server import Server, join_servers
from haproxyctl.models.session import Session, parse_sessions
from haproxyctl.models.stat import (
    BackendStat,
    FrontendStat,
    ServerStat,
    Stats,
    parse_server_stats,
    parse_stats,
)
from haproxyctl.models.state import (
    AdminFlag,
    AdminState,
    CheckState,
    OpState,
    ServerState,
    parse_servers_state,
)
from haproxyctl.models.table import (
    StickTable,
    TableEntry,
    TableInfo,
    TablePins,
    TableReader,
    parse_table,
    parse_tables,
)
from haproxyctl.models.weight import Weight, WeightSpec, parse_weight

__all__ = [
    "AdminFlag",
    "AdminState",
    "BackendStat",
    "CheckState",
    "FrontendStat",
    "Info",
    "MapEntry",
    "OpState",
    "Server",
    "ServerConn",
    "ServerStat",
    "ServerState",
    "Session",
    "Stats",
    "StickTable",
    "TableEntry",
    "TableInfo",
    "TablePins",
    "TableReader",
    "Weight",
    "WeightSpec",
    "join_servers",
    "parse_info",
    "parse_map",
    "parse_server_stats",
    "parse_servers_conn",
    "parse_servers_state",
    "parse_sessions",
    "parse_stats",
    "parse_table",
    "parse_tables",
    "parse_weight",
]
