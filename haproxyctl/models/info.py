"""``show info`` (management.txt §9.3): ``Name: value`` lines about the running process."""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from haproxyctl.errors import ProtocolError
from haproxyctl.models._fields import snippet

__all__ = ["Info", "parse_info"]

_LEADING_DIGITS = re.compile(r"[0-9]+")


def _int(fields: Mapping[str, str], name: str) -> int | None:
    value = fields.get(name, "")
    try:
        return int(value) if value else None
    except ValueError:
        raise ProtocolError(f"show info: {name} is {value!r}, not an integer",
                            raw=snippet(value)) from None


@attrs.frozen
class Info:
    """The process described by ``show info``. ``fields`` keeps every line, typed or not."""

    name: str
    version: str
    release_date: str | None
    pid: int | None
    process_num: int | None
    nbthread: int | None
    uptime_sec: int | None
    max_conn: int | None
    current_conns: int | None
    cumulative_conns: int | None
    run_queue: int | None
    idle_pct: int | None
    stopping: bool
    node: str | None
    fields: Mapping[str, str] = attrs.field(repr=False)

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Info:
        if "Version" not in fields:
            raise ProtocolError("show info reply has no Version field", raw=snippet(repr(fields)))
        return cls(
            name=fields.get("Name", ""),
            version=fields["Version"],
            release_date=fields.get("Release_date") or None,
            pid=_int(fields, "Pid"),
            process_num=_int(fields, "Process_num"),
            nbthread=_int(fields, "Nbthread"),
            uptime_sec=_int(fields, "Uptime_sec"),
            max_conn=_int(fields, "Maxconn"),
            current_conns=_int(fields, "CurrConns"),
            cumulative_conns=_int(fields, "CumConns"),
            run_queue=_int(fields, "Run_queue"),
            idle_pct=_int(fields, "Idle_pct"),
            stopping=fields.get("Stopping", "0") not in ("", "0"),
            node=fields.get("node") or None,
            fields=dict(fields),
        )

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """``(2, 6, 12)`` from ``2.6.12-1+deb12u4``; what feature checks compare against."""
        numbers: list[int] = []
        for part in self.version.split("-", 1)[0].split("."):
            m = _LEADING_DIGITS.match(part)
            if m is None:
                break
            numbers.append(int(m.group(0)))
        return tuple(numbers)

    def to_dict(self) -> dict[str, object]:
        d = attrs.asdict(self)
        d["fields"] = dict(self.fields)
        return d


_LINE_RE = re.compile(r"^([^:\n]+):(?: (.*))?$", re.MULTILINE)


def parse_info(reply: str) -> Info:
    """Parse ``Name: value`` lines (one regex pass; ``Name:`` alone means an empty value)."""
    pairs = _LINE_RE.findall(reply)
    lines = reply.split("\n")
    if len(pairs) != len(lines) - lines.count(""):
        # Some non-empty line is not "Name: value".
        bad = next((line for line in reply.split("\n")
                    if line and not _LINE_RE.fullmatch(line)), reply[:80])
        raise ProtocolError("not a 'show info' reply: line without 'Name: value'",
                            raw=snippet(bad))
    return Info.from_fields(dict(pairs))
