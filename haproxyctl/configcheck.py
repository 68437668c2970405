"""Persistence settings of one backend that a rolling update cannot make safe.

A rollout puts each server in maint and relies on HAProxy then breaking persistence to it and
re-pinning the user on the server that serves them next (``docs/rollout.md``). Some settings
defeat that; :func:`check_backend` reads a configuration's text and reports them for one
``backend`` (or ``listen``) section, so the rollout can refuse or warn before changing anything.

Section numbers and quoted keywords refer to HAProxy 2.6's ``doc/configuration.txt``; the
behaviours were also checked against the 2.6 sources (``src/http_ana.c``, ``src/stream.c``).

This is pure: nothing is read except by :func:`check_file`. Conditional blocks (2.4, ``.if``)
are not evaluated: every branch is read as if it applied, and findings from inside one say so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import attrs

from haproxyctl.errors import UsageError

__all__ = [
    "SECTION_KEYWORDS",
    "BackendNotFound",
    "ConfigCheckError",
    "Finding",
    "Severity",
    "check_backend",
    "check_file",
    "split_words",
]

Severity = Literal["error", "warning", "info"]
_RANK: dict[str, int] = {"error": 0, "warning": 1, "info": 2}

#: Words that start a new section wherever they appear as a line's first word (2.1 rules 6-7:
#: indentation does not matter). HAProxy 2.6's list, plus later versions' so that a newer
#: configuration is not misread as belonging to the section above.
SECTION_KEYWORDS = frozenset({
    "global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist",
    "program", "mailers", "cache", "ring", "http-errors", "log-forward", "fcgi-app",
    "namespace_list", "crt-store", "traces", "acme", "log-profile", "healthcheck",
})
_PROXIES = ("defaults", "frontend", "backend", "listen")

# Backslash sequences of 2.2 "Quoting and escaping", as src/tools.c parse_line() applies them
# outside single quotes. Any other backslash is kept as a literal character (e.g. "\1").
_ESCAPES = {" ": " ", "\\": "\\", "t": "\t", "n": "\n", "r": "\r", "#": "#", "'": "'", '"': '"'}
_HEX = frozenset("0123456789abcdefABCDEF")
_SEPARATORS = frozenset(" \t\v\f")  # C isspace() minus the line ends


@attrs.frozen
class Finding:
    """One setting of the backend a rollout cannot make safe.

    ``code`` is stable (scripts may match it); ``line`` is 1-based and ``section`` names the
    section holding the setting (``"backend app"``, ``"defaults base"``, ``"defaults"``), which
    is a ``defaults`` section when the backend inherits it.
    """

    code: str
    severity: Severity
    line: int
    section: str
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "severity": self.severity, "line": self.line,
                "section": self.section, "message": self.message}


class ConfigCheckError(UsageError):
    """The configuration cannot be read the way HAProxy would (unreadable file, unmatched
    quote, ``from`` naming an unknown or ambiguous defaults section...)."""


class BackendNotFound(ConfigCheckError):
    """The configuration has no ``backend`` or ``listen`` section of that name."""


def split_words(line: str) -> list[str]:
    """Cut one configuration line into words, with quotes and escapes resolved (2.2).

    ``#`` outside quotes starts a comment even inside a word (2.1 example "global#this is...").
    Single quotes protect everything; double quotes protect spaces, ``'`` and ``#`` but still
    honour backslash escapes. ``$VAR`` is left as written: the environment is not ours to read.

    Raises:
        ValueError: an unmatched quote or an invalid ``\\xNN`` sequence (HAProxy refuses both).
    """
    words: list[str] = []
    buf: list[str] = []
    started = False  # distinguishes an empty quoted word ('') from no word at all
    quote = ""
    i, end = 0, len(line)
    while i < end:
        c = line[i]
        if c in "\r\n\0":  # parse_line() stops at the first of these
            break
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                buf.append(c)
            i += 1
            continue
        if c == "\\":
            nxt = line[i + 1:i + 2]
            started = True
            if nxt == "x":
                digits = line[i + 2:i + 4]
                if len(digits) != 2 or not set(digits) <= _HEX:
                    raise ValueError(f"invalid escape sequence {line[i:i + 4]!r}")
                buf.append(chr(int(digits, 16)))
                i += 4
            elif nxt in _ESCAPES or (nxt == "$" and quote == '"'):
                buf.append(_ESCAPES.get(nxt, nxt))
                i += 2
            else:
                buf.append(c)
                i += 1
            continue
        if c == '"':
            quote = "" if quote else '"'
            started = True
        elif c == "'" and not quote:
            quote = "'"
            started = True
        elif c == "#" and not quote:
            break
        elif c in _SEPARATORS and not quote:
            if started:
                words.append("".join(buf))
                buf, started = [], False
        else:
            buf.append(c)
            started = True
        i += 1
    if quote:
        raise ValueError(f"unmatched {quote} quote")
    if started:
        words.append("".join(buf))
    return words


# --- parsing -----------------------------------------------------------------------------------


@attrs.frozen
class _Directive:
    line: int
    words: tuple[str, ...]
    negation: str  # "", "no" or "default" (4.1: keywords marked (*) accept both prefixes)
    conditional: bool  # inside a .if block (2.4)

    def text(self) -> str:
        return " ".join((self.negation, *self.words) if self.negation else self.words)


@attrs.define
class _Section:
    kind: str
    name: str
    parent: str | None  # the "from <defaults_name>" of the header (4)
    line: int
    directives: list[_Directive] = attrs.field(factory=list)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}" if self.name else self.kind


def _header(words: Sequence[str]) -> tuple[str, str | None]:
    """``(name, from-name)`` of a section line: 4 "defaults [<name>] [from <defaults_name>]",
    also ``defaults from X`` without a name (src/cfgparse-listen.c accepts it)."""
    args = list(words[1:])
    if words[0] == "defaults" and args[:1] == ["from"]:
        args.insert(0, "")
    name = args[0] if args else ""
    parent = args[2] if len(args) >= 3 and args[1] == "from" else None
    return name, parent


def _parse(text: str) -> list[_Section]:
    sections: list[_Section] = []
    current: _Section | None = None
    depth = 0
    # Split on LF only: HAProxy reads lines up to '\n' (a '\r' merely ends parsing of the line),
    # so str.splitlines(), which also splits on \v, \f and more, would shift line numbers.
    for lineno, raw in enumerate(text.split("\n"), start=1):
        try:
            words = split_words(raw)
        except ValueError as e:
            raise ConfigCheckError(f"line {lineno}: {e}", field="config line",
                                   value=lineno) from None
        if not words:
            continue
        head = words[0]
        if head.startswith("."):  # 2.4: .if/.elif/.else/.endif and .diag/.notice/.warning/...
            if head == ".if":
                depth += 1
            elif head == ".endif":
                depth = max(0, depth - 1)
            continue
        if head in SECTION_KEYWORDS:
            if head in _PROXIES:
                current = _Section(head, *_header(words), lineno)
            else:
                current = _Section(head, words[1] if len(words) > 1 else "", None, lineno)
            sections.append(current)
            continue
        if current is None:
            continue  # HAProxy refuses keywords out of any section; nothing to check there
        negation = ""
        if head in ("no", "default") and len(words) > 1:
            negation, words = head, words[1:]
        current.directives.append(_Directive(lineno, tuple(words), negation, depth > 0))
    return sections


def _parent(sections: Sequence[_Section], index: int) -> int | None:
    """Which defaults section ``sections[index]`` takes its settings from (section 4).

    Without ``from``, a proxy uses the last defaults section before it, named or not
    (cfgparse-listen.c keeps ``last_defproxy`` for any defaults), while a defaults section
    starts from the documented settings. ``from`` may only name an earlier defaults section.
    """
    section = sections[index]
    if section.parent is not None:
        found = [i for i in range(index)
                 if sections[i].kind == "defaults" and sections[i].name == section.parent]
        if len(found) != 1:
            why = "is ambiguous (declared more than once)" if found else "is not declared before it"
            raise ConfigCheckError(
                f"{section.label}: defaults section {section.parent!r} {why}",
                field="defaults section", value=section.parent)
        return found[0]
    if section.kind == "defaults":
        return None
    return next((i for i in range(index - 1, -1, -1) if sections[i].kind == "defaults"), None)


def _find_backend(sections: Sequence[_Section], backend: str) -> int:
    # "backend" and "listen" share a namespace (both have the backend capability, section 4);
    # a frontend of the same name is allowed and is not what a rollout changes.
    found = [i for i, s in enumerate(sections)
             if s.kind in ("backend", "listen") and s.name == backend]
    if not found:
        known = sorted({s.name for s in sections if s.kind in ("backend", "listen")})
        raise BackendNotFound(
            f"no backend or listen section named {backend!r} in the configuration"
            + (f" (found: {', '.join(known)})" if known else ""),
            field="backend", value=backend)
    if len(found) > 1:
        # HAProxy refuses two backends of one name, yet accepts a backend and a listen section
        # sharing it; the runtime API name would then be ambiguous, so do not guess.
        lines = " and ".join(str(sections[i].line) for i in found)
        raise ConfigCheckError(f"backend {backend!r} is declared more than once, at lines {lines}",
                               field="backend", value=backend)
    return found[0]


# --- checks ------------------------------------------------------------------------------------

_Pick = tuple[_Section, _Directive]
# hash-based algorithms: static unless "hash-type consistent" (4.2 "balance", "hash-type")
_HASHED = frozenset({"source", "uri", "url_param", "hash", "rdp-cookie"})
_COOKIE_VALUE_ARGS = frozenset({"domain", "maxidle", "maxlife", "attr"})


class _Checker:
    def __init__(self, chain: list[_Section]) -> None:
        self.chain = chain  # root defaults first, the backend last
        self.target = chain[-1]
        self.findings: list[Finding] = []

    def last(self, match: Callable[[_Directive], bool]) -> _Pick | None:
        """The effective occurrence: a proxy copies its defaults' settings, then its own
        directives override them in order (section 4)."""
        picked: _Pick | None = None
        for section in self.chain:
            for d in section.directives:
                if match(d):
                    picked = (section, d)
        return picked

    def option(self, name: str) -> _Pick | None:
        """The ``option <name>`` in force, or None when ``no``/``default`` cancelled it (4.1)."""
        pick = self.last(lambda d: d.words[:2] == ("option", name))
        return pick if pick is not None and not pick[1].negation else None

    def add(self, code: str, severity: Severity, pick: _Pick, subject: str, why: str) -> None:
        section, d = pick
        if section is not self.target:
            subject += f" (set in {section.label}, inherited by {self.target.label})"
        if d.conditional:
            why += " [inside a .if block: reported whether or not its condition holds, see 2.4]"
        self.findings.append(Finding(code, severity, d.line, section.label, f"{subject}: {why}"))

    def own(self, keyword: str) -> list[_Pick]:
        # force-persist, ignore-persist and stick rules cannot come from defaults (4.1 matrix)
        return [(self.target, d) for d in self.target.directives if d.words[0] == keyword]

    def run(self) -> list[Finding]:
        self.persist()
        self.persist_rules()
        self.cookie()
        self.stick()
        self.balance()
        return sorted(self.findings, key=lambda f: (_RANK[f.severity], f.line))

    def persist(self) -> None:
        # Maint sets the server's state to STOPPED, and every persistence lookup (cookie,
        # stick match, use-server) accepts a stopped server when PR_O_PERSIST is set.
        pick = self.option("persist")
        if pick is None:
            return
        redispatch = self.option("redispatch")
        if redispatch is not None and redispatch[1].words[2:3] == ("0",):
            redispatch = None  # "option redispatch 0" disables redispatching (4.2)
        after = ("with 'option redispatch' they move only after connecting to it has failed "
                 "(4.2 'option redispatch', 'retries')" if redispatch else
                 "without 'option redispatch' they get errors once its app stops")
        self.add("option-persist", "error", pick, "option persist",
                 "a request whose persistence cookie, stick-table entry or use-server rule names "
                 "a server that is DOWN or in MAINT is still sent to that server (4.2 'option "
                 "persist'); maint does not re-dispatch those users, so users pinned to a server "
                 f"being updated keep reaching it, and {after}. Remove it or add 'no option "
                 f"persist' to {self.target.label}")

    def persist_rules(self) -> None:
        for pick in self.own("force-persist"):
            self.add("force-persist", "error", pick, pick[1].text(),
                     "matching requests are sent to their persisted server even when it is DOWN "
                     "or in MAINT, and their final redispatch is disabled (4.2 'force-persist'), "
                     "so maint does not move them off a server being updated")
        for pick in self.own("ignore-persist"):
            self.add("ignore-persist", "info", pick, pick[1].text(),
                     "matching requests ignore the persistence cookie, are load-balanced and get "
                     "no cookie (4.2 'ignore-persist'; stick rules still apply), so they may reach "
                     "a server on the other version than the rest of the user's session")

    def cookie(self) -> None:
        pick = self.last(lambda d: d.words[0] == "cookie" and len(d.words) > 1)
        mode = self.last(lambda d: d.words[0] == "mode")
        if pick is None or mode is None or mode[1].words[1:2] != ("http",):
            return  # HAProxy ignores "cookie" unless the backend is in mode http (default tcp)
        words = pick[1].words
        name, i = words[1], 2
        opts: set[str] = set()
        while i < len(words):  # skip the values of "domain <d>", "maxidle <t>", ...
            opts.add(words[i])
            i += 2 if words[i] in _COOKIE_VALUE_ARGS else 1
        subject = pick[1].text()
        # After maint, the user's next request is load-balanced to a server in service (the
        # cookie names a stopped server: http_ana.c marks it TX_CK_DOWN and picks another).
        # Whether that server re-pins them depends on who writes the cookie (4.2 "cookie",
        # doc/cookie-options.txt). Plain insert mode is safe: HAProxy adds a Set-Cookie to
        # every response of a request it did not route by cookie. Until re-pinned, a user is
        # load-balanced on every request and can go back and forth between old and new versions.
        again = "; until then they are load-balanced on every request and may flip between versions"
        if "prefix" in opts:
            self.add("cookie-prefix", "warning", pick, subject,
                     f"in prefix mode HAProxy adds the server's identifier to the application's "
                     f"own {name} cookie only in responses where the application sets it "
                     f"(4.2 'cookie', 'prefix'); a user redispatched off a server in maint keeps "
                     f"the old server's prefix and is re-pinned only when the new server emits "
                     f"{name}{again}")
        if "rewrite" in opts:
            self.add("cookie-rewrite", "warning", pick, subject,
                     f"in rewrite mode HAProxy only rewrites the {name} cookie the application "
                     f"emits (4.2 'cookie', 'rewrite'); a user redispatched off a server in maint "
                     f"is re-pinned only when the new server sets {name}{again}")
        if not opts & {"insert", "prefix", "rewrite"}:
            self.add("cookie-passive", "warning", pick, subject,
                     f"without insert, rewrite or prefix the cookie is passive: HAProxy never "
                     f"sets it and only reads what the application wrote (4.2 'cookie'; "
                     f"doc/cookie-options.txt 'passive mode'); a user redispatched off a server "
                     f"in maint is re-pinned only if the new server itself sets {name} to its "
                     f"'cookie' value{again}")
        if "insert" in opts and "postonly" in opts:
            self.add("cookie-postonly", "warning", pick, subject,
                     "with postonly the cookie is inserted only in responses to POST requests "
                     "(4.2 'cookie', 'postonly'); a user redispatched off a server in maint is "
                     f"re-pinned only at their next POST{again}")
        if "insert" in opts and "preserve" in opts:
            self.add("cookie-preserve", "info", pick, subject,
                     f"with preserve, a response that already sets {name} is left untouched and "
                     f"HAProxy inserts nothing (4.2 'cookie', 'preserve'), so a redispatched user "
                     f"is re-pinned by HAProxy only on responses where the application does not "
                     f"write {name}")

    def stick(self) -> None:
        rules = [(pick, _stick_kind(pick[1]), self.table(pick[1])) for pick in self.own("stick")]
        # Both store kinds are committed once the server answers, with the server that was
        # used (stream.c process_store_rules), so any store into a table re-pins its users.
        stored = {table for _, kind, table in rules if kind != "match"}
        for pick, kind, table in rules:
            if kind in ("on", "store-request"):
                self.add("stick-store-request", "info", pick, pick[1].text(),
                         "the entry is written with the server that was selected for the request "
                         "(4.2 'stick store-request'; 'stick on' is 'stick match' plus 'stick "
                         "store-request', 4.2 'stick on'), so a user redispatched off a server in "
                         "maint is re-pinned on that request")
            elif kind == "store-response":
                self.add("stick-store-response", "info", pick, pick[1].text(),
                         "the entry is written from the response (4.2 'stick store-response'), "
                         "so a user redispatched off a server in maint is re-pinned only when the "
                         "new server's response carries the key; until then the entry names the "
                         "old server and their requests are load-balanced")
            elif kind == "match" and table not in stored:
                self.add("stick-match-only", "info", pick, pick[1].text(),
                         f"this backend reads table {table!r} but never writes it (4.2 'stick "
                         "match'), so a user whose entry names a server in maint is load-balanced "
                         "on every request, not re-pinned, until the entry expires or another "
                         "section rewrites it")

    def table(self, d: _Directive) -> str:
        """The table of a stick rule: ``table <name>`` or the backend's own (4.2 "stick match
        <pattern> [table <table>] [{if | unless} <cond>]")."""
        for i in range(3, len(d.words) - 1):
            if d.words[i] in ("if", "unless"):
                break
            if d.words[i] == "table":
                return d.words[i + 1]
        return self.target.name

    def balance(self) -> None:
        pick = self.last(lambda d: d.words[0] == "balance" and len(d.words) > 1)
        if pick is None:
            return  # roundrobin, dynamic
        algo = pick[1].words[1]
        hash_type = self.last(lambda d: d.words[0] == "hash-type")
        consistent = hash_type is not None and hash_type[1].words[1:2] == ("consistent",)
        if algo == "static-rr":
            why = "static-rr is a static algorithm (4.2 'balance')"
        elif (algo in _HASHED or algo.startswith(("hdr(", "rdp-cookie("))) and not consistent:
            why = (f"{algo} with hash-type map-based (the default) is static, and most users "
                   "move to another server whenever a server leaves or rejoins (4.2 'balance', "
                   "'hash-type')")
        else:
            return
        self.add("balance-static", "info", pick, pick[1].text(),
                 f"{why}: weight changes on a running server are ignored, so temporary weights "
                 "can only be 0% or 100% of the initial weight (management.txt 9.3 'set weight') "
                 "and a rollout cannot ramp a server up gradually")


