"""The lab's HTTP/1.1 response parser (haproxyctl.lab.httpclient): the response found in a byte
stream must not depend on how the stream was split into reads, and must be the one that was
sent, for every way of delimiting a body (Content-Length, chunked, until close)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from haproxyctl.lab.httpclient import (
    HTTPError,
    IncompleteResponse,
    ParseError,
    Response,
    ResponseParser,
    build_get,
)

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
FRAMING = {"connection", "content-length", "transfer-encoding"}


# --- a model of responses and how a server may write them -------------------------------------


@attrs.frozen
class Model:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # names as written (any case), values without OWS
    body: bytes
    framing: str  # "length", "chunked", "close", "none" (204/304)
    close: bool  # a Connection: close header
    http10: bool


names = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12).filter(
    lambda n: n.lower() not in FRAMING)
# Values are latin-1 text without CR/LF; surrounding blanks are not part of a value.
values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                        blacklist_characters="\x7f"), max_size=30).map(
    lambda v: v.strip(" \t"))
reasons = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@st.composite
def models(draw: st.DrawFn) -> Model:
    framing = draw(st.sampled_from(["length", "chunked", "close", "none"]))
    if framing == "none":
        status = draw(st.sampled_from([204, 304]))
        body = b""
    else:
        status = draw(st.integers(200, 599).filter(lambda s: s not in (204, 304)))
        body = draw(st.binary(max_size=300))
    return Model(status, draw(reasons), tuple(draw(st.lists(st.tuples(names, values),
                                                             max_size=6))),
                 body, framing, draw(st.booleans()), draw(st.booleans()))


@st.composite
def wire_bytes(draw: st.DrawFn, model: Model) -> bytes:
    """One way a server could write ``model``: line endings, blanks, chunk sizes vary."""

    def eol() -> str:
        return draw(st.sampled_from(["\r\n", "\n"]))

    def ows() -> str:
        return draw(st.sampled_from(["", " ", "  ", "\t"]))

    out = ""
    if draw(st.booleans()):
        out += f"HTTP/1.1 100 Continue{eol()}{eol()}"
    version = "HTTP/1.0" if model.http10 else "HTTP/1.1"
    out += f"{version} {model.status}"
    out += f" {model.reason}" if model.reason or draw(st.booleans()) else ""
    out += eol()
    headers = list(model.headers)
    framing: list[tuple[str, str]] = []
    if model.close:
        framing.append((draw(st.sampled_from(["Connection", "connection", "CONNECTION"])),
                        draw(st.sampled_from(["close", "Close", "keep-alive, close"]))))
    elif model.http10:
        framing.append(("Connection", "keep-alive"))
    if model.framing == "length":
        framing.append((draw(st.sampled_from(["Content-Length", "content-length"])),
                        str(len(model.body))))
    elif model.framing == "chunked":
        framing.append(("Transfer-Encoding", draw(st.sampled_from(["chunked", "Chunked"]))))
    for header in framing:  # anywhere among the others, which keep their order
        headers.insert(draw(st.integers(0, len(headers))), header)
    for name, value in headers:
        out += f"{name}:{ows()}{value}{ows()}{eol()}"
    out += eol()
    data = out.encode("latin-1")
    if model.framing == "chunked":
        body = model.body
        while body:
            n = draw(st.integers(1, len(body)))
            size = draw(st.sampled_from([f"{n:x}", f"{n:X}", f"{n:x};ext=1", f"{n:x} ;e"]))
            data += size.encode() + eol().encode() + body[:n] + eol().encode()
            body = body[n:]
        data += b"0" + eol().encode()
        if draw(st.booleans()):
            data += b"X-Trailer: 1" + eol().encode()
        data += eol().encode()
    else:
        data += model.body
    return data


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def expected_will_close(model: Model) -> bool:
    return model.close or model.framing == "close"


def check(response: Response, model: Model) -> None:
    assert response.status == model.status
    assert response.reason == model.reason
    assert response.body == model.body
    assert response.http_version == ("HTTP/1.0" if model.http10 else "HTTP/1.1")
    assert response.will_close == expected_will_close(model)
    own = [(n.lower(), v) for n, v in response.headers if n not in FRAMING]
    assert own == [(n.lower(), v) for n, v in model.headers]
    for name, value in model.headers:  # case-insensitive lookups
        assert response.get_all(name.upper()) == [v for n, v in model.headers
                                                  if n.lower() == name.lower()]
        assert response.header(name.swapcase()) == response.get_all(name)[0]
        assert value in response.get_all(name)


# --- valid responses, any chunking ------------------------------------------------------------


@given(st.data(), models(), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_chunking_gives_the_response_that_was_sent(data: st.DataObject, model: Model,
                                                       cuts: list[int]) -> None:
    raw = data.draw(wire_bytes(model))
    pieces = split(raw, cuts)
    parser = ResponseParser()
    response = None
    for i, piece in enumerate(pieces):
        response = parser.feed(piece)
        if response is not None:
            # Complete exactly with its last byte (not before), for delimited bodies.
            assert i == len(pieces) - 1
            assert model.framing != "close"
    if model.framing == "close":
        assert response is None
        response = parser.feed_eof()
    assert response is not None
    check(response, model)
    assert parser.unused == b""


@given(st.data(), models().filter(lambda m: m.framing != "close"), st.binary(max_size=40),
       st.lists(st.integers(0, 10_000), max_size=8))
def test_bytes_after_the_response_are_left_unused(data: st.DataObject, model: Model,
                                                  extra: bytes, cuts: list[int]) -> None:
    raw = data.draw(wire_bytes(model))
    stream = raw + extra
    parser = ResponseParser()
    pieces = split(stream, cuts)
    for i, piece in enumerate(pieces):
        response = parser.feed(piece)
        if response is not None:
            check(response, model)
            assert parser.unused + b"".join(pieces[i + 1:]) == extra
            return
    raise AssertionError("no response")


def parse_all(pieces: Sequence[bytes], eof: bool) -> tuple[object, bytes]:
    """Feed pieces until a response or an error; then EOF if asked. (result, rest)."""
    parser = ResponseParser(max_header_bytes=200)
    try:
        for i, piece in enumerate(pieces):
            response = parser.feed(piece)
            if response is not None:
                return response, parser.unused + b"".join(pieces[i + 1:])
        if eof:
            return parser.feed_eof(), b""
    except HTTPError as exc:
        return type(exc), b""
    return None, b""


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid response with a few bytes replaced, inserted or cut: near misses."""
    data = bytearray(draw(wire_bytes(draw(models()))))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["replace", "insert", "cut"]))
        piece = draw(st.sampled_from([b"\r", b"\n", b":", b" ", b"x", b"0", b"F", b";",
                                      b"\r\n", b"\r\n\r\n"]))
        if how == "replace":
            data[i:i + 1] = piece
        elif how == "insert":
            data[i:i] = piece
        else:
            del data[i:]
    return bytes(data)


