"""Helpers shared by the unit tests: golden fixtures and the reply pipeline, without I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from haproxyctl.protocol.encode import Command, Expect
from haproxyctl.protocol.framing import OneShotFramer, body_text
from haproxyctl.protocol.replies import check_reply, parse_reply

#: Verbatim replies of a real HAProxy 2.6.12, recorded by ``tests/fixtures/capture.py``.
GOLDEN_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy-2.6"


def golden_bytes(name: str) -> bytes:
    """The raw bytes HAProxy sent for one recorded exchange."""
    path = GOLDEN_DIR / name
    if not path.exists():
        pytest.fail(f"golden fixture {path} is missing; run tests/fixtures/capture.py")
    return path.read_bytes()


def one_shot_text(raw: bytes) -> str:
    """What the library makes of a one-shot (non-interactive) reply: framed, decoded, the
    severity prefix split off."""
    framer = OneShotFramer()
    framer.feed(raw)
    framer.close()
    body = framer.next_reply()
    assert body is not None
    return parse_reply(body_text(body)).text


def golden_text(name: str, expect: Expect = Expect.DATA) -> str:
    """A golden one-shot reply as the library would hand it to a parser (checked as success)."""
    raw = golden_bytes(name)
    framer = OneShotFramer()
    framer.feed(raw)
    framer.close()
    body = framer.next_reply()
    assert body is not None
    reply = check_reply(Command.build("show info", expect=expect), parse_reply(body_text(body)))
    return reply.text
