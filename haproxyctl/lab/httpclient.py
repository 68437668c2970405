"""A small HTTP/1.1 client for the lab's simulated users: a sans-I/O response parser plus one
keep-alive connection on asyncio streams.

Why not ``http.client``: it blocks, so every connection needs a thread, and 150 browser-like
users with four connections each would be 600 threads on a 2-core machine that also runs
HAProxy and the apps. Why not a third-party client: the lab must stay dependency-free, and
it needs exact control over *when* a request is written (its ``Cookie`` header is built from
the user's jar at that moment) and when its response has arrived.

Scope: ``GET`` only, against HAProxy and the lab's own app. What the parser accepts:

* a status line ``HTTP/<d>.<d> <3 digits>[ <reason>]``; interim ``1xx`` responses (``100``,
  ``103``) are skipped, ``101`` is an error (nothing here asks for an upgrade);
* header lines ``name: value``, names compared case-insensitively (stored lower-case), values
  with surrounding blanks stripped; lines may end in CRLF or a bare LF. Obsolete line folding,
  blanks before the colon and header blocks over ``max_header_bytes`` are errors;
* the body (RFC 9112 §6.3): none for ``204`` and ``304``; ``Transfer-Encoding`` ending in
  ``chunked`` (chunk extensions and trailers are read and dropped); otherwise
  ``Content-Length`` (repeated or comma-separated values must agree); otherwise until the
  server closes the connection;
* ``Connection: close``, and HTTP/1.0 without ``keep-alive``, mean the connection is not
  reused (:attr:`Response.will_close`).

The parser never looks at how the bytes were split into reads: the same bytes give the same
response whatever the chunking (property-tested in ``tests/unit/test_lab_http.py``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from enum import Enum, auto

import attrs

__all__ = [
    "Connection",
    "HTTPError",
    "IncompleteResponse",
    "ParseError",
    "Response",
    "ResponseParser",
    "build_get",
]

#: Default bound of a response's status line + header block.
MAX_HEADER_BYTES = 64 * 1024
# A chunk-size line is a few hex digits plus extensions; anything longer is not HTTP.
_MAX_CHUNK_LINE = 4096
_READ_SIZE = 65536

_STATUS_LINE = re.compile(r"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: (.*))?")
# RFC 9110 token characters (ASCII only: \w or \d would also match other scripts).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers that decide how the body is delimited and whether the connection is kept.
_FRAMING = frozenset(("connection", "content-length", "transfer-encoding"))
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;.*)?")
_DIGITS = re.compile(r"[0-9]+")



class HTTPError(Exception):
    """A response that could not be read: the base of the parser's errors."""


class ParseError(HTTPError):
    """The bytes received are not an HTTP/1.x response (or break one of its rules)."""


class IncompleteResponse(HTTPError):
    """The connection ended before the response was complete."""


@attrs.frozen
class Response:
    """One final response.

    Attributes:
        status: the status code.
        reason: the reason phrase (may be empty).
        http_version: ``"HTTP/1.1"``, ``"HTTP/1.0"``...
        headers: ``(name, value)`` pairs in the order received, names lower-cased.
        body: the body, de-chunked.
        will_close: the connection cannot carry another request after this one.
    """

    status: int
    reason: str
    http_version: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    will_close: bool

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (any case), in order (e.g. ``Set-Cookie``)."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]


class _State(Enum):
    HEAD = auto()  # status line and headers
    LENGTH = auto()  # Content-Length body
    CHUNK_SIZE = auto()
    CHUNK_DATA = auto()
    CHUNK_END = auto()  # the CRLF after a chunk's data
    TRAILERS = auto()
    UNTIL_CLOSE = auto()
    DONE = auto()


