"""haproxyctl: a typed client and CLI for the HAProxy runtime API (the stats socket).

Quick start::

    from haproxyctl import Client

    with Client("/run/haproxy/admin.sock") as haproxy:
        haproxy.set_state("app/web1", "drain")
        haproxy.wait_drained("app/web1", timeout=120)
        haproxy.set_state("app/web1", "maint")
"""

from haproxyctl.address import DEFAULT_SOCKET, Address, parse_address
from haproxyctl.client import BulkResult, Client
from haproxyctl.commands import TableFilter
from haproxyctl.connection import Connection
from haproxyctl.errors import (
    CommandError,
    ConnectError,
    ConnectionLost,
    HAProxyError,
    HAProxyTimeout,
    InvalidArgument,
    IOTimeout,
    NoSuchBackend,
    NoSuchMap,
    NoSuchObject,
    NoSuchProcess,
    NoSuchServer,
    NoSuchSession,
    NoSuchTable,
    PartialFailure,
    PermissionDenied,
    ProtocolError,
    StateError,
    TransportError,
    UnknownCommand,
    UsageError,
    WaitTimeout,
)
from haproxyctl.models import (
    AdminFlag,
    AdminState,
    BackendStat,
    CheckState,
    FrontendStat,
    Info,
    MapEntry,
    OpState,
    Server,
    ServerConn,
    ServerStat,
    ServerState,
    Session,
    Stats,
    StickTable,
    TableEntry,
    TableInfo,
    TablePins,
    TableReader,
    Weight,
    WeightSpec,
)
from haproxyctl.protocol import Command, ServerRef
from haproxyctl.wait import WaitProgress, WaitResult

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SOCKET",
    "Address",
    "AdminFlag",
    "AdminState",
    "BackendStat",
    "BulkResult",
    "CheckState",
    "Client",
    "Command",
    "CommandError",
    "ConnectError",
    "Connection",
    "ConnectionLost",
    "FrontendStat",
    "HAProxyError",
    "HAProxyTimeout",
    "IOTimeout",
    "Info",
    "InvalidArgument",
    "MapEntry",
    "NoSuchBackend",
    "NoSuchMap",
    "NoSuchObject",
    "NoSuchProcess",
    "NoSuchServer",
    "NoSuchSession",
    "NoSuchTable",
    "OpState",
    "PartialFailure",
    "PermissionDenied",
    "ProtocolError",
    "Server",
    "ServerConn",
    "ServerRef",
    "ServerStat",
    "ServerState",
    "Session",
    "StateError",
    "Stats",
    "StickTable",
    "TableEntry",
    "TableFilter",
    "TableInfo",
    "TablePins",
    "TableReader",
    "TransportError",
    "UnknownCommand",
    "UsageError",
    "WaitProgress",
    "WaitResult",
    "WaitTimeout",
    "Weight",
    "WeightSpec",
    "__version__",
    "parse_address",
]
