"""Classifying a reply as success or a typed error. No I/O.

HAProxy's CLI has no status codes (management.txt §9.3). Three signals are combined, strongest
first:

1. **Severity.** On worker sockets haproxyctl sends ``set severity-output number`` once per
   session (§9.3, "set severity-output"), so messages from ``cli_err()`` arrive as
   ``[3]: <text>`` (3 = LOG_ERR) and informational ones as ``[6]: <text>``. Anything at severity
   0-3 is an error. The master CLI cannot carry the setting from one ``@1`` command to the next,
   and a few 2.6 errors are printed without severity (``Session not found.``), hence:
2. **Known messages** (exact 2.6-3.2 texts, ``shared/haproxy-runtime-api.md`` §12) pick the error
   class: no such backend/server/table/map/session, permission denied, unknown command, bad
   argument. The "Unknown command" help dump is tagged ``[6]`` (info), so it needs this table.
3. **The command's contract** (:class:`~haproxyctl.protocol.encode.Expect`): a command whose
   success is an empty reply (``set server``, ``enable health``...) fails on *any* text, even a
   message this table has never seen. That is what makes the master CLI safe to use.
"""

from __future__ import annotations

import re

import attrs

from haproxyctl import errors
from haproxyctl.protocol.encode import Command, Expect

__all__ = ["Reply", "check_reply", "parse_reply"]

_SEVERITY_RE = re.compile(r"\[([0-7])\]: ")
_LOG_ERR = 3

# (prefix of the message, error class). First match wins; prefixes are exact HAProxy texts.
_KNOWN: tuple[tuple[str, type[errors.CommandError]], ...] = (
    ("Permission denied", errors.PermissionDenied),
    ("This command is restricted to", errors.PermissionDenied),
    ("Unknown command", errors.UnknownCommand),
    ("No such backend.", errors.NoSuchBackend),
    ("Can't find backend.", errors.NoSuchBackend),
    ("No such proxy.", errors.NoSuchBackend),
    ("No such server.", errors.NoSuchServer),
    ("No such table", errors.NoSuchTable),
    ("Unknown map identifier", errors.NoSuchMap),
    ("Unknown ACL identifier", errors.NoSuchMap),
    ("Session not found.", errors.NoSuchSession),
    ("No such session", errors.NoSuchSession),
    ("Can't find the target PID matching the prefix", errors.NoSuchProcess),
    # Arguments HAProxy rejected.
    ("Require ", errors.InvalidArgument),
    ("'set server <srv>", errors.InvalidArgument),
    ("usage: ", errors.InvalidArgument),
    ("Absolute weight can only be", errors.InvalidArgument),
    ("Relative weight", errors.InvalidArgument),
    ("Empty weight string", errors.InvalidArgument),
    ("Backend is using a static LB algorithm", errors.InvalidArgument),
    ("Filter entry #", errors.InvalidArgument),
    ("Key value expected", errors.InvalidArgument),
    ("Unknown data type", errors.InvalidArgument),
    ("Data type not stored", errors.InvalidArgument),
    ("entry not found.", errors.InvalidArgument),
    ("Key not found.", errors.InvalidArgument),
    ("Version number out of range.", errors.InvalidArgument),
    ("Expects an integer value.", errors.InvalidArgument),
    ("Invalid timeout value.", errors.InvalidArgument),
    ("Invalid statistics domain.", errors.InvalidArgument),
    ("agent checks are not enabled", errors.InvalidArgument),
    ("Agent was not configured", errors.InvalidArgument),
    ("Health check was not configured", errors.InvalidArgument),
    ("cannot change health on a tracking server", errors.InvalidArgument),
    ("Only servers in maintenance mode can be deleted", errors.InvalidArgument),
    ("Server still has connections attached", errors.InvalidArgument),
    ("Already exists a server", errors.InvalidArgument),
    ("'server' expects", errors.InvalidArgument),
    ("Backend must use a dynamic load balancing", errors.InvalidArgument),
    ("'cookie' option is not accepted", errors.InvalidArgument),
    ("Too many arguments.", errors.InvalidArgument),
)
# Messages that start with the offending value: matched as a pattern anchored at the start, so
# data lines ("0x... key value") can never match them.
_KNOWN_PATTERNS: tuple[tuple[re.Pattern[str], type[errors.CommandError]], ...] = (
    (re.compile(r"'[^'\n]*' is not a valid IPv4 or IPv6 address"), errors.InvalidArgument),
)
# Messages with their distinctive part later in the first line; not applied to data replies.
_KNOWN_CONTAINS: tuple[tuple[str, type[errors.CommandError]], ...] = (
    ("expects 'up', 'stopping', or 'down'", errors.InvalidArgument),
    ("Invalid addr", errors.InvalidArgument),
    ("Invalid port", errors.InvalidArgument),
)


@attrs.frozen
class Reply:
    """A framed reply.

    Attributes:
        raw: the reply text as HAProxy wrote it (framing LFs removed, severity prefix kept).
        text: the reply without the severity prefix.
        severity: the syslog severity HAProxy tagged the reply with, or None.
    """

    raw: str
    text: str
    severity: int | None = None


def parse_reply(raw: str) -> Reply:
    """Split off the ``[N]: `` severity prefix, if any."""
    m = _SEVERITY_RE.match(raw)
    if m is None:
        return Reply(raw=raw, text=raw, severity=None)
    return Reply(raw=raw, text=raw[m.end():], severity=int(m.group(1)))


# One alternation instead of ~45 startswith() calls per reply: bulk changes check thousands.
_KNOWN_RE = re.compile("|".join(re.escape(prefix) for prefix, _ in _KNOWN))
_KNOWN_BY_PREFIX = dict(_KNOWN)


def _known_class(text: str, *, data: bool) -> type[errors.CommandError] | None:
    if not text:
        return None
    m = _KNOWN_RE.match(text)
    if m is not None:
        return _KNOWN_BY_PREFIX[m.group(0)]
    for pattern, cls in _KNOWN_PATTERNS:
        if pattern.match(text):
            return cls
    if data:
        # Data (a map value, a server description) may contain these phrases anywhere.
        return None
    first_line = text.split("\n", 1)[0]
    for needle, cls in _KNOWN_CONTAINS:
        if needle in first_line:
            return cls
    return None


def check_reply(
    command: Command, reply: Reply, *, address: str | None = None, strict: bool = True
) -> Reply:
    """Return ``reply`` if it means success for ``command``, else raise a CommandError subclass.

    With ``strict=False`` only known messages and error severities count (the command's contract
    is not applied): used on a reply cut short by a close, to report a known error instead.
    """
    text = reply.text
    cls = _known_class(text, data=command.expect is Expect.DATA)
    is_error = (
        cls is not None
        or (reply.severity is not None and reply.severity <= _LOG_ERR)
        or (strict and command.expect is Expect.EMPTY and text.strip() != "")
    )
    if not is_error:
        return reply
    if cls is None:
        cls = errors.CommandError
    # The "Unknown command" reply goes on with a help listing; its first words are the reason.
    reason = "Unknown command" if cls is errors.UnknownCommand else (
        text.strip().split("\n", 1)[0] or "(empty reply)")
    hint = ""
    if cls is errors.PermissionDenied:
        hint = (" (this socket's level is too low: server changes need 'level admin', stick "
                "table changes 'level operator'; see 'show cli level')")
    raise cls(
        f"HAProxy refused {command.line!r}: {reason}{hint}",
        reply=reply.raw,
        reason=reason,
        severity=reply.severity,
        address=address,
        command=command.line,
    )
