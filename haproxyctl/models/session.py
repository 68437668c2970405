"""``show sess`` (management.txt §9.3): one line per stream.

Line format (2.6, ``shared/haproxy-runtime-api.md`` §4 and §5.5)::

    0x55ccc3d14890: proto=tcpv4 src=127.0.0.1:56823 fe=fe_cookie be=be_cookie srv=s1 ts=00
    epoch=0 age=1s calls=2 rate=0 cpu=0 lat=0 rq[f=...] rp[f=...] scf=[...] scb=[...] exp=1s ...

Only the ``name=value`` tokens before the first bracketed group are parsed; the whole line is
kept as ``raw``. 2.6 has no server filter, so filtering by backend/server happens here (3.2 adds
``show sess server <b/s>``).
"""

from __future__ import annotations

import re

import attrs

from haproxyctl.errors import ProtocolError
from haproxyctl.models._fields import snippet

__all__ = ["Session", "parse_age", "parse_sessions"]

_LINE_RE = re.compile(r"(?P<id>0x[0-9a-fA-F]+): (?P<rest>.*)")
_AGE_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_NONE = ("<NONE>", "<none>", "")


def parse_age(text: str) -> int | None:
    """HAProxy's human duration (``1d2h``, ``3m4s``, ``0s``) in seconds; None if unparsable."""
    m = _AGE_RE.fullmatch(text)
    if m is None or not text:
        return None
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


@attrs.frozen
class Session:
    id: str
    proto: str | None
    src: str | None
    frontend: str | None
    backend: str | None
    server: str | None
    age: int | None
    raw: str = attrs.field(repr=False)

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


def _session(line: str) -> Session:
    m = _LINE_RE.fullmatch(line)
    if m is None:
        raise ProtocolError("not a 'show sess' line", raw=snippet(line))
    fields: dict[str, str] = {}
    for token in m.group("rest").split(" "):
        if "[" in token:
            break  # rq[...] rp[...] scf=[...]: internal state, not parsed
        name, sep, value = token.partition("=")
        if sep:
            fields[name] = value

    def opt(name: str) -> str | None:
        value = fields.get(name, "")
        return None if value in _NONE else value

    return Session(
        id=m.group("id"), proto=opt("proto"), src=opt("src"), frontend=opt("fe"),
        backend=opt("be"), server=opt("srv"), age=parse_age(fields.get("age", "")), raw=line,
    )


def parse_sessions(reply: str) -> list[Session]:
    """Parse ``show sess`` (the short one-line-per-stream form)."""
    return [_session(line) for line in reply.split("\n") if line.startswith("0x")]