arbitrary = st.one_of(
    st.binary(max_size=400),
    mutated(),
    st.builds(lambda a, b: a + b, st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 404 X\n",
                                                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                                                   b"chunked\r\n\r\n"]),
              st.binary(max_size=400)),
    st.lists(st.sampled_from([b"\r\n", b"\n", b":", b" ", b"a", b"0", b"5", b";",
                              b"HTTP/1.1 200 OK", b"Content-Length: 3", b"chunked",
                              b"Transfer-Encoding: chunked"]), max_size=60).map(b"".join),
)


@given(arbitrary, st.lists(st.integers(0, 10_000), max_size=12), st.booleans())
@example(b"HTTP/1.1 200 OK\r\n" + b"A: " + b"x" * 180 + b"\n\r\n", [], True)
def test_arbitrary_bytes_parse_alike_whatever_the_chunking(data: bytes, cuts: list[int],
                                                           eof: bool) -> None:
    """Only HTTPError subclasses escape, and the outcome (response, rest, or error type)
    is the same as when everything arrives at once."""
    assert parse_all(split(data, cuts), eof) == parse_all([data], eof)


# --- specific rules ---------------------------------------------------------------------------


def one(data: bytes, eof: bool = False) -> Response:
    parser = ResponseParser()
    response = parser.feed(data)
    if response is None and eof:
        response = parser.feed_eof()
    assert response is not None
    return response