def _stick_kind(d: _Directive) -> str:
    return d.words[1] if len(d.words) > 1 else ""


def check_backend(config_text: str, backend: str) -> list[Finding]:
    """The persistence findings for ``backend`` (a ``backend`` or ``listen`` section), errors
    first, then warnings, then infos, each group in line order.

    Settings inherited from the ``defaults`` section that applies (the last one before the
    backend, or the one named by ``from``, with its own ``from`` chain) are taken into account,
    as are ``no option ...`` / ``default option ...`` cancellations.

    Raises:
        BackendNotFound: no such backend or listen section.
        ConfigCheckError: the text cannot be read as HAProxy would (unmatched quote, unknown
            ``from`` defaults section, backend declared twice).
    """
    sections = _parse(config_text)
    chain: list[_Section] = []
    index: int | None = _find_backend(sections, backend)
    while index is not None:
        chain.insert(0, sections[index])
        index = _parent(sections, index)
    return _Checker(chain).run()


def check_file(path: str | os.PathLike[str], backend: str) -> list[Finding]:
    """:func:`check_backend` on a configuration file (read as UTF-8, undecodable bytes replaced:
    only ASCII keywords matter here).

    Raises:
        ConfigCheckError: the file cannot be read (the message names the path), or as
            :func:`check_backend`.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise ConfigCheckError(
            f"cannot read HAProxy configuration {os.fspath(path)!r}: {e.strerror or e}",
            field="config file", value=os.fspath(path)) from e
    return check_backend(text, backend)
