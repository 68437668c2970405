"""Encoding commands for the HAProxy CLI: validation and escaping, no I/O.

HAProxy's CLI tokenizer (management.txt §9.3, "Unix Socket commands"; ``cli_parse_request`` in
``src/cli.c``) splits a line into words on spaces and tabs, ends a command at an unescaped ``;``
and turns ``\\<c>`` into ``<c>`` for any character. Quotes are not special. A line whose last two
bytes are ``<<`` switches the session into payload mode, and CR/LF end the line. So:

- every argument is escaped: space, tab, ``;``, ``\\`` and ``<`` get a backslash. Escaping ``<``
  is not required by the tokenizer, but it guarantees that no argument can make the line end in
  ``<<`` (which would swallow the following lines as payload) whatever HAProxy version parses it.
- what cannot be escaped is refused: CR, LF and NUL (they end or truncate the line) and the empty
  string (the tokenizer has no way to express an empty word).
- backend and server names are checked against HAProxy's own rule for proxy and server names
  (``invalid_char()`` in ``include/haproxy/tools.h``: letters, digits, ``.``, ``:``, ``_``, ``-``),
  or the ``#<id>`` form. A name outside that set cannot exist in HAProxy, so refusing it gives a
  clear error instead of HAProxy's "No such server.".
"""

from __future__ import annotations

import enum
import re

import attrs

from haproxyctl.errors import UsageError

__all__ = [
    "Command",
    "Expect",
    "ServerRef",
    "check_name",
    "escape_arg",
    "unescape_words",
]

_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]+")
_ID_RE = re.compile(r"#[0-9]+")
# Characters the tokenizer treats specially (see module docstring).
_ESCAPE_RE = re.compile(r"[ \t;\\<]")
_FORBIDDEN = {"\r": "carriage return", "\n": "newline", "\0": "NUL byte"}
_SPECIAL_RE = re.compile(r"[ \t;\\<\r\n\0]")
# Verbs are written by haproxyctl itself (never from user input): lowercase words and dashes.
_VERB_RE = re.compile(r"[a-z][a-z0-9\-]*( [a-z][a-z0-9\-]*)*")
_VERBS_SEEN: set[str] = set()


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid HAProxy object name or ``#id``, else raise UsageError.

    ``kind`` names the thing in the error message ("backend name", "server name", ...).
    """
    if not isinstance(value, str):
        raise UsageError(f"{kind} must be a string, not {type(value).__name__}", field=kind)
    if value == "":
        raise UsageError(f"{kind} is empty", field=kind, value=value)
    if _NAME_RE.fullmatch(value) or _ID_RE.fullmatch(value):
        return value
    bad = next(c for c in value if not _NAME_RE.fullmatch(c))
    raise UsageError(
        f"invalid {kind} {value!r}: character {bad!r} is not allowed; HAProxy names use only "
        "letters, digits, '.', ':', '_' and '-' (or '#<id>')",
        field=kind,
        value=value,
    )


def escape_arg(value: str, *, field: str = "argument") -> str:
    """Escape one argument so the CLI tokenizer reads it back as exactly one word, ``value``.

    Raises UsageError for values that cannot be sent (empty, or containing CR, LF or NUL).
    """
    if type(value) is str and value and value.isascii() and _SPECIAL_RE.search(value) is None:
        return value  # the common case: nothing to escape or refuse (bulk changes build many)
    if not isinstance(value, str):
        raise UsageError(f"{field} must be a string, not {type(value).__name__}", field=field)
    if value == "":
        raise UsageError(f"{field} is empty; HAProxy's CLI cannot express an empty word",
                         field=field, value=value)
    for char, label in _FORBIDDEN.items():
        if char in value:
            raise UsageError(
                f"{field} {value!r} contains a {label}, which would end the command line; "
                "it cannot be sent to HAProxy",
                field=field,
                value=value,
            )
    _check_encodable(value, field)
    return _ESCAPE_RE.sub(lambda m: "\\" + m.group(0), value)


def _check_encodable(value: str, field: str) -> None:
    """Invalid UTF-8 in argv reaches Python as lone surrogates, which cannot be sent."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{field} {value!r} is not valid UTF-8 text", field=field,
                         value=value) from None