class ResponseParser:
    """Sans-I/O parser of the response to one ``GET``: feed it bytes as they arrive.

    :meth:`feed` returns the :class:`Response` once complete (None until then); bytes
    after the response stay in :attr:`unused` (a well-behaved server sends none: a client
    that finds some should not reuse the connection). At end of stream call
    :meth:`feed_eof`, which completes a body delimited by the close.

    Raises (from both): :class:`ParseError`, :class:`IncompleteResponse`. After an error,
    or once a response is returned, the parser must not be fed again.
    """

    def __init__(self, *, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self._max_header = max_header_bytes
        self._buf = bytearray()
        self._state = _State.HEAD
        # Where the search for the end of the header block resumes (bytes before it have
        # been searched already: keeps feeding byte by byte linear).
        self._scan_from = 0
        self._status = 0
        self._reason = ""
        self._http_version = ""
        self._headers: tuple[tuple[str, str], ...] = ()
        self._will_close = False
        self._remaining = 0  # body bytes left: of the Content-Length, or of the chunk
        self._body: list[bytes] = []

    @property
    def unused(self) -> bytes:
        """Bytes received after the end of the response."""
        return bytes(self._buf) if self._state is _State.DONE else b""

    def feed(self, data: bytes) -> Response | None:
        """Add received bytes; the response if it is now complete."""
        if self._state is _State.DONE:
            raise ParseError("the response is already complete")
        self._buf += data
        return self._advance()

    def feed_eof(self) -> Response:
        """The server closed the connection: the response, or why it is incomplete."""
        if self._state is _State.UNTIL_CLOSE:
            self._body.append(bytes(self._buf))
            self._buf.clear()
            return self._finish()
        if self._state is _State.HEAD:
            if not self._buf:
                raise IncompleteResponse("connection closed before a response")
            raise IncompleteResponse("connection closed in the middle of the headers")
        if self._state is _State.DONE:
            raise ParseError("the response is already complete")
        raise IncompleteResponse("connection closed in the middle of the body")

    # --- the state machine ----------------------------------------------------------------

    def _advance(self) -> Response | None:
        while True:
            state = self._state
            if state is _State.HEAD:
                if not self._parse_head():
                    return None
            elif state is _State.LENGTH:
                if len(self._buf) < self._remaining:
                    return None
                self._take_body(self._remaining)
                return self._finish()
            elif state is _State.CHUNK_SIZE:
                line = self._line(_MAX_CHUNK_LINE, "chunk size")
                if line is None:
                    return None
                match = _CHUNK_SIZE.fullmatch(line)
                if match is None:
                    raise ParseError(f"bad chunk size line {bytes(line)[:80]!r}")
                self._remaining = int(match.group(1), 16)
                self._state = _State.CHUNK_DATA if self._remaining else _State.TRAILERS
            elif state is _State.CHUNK_DATA:
                if not self._buf:
                    return None
                self._take_body(min(self._remaining, len(self._buf)))
                if self._remaining == 0:
                    self._state = _State.CHUNK_END
            elif state is _State.CHUNK_END:
                line = self._line(2, "end of chunk")
                if line is None:
                    return None
                if line:
                    raise ParseError(f"chunk data longer than its size: {bytes(line)[:80]!r}")
                self._state = _State.CHUNK_SIZE
            elif state is _State.TRAILERS:
                line = self._line(self._max_header, "trailer")
                if line is None:
                    return None
                if not line:
                    return self._finish()
                # Trailer fields are read and dropped: nothing in the lab sends any.
            elif state is _State.UNTIL_CLOSE:
                if self._buf:
                    self._body.append(bytes(self._buf))
                    self._buf.clear()
                return None
            else:  # DONE: feed() refuses to get here
                raise AssertionError(state)

    def _line(self, limit: int, what: str) -> bytearray | None:
        """Take one line (without CRLF / LF) off the buffer; None if it is not complete."""
        end = self._buf.find(b"\n")
        if end < 0:
            if len(self._buf) > limit:
                raise ParseError(f"{what} line too long")
            return None
        if end > limit:
            raise ParseError(f"{what} line too long")
        line = self._buf[:end]
        del self._buf[: end + 1]
        if line.endswith(b"\r"):
            del line[-1:]
        return line

    def _take_body(self, n: int) -> None:
        self._body.append(bytes(self._buf[:n]))
        del self._buf[:n]
        self._remaining -= n

    def _parse_head(self) -> bool:
        """Parse the status line and headers once the blank line has arrived."""
        end = _header_end(self._buf, self._scan_from)
        if end is None:
            # The blank line may still complete at the last 2 bytes: only a buffer longer
            # than that is sure to hold a head over the limit (whatever the chunking).
            if len(self._buf) > self._max_header + 2:
                raise ParseError(f"response header block larger than {self._max_header} bytes")
            self._scan_from = max(0, len(self._buf) - 2)
            return False
        head_len, block_len = end
        if head_len > self._max_header:
            raise ParseError(f"response header block larger than {self._max_header} bytes")
        # Decoded once: str operations are cheaper than bytes ones per header, and latin-1
        # maps every byte, so nothing is lost.
        head = self._buf[:head_len].decode("latin-1")
        del self._buf[:block_len]
        self._scan_from = 0
        lines = head.split("\n")
        status_line = lines[0][:-1] if lines[0].endswith("\r") else lines[0]
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise ParseError(f"bad status line {status_line[:80]!r}")
        major, minor, status = int(match.group(1)), int(match.group(2)), int(match.group(3))
        if major != 1:
            raise ParseError(f"unsupported HTTP version {major}.{minor}")
        headers = []
        framing: dict[str, list[str]] = {}
        for line in lines[1:]:
            if line.endswith("\r"):
                line = line[:-1]
            name, colon, value = line.partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                if line[:1] in (" ", "\t"):
                    raise ParseError("obsolete header line folding is not accepted")
                raise ParseError(f"bad header line {line[:80]!r}")
            name = name.lower()
            value = value.strip(" \t")
            headers.append((name, value))
            if name in _FRAMING:
                framing.setdefault(name, []).append(value)
        if 100 <= status < 200:
            if status == 101:
                raise ParseError("unexpected 101 Switching Protocols")
            return True  # an interim response: the final one follows, parse it next
        self._status = status
        self._reason = match.group(4) or ""
        self._http_version = f"HTTP/{major}.{minor}"
        self._headers = tuple(headers)
        tokens = {t.strip().lower() for v in framing.get("connection", ()) for t in v.split(",")}
        self._will_close = "close" in tokens or (minor == 0 and "keep-alive" not in tokens)
        self._choose_body(framing)
        return True

    def _choose_body(self, framing: dict[str, list[str]]) -> None:
        """How the body is delimited (RFC 9112 §6.3, for a response to GET)."""
        if self._status in (204, 304):
            self._state = _State.LENGTH
            self._remaining = 0
            return
        codings = [c.strip().lower() for v in framing.get("transfer-encoding", ())
                   for c in v.split(",") if c.strip()]
        if codings:
            if codings[-1] == "chunked":
                self._state = _State.CHUNK_SIZE
            else:
                self._state = _State.UNTIL_CLOSE
                self._will_close = True
            if "content-length" in framing:
                # Both framings at once is how request smuggling starts: Transfer-Encoding
                # wins (RFC 9112 §6.1) and the connection must not be reused.
                self._will_close = True
            return
        lengths = {v.strip() for value in framing.get("content-length", ())
                   for v in value.split(",")}
        if lengths:
            if len(lengths) != 1 or not _DIGITS.fullmatch(next(iter(lengths))):
                raise ParseError(f"bad Content-Length {sorted(lengths)}")
            self._state = _State.LENGTH
            self._remaining = int(next(iter(lengths)))
            return
        self._state = _State.UNTIL_CLOSE
        self._will_close = True

    def _finish(self) -> Response:
        self._state = _State.DONE
        return Response(
            status=self._status,
            reason=self._reason,
            http_version=self._http_version,
            headers=self._headers,
            body=b"".join(self._body),
            will_close=self._will_close,
        )


def _header_end(buf: bytearray, start: int) -> tuple[int, int] | None:
    """(length of the head up to its last line's LF, length including the blank line), or
    None while the blank line has not arrived.

    The head ends at the first empty line: LF followed by LF or CRLF.
    """
    i = buf.find(b"\n", start)
    while i >= 0:
        if buf[i + 1 : i + 2] == b"\n":
            return i, i + 2
        if buf[i + 1 : i + 3] == b"\r\n":
            return i, i + 3
        if i + 1 >= len(buf) or (buf[i + 1 : i + 2] == b"\r" and i + 2 >= len(buf)):
            return None  # the next line has not arrived yet
        i = buf.find(b"\n", i + 1)
    return None


def build_get(path: str, host: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """The bytes of ``GET <path> HTTP/1.1`` with a ``Host`` header and ``headers``.

    Raises:
        ValueError: a path or header that would break the request line or a header line.
    """
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise ValueError(f"bad request path {path!r}")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or "\r" in value or "\n" in value:
            raise ValueError(f"bad header {name!r}: {value!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Connection:
    """One keep-alive HTTP/1.1 connection to ``host:port``, (re)opened when needed.

    The exchange is split into :meth:`open`, :meth:`send` and :meth:`read_response` so the
    caller decides the exact moment a request is written (and what it carries), and can
    bound the whole exchange with one timeout. :meth:`get` does all three.

    After any error, a timeout or cancellation, and after a response that says
    ``Connection: close``, the connection is closed; the next :meth:`open` makes a new one.

    Args:
        host, port: where to connect.
        local_host: bind this local address first (e.g. one loopback address per user,
            for ``stick on src``).
    """

    def __init__(self, host: str, port: int, *, local_host: str | None = None) -> None:
        self.host = host
        self.port = port
        self.local_host = local_host
        self._host_header = f"{host}:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        #: How many TCP connections this object has opened (reuse shows as requests > opens).
        self.opens = 0

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    async def open(self) -> None:
        """Connect unless an idle connection is still usable."""
        if self._writer is not None and self._reader is not None:
            # A server that closed the idle connection (keep-alive timeout, a stopping app)
            # has sent its FIN already: open a new one rather than fail a request on it, as
            # browsers do. A close that races with the request still fails it.
            if not self._reader.at_eof() and not self._writer.is_closing():
                return
            self.close()
        local = (self.local_host, 0) if self.local_host is not None else None
        try:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, local_addr=local
            )
        except BaseException:
            self.close()
            raise
        self.opens += 1

    def send(self, path: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Write ``GET path`` now (after :meth:`open`)."""
        if self._writer is None:
            raise RuntimeError("send() before open()")
        self._writer.write(build_get(path, self._host_header, headers))

    async def read_response(self) -> Response:
        """Read the response to the request just sent.

        Raises:
            HTTPError: a malformed or incomplete response.
            OSError: the connection broke.
        """
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise RuntimeError("read_response() before send()")
        try:
            # drain() surfaces a reset that happened while writing.
            await writer.drain()
            parser = ResponseParser()
            while True:
                data = await reader.read(_READ_SIZE)
                response = parser.feed(data) if data else parser.feed_eof()
                if response is not None:
                    break
        except BaseException:
            self.close()
            raise
        if response.will_close or parser.unused or not data:
            self.close()
        return response

    async def get(
        self, path: str, headers: Iterable[tuple[str, str]] = (), *, timeout: float
    ) -> Response:
        """Open if needed, send ``GET path``, read the response, all within ``timeout``.

        Raises:
            HTTPError, OSError, asyncio.TimeoutError.
        """

        async def exchange() -> Response:
            await self.open()
            self.send(path, headers)
            return await self.read_response()

        try:
            return await asyncio.wait_for(exchange(), timeout)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (if any); never raises."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            # Aborting would send a RST, which HAProxy logs as a client error; a plain close
            # is enough (nothing is left to read from a connection we give up on).
            writer.close()
