"""``haproxyctl.configcheck``: persistence settings a rollout cannot make safe.

Every configuration in ``CONFIGS`` and every one built by ``cookie_config``/``balance_config``
was accepted by a real HAProxy 2.6.12 (``/usr/sbin/haproxy -c -f FILE``, with a listener
appended so that it would start); the unit tests themselves never run HAProxy. The texts in
``INVALID`` are the ones HAProxy refuses, and so must the checker.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from haproxyctl.configcheck import (
    BackendNotFound,
    ConfigCheckError,
    Finding,
    check_backend,
    check_file,
    split_words,
)
from haproxyctl.errors import UsageError

HTTP = "defaults\n    mode http\n\n"
SERVERS = "    server s1 127.0.0.1:8001 cookie s1\n    server s2 127.0.0.1:8002 cookie s2\n"

CONFIGS: dict[str, str] = {
    "persist-backend": HTTP + "backend app\n    option persist\n" + SERVERS,
    "persist-defaults": (
        "defaults\n    mode http\n    option persist\n    option redispatch\n\n"
        "backend app\n" + SERVERS),
    "persist-no": "defaults\n    option persist\n\nbackend app\n    no option persist\n" + SERVERS,
    "redispatch-zero": (
        "defaults\n    option persist\n    option redispatch 0\n\nbackend app\n" + SERVERS),
    "redispatch-cancelled": (
        "defaults\n    option persist\n    option redispatch\n\n"
        "backend app\n    no option redispatch\n" + SERVERS),
    # the last defaults section applies, and a defaults section without "from" starts afresh
    "last-defaults-clean": (
        "defaults\n    option persist\n\ndefaults\n    mode http\n\nbackend app\n" + SERVERS),
    "last-defaults-persist": (
        "defaults\n    mode http\n\ndefaults\n    option persist\n\nbackend app\n" + SERVERS),
    # ... even when it has a name (cfgparse-listen.c: last_defproxy is any defaults section)
    "last-defaults-named": (
        "defaults\n    mode http\n\ndefaults tuned\n    option persist\n\nbackend app\n"
        + SERVERS),
    "from-named": (
        "defaults base\n    mode http\n    option persist\n\ndefaults\n    mode http\n\n"
        "backend app from base\n" + SERVERS + "\nbackend other\n" + SERVERS),
    "from-chain": (
        "defaults a\n    mode http\n    option persist\n\n"
        "defaults b from a\n    cookie SRV prefix\n\n"
        "defaults\n    mode http\n\n"
        "backend app from b\n" + SERVERS),
    "from-unnamed": (
        "defaults a\n    mode http\n    option persist\n\n"
        "defaults from a\n    balance static-rr\n\n"
        "backend app\n" + SERVERS),
    "listen": (
        HTTP + "listen app\n    bind 127.0.0.1:18080\n    option persist\n" + SERVERS),
    "frontend-same-name": (
        HTTP + "frontend app\n    bind 127.0.0.1:18081\n    option persist\n"
        "    default_backend other\n\nbackend other\n" + SERVERS),
    "rules": (
        HTTP + "backend app\n"
        "    cookie SRV insert indirect nocache\n"
        "    force-persist if { src 10.0.0.1 }\n"
        "    ignore-persist if { path_beg /static }\n"
        "    force-persist unless { hdr(x-real) -m found }\n" + SERVERS),
    "cookie-tcp": "backend app\n    cookie SRV prefix\n" + SERVERS,
    "cookie-defaults": (
        "defaults\n    cookie SRV rewrite\n\nbackend app\n    mode http\n" + SERVERS),
    "cookie-overridden": (
        "defaults\n    mode http\n    cookie SRV prefix\n\n"
        "backend app\n    cookie SRV insert indirect nocache\n" + SERVERS),
    "stick": (
        HTTP + "backend app\n"
        "    stick-table type ip size 1k expire 30m\n"
        "    stick on src\n"
        "    stick match src table other\n"
        "    stick match req.hdr(x-user) table users if { req.hdr(x-user) -m found }\n"
        "    stick store-response res.hdr(x-user) table users\n"
        "    stick match req.hdr(x-id) table ids\n"
        "    stick store-request req.hdr(x-id) table ids\n" + SERVERS
        + "\nbackend other\n    stick-table type ip size 1k\n" + SERVERS
        + "\nbackend users\n    stick-table type string len 32 size 1k\n"
        "\nbackend ids\n    stick-table type string len 32 size 1k\n"),
    "order": (
        HTTP + "backend app\n"
        "    balance static-rr\n"
        "    cookie SRV prefix\n"
        "    force-persist if { src 10.0.0.1 }\n"
        "    option persist\n" + SERVERS),
    "quotes": (
        HTTP + "backend app\n"
        "    description 'option persist' \"force-persist if TRUE\" # option persist\n"
        "    http-request set-header X-Note \"cookie SRV prefix\\\" # still quoted\"\n"
        "    http-request set-header X-Hash option\\ persist\\#no-comment\n"
        "    # option persist\n"
        "    #force-persist if TRUE\n" + SERVERS),
    "comment-mid-word": HTTP + "backend app\n    option persist#comment\n" + SERVERS,
    "indented-section": (
        HTTP + "backend app\n" + SERVERS + "  backend other\n    option persist\n" + SERVERS),
    "conditional": (
        HTTP + "backend app\n"
        ".if defined(HAPROXYCTL_NOT_SET)\n"
        "    option persist\n"
        ".endif\n"
        "    force-persist if { src 10.0.0.1 }\n" + SERVERS),
}

#: HAProxy refuses these (parse error or unknown/ambiguous "from"); so does the checker.
INVALID: dict[str, str] = {
    "unmatched-quote": HTTP + "backend app\n    description 'oops\n" + SERVERS,
    "bad-hex": HTTP + "backend app\n    description \\xZZ\n" + SERVERS,
    "from-unknown": "backend app from nowhere\n" + SERVERS,
    "from-later": "backend app from late\n" + SERVERS + "\ndefaults late\n    mode http\n",
    "from-ambiguous": (
        "defaults d\n    mode http\n\ndefaults d\n    mode http\n\nbackend app from d\n"
        + SERVERS),
    "duplicate": HTTP + "backend app\n" + SERVERS + "\nbackend app\n" + SERVERS,
}

#: 2.6.12 refuses "default option ..." (its argument shift leaves a stray word: "'option
#: persist' cannot handle unexpected argument 'persist'"); later versions (cfgparse.c
#: lshift_args) accept it, and it restores the built-in setting, here "off".
DEFAULT_OPTION = (
    "defaults\n    option persist\n\nbackend app\n    default option persist\n" + SERVERS)


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.split("\n"), 1) if needle in line)


# --- option persist ----------------------------------------------------------------------------


def test_option_persist_in_the_backend_is_an_error() -> None:
    text = CONFIGS["persist-backend"]
    f = only(check_backend(text, "app"))
    assert (f.code, f.severity, f.section) == ("option-persist", "error", "backend app")
    assert f.line == line_of(text, "option persist")
    assert "option persist" in f.message
    assert "MAINT" in f.message
    assert "without 'option redispatch'" in f.message
    assert "inherited" not in f.message


def test_option_persist_inherited_from_defaults() -> None:
    text = CONFIGS["persist-defaults"]
    f = only(check_backend(text, "app"))
    assert (f.code, f.section, f.line) == ("option-persist", "defaults", 3)
    assert "set in defaults, inherited by backend app" in f.message
    assert "with 'option redispatch'" in f.message
    assert "no option persist" in f.message


@pytest.mark.parametrize("text", [CONFIGS["persist-no"], DEFAULT_OPTION])
def test_option_persist_cancelled_in_the_backend(text: str) -> None:
    assert check_backend(text, "app") == []


@pytest.mark.parametrize("name", ["redispatch-zero", "redispatch-cancelled"])
def test_redispatch_disabled(name: str) -> None:
    assert "without 'option redispatch'" in only(check_backend(CONFIGS[name], "app")).message


# --- which defaults apply ----------------------------------------------------------------------


def test_only_the_last_defaults_section_applies() -> None:
    assert check_backend(CONFIGS["last-defaults-clean"], "app") == []
    assert codes(check_backend(CONFIGS["last-defaults-persist"], "app")) == ["option-persist"]


def test_the_last_defaults_section_applies_even_when_named() -> None:
    f = only(check_backend(CONFIGS["last-defaults-named"], "app"))
    assert f.section == "defaults tuned"


def test_from_names_the_defaults_section() -> None:
    text = CONFIGS["from-named"]
    f = only(check_backend(text, "app"))
    assert (f.code, f.section, f.line) == ("option-persist", "defaults base", 3)
    assert check_backend(text, "other") == []  # the last, unnamed defaults


def test_defaults_inherit_through_from_chains() -> None:
    text = CONFIGS["from-chain"]
    found = {f.code: f for f in check_backend(text, "app")}
    assert set(found) == {"option-persist", "cookie-prefix"}
    assert found["option-persist"].section == "defaults a"
    assert found["cookie-prefix"].section == "defaults b"
    assert found["cookie-prefix"].line == line_of(text, "cookie SRV prefix")


def test_unnamed_defaults_with_from() -> None:
    found = check_backend(CONFIGS["from-unnamed"], "app")
    assert [(f.code, f.section) for f in found] == [
        ("option-persist", "defaults a"), ("balance-static", "defaults")]


# --- sections ----------------------------------------------------------------------------------


def test_listen_section() -> None:
    assert codes(check_backend(CONFIGS["listen"], "app")) == ["option-persist"]
    assert only(check_backend(CONFIGS["listen"], "app")).section == "listen app"


def test_missing_backend() -> None:
    with pytest.raises(BackendNotFound) as info:
        check_backend(CONFIGS["frontend-same-name"], "app")  # a frontend is not a backend
    err = info.value
    assert isinstance(err, UsageError)
    assert isinstance(err, ConfigCheckError)
    assert (err.field, err.value, err.exit_code) == ("backend", "app", 2)
    assert "'app'" in str(err)
    assert "found: other" in str(err)


def test_missing_backend_in_an_empty_config() -> None:
    with pytest.raises(BackendNotFound, match="no backend or listen section named 'x'"):
        check_backend("", "x")


def test_a_section_keyword_starts_a_section_whatever_its_indentation() -> None:
    text = CONFIGS["indented-section"]
    assert check_backend(text, "app") == []
    assert codes(check_backend(text, "other")) == ["option-persist"]


@pytest.mark.parametrize("name", sorted(INVALID))
def test_configs_haproxy_refuses_are_refused(name: str) -> None:
    with pytest.raises(ConfigCheckError) as info:
        check_backend(INVALID[name], "app")
    assert not isinstance(info.value, BackendNotFound)


def test_parse_errors_name_the_line() -> None:
    with pytest.raises(ConfigCheckError, match="line 5: unmatched ' quote") as info:
        check_backend(INVALID["unmatched-quote"], "app")
    assert info.value.value == 5


@pytest.mark.parametrize(("name", "match"), [
    ("from-unknown", "'nowhere' is not declared before it"),
    ("from-later", "'late' is not declared before it"),
    ("from-ambiguous", "'d' is ambiguous"),
    ("duplicate", "declared more than once, at lines 4 and 8"),
])
def test_from_errors(name: str, match: str) -> None:
    with pytest.raises(ConfigCheckError, match=match):
        check_backend(INVALID[name], "app")


def test_backend_and_listen_of_the_same_name_are_ambiguous() -> None:
    # HAProxy 2.6 accepts this (a listen section is only checked against frontends), but the
    # runtime API could mean either, so the checker refuses to guess.
    text = HTTP + "backend app\n" + SERVERS + "\nlisten app\n" + SERVERS
    with pytest.raises(ConfigCheckError, match="declared more than once"):
        check_backend(text, "app")


# --- force-persist, ignore-persist -------------------------------------------------------------


def test_force_and_ignore_persist() -> None:
    text = CONFIGS["rules"]
    found = check_backend(text, "app")
    assert [(f.code, f.severity, f.line) for f in found] == [
        ("force-persist", "error", line_of(text, "force-persist if")),
        ("force-persist", "error", line_of(text, "force-persist unless")),
        ("ignore-persist", "info", line_of(text, "ignore-persist")),
    ]
    assert found[0].message.startswith("force-persist if { src 10.0.0.1 }: ")
    assert "redispatch is disabled" in found[0].message
    assert found[2].message.startswith("ignore-persist if { path_beg /static }: ")


# --- cookies -----------------------------------------------------------------------------------


def cookie_config(options: str) -> str:
    return HTTP + f"backend app\n    cookie SRV {options}\n" + SERVERS


COOKIE_CASES: list[tuple[str, list[str]]] = [
    ("insert", []),
    ("insert indirect nocache", []),
    ("insert indirect nocache httponly secure maxidle 30m maxlife 8h", []),
    ("insert domain .example.com attr prefix", []),  # values of options are not options
    ("insert indirect preserve", ["cookie-preserve"]),
    ("insert postonly", ["cookie-postonly"]),
    ("insert postonly preserve", ["cookie-postonly", "cookie-preserve"]),
    ("prefix", ["cookie-prefix"]),
    ("prefix indirect", ["cookie-prefix"]),
    ("prefix indirect preserve", ["cookie-prefix"]),
    ("rewrite", ["cookie-rewrite"]),
    ("rewrite nocache", ["cookie-rewrite"]),
    ("", ["cookie-passive"]),
    ("indirect", ["cookie-passive"]),
    ("indirect preserve", ["cookie-passive"]),
]


@pytest.mark.parametrize(("options", "expected"), COOKIE_CASES)
def test_cookie_modes(options: str, expected: list[str]) -> None:
    text = cookie_config(options)
    found = check_backend(text, "app")
    assert codes(found) == expected
    for f in found:
        assert f.severity == ("info" if f.code == "cookie-preserve" else "warning")
        assert f.line == line_of(text, "cookie SRV")
        assert f.message.startswith(f"cookie SRV {options}".rstrip() + ": ")
        assert "4.2 'cookie'" in f.message


def test_cookie_is_ignored_outside_http_mode() -> None:
    # HAProxy: "cookie will be ignored for backend 'app' (needs 'mode http')"
    assert check_backend(CONFIGS["cookie-tcp"], "app") == []


def test_cookie_inherited_and_overridden() -> None:
    f = only(check_backend(CONFIGS["cookie-defaults"], "app"))
    assert (f.code, f.section) == ("cookie-rewrite", "defaults")
    assert check_backend(CONFIGS["cookie-overridden"], "app") == []


# --- stick rules -------------------------------------------------------------------------------


def test_stick_rules() -> None:
    text = CONFIGS["stick"]
    found = check_backend(text, "app")
    assert [(f.code, f.line) for f in found] == [
        ("stick-store-request", line_of(text, "stick on src")),
        ("stick-match-only", line_of(text, "table other")),
        ("stick-store-response", line_of(text, "stick store-response")),
        ("stick-store-request", line_of(text, "stick store-request")),
    ]
    assert {f.severity for f in found} == {"info"}
    assert "table 'other'" in found[1].message
    assert "4.2 'stick store-request'" in found[0].message


# --- balance -----------------------------------------------------------------------------------


def balance_config(balance: str, hash_type: str = "") -> str:
    lines = [f"    balance {balance}" if balance else "", f"    hash-type {hash_type}"
             if hash_type else ""]
    return HTTP + "backend app\n" + "".join(line + "\n" for line in lines if line) + SERVERS


BALANCE_CASES: list[tuple[str, str, bool]] = [
    ("", "", False),
    ("roundrobin", "", False),
    ("leastconn", "", False),
    ("first", "", False),
    ("random", "", False),
    ("random(2)", "", False),
    ("static-rr", "", True),
    ("static-rr", "consistent", True),  # hash-type only matters to hashing algorithms
    ("source", "", True),
    ("source", "map-based", True),
    ("source", "consistent", False),
    ("uri whole", "", True),
    ("url_param userid", "consistent sdbm avalanche", False),
    ("hdr(host)", "", True),
    ("rdp-cookie", "", True),
    ("hash req.hdr(x-user)", "", True),
    ("hash req.hdr(x-user)", "consistent", False),
]


@pytest.mark.parametrize(("balance", "hash_type", "static"), BALANCE_CASES)
def test_balance(balance: str, hash_type: str, static: bool) -> None:
    text = balance_config(balance, hash_type)
    found = check_backend(text, "app")
    assert codes(found) == (["balance-static"] if static else [])
    if static:
        assert found[0].severity == "info"
        assert found[0].line == line_of(text, "balance")
        assert "0% or 100%" in found[0].message


def test_hash_type_comes_from_defaults_too() -> None:
    text = "defaults\n    hash-type consistent\n\nbackend app\n    balance source\n" + SERVERS
    assert check_backend(text, "app") == []


# --- findings ----------------------------------------------------------------------------------


def test_findings_are_sorted_errors_first_then_by_line() -> None:
    found = check_backend(CONFIGS["order"], "app")
    assert [(f.severity, f.code) for f in found] == [
        ("error", "force-persist"), ("error", "option-persist"),
        ("warning", "cookie-prefix"), ("info", "balance-static")]


def test_finding_to_dict_and_frozen() -> None:
    f = only(check_backend(CONFIGS["persist-backend"], "app"))
    assert f.to_dict() == {"code": "option-persist", "severity": "error", "line": 5,
                           "section": "backend app", "message": f.message}
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        f.line = 1  # type: ignore[misc]


def test_conditional_blocks_are_read_and_flagged() -> None:
    found = check_backend(CONFIGS["conditional"], "app")
    assert codes(found) == ["option-persist", "force-persist"]
    assert "[inside a .if block" in found[0].message
    assert ".if" not in found[1].message


# --- quoting, comments -------------------------------------------------------------------------


def test_text_in_quotes_or_comments_is_not_a_setting() -> None:
    assert check_backend(CONFIGS["quotes"], "app") == []


def test_a_comment_may_start_inside_a_word() -> None:
    # 2.1: "global#this is the global section" is "global" then a comment
    assert codes(check_backend(CONFIGS["comment-mid-word"], "app")) == ["option-persist"]


def test_crlf_line_ends() -> None:
    text = CONFIGS["order"]
    assert check_backend(text.replace("\n", "\r\n"), "app") == check_backend(text, "app")


# the five equivalent forms of 2.2 "Quoting and escaping"
LOG_FORMATS = [
    r"log-format %{+Q}o\ %t\ %s\ %{-Q}r",
    r'log-format "%{+Q}o %t %s %{-Q}r"',
    r"log-format '%{+Q}o %t %s %{-Q}r'",
    r"""log-format "%{+Q}o %t"' %s %{-Q}r'""",
    r"""log-format "%{+Q}o %t"' %s'\ %{-Q}r""",
]


@pytest.mark.parametrize("line", LOG_FORMATS)
def test_split_words_documented_equivalences(line: str) -> None:
    assert split_words(line) == ["log-format", "%{+Q}o %t %s %{-Q}r"]


@pytest.mark.parametrize(("line", "words"), [
    ("", []),
    ("   \t ", []),
    ("# only a comment", []),
    ("global#this is the global section", ["global"]),
    ("  mode  http   # or tcp", ["mode", "http"]),
    (r"a\#b c", ["a#b", "c"]),
    ('"a#b" \'c#d\'', ["a#b", "c#d"]),
    (r"'\\' \\", ["\\\\", "\\"]),
    (r"\1 \z", ["\\1", "\\z"]),  # not escape sequences: kept
    (r'"\$HOME" \$HOME $HOME', ["$HOME", "\\$HOME", "$HOME"]),
    (r"\x41\x7e \t\n\r", ["A~", "\t\n\r"]),
    (r'''"\"" \" "\'"''', ['"', '"', "'"]),
    (r"""'\"'""", ['\\"']),  # nothing is an escape inside single quotes
    ("'' \"\" x", ["", "", "x"]),
    ("a\rb c", ["a"]),  # a CR ends the line (tools.c parse_line)
    ("a\vb\fc", ["a", "b", "c"]),
    ("café 'naïve'", ["café", "naïve"]),
])
def test_split_words(line: str, words: list[str]) -> None:
    assert split_words(line) == words


@pytest.mark.parametrize("line", ["'open", '"open', "a 'b' \"c", r"\x4", r"\xg0", "\\x"])
def test_split_words_refuses(line: str) -> None:
    with pytest.raises(ValueError, match=r"unmatched|invalid escape"):
        split_words(line)


def _quote(word: str, how: int) -> str:
    """Write ``word`` the way a configuration generator could (2.2)."""
    if how == 0 and not set(word) & set("'\r\n"):
        return f"'{word}'"
    if how == 1:
        escaped = "".join({"\\": r"\\", '"': r"\"", "$": r"\$", "\n": r"\n", "\r": r"\r"}
                          .get(c, c) for c in word)
        return f'"{escaped}"'
    bare = {" ": r"\ ", "\\": r"\\", "#": r"\#", "'": r"\'", '"': r"\"", "\t": r"\t",
            "\n": r"\n", "\r": r"\r", "\v": r"\x0b", "\f": r"\x0c"}
    return "".join(bare.get(c, c) for c in word) or "''"


# any character HAProxy can carry in a word (NUL ends a C string)
WORD = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"),
               max_size=12)


@given(st.lists(st.tuples(WORD, st.integers(0, 2)), max_size=6))
@example([("a b", 2), ("#", 1), ("'", 0), ("", 2), ("\\", 0), ("$x", 1)])
def test_split_words_inverts_quoting(words: list[tuple[str, int]]) -> None:
    line = " ".join(_quote(word, how) for word, how in words)
    assert split_words(line) == [word for word, _ in words]


DANGEROUS = ["option persist", "force-persist if TRUE", "cookie SRV prefix", "balance static-rr",
             "stick match src table t", "ignore-persist if TRUE", "backend other"]
PHRASE = st.one_of(st.sampled_from(DANGEROUS), st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\0\r\n"), max_size=30))


@given(PHRASE)
@example("option persist")
@example("'unbalanced \"quotes")
def test_nothing_after_a_hash_is_a_setting(phrase: str) -> None:
    for line in (f"    # {phrase}", f"    #{phrase}", f"    description x # {phrase}",
                 f"    mode http#{phrase}"):
        assert check_backend(HTTP + "backend app\n" + line + "\n" + SERVERS, "app") == []


@given(PHRASE, st.integers(0, 2))
@example("option persist", 0)
@example("backend other", 2)
def test_nothing_inside_quotes_is_a_setting(phrase: str, how: int) -> None:
    text = (HTTP + "backend app\n" + f"    description {_quote(phrase, how)}\n"
            + f"    http-request set-header X-Note {_quote(phrase, how)}\n" + SERVERS)
    assert check_backend(text, "app") == []


@given(PHRASE)
def test_a_quoted_first_word_is_still_that_word(phrase: str) -> None:
    # 2.2: quotes are removed before keywords are looked up, so 'option' "persist" is the option
    text = HTTP + "backend app\n    'option' \"persist\"\n" + f"    # {phrase}\n" + SERVERS
    assert codes(check_backend(text, "app")) == ["option-persist"]


# --- files -------------------------------------------------------------------------------------


def test_check_file(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(CONFIGS["persist-backend"])
    assert check_file(path, "app") == check_backend(CONFIGS["persist-backend"], "app")
    assert codes(check_file(str(path), "app")) == ["option-persist"]


def test_check_file_with_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_bytes(b"# \xff\xfe latin-1 comment\n" + CONFIGS["persist-backend"].encode())
    assert codes(check_file(path, "app")) == ["option-persist"]


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_check_file_unreadable(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "nope.cfg" if kind == "missing" else tmp_path
    with pytest.raises(ConfigCheckError) as info:
        check_file(path, "app")
    assert str(path) in str(info.value)
    assert "cannot read HAProxy configuration" in str(info.value)
    assert (info.value.field, info.value.value) == ("config file", str(path))
    assert isinstance(info.value.__cause__, OSError)


def test_check_file_missing_backend(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(CONFIGS["persist-backend"])
    with pytest.raises(BackendNotFound):
        check_file(path, "nope")
