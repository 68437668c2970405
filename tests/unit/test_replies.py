"""Classifying replies: HAProxy has no status codes, so the exact 2.6 texts (reference §12, §2,
§6, §7, §8, §9) and the command's contract decide between success and a typed error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxyctl import commands as cmd
from haproxyctl import errors
from haproxyctl.protocol.encode import Command, Expect
from haproxyctl.protocol.replies import Reply, check_reply, parse_reply

DATA = Command.build("show stat")
EMPTY = Command.build("set server", "be_cookie/s1", "state", "drain", expect=Expect.EMPTY)
MESSAGE = Command.build("set server", "be_cookie/s1", "addr", "127.0.0.2", expect=Expect.MESSAGE)

# (message as HAProxy 2.6.12 prints it, error class). Texts from reference §12 unless noted.
KNOWN_ERRORS: list[tuple[str, type[errors.CommandError]]] = [
    ("No such backend.", errors.NoSuchBackend),
    ("Can't find backend.", errors.NoSuchBackend),
    ("No such proxy.", errors.NoSuchBackend),
    ("No such server.", errors.NoSuchServer),
    ("No such table", errors.NoSuchTable),
    ("Unknown map identifier. Please use #<id> or <file>.", errors.NoSuchMap),
    ("Session not found.", errors.NoSuchSession),
    ("No such session (use 'show sess').", errors.NoSuchSession),
    ("Can't find the target PID matching the prefix '@!99999'", errors.NoSuchProcess),
    ("Permission denied", errors.PermissionDenied),  # §2
    ("This command is restricted to expert mode only.", errors.PermissionDenied),  # §2
    ("This command is restricted to experimental mode only.", errors.PermissionDenied),
    (
        "Unknown command. Please enter one of the following commands only:\n"
        "  abort ssl ca-file <cafile>              : abort a transaction for a CA file\n"
        "  quit                                    : disconnect",
        errors.UnknownCommand,
    ),
    (
        "Unknown command, but maybe one of the following ones is a better match:\n"
        "  show servers conn [<backend>]           : dump server connections status\n"
        "  show servers state [<backend>]          : dump volatile server information",
        errors.UnknownCommand,
    ),
    ("Require 'backend/server'.", errors.InvalidArgument),
    ("'set server <srv> state' expects 'ready', 'drain' and 'maint'.", errors.InvalidArgument),
    (
        "usage: set server <backend>/<server> addr | agent | agent-addr | agent-port | "
        "agent-send | check-addr | check-port | fqdn | health | ssl | state | weight",
        errors.InvalidArgument,
    ),
    ("Require <weight> or <weight%>.", errors.InvalidArgument),
    ("Empty weight string empty or preceded by garbage", errors.InvalidArgument),
    ("Absolute weight can only be between 0 and 256 inclusive.", errors.InvalidArgument),
    (
        "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.",
        errors.InvalidArgument,
    ),
    ("'set server <srv> health' expects 'up', 'stopping', or 'down'.", errors.InvalidArgument),
    ("agent checks are not enabled on this server.", errors.InvalidArgument),
    ("Agent was not configured on this server, cannot enable.", errors.InvalidArgument),
    ("Health check was not configured on this server, cannot enable.", errors.InvalidArgument),
    ("cannot change health on a tracking server.", errors.InvalidArgument),  # §3.1
    ("Filter entry #1: Unknown data type", errors.InvalidArgument),
    ("Filter entry #1: Data type not stored in this table", errors.InvalidArgument),
    (
        'Filter entry #1: Require and operator among "eq", "ne", "le", "ge", "lt", "gt"',
        errors.InvalidArgument,
    ),
    ("Key value expected", errors.InvalidArgument),
    ("Unknown data type", errors.InvalidArgument),
    ("Require a valid integer value to store", errors.InvalidArgument),
    ("entry not found.", errors.InvalidArgument),
    ("Key not found.", errors.InvalidArgument),
    ("Version number out of range.", errors.InvalidArgument),
    ("Expects an integer value.", errors.InvalidArgument),
    ("Invalid timeout value.", errors.InvalidArgument),
    ("Invalid statistics domain.", errors.InvalidArgument),  # §5.1
    ("'not-an-ip' is not a valid IPv4 or IPv6 address.", errors.InvalidArgument),  # §8
    ("Only servers in maintenance mode can be deleted.", errors.InvalidArgument),  # §6
    (
        "Server still has connections attached to it, cannot remove it.",
        errors.InvalidArgument,
    ),
    ("Already exists a server with the same name in backend.", errors.InvalidArgument),
    ("'server' expects <name> and <addr>[:<port>] as arguments.", errors.InvalidArgument),
    (
        "Backend must use a dynamic load balancing to support dynamic servers.",
        errors.InvalidArgument,
    ),
    ("'cookie' option is not accepted for dynamic server", errors.InvalidArgument),
    ("Too many arguments. Commands must have at most 64 arguments.", errors.InvalidArgument),
]


def _reply_text(message: str, severity: str, trailing_lf: bool) -> str:
    """The reply text after framing (body_text), as the connection hands it to parse_reply."""
    return f"{severity}{message}" + ("\n" if trailing_lf else "")


@pytest.mark.parametrize(("message", "cls"), KNOWN_ERRORS)
@pytest.mark.parametrize("severity", ["", "[3]: "])
@pytest.mark.parametrize("command", [DATA, EMPTY, MESSAGE], ids=["data", "empty", "message"])
def test_known_error_maps_to_its_class(
    message: str, cls: type[errors.CommandError], severity: str, command: Command
) -> None:
    raw = _reply_text(message, severity, trailing_lf=False)
    reply = parse_reply(raw)
    assert reply.text == message
    with pytest.raises(errors.CommandError) as info:
        check_reply(command, reply, address="unix:/run/haproxy/admin.sock")
    exc = info.value
    assert type(exc) is cls
    assert exc.reply == raw
    assert exc.command == command.line
    assert exc.address == "unix:/run/haproxy/admin.sock"
    assert exc.severity == (3 if severity else None)
    assert "\n" not in exc.reason
    assert exc.exit_code == 1
    assert command.line in str(exc)
    if cls is errors.UnknownCommand:
        assert exc.reason == "Unknown command"
    else:
        assert exc.reason == message
        assert message in str(exc)


def test_unknown_command_help_dump_tagged_info_is_still_an_error() -> None:
    """With severity-output number the help dump after "Unknown command" is tagged [6]."""
    raw = "[6]: Unknown command, but maybe one of the following ones is a better match:\n  x"
    with pytest.raises(errors.UnknownCommand) as info:
        check_reply(DATA, parse_reply(raw))
    assert info.value.severity == 6


def test_permission_denied_explains_the_socket_level() -> None:
    with pytest.raises(errors.PermissionDenied) as info:
        check_reply(EMPTY, parse_reply("[3]: Permission denied\n"))
    assert "level" in str(info.value)
    assert info.value.reason == "Permission denied"


@pytest.mark.parametrize(
    "raw",
    [
        "[6]: 2.6.12-1+deb12u4",
        "2.6.12-1+deb12u4",
        "admin",
        "# name\nbe_cookie\nbe_stick",
        "[4]: a warning is not an error",
        "[5]: notice",
        "[7]: debug",
        'type=str, case=sensitive, found=no',
        "",
    ],
)
def test_data_replies_are_success(raw: str) -> None:
    reply = check_reply(DATA, parse_reply(raw))
    assert reply.raw == raw


@pytest.mark.parametrize("level", ["0", "1", "2", "3"])
def test_error_severities_fail_even_with_unknown_text(level: str) -> None:
    raw = f"[{level}]: something new HAProxy 3.x says"
    with pytest.raises(errors.CommandError) as info:
        check_reply(DATA, parse_reply(raw))
    assert type(info.value) is errors.CommandError
    assert info.value.severity == int(level)
    assert info.value.reason == "something new HAProxy 3.x says"
    assert info.value.reply == raw


@pytest.mark.parametrize(
    "raw",
    [
        "IP changed from '127.0.0.1' to '127.0.0.2' by 'stats socket command'",
        "[6]: no need to change the addr, port changed from '18082' to '18099' by "
        "'stats socket command'",
        "",
    ],
)
def test_message_commands_accept_informational_text(raw: str) -> None:
    assert check_reply(MESSAGE, parse_reply(raw)).raw == raw


@pytest.mark.parametrize(
    "raw", ["", "\n", "  ", "[6]: "],
)
def test_empty_commands_succeed_on_empty_text(raw: str) -> None:
    assert check_reply(EMPTY, parse_reply(raw)).raw == raw


@given(st.text(min_size=1).filter(lambda t: t.strip() != ""))
def test_empty_commands_fail_on_any_text(text: str) -> None:
    """The master CLI sends no severity: unknown text on a `set` command must still fail."""
    reply = Reply(raw=text, text=text, severity=None)
    with pytest.raises(errors.CommandError) as info:
        check_reply(EMPTY, reply)
    assert info.value.reply == text
    assert info.value.command == EMPTY.line


def test_non_strict_only_reports_known_errors() -> None:
    unknown = parse_reply("Some text we never saw")
    assert check_reply(EMPTY, unknown, strict=False) is unknown
    with pytest.raises(errors.NoSuchServer):
        check_reply(EMPTY, parse_reply("No such server."), strict=False)


@pytest.mark.parametrize(
    ("raw", "text", "severity"),
    [
        ("[3]: No such server.", "No such server.", 3),
        ("[6]: 2.6.12", "2.6.12", 6),
        ("[3]:No such server.", "[3]:No such server.", None),
        ("[8]: x", "[8]: x", None),
        ("[err]: No such server.", "[err]: No such server.", None),
        (" [3]: x", " [3]: x", None),
        ("x [3]: y", "x [3]: y", None),
        ("", "", None),
    ],
)
def test_parse_reply_splits_the_severity(raw: str, text: str, severity: int | None) -> None:
    reply = parse_reply(raw)
    assert (reply.raw, reply.text, reply.severity) == (raw, text, severity)


def test_severity_string_format_is_still_classified_by_message() -> None:
    """`[err]: ` (severity-output string) is not split off, so the message is not recognised by
    prefix; for an EMPTY command the contract still catches it."""
    with pytest.raises(errors.CommandError):
        check_reply(EMPTY, parse_reply("[err]: No such server."))


@given(
    st.one_of(
        st.text(),
        st.builds(lambda s, t: f"[{s}]: {t}", st.integers(0, 9), st.text()),
        st.sampled_from([m for m, _ in KNOWN_ERRORS]).map(lambda m: m + "\nmore"),
    ),
    st.sampled_from([DATA, EMPTY, MESSAGE]),
    st.booleans(),
)
def test_check_reply_returns_or_raises_command_errors_only(
    raw: str, command: Command, strict: bool
) -> None:
    reply = parse_reply(raw)
    assert reply.raw == raw
    assert raw.endswith(reply.text)
    try:
        result = check_reply(command, reply, strict=strict)
    except errors.CommandError as exc:
        error = exc
    else:
        assert result is reply
        return
    assert error.reply == raw
    assert error.command == command.line
    assert error.severity == reply.severity
    assert "\n" not in error.reason
    assert error.reason


@pytest.mark.parametrize(
    "raw",
    [
        # `show map` whose first entry's value happens to contain a known error phrase: the
        # entries are user data, so the reply is a success.
        "0x55d0c1e0a1b0 blocked.example.com Invalid address\n0x55d0c1e0a240 ok.example.com y",
        "0x55d0c1e0a1b0 10.0.0.1 '10.0.0.1' is not a valid IPv4 or IPv6 address",
        # `get map` (through `haproxyctl raw`) returning such a value.
        'type=str, case=sensitive, found=yes, idx=tree, key="x", value="Invalid port", '
        'type="str"',
    ],
)
def test_data_reply_containing_an_error_phrase_is_data(raw: str) -> None:
    """The "contains" rules (``Invalid addr``, ``Invalid port``, ``is not a valid IPv4...``)
    must not turn the *data* of a DATA command into an error: ``client.map_entries()`` would
    raise InvalidArgument for a map whose first value mentions "Invalid address"."""
    for command in (cmd.show_map("/etc/haproxy/blocked.map"),
                    Command.raw("get map /etc/haproxy/blocked.map x")):
        assert check_reply(command, parse_reply(raw)).text == raw