def test_what_the_lab_app_and_haproxy_send() -> None:
    r = one(b"HTTP/1.1 200 OK\r\nServer: BaseHTTP/0.6 Python/3.11.7\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 6\r\nX-Server: s1\r\n"
            b"X-Version: v1\r\nset-cookie: SRV=s1; path=/\r\ncache-control: private\r\n\r\n"
            b"s1 v1\n")
    assert (r.status, r.header("x-server"), r.header("X-VERSION"), r.body) == \
        (200, "s1", "v1", b"s1 v1\n")
    assert r.get_all("Set-Cookie") == ["SRV=s1; path=/"]
    assert not r.will_close
    r = one(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 107\r\n"
            b"cache-control: no-cache\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n"
            + b"x" * 107)
    assert r.status == 503
    assert r.will_close


@pytest.mark.parametrize(("raw", "error"), [
    (b"HTTP/2.0 200 OK\r\n\r\n", ParseError),
    (b"HTTP/1.1 20 OK\r\n\r\n", ParseError),
    (b"ICY 200 OK\r\n\r\n", ParseError),
    (b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", ParseError),
    (b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", ParseError),
    (b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n", ParseError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", ParseError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", ParseError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", ParseError),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ParseError),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", ParseError),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", ParseError),
])
def test_malformed_responses_are_parse_errors(raw: bytes, error: type[HTTPError]) -> None:
    with pytest.raises(error):
        ResponseParser().feed(raw)


@pytest.mark.parametrize("raw", [
    b"",
    b"HTTP/1.1 200 OK\r\nContent",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
])
def test_a_close_before_the_end_is_an_incomplete_response(raw: bytes) -> None:
    parser = ResponseParser()
    assert parser.feed(raw) is None
    with pytest.raises(IncompleteResponse):
        parser.feed_eof()


def test_header_block_limit() -> None:
    head = b"HTTP/1.1 200 OK\r\nA: " + b"x" * 100
    with pytest.raises(ParseError, match="larger than"):
        ResponseParser(max_header_bytes=64).feed(head)
    assert ResponseParser(max_header_bytes=200).feed(head + b"\r\nContent-Length: 0\r\n\r\n")


def test_framing_rules() -> None:
    # Transfer-Encoding wins over Content-Length, and the connection is not reused.
    r = one(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n")
    assert r.body == b"ok"
    assert r.will_close
    # A coding other than chunked last: the body runs until the close.
    r = one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz", eof=True)
    assert r.body == b"zzz"
    assert r.will_close
    # Identical repeated Content-Length values are one length.
    assert one(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok").body == b"ok"
    # 204 and 304 have no body whatever they say.
    parser = ResponseParser()
    r304 = parser.feed(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\nNEXT")
    assert r304 is not None
    assert r304.body == b""
    assert parser.unused == b"NEXT"
    # HTTP/1.0 keeps the connection only with keep-alive.
    assert one(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").will_close
    assert not one(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
                   ).will_close
    # Interim responses are skipped; 103 Early Hints has headers of its own.
    r = one(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n"
            b"Content-Length: 0\r\n\r\n")
    assert r.status == 200
    assert r.headers == (("content-length", "0"),)


def test_feeding_after_the_end_is_refused() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ParseError):
        parser.feed(b"x")


def test_build_get() -> None:
    assert build_get("/a?b=1", "127.0.0.1:80", [("Cookie", "SRV=s1"), ("X-User", "user3")]) == (
        b"GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:80\r\nCookie: SRV=s1\r\nX-User: user3\r\n\r\n")
    for path, headers in [("a", []), ("/a b", []), ("/", [("Bad Name", "x")]),
                          ("/", [("X", "a\r\nInjected: 1")])]:
        with pytest.raises(ValueError, match="bad"):
            build_get(path, "h", headers)
