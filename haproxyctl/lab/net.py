"""Choosing TCP ports on 127.0.0.1 for apps, frontends and the TCP admin socket.

Why not simply bind port 0: an app's port must survive the app being restarted (a rolling
update stops an app and starts the new version on the *same* port, which HAProxy's config
names). A port from the kernel's ephemeral range that is free for a moment can be taken by
any outgoing connection (the user simulation and HAProxy open thousands of them), and the
restart then fails with EADDRINUSE. So the lab hands out ports *below* the ephemeral range,
which the kernel never assigns on its own, chosen at random so that labs running in parallel
(pytest-xdist, several developers on one CI host) rarely pick the same port, and checked
free by binding them once.

Ports handed out stay reserved in this process until released, so two labs in one test
session never get the same port even while one of its apps is down.
"""

from __future__ import annotations

import random
import socket
import threading

__all__ = ["LOOPBACK", "release_ports", "reserve_port"]

LOOPBACK = "127.0.0.1"

# Used when /proc is unavailable or the range looks unusual: Linux's default is 32768-60999.
_DEFAULT_EPHEMERAL = (32768, 60999)
# Lowest port the lab uses: below it live many well-known services (databases, dev servers).
_LOWEST = 20000
_ATTEMPTS = 200

_lock = threading.Lock()
_reserved: set[int] = set()
_rng = random.SystemRandom()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for automatically assigned local ports."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            low, high = (int(part) for part in f.read().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return low, high


def _candidate_range() -> range:
    """Ports outside the ephemeral range (below it if there is room, otherwise above)."""
    low, high = _ephemeral_range()
    if low - _LOWEST >= 1000:
        return range(_LOWEST, low)
    if 65535 - high >= 1000:
        return range(high + 1, 65536)
    # A host whose ephemeral range covers (nearly) everything: collisions become possible,
    # but the lab still works most of the time.
    return range(_LOWEST, 65536)


def _is_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound right now.

    No SO_REUSEADDR on purpose: this also rejects ports with connections in TIME_WAIT, which
    would otherwise make a later plain bind (HAProxy's) fail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def reserve_port() -> int:
    """Return a free port on 127.0.0.1, reserved in this process until released.

    Raises:
        OSError: no free port was found after many attempts (a badly misconfigured host).
    """
    candidates = _candidate_range()
    for _ in range(_ATTEMPTS):
        port = _rng.choice(candidates)
        with _lock:
            if port in _reserved:
                continue
            _reserved.add(port)
        if _is_free(port):
            return port
        with _lock:
            _reserved.discard(port)
    raise OSError(f"no free port found on {LOOPBACK} in {candidates} after {_ATTEMPTS} tries")


def release_ports(ports: set[int] | list[int] | tuple[int, ...]) -> None:
    """Give reserved ports back (the lab that reserved them has stopped)."""
    with _lock:
        _reserved.difference_update(ports)
