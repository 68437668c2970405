"""Filling stick tables for tests and benchmarks, without the client under test.

Like :mod:`haproxyctl.lab.rawcli` this talks to HAProxy with a plain socket on purpose: what
fills a table must not share the bugs of what reads it. Lines are pipelined in prompt mode
(management.txt §9.3 "prompt"), in groups of at most 64 KB whose replies are read before the
next group is written, so neither side blocks on a full buffer.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence

__all__ = ["fill_table", "ip_key", "pipeline_lines"]

_PROMPT = b"\n> "
_GROUP_BYTES = 64 * 1024


def ip_key(i: int) -> str:
    """The i-th IPv4 key of a synthetic table: ``10.x.y.z`` (up to 16,777,216 distinct)."""
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def pipeline_lines(path: str, lines: Sequence[bytes], *, timeout: float = 30.0) -> list[bytes]:
    """Send ``lines`` (each ending in LF) on one prompt-mode session of the unix socket
    ``path``; return every reply body, in order (``b""`` for a silent success)."""
    replies: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(b"prompt\n")
        buf = b""
        while _PROMPT not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("HAProxy closed the CLI session")
            buf += chunk
        buf = buf[buf.index(_PROMPT) + len(_PROMPT):]
        start = 0
        while start < len(lines):
            end, size = start, 0
            while end < len(lines) and (end == start or size + len(lines[end]) <= _GROUP_BYTES):
                size += len(lines[end])
                end += 1
            sock.sendall(b"".join(lines[start:end]))
            want = end - start
            while buf.count(_PROMPT) < want:
                chunk = sock.recv(262144)
                if not chunk:
                    raise ConnectionError("HAProxy closed the CLI session")
                buf += chunk
            parts = buf.split(_PROMPT, want)
            replies += [p.removesuffix(b"\n") for p in parts[:want]]
            buf = parts[want] if len(parts) > want else b""
            start = end
    return replies


def fill_table(path: str, table: str, keys: Iterable[str], server_ids: Sequence[int],
               *, timeout: float = 30.0) -> int:
    """``set table <table> key <k> data.server_id <id>`` for each key (ids taken in turn from
    ``server_ids``); keys must need no escaping. Returns how many lines were sent; raises
    RuntimeError if HAProxy answered any of them with text (an error)."""
    lines = [f"set table {table} key {k} data.server_id {server_ids[i % len(server_ids)]}\n"
             .encode() for i, k in enumerate(keys)]
    replies = pipeline_lines(path, lines, timeout=timeout)
    errors = [r for r in replies if r.strip()]
    if errors:
        raise RuntimeError(f"{len(errors)} set table lines failed, first: {errors[0][:200]!r}")
    return len(lines)
