"""``show map <map>`` (management.txt §9.3): ``<ptr> <key> <value>`` per entry."""

from __future__ import annotations

import attrs

from haproxyctl.errors import ProtocolError
from haproxyctl.models._fields import snippet

__all__ = ["MapEntry", "parse_map"]


@attrs.frozen
class MapEntry:
    """One map entry. ``ref`` is the ``0x...`` id that ``#<ref>`` addresses in set/del.

    HAProxy prints keys and values raw: a key containing a space cannot be told apart from the
    value here, so the first space after the key ends it (keys with spaces are rare in maps).
    """

    ref: str
    key: str
    value: str | None

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


def parse_map(reply: str) -> list[MapEntry]:
    out: list[MapEntry] = []
    for line in reply.split("\n"):
        if not line:
            continue
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("0x"):
            raise ProtocolError("not a 'show map' entry line", raw=snippet(line))
        out.append(MapEntry(parts[0], parts[1], parts[2] if len(parts) > 2 else None))
    return out
