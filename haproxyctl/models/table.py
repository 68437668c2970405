"""Stick tables: ``show table`` (list and contents) (management.txt §9.3, "show table").

Formats (``shared/haproxy-runtime-api.md`` §7):

- list: ``# table: be_stick, type: ip, size:1024, used:4`` per table;
- contents: that header line, then one line per entry:
  ``0x561129e38c50: key=alice use=0 exp=1799986 server_id=1 http_req_cnt=0 server_key=s1``;
  2.7+ adds ``shard=N`` after ``exp=``, so entries are parsed as ``name=value`` tokens, never by
  position. Keys with spaces are printed backslash-escaped (``key=with\\ space``).
- a ``level user`` socket gets the header and ``# contents not dumped due to insufficient
  privileges``: that is a refusal, raised as PermissionDenied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from haproxyctl.errors import PermissionDenied, ProtocolError
from haproxyctl.models._fields import snippet

__all__ = ["StickTable", "TableEntry", "TableInfo", "parse_table", "parse_tables"]

_HEADER_RE = re.compile(
    r"# table: (?P<name>[^,]+), type: (?P<type>[^,]+), size:(?P<size>\d+), used:(?P<used>\d+)"
)
_PRIVILEGE_NOTE = "# contents not dumped due to insufficient privileges"
_INT_RE = re.compile(r"-?[0-9]+")
_ENTRY_RE = re.compile(r"(?P<ptr>0x[0-9a-fA-F]+): (?P<rest>.*)")


@attrs.frozen
class TableInfo:
    name: str
    type: str
    size: int
    used: int


@attrs.frozen
class TableEntry:
    """One entry. ``data`` holds the stored data types (``server_id``, ``http_req_cnt``, ...);
    integers are converted, other values (``server_key``, rates like ``http_req_rate(10000)``
    keep their name as printed) stay strings; ``-`` becomes None."""

    ptr: str
    key: str
    use: int | None
    exp: int | None
    shard: int | None
    data: Mapping[str, int | str | None]

    @property
    def server_id(self) -> int | None:
        value = self.data.get("server_id")
        return value if isinstance(value, int) else None

    @property
    def server_key(self) -> str | None:
        value = self.data.get("server_key")
        return value if isinstance(value, str) else None

    def to_dict(self) -> dict[str, object]:
        return {"ptr": self.ptr, "key": self.key, "use": self.use, "exp": self.exp,
                "shard": self.shard, "data": dict(self.data)}


@attrs.frozen
class StickTable:
    info: TableInfo
    entries: tuple[TableEntry, ...]

    def to_dict(self) -> dict[str, object]:
        return {**attrs.asdict(self.info), "entries": [e.to_dict() for e in self.entries]}


def _tokens(text: str) -> list[str]:
    """Split on unescaped spaces, undoing backslash escapes (how HAProxy prints keys)."""
    tokens: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if c == " ":
            if cur:
                tokens.append("".join(cur))
                cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        tokens.append("".join(cur))
    return tokens


def _value(raw: str) -> int | str | None:
    if raw == "-":
        return None
    if _INT_RE.fullmatch(raw):
        return int(raw)
    return raw


def _header(line: str) -> TableInfo:
    m = _HEADER_RE.fullmatch(line.strip())
    if m is None:
        raise ProtocolError("not a 'show table' header line", raw=snippet(line))
    return TableInfo(m.group("name"), m.group("type"), int(m.group("size")), int(m.group("used")))


def _entry(line: str) -> TableEntry:
    m = _ENTRY_RE.fullmatch(line)
    if m is None:
        raise ProtocolError("not a 'show table' entry line", raw=snippet(line))
    fields: dict[str, str] = {}
    for token in _tokens(m.group("rest")):
        name, sep, value = token.partition("=")
        if not sep:
            raise ProtocolError(f"'show table' entry token {token!r} has no '='",
                                raw=snippet(line))
        fields[name] = value
    if "key" not in fields:
        raise ProtocolError("'show table' entry has no key", raw=snippet(line))
    key = fields.pop("key")
    try:
        use = int(fields.pop("use")) if "use" in fields else None
        exp = int(fields.pop("exp")) if "exp" in fields else None
        shard = int(fields.pop("shard")) if "shard" in fields else None
    except ValueError:
        raise ProtocolError("'show table' entry has a non-numeric use/exp/shard",
                            raw=snippet(line)) from None
    data = {name: _value(value) for name, value in fields.items()}
    return TableEntry(ptr=m.group("ptr"), key=key, use=use, exp=exp, shard=shard, data=data)


def parse_tables(reply: str) -> list[TableInfo]:
    """Parse the table list (``show table`` without a name)."""
    return [_header(line) for line in reply.split("\n") if line]


def parse_table(reply: str, *, name: str | None = None) -> StickTable:
    """Parse one table's contents (``show table <name> [filter]``).

    HAProxy prints nothing at all (not even the header) when a key filter cannot be parsed for
    the table's type (``show table be_stick key notanip``); that is reported as an empty table
    when ``name`` is given, since the filter matched nothing.
    """
    lines = [line for line in reply.split("\n") if line]
    if not lines:
        if name is None:
            raise ProtocolError("empty 'show table' reply")
        return StickTable(TableInfo(name, "", 0, 0), ())
    info = _header(lines[0])
    if len(lines) > 1 and lines[1].strip() == _PRIVILEGE_NOTE:
        raise PermissionDenied(
            f"the socket's level is too low to read stick table {info.name!r} "
            "(needs operator or admin)",
            reply=reply, reason="insufficient privileges", command=f"show table {info.name}",
        )
    return StickTable(info, tuple(_entry(line) for line in lines[1:]))
