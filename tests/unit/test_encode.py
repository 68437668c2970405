"""Encoding commands: escaping, name checks and the invariants that keep one command one line.

HAProxy's tokenizer (reference §1.5): words split on space/tab, ``\\c`` -> ``c``, an unescaped
``;`` ends the command, CR/LF end the line, a line ending in ``<<`` starts a payload.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from haproxyctl.errors import UsageError
from haproxyctl.protocol.encode import (
    Command,
    Expect,
    ServerRef,
    check_name,
    escape_arg,
    unescape_words,
)

FORBIDDEN = "\r\n\0"
#: Text HAProxy can receive as one argument: anything but CR, LF, NUL (and lone surrogates,
#: which are not text and cannot be encoded in UTF-8).
sendable = st.text(
    alphabet=st.characters(blacklist_characters=FORBIDDEN, blacklist_categories=["Cs"]),
    min_size=1,
)
#: Same, biased towards the characters the tokenizer treats specially.
tricky = st.text(alphabet=st.sampled_from(" \t;\\<>#'\"a0-_.:/@%é"), min_size=1)
args = st.one_of(sendable, tricky)
verbs = st.sampled_from(
    ["show stat", "set server", "add map", "set table", "clear table", "get weight", "prompt"]
)


def _unescaped(line: str) -> dict[int, str]:
    """The characters of ``line`` HAProxy's tokenizer sees unescaped, by position."""
    out: dict[int, str] = {}
    i = 0
    while i < len(line):
        if line[i] == "\\":
            assert i + 1 < len(line), "a trailing backslash would escape the newline"
            i += 2
            continue
        out[i] = line[i]
        i += 1
    return out


# -- escape_arg / unescape_words round trip -----------------------------------------------------


@given(args)
@example("a;b")
@example("a b")
@example("a\\")
@example("<<")
@example("\\;")
@example("x<<")
def test_escape_round_trips_to_exactly_one_word(value: str) -> None:
    escaped = escape_arg(value)
    assert unescape_words(escaped) == [value]


@given(args)
def test_escaped_arg_has_no_unescaped_special_character(value: str) -> None:
    escaped = escape_arg(value)
    assert not set(_unescaped(escaped).values()) & set(" \t;<"), (value, escaped)


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ("a b", "a\\ b"),
        ("a\tb", "a\\\tb"),
        ("k;1", "k\\;1"),
        ("v\\2", "v\\\\2"),
        ("<<", "\\<\\<"),
        ("'quoted value'", "'quoted\\ value'"),
        ("#1", "#1"),
    ],
)
def test_escape_arg_exact(value: str, escaped: str) -> None:
    assert escape_arg(value) == escaped


@pytest.mark.parametrize(
    ("value", "label"), [("a\rb", "carriage return"), ("a\nb", "newline"), ("a\0b", "NUL")]
)
def test_escape_arg_refuses_line_breaking_characters(value: str, label: str) -> None:
    with pytest.raises(UsageError, match=label) as info:
        escape_arg(value, field="map key")
    assert info.value.field == "map key"
    assert "map key" in str(info.value)
    assert info.value.value == value


def test_escape_arg_refuses_empty_and_names_the_field() -> None:
    with pytest.raises(UsageError, match="empty") as info:
        escape_arg("", field="table key")
    assert info.value.field == "table key"
    assert "table key" in str(info.value)


@given(st.text(alphabet=st.sampled_from("ab \t;\\<\r\n\0"), min_size=1))
def test_escape_arg_either_escapes_or_refuses(value: str) -> None:
    if any(c in value for c in FORBIDDEN):
        with pytest.raises(UsageError):
            escape_arg(value)
    else:
        assert unescape_words(escape_arg(value)) == [value]


def test_unescape_words_mirrors_haproxy_tokenizer() -> None:
    # Values as shown by `show map` after the reference's t_escape.py run (§1.5).
    assert unescape_words("add map m k1 a\\;b") == ["add", "map", "m", "k1", "a;b"]
    assert unescape_words("add map m k2 a\\\\b") == ["add", "map", "m", "k2", "a\\b"]
    assert unescape_words("add map m k3 a\\b") == ["add", "map", "m", "k3", "ab"]
    assert unescape_words("add map m k4 a\\ b") == ["add", "map", "m", "k4", "a b"]
    assert unescape_words("add map m k6\ta\tb") == ["add", "map", "m", "k6", "a", "b"]
    assert unescape_words("show stat;show info") == ["show", "stat", ";", "show", "info"]
    assert unescape_words("  a   b  ") == ["a", "b"]


# -- Command.build ------------------------------------------------------------------------------


@given(verbs, st.lists(args, max_size=6))
def test_built_command_is_one_command_line(verb: str, arguments: list[str]) -> None:
    command = Command.build(verb, *arguments)
    line = command.line
    assert not any(c in line for c in FORBIDDEN)
    assert not line.endswith("<<")
    bare = _unescaped(line)
    assert ";" not in bare.values(), "an unescaped ';' would start a second command"
    # No "<<" HAProxy could read as a payload marker: every "<" is escaped.
    assert "<" not in bare.values()
    # Exactly the verb's words and the arguments (a split argument would be two words).
    assert unescape_words(line) == verb.split(" ") + arguments
    assert command.encode() == line.encode("utf-8") + b"\n"
    assert command.encode().count(b"\n") == 1


