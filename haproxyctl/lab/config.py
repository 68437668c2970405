"""What a lab looks like (frozen spec classes) and the HAProxy configuration it renders to.

The specs describe backends the way a test thinks about them ("3 servers, cookie
persistence, checks every 500 ms"); :func:`render_config` turns a spec whose ports are known
into ``haproxy.cfg`` text. Rendering is pure (no I/O, no port picking) so it can be unit
tested and so the lab can re-render with new ports when one turns out to be taken.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

import attrs

__all__ = [
    "BackendSpec",
    "LabSpec",
    "Persistence",
    "ServerSpec",
    "frontend_name",
    "render_config",
    "synthetic_spec",
]

#: How a backend keeps a user on the same server.
#: ``cookie``: ``cookie SRV insert``; ``stick-src``: stick table on the source address;
#: ``stick-header``: stick table on the ``X-User`` request header (``srvkey name``).
Persistence = Literal["cookie", "stick-src", "stick-header"]

# HAProxy accepts letters, digits, '-', '_', '.' and ':' in proxy and server names. The lab
# also uses the names in file names, which this character set keeps safe.
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
# Config arguments the lab writes unquoted must not contain whitespace or '#'.
_TOKEN = re.compile(r"[^\s#]+")
# A duration in HAProxy's syntax: a number with an optional unit.
_DURATION = re.compile(r"\d+(us|ms|s|m|h|d)?")


def _check_name(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{attribute.name} {value!r}: use letters, digits, '-', '_', '.', ':'")


def _check_token(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{attribute.name} {value!r} must be one word without '#'")


def _check_duration(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not _DURATION.fullmatch(value):
        raise ValueError(f"{attribute.name} {value!r} is not a duration like '500ms' or '2s'")


def _check_lines(instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for line in value:
        if "\n" in line or "\r" in line:
            raise ValueError(f"{attribute.name}: one config line per item, got {line!r}")


def _tuple_of_str(lines: Iterable[str]) -> tuple[str, ...]:
    if isinstance(lines, str):  # a lone string would otherwise become one line per character
        return (lines,)
    return tuple(lines)


@attrs.frozen
class ServerSpec:
    """One server line, and (unless ``app`` is False) the app process behind it.

    Attributes:
        name: server name in HAProxy, also the app's ``--name``.
        port: the app's port on 127.0.0.1; None until the lab assigns one at start.
        weight: HAProxy weight (0-256).
        check: whether HAProxy health-checks it (only if the backend has ``checks``).
        cookie: value of its persistence cookie; None means the server name.
        app: start an app process for it. False for synthetic servers nobody listens on.
        version: the version the app reports when the lab starts.
    """

    name: str = attrs.field(validator=_check_name)
    port: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional([attrs.validators.ge(1), attrs.validators.le(65535)]),
    )
    weight: int = attrs.field(
        default=1, validator=[attrs.validators.ge(0), attrs.validators.le(256)]
    )
    check: bool = True
    cookie: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_check_token)
    )
    app: bool = True
    version: str = attrs.field(default="v1", validator=_check_token)

    @property
    def cookie_value(self) -> str:
        """The value the persistence cookie holds for this server."""
        return self.cookie if self.cookie is not None else self.name


def _to_servers(servers: Iterable[ServerSpec]) -> tuple[ServerSpec, ...]:
    return tuple(servers)


def _check_servers(
    instance: Any, attribute: attrs.Attribute[Any], servers: tuple[ServerSpec, ...]
) -> None:
    if not servers:
        raise ValueError("a backend needs at least one server")
    _check_unique("server name", [s.name for s in servers])
    if getattr(instance, "persistence", None) == "cookie":
        _check_unique("cookie value", [s.cookie_value for s in servers])


def _check_unique(what: str, names: list[str]) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate {what}: {', '.join(duplicates)}")


def _check_persistence(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value not in get_args(Persistence):
        raise ValueError(f"persistence {value!r} is not one of {get_args(Persistence)} or None")


@attrs.frozen
class BackendSpec:
    """One backend, and the frontend that feeds it (unless ``frontend`` is False).

    Attributes:
        name: backend name; its frontend is called ``fe_<name>``.
        servers: the servers, in config order (their ``sid`` is their 1-based position).
        balance: load-balancing algorithm (``roundrobin`` accepts any weight at runtime).
        persistence: how users stick to a server; see :data:`Persistence`.
        checks: HTTP health checks (``option httpchk GET <health_path>``).
        inter, rise, fall: check interval and thresholds.
        option_persist: ``option persist`` (cookies still reach a server in MAINT).
        redispatch: ``option redispatch``.
        retries: connection retries.
        maxconn_per_server: ``maxconn`` for every server (queueing tests); None = unlimited.
        health_path: the path checked.
        frontend: give the backend a frontend. Backends that only need to exist in
            ``show stat`` (benchmarks) do without.
        extra: raw lines appended to the backend section.
    """

    name: str = attrs.field(validator=_check_name)
    servers: tuple[ServerSpec, ...] = attrs.field(converter=_to_servers, validator=_check_servers)
    balance: str = attrs.field(default="roundrobin", validator=_check_token)
    persistence: Persistence | None = attrs.field(default=None, validator=_check_persistence)
    checks: bool = True
    inter: str = attrs.field(default="500ms", validator=_check_duration)
    rise: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    fall: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    option_persist: bool = False
    redispatch: bool = True
    retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    maxconn_per_server: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )
    health_path: str = attrs.field(default="/health", validator=_check_token)
    frontend: bool = True
    extra: tuple[str, ...] = attrs.field(
        default=(), converter=_tuple_of_str, validator=_check_lines
    )

    def server(self, name: str) -> ServerSpec:
        """The server called ``name``.

        Raises:
            KeyError: no such server in this backend.
        """
        for server in self.servers:
            if server.name == name:
                return server
        raise KeyError(f"backend {self.name} has no server {name!r}")

    def checked(self, server: ServerSpec) -> bool:
        """Whether HAProxy health-checks ``server``."""
        return self.checks and server.check


def _to_backends(backends: Iterable[BackendSpec]) -> tuple[BackendSpec, ...]:
    return tuple(backends)


def frontend_name(backend: str) -> str:
    """Name of the frontend the lab puts in front of ``backend``."""
    return f"fe_{backend}"


def _check_backends(
    instance: Any, attribute: attrs.Attribute[Any], backends: tuple[BackendSpec, ...]
) -> None:
    if not backends:
        raise ValueError("a lab needs at least one backend")
    names = [b.name for b in backends]
    _check_unique("backend name", names)
    # Frontends and backends share HAProxy's proxy namespace in error messages and stats;
    # keep them distinct so a name always means one proxy.
    clashes = {frontend_name(b.name) for b in backends if b.frontend} & set(names)
    if clashes:
        raise ValueError(f"backend names clash with generated frontend names: {sorted(clashes)}")


@attrs.frozen
class LabSpec:
    """A whole lab: backends, plus global settings.

    Attributes:
        backends: the backends, in config order.
        stats_timeout: idle timeout of a CLI session (``stats timeout``).
        nbthread: HAProxy threads (2 exercises the multi-thread code paths, cheaply).
        extra_global: raw lines appended to the ``global`` section.
        tcp_admin: also expose an admin-level CLI socket on 127.0.0.1 (TCP transport tests).
    """

    backends: tuple[BackendSpec, ...] = attrs.field(
        converter=_to_backends, validator=_check_backends
    )
    stats_timeout: str = attrs.field(default="30s", validator=_check_duration)
    nbthread: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    extra_global: tuple[str, ...] = attrs.field(
        default=(), converter=_tuple_of_str, validator=_check_lines
    )
    tcp_admin: bool = True

    def backend(self, name: str) -> BackendSpec:
        """The backend called ``name``.

        Raises:
            KeyError: no such backend.
        """
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(f"the lab has no backend {name!r}")


# --- rendering --------------------------------------------------------------------------------

_INDENT = "    "


def _section(header: str, lines: Iterable[str]) -> str:
    return "\n".join([header, *(_INDENT + line for line in lines)]) + "\n"


def _global_lines(spec: LabSpec, dir: str, tcp_admin_port: int | None) -> list[str]:
    lines = [
        # One socket per privilege level, so tests can check what each level may do.
        f"stats socket {dir}/admin.sock mode 600 level admin",
        f"stats socket {dir}/oper.sock mode 600 level operator",
        f"stats socket {dir}/user.sock mode 600 level user",
    ]
    if spec.tcp_admin:
        if tcp_admin_port is None:
            raise ValueError("spec.tcp_admin is set but no tcp_admin_port was given")
        lines.append(f"stats socket ipv4@127.0.0.1:{tcp_admin_port} level admin")
    lines += [
        f"stats timeout {spec.stats_timeout}",
        f"nbthread {spec.nbthread}",
        # HAProxy sets SO_REUSEPORT on listeners by default, so a second HAProxy (another lab
        # on the same host) could bind the same port *successfully* and silently share its
        # traffic. Without it a port clash is a loud bind error the lab can retry.
        "noreuseport",
        # A soft stop (SIGUSR1) waits for client connections; bound it so a test never waits
        # for keep-alive clients.
        "hard-stop-after 5s",
        *spec.extra_global,
    ]
    return lines


_DEFAULTS = [
    "mode http",
    "timeout connect 2s",
    "timeout client 30s",
    "timeout server 30s",
    "timeout check 1s",
    # Unset, the queue timeout falls back to "timeout connect" (2 s): queued requests behind
    # a slow request on a maxconn-limited server would get 503s that no test asked for.
    "timeout queue 30s",
    "timeout http-request 10s",
    # Longer than any think time of the user simulation, so HAProxy never closes an idle
    # client connection while the client is about to reuse it.
    "timeout http-keep-alive 10s",
]


def _frontend_lines(backend: BackendSpec, port: int) -> list[str]:
    return [f"bind 127.0.0.1:{port}", f"default_backend {backend.name}"]


def _persistence_lines(backend: BackendSpec) -> list[str]:
    if backend.persistence == "cookie":
        # indirect: the app never sees the cookie; nocache: caches must not share it.
        return ["cookie SRV insert indirect nocache"]
    if backend.persistence == "stick-src":
        return ["stick-table type ip size 100k expire 30m", "stick on src"]
    if backend.persistence == "stick-header":
        # srvkey name: entries name the server, so they survive server ID changes.
        return [
            "stick-table type string len 64 size 100k expire 30m srvkey name",
            "stick on req.hdr(X-User)",
        ]
    return []


def _check_lines_for(backend: BackendSpec) -> list[str]:
    if not backend.checks:
        return []
    return [f"option httpchk GET {backend.health_path}"]


def _default_server_line(backend: BackendSpec) -> str | None:
    words = []
    if backend.checks:
        words += ["check", f"inter {backend.inter}", f"rise {backend.rise}", f"fall {backend.fall}"]
    if backend.maxconn_per_server is not None:
        words.append(f"maxconn {backend.maxconn_per_server}")
    return "default-server " + " ".join(words) if words else None


def _server_line(backend: BackendSpec, server: ServerSpec) -> str:
    if server.port is None:
        raise ValueError(f"server {backend.name}/{server.name} has no port yet")
    words = [f"server {server.name} 127.0.0.1:{server.port}", f"weight {server.weight}"]
    if backend.persistence == "cookie":
        words.append(f"cookie {server.cookie_value}")
    if backend.checks and not server.check:
        words.append("no-check")  # cancels the "check" inherited from default-server
    return " ".join(words)


def _backend_lines(backend: BackendSpec) -> list[str]:
    lines = [f"balance {backend.balance}", f"retries {backend.retries}"]
    if backend.redispatch:
        lines.append("option redispatch")
    if backend.option_persist:
        lines.append("option persist")
    lines += _persistence_lines(backend)
    lines += _check_lines_for(backend)
    default_server = _default_server_line(backend)
    if default_server is not None:
        lines.append(default_server)
    lines += [_server_line(backend, server) for server in backend.servers]
    lines += backend.extra
    return lines


def render_config(
    spec: LabSpec,
    *,
    dir: str,
    frontend_ports: Mapping[str, int],
    tcp_admin_port: int | None,
) -> str:
    """Render ``haproxy.cfg`` for ``spec``.

    Args:
        spec: every server must have its ``port`` set.
        dir: directory of the CLI sockets (absolute, short: unix socket paths are limited to
            about 107 bytes).
        frontend_ports: port of each backend's frontend, keyed by backend name; required for
            every backend with ``frontend=True``.
        tcp_admin_port: port of the TCP admin CLI socket; required when ``spec.tcp_admin``.

    Raises:
        ValueError: a port is missing.
    """
    parts = [
        "# Generated by haproxyctl.lab; rewritten at every lab start.\n",
        _section("global", _global_lines(spec, dir, tcp_admin_port)),
        _section("defaults", _DEFAULTS),
    ]
    for backend in spec.backends:
        if backend.frontend:
            if backend.name not in frontend_ports:
                raise ValueError(f"no frontend port for backend {backend.name}")
            port = frontend_ports[backend.name]
            parts.append(
                _section(f"frontend {frontend_name(backend.name)}", _frontend_lines(backend, port))
            )
        parts.append(_section(f"backend {backend.name}", _backend_lines(backend)))
    return "\n".join(parts)


def synthetic_spec(n_backends: int, n_servers: int, *, port: int = 9) -> LabSpec:
    """A large lab for benchmarks: no apps, no checks, no frontends.

    ``n_backends`` backends ``bk1``... each with ``n_servers`` servers ``s1``... pointing at
    127.0.0.1:``port`` (9, "discard", is not served on a normal host). Nothing ever connects
    there: without checks or frontends HAProxy opens no connection to a server, so the
    servers exist only for the runtime API (``show stat``, ``set server``...).
    """
    if n_backends < 1 or n_servers < 1:
        raise ValueError("synthetic_spec needs at least one backend and one server")
    servers = [
        ServerSpec(name=f"s{j}", port=port, check=False, app=False) for j in range(1, n_servers + 1)
    ]
    backends = [
        BackendSpec(name=f"bk{i}", servers=servers, checks=False, frontend=False)
        for i in range(1, n_backends + 1)
    ]
    return LabSpec(backends=backends, tcp_admin=False)
