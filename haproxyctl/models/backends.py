"""``show backend`` (management.txt §9.3): ``# name`` then one backend name per line."""

from __future__ import annotations

from haproxyctl.errors import ProtocolError
from haproxyctl.models._fields import snippet

__all__ = ["parse_backend_names"]


def parse_backend_names(reply: str) -> list[str]:
    lines = reply.split("\n")
    if not lines or lines[0].strip() != "# name":
        raise ProtocolError("not a 'show backend' reply: no '# name' header", raw=snippet(reply))
    return [line for line in lines[1:] if line]
