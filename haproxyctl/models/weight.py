"""``get weight`` (management.txt §9.3): ``"<current> (initial <initial>)"``."""

from __future__ import annotations

import re

import attrs

from haproxyctl.errors import ProtocolError, UsageError
from haproxyctl.models._fields import snippet

__all__ = ["Weight", "WeightSpec", "parse_weight"]

_WEIGHT_RE = re.compile(r"(\d+) \(initial (\d+)\)")
_SPEC_RE = re.compile(r"(\d+)(%?)")
MAX_WEIGHT = 256


@attrs.frozen
class Weight:
    current: int
    initial: int


def parse_weight(reply: str) -> Weight:
    m = _WEIGHT_RE.fullmatch(reply.strip())
    if m is None:
        raise ProtocolError("not a 'get weight' reply", raw=snippet(reply))
    return Weight(int(m.group(1)), int(m.group(2)))


@attrs.frozen
class WeightSpec:
    """A weight to set: absolute (0-256) or a percentage of the initial weight (``"50%"``)."""

    value: int
    percent: bool = False

    @classmethod
    def parse(cls, spec: int | str | WeightSpec) -> WeightSpec:
        if isinstance(spec, WeightSpec):
            return spec
        if isinstance(spec, bool):
            raise UsageError(f"invalid weight {spec!r}", field="weight", value=spec)
        if isinstance(spec, int):
            text = str(spec)
        elif isinstance(spec, str):
            text = spec.strip()
        else:
            raise UsageError(f"invalid weight {spec!r}: expected an integer or 'N%'",
                             field="weight", value=spec)
        m = _SPEC_RE.fullmatch(text)
        if m is None:
            raise UsageError(
                f"invalid weight {spec!r}: expected 0-{MAX_WEIGHT} or a percentage like '50%'",
                field="weight", value=spec,
            )
        value, percent = int(m.group(1)), bool(m.group(2))
        if not percent and value > MAX_WEIGHT:
            raise UsageError(
                f"weight {value} is out of range: HAProxy accepts 0-{MAX_WEIGHT} "
                "(or a percentage of the initial weight)",
                field="weight", value=spec,
            )
        if percent and value > 100 * MAX_WEIGHT:
            raise UsageError(f"weight {text} is out of range", field="weight", value=spec)
        return cls(value, percent)

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)
