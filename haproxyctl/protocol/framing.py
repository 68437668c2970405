"""Framing: turning the byte stream from a CLI socket into one reply per command. No I/O.

Three framings exist (management.txt §9.3 "Unix Socket commands" and §9.4 "Master CLI"; exact
bytes in ``shared/haproxy-runtime-api.md`` §1.2, §1.3 and §9):

- **one-shot** (non-interactive, HAProxy's default): one line is sent, HAProxy writes the output
  followed by one empty line and closes. The reply is everything up to EOF. The master CLI keeps
  the connection open until the client half-closes, so the client must ``shutdown(SHUT_WR)``.
- **prompt** (after ``prompt``): each reply is followed by ``"\\n> "``; the connection stays
  open. The first reply, to ``prompt`` itself, is empty.
- **master prompt**: the master CLI prints ``master> `` (or ``master(xe)> ``,
  ``master[ReloadFailed]> ``, ``1234> ``) with no leading LF after the greeting; we frame it by
  pretending the stream starts with an LF so every reply is ``<text>\\n<prompt>``.

Every framer finds the *first* complete terminator in the bytes received so far. A terminator
match contains exactly one LF, at its start, so the first match in a prefix of the stream is the
first match in the whole stream: the replies do not depend on how the bytes were chunked. (The
property tests check this for arbitrary chunkings.)

A reply body is normalised by :func:`body_text`: HAProxy ends each output with an empty line, so
one trailing LF is removed, and one more if the output itself ended with LF. On 2.6 some error
messages lack their own LF (§1.7 of the reference), which this normalisation absorbs.
"""

from __future__ import annotations

import re

__all__ = [
    "MasterPromptFramer",
    "OneShotFramer",
    "PromptFramer",
    "body_text",
]

_WORKER_PROMPT = b"\n> "
# "master", a PID, optional "[ReloadFailed]"-style status, optional "(xed)" mode flags, "> ".
_MASTER_PROMPT_RE = re.compile(rb"\n(?:master|[0-9]+)(?:\[[^\]\n]*\])?(?:\([a-z]*\))?> ")


def body_text(body: bytes) -> str:
    """Decode a reply body and strip the framing LFs (see module docstring)."""
    text = body.decode("utf-8", errors="replace")
    if text.endswith("\n"):
        text = text[:-1]
    return text


class PromptFramer:
    """Splits a worker prompt-mode stream (``<output>\\n> `` per command) into reply bodies."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan_from = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_reply(self) -> bytes | None:
        """Return the next complete reply body (prompt removed), or None if it is incomplete."""
        # Resume scanning just before the previous end so a terminator split across feeds is found,
        # without rescanning megabytes of `show stat` output on every chunk.
        start = max(0, self._scan_from - len(_WORKER_PROMPT) + 1)
        pos = self._buf.find(_WORKER_PROMPT, start)
        if pos < 0:
            self._scan_from = len(self._buf)
            return None
        body = bytes(self._buf[:pos])
        del self._buf[: pos + len(_WORKER_PROMPT)]
        self._scan_from = 0
        return body

    def next_chunk(self) -> tuple[bytes, bool]:
        """Stream the current reply: ``(data, complete)``.

        ``data`` is the part of the reply body that can no longer be part of the terminator;
        ``complete`` is True once the terminator was seen (the reply ends with this data).
        Concatenating the data of successive calls gives exactly :meth:`next_reply`'s body, so
        a consumer can parse a multi-megabyte ``show stat`` while HAProxy still writes it.
        """
        pos = self._buf.find(_WORKER_PROMPT)
        if pos >= 0:
            data = bytes(self._buf[:pos])
            del self._buf[: pos + len(_WORKER_PROMPT)]
            self._scan_from = 0
            return data, True
        # Keep what could be the start of a terminator split across reads.
        safe = max(0, len(self._buf) - (len(_WORKER_PROMPT) - 1))
        data = bytes(self._buf[:safe])
        del self._buf[:safe]
        self._scan_from = 0
        return data, False

    def replies(self, limit: int) -> list[bytes]:
        """Up to ``limit`` complete reply bodies at once (same result as calling
        :meth:`next_reply` repeatedly; one C-level split instead of a Python loop for the
        hundreds of replies of a bulk change)."""
        if limit <= 0:
            return []
        parts = bytes(self._buf).split(_WORKER_PROMPT, limit)
        done = parts[:-1] if len(parts) <= limit else parts[:limit]
        rest = parts[-1] if len(parts) <= limit else _WORKER_PROMPT.join(parts[limit:])
        if done:
            self._buf = bytearray(rest)
            self._scan_from = 0
        else:
            self._scan_from = len(self._buf)
        return done

    @property
    def pending(self) -> bytes:
        """Bytes received but not yet part of a complete reply."""
        return bytes(self._buf)


class MasterPromptFramer:
    """Splits a master CLI prompt-mode stream into reply bodies (see module docstring)."""

    _MAX_PROMPT = 64  # longest prompt we expect: "\n" + pid/"master" + status + flags + "> "

    def __init__(self) -> None:
        # The greeting prompt after "prompt" has no leading LF; adding one makes every reply,
        # the greeting's included, take the same "<text>\n<prompt>" shape.
        self._buf = bytearray(b"\n")
        self._scan_from = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_reply(self) -> bytes | None:
        start = max(0, self._scan_from - self._MAX_PROMPT)
        m = _MASTER_PROMPT_RE.search(self._buf, start)
        if m is None:
            self._scan_from = len(self._buf)
            return None
        # Same shape as a worker prompt-mode body: "<output>" ending in the output's own LF.
        body = bytes(self._buf[: m.start()])
        del self._buf[: m.end()]
        self._scan_from = 0
        return body

    def replies(self, limit: int) -> list[bytes]:
        out: list[bytes] = []
        while len(out) < limit:
            body = self.next_reply()
            if body is None:
                break
            out.append(body)
        return out

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)


class OneShotFramer:
    """Collects a one-shot (non-interactive) reply: everything until the peer closes."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._closed = False

    def feed(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("data after EOF")
        self._buf += data

    def close(self) -> None:
        """Record EOF from the peer."""
        self._closed = True

    def next_reply(self) -> bytes | None:
        """The whole reply body once EOF was seen (the final empty-line LF removed)."""
        if not self._closed:
            return None
        body = bytes(self._buf)
        # One-shot output is "<output>\n": the trailing LF plays the role of the prompt
        # terminator in prompt mode.
        return body[:-1] if body.endswith(b"\n") else body

    @property
    def pending(self) -> bytes:
        return b"" if self._closed else bytes(self._buf)
