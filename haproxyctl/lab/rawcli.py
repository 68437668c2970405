"""A deliberately tiny HAProxy CLI client, for the lab's own needs only.

The lab waits for HAProxy to be ready and checks server states with it. It does not use
``haproxyctl``'s real client on purpose: the lab is the ground truth the client is tested
against, so it must not share the client's bugs.
"""

from __future__ import annotations

import csv
import socket
from typing import TypeAlias

__all__ = ["Address", "parse_show_stat", "raw_command", "show_stat"]

#: A unix socket path, or a (host, port) TCP address.
Address: TypeAlias = str | tuple[str, int]


def _connect(address: Address, timeout: float) -> socket.socket:
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def raw_command(address: Address, line: str, *, timeout: float = 5.0) -> str:
    """Send one command line and return the whole answer, decoded.

    The line goes out in a single write with its ``\\n`` (HAProxy 2.6 drops what arrives in a
    later write), then the write side is shut down: the master CLI never closes a
    non-interactive session by itself, while worker sockets close after the answer anyway.

    Raises:
        OSError: cannot connect (``FileNotFoundError``, ``ConnectionRefusedError``...) or the
            connection broke.
        TimeoutError: no EOF within ``timeout`` seconds (per socket operation).
    """
    with _connect(address, timeout) as sock:
        sock.sendall(line.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def parse_show_stat(text: str) -> list[dict[str, str]]:
    """Parse ``show stat`` CSV into one dict per row, keyed by header name.

    The header line starts with ``# `` and every line ends with a comma; fields move between
    HAProxy versions, so rows are only ever indexed by name.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        raise ValueError(f"not show stat output: {text[:200]!r}")
    header = next(csv.reader([lines[0][2:]]))
    return [
        {name: value for name, value in zip(header, row, strict=False) if name}
        for row in csv.reader(lines[1:])
    ]


def show_stat(address: Address, *, timeout: float = 5.0) -> list[dict[str, str]]:
    """``show stat`` rows for servers only (no FRONTEND/BACKEND aggregate rows)."""
    # "-1 4 -1": every proxy, type 4 (servers), every server.
    rows = parse_show_stat(raw_command(address, "show stat -1 4 -1", timeout=timeout))
    return [row for row in rows if row.get("svname") not in ("FRONTEND", "BACKEND")]