def unescape_words(line: str) -> list[str]:
    """Split a command line into words the way HAProxy's tokenizer does (one command, no ``;``).

    This is the inverse of :func:`escape_arg` used by the property tests; it mirrors
    ``cli_parse_request``: words are separated by unescaped spaces or tabs, ``\\c`` yields ``c``,
    and an unescaped ``;`` ends the command (we report it as a separate ``";"`` word so callers can
    detect a second command).
    """
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            cur.append(line[i + 1])
            in_word = True
            i += 2
            continue
        if c in " \t":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        elif c == ";":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            words.append(";")
        else:
            cur.append(c)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(cur))
    return words


class Expect(enum.Enum):
    """What a successful reply to a command looks like; used to spot failures HAProxy does not
    tag with an error severity (the master CLI never does)."""

    #: Success is an empty reply; any text is an error (``set server``, ``enable health``...).
    EMPTY = "empty"
    #: Success may carry an informational message (``set server ... addr``).
    MESSAGE = "message"
    #: The reply is data to parse (``show ...``, ``get weight``).
    DATA = "data"


def _backend_name(value: str) -> str:
    return check_name("backend name", value)


def _server_name(value: str) -> str:
    return check_name("server name", value)


@attrs.frozen
class ServerRef:
    """A ``backend/server`` pair with both names validated."""

    backend: str = attrs.field(converter=_backend_name)
    server: str = attrs.field(converter=_server_name)

    @classmethod
    def parse(cls, text: str) -> ServerRef:
        """Parse ``"backend/server"``."""
        if not isinstance(text, str) or text.count("/") != 1:
            raise UsageError(
                f"invalid server reference {text!r}: expected BACKEND/SERVER", field="server",
                value=text,
            )
        backend, server = text.split("/")
        return cls(backend, server)

    def __str__(self) -> str:
        return f"{self.backend}/{self.server}"


@attrs.frozen
class Command:
    """One CLI command, validated and escaped, ready to be written on a socket.

    Build commands with :meth:`build`; ``line`` never contains a newline, and contains an
    unescaped ``;`` only where ``build`` was not used (:meth:`raw`).
    """

    line: str
    expect: Expect = Expect.DATA
    #: Safe to send again if the connection broke before any reply came back.
    idempotent: bool = True

    @classmethod
    def build(
        cls,
        verb: str,
        *args: str,
        expect: Expect = Expect.DATA,
        idempotent: bool = True,
    ) -> Command:
        """``verb`` is haproxyctl's own text (e.g. ``"set server"``); every arg is escaped."""
        if verb not in _VERBS_SEEN:
            if not _VERB_RE.fullmatch(verb):
                raise ValueError(f"internal error: invalid verb {verb!r}")
            _VERBS_SEEN.add(verb)
        parts = [verb]
        parts.extend(escape_arg(a) for a in args)
        return cls(" ".join(parts), expect=expect, idempotent=idempotent)

    @classmethod
    def raw(cls, line: str, *, expect: Expect = Expect.DATA) -> Command:
        """A command line given verbatim by the user (``haproxyctl raw``).

        It is sent as one line: ``;`` chaining is the user's explicit choice, but CR, LF and NUL
        are refused so it can never become a second line, and it is never retried.
        """
        if not isinstance(line, str) or not line.strip():
            raise UsageError("command is empty", field="command", value=line)
        for char, label in _FORBIDDEN.items():
            if char in line:
                raise UsageError(
                    f"command contains a {label}; send one command line at a time",
                    field="command",
                    value=line,
                )
        _check_encodable(line, "command")
        if line.rstrip().endswith("<<"):
            raise UsageError(
                "payload commands ('<<') are not supported by 'raw'; use the map/table APIs",
                field="command",
                value=line,
            )
        return cls(line.strip(), expect=expect, idempotent=False)

    def encode(self) -> bytes:
        """The bytes to write: the line and its terminating LF."""
        return self.line.encode("utf-8") + b"\n"

    def __str__(self) -> str:
        return self.line