@given(verbs, st.lists(args, max_size=4), st.integers(min_value=0, max_value=3), args)
def test_one_bad_argument_refuses_the_whole_command(
    verb: str, good: list[str], position: int, bad_base: str
) -> None:
    bad = bad_base[: len(bad_base) // 2] + "\n" + bad_base[len(bad_base) // 2:]
    arguments = [*good]
    arguments.insert(min(position, len(arguments)), bad)
    with pytest.raises(UsageError, match="newline"):
        Command.build(verb, *arguments)


def test_build_refuses_empty_argument() -> None:
    with pytest.raises(UsageError, match="empty"):
        Command.build("show map", "")


def test_build_refuses_non_text_argument() -> None:
    with pytest.raises(UsageError, match="must be a string"):
        Command.build("show stat", 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("verb", ["", "Show stat", "show  stat", "show;stat", "show stat\n", "1x"])
def test_build_refuses_invalid_verb(verb: str) -> None:
    with pytest.raises(ValueError, match="invalid verb"):
        Command.build(verb)


def test_build_keeps_expectation_and_idempotence() -> None:
    command = Command.build("add map", "m", "k", "v", expect=Expect.EMPTY, idempotent=False)
    assert command.line == "add map m k v"
    assert command.expect is Expect.EMPTY
    assert command.idempotent is False
    assert str(command) == "add map m k v"
    default = Command.build("show info")
    assert default.expect is Expect.DATA
    assert default.idempotent is True


def test_build_refuses_text_that_cannot_be_encoded() -> None:
    """A command-line argument with invalid UTF-8 reaches Python as a lone surrogate
    (``os.fsdecode`` uses surrogateescape). It must be refused as a usage error when the
    command is built, not blow up later with UnicodeEncodeError while sending."""
    with pytest.raises(UsageError):
        Command.build("add map", "/etc/haproxy/hosts.map", "\udcff", "v").encode()


# -- Command.raw --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("show info\nshow stat", "newline"),
        ("show info\r", "carriage return"),
        ("show\0info", "NUL"),
        ("add map /x.map <<", "payload"),
        ("add map /x.map <<   ", "payload"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_raw_refuses(line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        Command.raw(line)
    assert info.value.field == "command"


def test_raw_keeps_chaining_but_is_never_retried() -> None:
    command = Command.raw("  show version; show cli level  ")
    assert command.line == "show version; show cli level"
    assert command.idempotent is False
    assert command.expect is Expect.DATA
    assert Command.raw("show map <x>").line == "show map <x>"


# -- names --------------------------------------------------------------------------------------

NAME_CHARS = "ABCXYZabcxyz0189_.:-"
names = st.text(alphabet=st.sampled_from(NAME_CHARS), min_size=1, max_size=30)


@given(names)
def test_check_name_accepts_haproxy_names(name: str) -> None:
    assert check_name("server name", name) == name


@given(st.integers(min_value=0, max_value=10**9))
def test_check_name_accepts_numeric_ids(number: int) -> None:
    assert check_name("backend name", f"#{number}") == f"#{number}"


@given(names, st.characters(blacklist_characters=NAME_CHARS + "#"), names)
@example("be", "/", "s1")
@example("be", ";", "x")
@example("be", " ", "x")
@example("be", "\n", "x")
@example("be", "é", "x")
def test_check_name_rejects_other_characters(head: str, bad: str, tail: str) -> None:
    assume(not bad.isascii() or not bad.isalnum())
    value = head + bad + tail
    with pytest.raises(UsageError) as info:
        check_name("server name", value)
    assert repr(bad) in str(info.value)
    assert info.value.field == "server name"
    assert info.value.value == value


@pytest.mark.parametrize("value", ["#", "#abc", "#1a", "be#1", "##1", "#-1", "ΑΒΓ", "s1 "])
def test_check_name_rejects_malformed(value: str) -> None:
    with pytest.raises(UsageError, match="invalid backend name"):
        check_name("backend name", value)


def test_check_name_rejects_empty_and_non_strings() -> None:
    with pytest.raises(UsageError, match="backend name is empty"):
        check_name("backend name", "")
    with pytest.raises(UsageError, match="must be a string"):
        check_name("backend name", 3)  # type: ignore[arg-type]


def test_server_ref() -> None:
    ref = ServerRef.parse("be_app/s1")
    assert (ref.backend, ref.server) == ("be_app", "s1")
    assert str(ref) == "be_app/s1"
    assert ServerRef("#3", "#1") == ServerRef.parse("#3/#1")
    with pytest.raises(UsageError, match="expected BACKEND/SERVER"):
        ServerRef.parse("be_app")
    with pytest.raises(UsageError, match="expected BACKEND/SERVER"):
        ServerRef.parse("a/b/c")
    with pytest.raises(UsageError, match="server name is empty"):
        ServerRef.parse("be_app/")
    with pytest.raises(UsageError, match="backend name is empty"):
        ServerRef.parse("/s1")
    with pytest.raises(UsageError, match="invalid server name 's;1'"):
        ServerRef("be", "s;1")


@given(names, names)
def test_server_ref_round_trips(backend: str, server: str) -> None:
    ref = ServerRef(backend, server)
    assert ServerRef.parse(str(ref)) == ref
