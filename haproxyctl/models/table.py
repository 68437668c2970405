"""Stick tables: ``show table`` (list and contents) (management.txt §9.3, "show table").

Formats (``shared/haproxy-runtime-api.md`` §7):

- list: ``# table: be_stick, type: ip, size:1024, used:4`` per table;
- contents: that header line, then one line per entry:
  ``0x561129e38c50: key=alice use=0 exp=1799986 server_id=1 http_req_cnt=0 server_key=s1``;
  2.7+ adds ``shard=N`` after ``exp=``, so entries are parsed as ``name=value`` tokens, never by
  position. Keys are printed by ``dump_text()`` (``src/tools.c``): space, ``=`` and ``\\`` get a
  backslash, TAB/LF/CR/ESC become ``\\t``/``\\n``/``\\r``/``\\e`` and every other byte that is
  not printable ASCII (so each byte of a UTF-8 character) becomes ``\\xHH``
  (``key=caf\\xC3\\xA9`` was measured on 2.6 for ``café``). Data values are printed as they are.
- a ``level user`` socket gets the header and ``# contents not dumped due to insufficient
  privileges``: that is a refusal, raised as PermissionDenied.

Why entries are lazy views: a table of 100,000 entries is 7.5 MB of text, which HAProxy sends in
about 80 ms. Tokenising every line into a dict of typed values took 15-18x that. A
:class:`TableEntry` therefore keeps its raw line and parses it the first time a field is read
(then caches the result), and :class:`TableReader` turns the reply into entries block by block
while HAProxy is still writing it (``Connection.stream``), checking only that every line looks
like an entry (one C-level ``count`` per block). Reading a field of a malformed line raises
ProtocolError. The same reasoning as for ``show stat`` rows (``docs/architecture.md``, Models).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Generator, Iterable, Iterator, Mapping
from types import MappingProxyType, TracebackType

import attrs

from haproxyctl.errors import PermissionDenied, ProtocolError
from haproxyctl.models._fields import snippet

__all__ = [
    "StickTable",
    "TableEntry",
    "TableInfo",
    "TablePins",
    "TableReader",
    "escape_key",
    "owner_of",
    "parse_table",
    "parse_tables",
    "unescape_key",
]

_HEADER_RE = re.compile(
    r"# table: (?P<name>[^,]+), type: (?P<type>[^,]+), size:(?P<size>\d+), used:(?P<used>\d+)"
)
_PRIVILEGE_NOTE = "# contents not dumped due to insufficient privileges"
_INT_RE = re.compile(r"-?[0-9]+")
_PTR_RE = re.compile(r"0x[0-9a-fA-F]+")
# dump_text() escapes (src/tools.c): "\xHH" for a byte, "\t" & co for control characters, and a
# backslash before ' ', '=' and '\\' themselves.
_KEY_ESCAPE_RE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)", re.DOTALL)
_CONTROL_ESCAPES = {"t": b"\t", "n": b"\n", "r": b"\r", "e": b"\x1b"}
_PRINTED_AS = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\e", "\\": "\\\\", " ": "\\ ",
               "=": "\\="}

Value = int | str | None
_Parsed = tuple[str, str, int | None, int | None, int | None, Mapping[str, Value]]


@attrs.frozen
class TableInfo:
    name: str
    type: str
    size: int
    used: int


# -- keys -----------------------------------------------------------------------------------------


def unescape_key(printed: str) -> str:
    """The key HAProxy printed as ``printed`` (the inverse of ``dump_text()``, module docstring).

    Bytes that are not valid UTF-8 (a binary key sent by a client) are kept as ``\\xHH`` text.
    """
    if "\\" not in printed:
        return printed
    out = bytearray()
    pos = 0
    for m in _KEY_ESCAPE_RE.finditer(printed):
        out += printed[pos:m.start()].encode("utf-8", "surrogateescape")
        code = m.group(1)
        if len(code) == 3:
            out.append(int(code[1:], 16))
        else:
            out += _CONTROL_ESCAPES.get(code) or code.encode("utf-8", "surrogateescape")
        pos = m.end()
    out += printed[pos:].encode("utf-8", "surrogateescape")
    return out.decode("utf-8", "backslashreplace")


def escape_key(key: str) -> str:
    """How HAProxy prints ``key`` in ``show table`` (``dump_text()``); see :func:`unescape_key`.

    Used to build the canonical line of an entry made with the keyword constructor.
    """
    out: list[str] = []
    for char in key:
        if char in _PRINTED_AS:
            out.append(_PRINTED_AS[char])
        elif " " < char < "\x7f":
            out.append(char)
        else:
            out.extend(f"\\x{b:02X}" for b in char.encode("utf-8", "surrogateescape"))
    return "".join(out)


# -- entries --------------------------------------------------------------------------------------


def _value(raw: str) -> Value:
    if raw.isdigit() and raw.isascii():  # the common case, without a regex
        return int(raw)
    if raw == "-":
        return None
    if _INT_RE.fullmatch(raw):
        return int(raw)
    return raw


def _split_escaped(text: str) -> list[str]:
    """Split on spaces not preceded by a backslash escape; tokens keep their escapes (only the
    key is unescaped, since only keys go through dump_text())."""
    tokens: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == " ":
            tokens.append(text[start:i])
            start = i + 1
        i += 1
    tokens.append(text[start:])
    return tokens


def _parse_line(line: str) -> _Parsed:
    ptr, sep, rest = line.partition(": ")
    if not sep or _PTR_RE.fullmatch(ptr) is None:
        raise ProtocolError("not a 'show table' entry line", raw=snippet(line))
    tokens = _split_escaped(rest) if "\\" in rest else rest.split(" ")
    fields: dict[str, str] = {}
    for token in tokens:
        name, sep, value = token.partition("=")
        if not sep:
            if not token:
                continue
            raise ProtocolError(f"'show table' entry token {token!r} has no '='",
                                raw=snippet(line))
        fields[name] = value
    if "key" not in fields:
        raise ProtocolError("'show table' entry has no key", raw=snippet(line))
    key = unescape_key(fields.pop("key"))
    try:
        use = int(fields.pop("use")) if "use" in fields else None
        exp = int(fields.pop("exp")) if "exp" in fields else None
        shard = int(fields.pop("shard")) if "shard" in fields else None
    except ValueError:
        raise ProtocolError("'show table' entry has a non-numeric use/exp/shard",
                            raw=snippet(line)) from None
    data = MappingProxyType({name: _value(value) for name, value in fields.items()})
    return ptr, key, use, exp, shard, data


def _format_line(ptr: str, key: str, use: int | None, exp: int | None, shard: int | None,
                 data: Mapping[str, Value]) -> str:
    """The line HAProxy would print for these values (``table_dump_entry_to_buffer()``)."""
    parts = [f"{ptr}: key={escape_key(key)}"]
    for name, number in (("use", use), ("exp", exp), ("shard", shard)):
        if number is not None:
            parts.append(f"{name}={number}")
    parts += [f"{name}={'-' if value is None else value}" for name, value in data.items()]
    return " ".join(parts)


@attrs.frozen(init=False, repr=False)
class TableEntry:
    """One entry of a stick table. ``data`` holds the stored data types (``server_id``,
    ``http_req_cnt``, ...); integers are converted, other values (``server_key``; rates like
    ``http_req_rate(10000)`` keep their name as printed) stay strings; ``-`` becomes None.

    A view over the line HAProxy printed: fields are parsed when one is first read, then
    cached. Reading a field of a malformed line raises ProtocolError. Two entries are equal
    when their lines are. Built by :meth:`from_line` (what the parsers do) or with the fields
    as keywords, ``TableEntry(ptr=, key=, use=, exp=, shard=, data=)``.
    """

    _line: str
    _cache: _Parsed | None = attrs.field(default=None, eq=False)

    def __init__(self, ptr: str, key: str, use: int | None, exp: int | None,
                 shard: int | None, data: Mapping[str, Value]) -> None:
        values = MappingProxyType(dict(data))
        object.__setattr__(self, "_line", _format_line(ptr, key, use, exp, shard, values))
        object.__setattr__(self, "_cache", (ptr, key, use, exp, shard, values))

    @classmethod
    def from_line(cls, line: str) -> TableEntry:
        """A lazy entry over one ``show table`` content line (without its LF)."""
        return _from_line(line)

    @property
    def _parsed(self) -> _Parsed:
        cache = self._cache
        if cache is None:
            cache = _parse_line(self._line)
            object.__setattr__(self, "_cache", cache)
        return cache

    @property
    def raw(self) -> str:
        """The line as HAProxy printed it."""
        return self._line

    @property
    def ptr(self) -> str:
        return self._parsed[0]

    @property
    def key(self) -> str:
        """The key, unescaped (``with\\ space`` reads as ``with space``)."""
        return self._parsed[1]

    @property
    def use(self) -> int | None:
        return self._parsed[2]

    @property
    def exp(self) -> int | None:
        return self._parsed[3]

    @property
    def shard(self) -> int | None:
        return self._parsed[4]

    @property
    def data(self) -> Mapping[str, Value]:
        return self._parsed[5]

    @property
    def server_id(self) -> int | None:
        value = self.data.get("server_id")
        return value if isinstance(value, int) else None

    @property
    def server_key(self) -> str | None:
        value = self.data.get("server_key")
        return value if isinstance(value, str) else None

    def owner(self, names_by_id: Mapping[int, str]) -> str | None:
        """The server this entry sends its user to: see :func:`owner_of`."""
        return owner_of(self.server_key, self.server_id, names_by_id)

    def to_dict(self) -> dict[str, object]:
        ptr, key, use, exp, shard, data = self._parsed
        return {"ptr": ptr, "key": key, "use": use, "exp": exp, "shard": shard,
                "data": dict(data)}

    def __reduce__(self) -> tuple[object, tuple[str]]:
        # Pickled and copied as its line (the parse cache holds a read-only mapping proxy,
        # which cannot be pickled, and is rebuilt on demand anyway).
        return _from_line, (self._line,)

    def __repr__(self) -> str:
        try:
            return (f"TableEntry(key={self.key!r}, server_id={self.server_id!r}, "
                    f"server_key={self.server_key!r}, use={self.use!r}, exp={self.exp!r})")
        except ProtocolError:
            return f"TableEntry(<malformed> {snippet(self._line, 80)!r})"


# The hot path of every listing: one entry per line without running an __init__ (the slots are
# set directly; attrs' frozen guard is __setattr__, which this does not go through).
_new = object.__new__
_set_line = TableEntry.__dict__["_line"].__set__
_set_cache = TableEntry.__dict__["_cache"].__set__


def _from_line(line: str) -> TableEntry:
    entry = _new(TableEntry)
    _set_line(entry, line)
    _set_cache(entry, None)
    return entry


class _Refused(Exception):
    """The privilege note was found where entries were expected."""

    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


def _checked_lines(block: str) -> list[str]:
    """The entry lines of a block of complete lines.

    Every content line starts with the entry's address (``%p:``): one C-level count checks a
    whole block. Anything else (the privilege note, an empty line, garbage) is looked at line
    by line; garbage raises ProtocolError, the note :class:`_Refused`.
    """
    lines = block.split("\n")
    if block.count("\n0x") + block.startswith("0x") == len(lines):
        return lines
    kept: list[str] = []
    for line in lines:
        if line.startswith("0x"):
            kept.append(line)
        elif line.strip() == _PRIVILEGE_NOTE:
            raise _Refused(line.strip())
        elif line:
            raise ProtocolError("not a 'show table' entry line", raw=snippet(line))
    return kept


def owner_of(server_key: str | None, server_id: int | None,
             names_by_id: Mapping[int, str]) -> str | None:
    """Who an entry is pinned to: ``server_key`` when set (2.4+: it takes precedence over
    ``server_id`` when the entry is used, reference §7), else the name of ``server_id`` in
    ``names_by_id``, else ``"#<id>"`` (HAProxy's notation for a server by id) for an id the
    mapping does not know. None when the entry points nowhere: no ``server_id``, or 0 (what a
    failed ``set table`` leaves, reference §7), or negative."""
    if server_key is not None:
        return server_key
    if server_id is None or server_id <= 0:
        return None
    name = names_by_id.get(server_id)
    return name if name is not None else f"#{server_id}"


@attrs.frozen
class StickTable:
    info: TableInfo
    entries: tuple[TableEntry, ...]

    def to_dict(self) -> dict[str, object]:
        return {**attrs.asdict(self.info), "entries": [e.to_dict() for e in self.entries]}


# -- replies ---------------------------------------------------------------------------------------


def _header(line: str) -> TableInfo:
    m = _HEADER_RE.fullmatch(line.strip())
    if m is None:
        raise ProtocolError("not a 'show table' header line", raw=snippet(line))
    return TableInfo(m.group("name"), m.group("type"), int(m.group("size")), int(m.group("used")))


def parse_tables(reply: str) -> list[TableInfo]:
    """Parse the table list (``show table`` without a name)."""
    return [_header(line) for line in reply.split("\n") if line]


class _Reply:
    """The reading state of one reply. Kept apart from :class:`TableReader` so that nothing
    the reader hands out (its entry iterator) refers back to the reader: dropping a reader
    half-way (``for e in client.iter_table(t): break``) frees it at once, which closes the
    stream and frees the connection, instead of waiting for the cycle collector."""

    def __init__(self, chunks: Iterable[bytes] | Iterable[str], name: str | None,
                 fallback: TableInfo | None) -> None:
        self.source: Iterator[bytes | str] = iter(chunks)
        self.decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        self.name = name
        self.fallback = fallback
        self.info: TableInfo | None = None
        self.header_line: str | None = None
        self.pending = ""
        self.stash: list[str] = []
        self.done = False

    def header(self) -> TableInfo:
        if self.info is None:
            # Read up to the first line after the header: a refusal is the line right after
            # it, and should raise as soon as the reply is opened, like any other refusal.
            while (self.header_line is None or not self.stash) and not self.done:
                block = self.read_block()
                if block:
                    self.stash.append(block)
            if self.info is None:
                if self.name is None:
                    raise ProtocolError("empty 'show table' reply")
                self.info = self.fallback or TableInfo(self.name, "", 0, 0)
            if self.stash and self.stash[0].lstrip("\n").startswith(_PRIVILEGE_NOTE):
                raise self.refusal(_PRIVILEGE_NOTE)
        return self.info

    def read_block(self) -> str | None:
        """The complete lines of the next piece (possibly ""), or None at the end."""
        if self.done:
            return None
        chunk = next(self.source, None)
        if chunk is None:
            self.done = True
            block = self.pending + self.decode(b"", final=True)
            self.pending = ""
        else:
            text = self.pending + (chunk if isinstance(chunk, str) else self.decode(chunk))
            cut = text.rfind("\n")
            if cut < 0:
                self.pending = text
                return ""
            block, self.pending = text[:cut], text[cut + 1:]
        if self.header_line is None:
            block = block.lstrip("\n")
            if block:
                line, _, block = block.partition("\n")
                self.info = _header(line)
                self.header_line = line
        return block

    def raw_blocks(self) -> Iterator[str]:
        self.header()
        try:
            while self.stash:
                yield self.stash.pop(0)
            while (block := self.read_block()) is not None:
                if block:
                    yield block
        except _Refused as exc:
            raise self.refusal(exc.note) from None

    def lines(self, block: str) -> list[str]:
        try:
            return _checked_lines(block)
        except _Refused as exc:
            raise self.refusal(exc.note) from None

    def entries(self) -> Generator[TableEntry, None, None]:
        make = _from_line
        for block in self.raw_blocks():
            yield from map(make, self.lines(block))

    def refusal(self, note: str) -> PermissionDenied:
        # Only called once the header was read (the note comes after it).
        name = self.info.name if self.info is not None else self.name
        return PermissionDenied(
            f"the socket's level is too low to read stick table {name!r} "
            "(needs operator or admin)",
            reply=f"{self.header_line}\n{note}", reason="insufficient privileges",
            command=f"show table {name}",
        )

    def close(self) -> None:
        self.done = True
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


@attrs.frozen
class TablePins:
    """Who a stick table pins where (owner name -> keys), and the keys of the entries a
    stream holds right now (``use`` > 0). Built by :meth:`TableReader.pins`."""

    owners: dict[str, list[str]]
    busy: frozenset[str]

    def idle(self, key: str) -> bool:
        """No stream holds this key's entry (as of the read)."""
        return key not in self.busy


class TableReader(Iterator[TableEntry]):
    """The entries of one ``show table <name>`` reply, parsed block by block as it arrives.

    ``chunks`` are the reply's pieces (bytes as ``Connection.stream`` yields them, or text).
    Iterating yields :class:`TableEntry` views; :attr:`info` is the header. Only one block of
    lines (one read from the socket) is held at a time, so memory does not grow with the
    table unless the caller keeps the entries.

    ``name`` makes an empty reply an empty table (HAProxy 2.6 prints nothing at all, not even
    the header, for ``show table <t> key <k>`` when it holds no such key); ``info`` is then
    used as the header if given. Raises ProtocolError for a reply that is not a table (at the
    first line that is not an entry), PermissionDenied for the privilege note.

    Use it as a context manager, or iterate to the end: while it is open the connection it
    reads from is busy (see ``Client.iter_table``). A reader that is dropped unfinished is
    closed at once (it is in no reference cycle).
    """

    def __init__(self, chunks: Iterable[bytes] | Iterable[str], *, name: str | None = None,
                 info: TableInfo | None = None) -> None:
        self._reply = _Reply(chunks, name, info)
        self._entries = self._reply.entries()

    @property
    def info(self) -> TableInfo:
        """The table's header (reads the first piece of the reply if not done yet)."""
        return self._reply.header()

    def blocks(self) -> Iterator[list[str]]:
        """The entry lines, one list per block as it arrives (what the iterators build on)."""
        reply = self._reply
        for block in reply.raw_blocks():
            yield reply.lines(block)

    def __iter__(self) -> Iterator[TableEntry]:
        return self._entries

    def __next__(self) -> TableEntry:
        return next(self._entries)

    def read_all(self) -> tuple[TableEntry, ...]:
        """Every (remaining) entry."""
        out: list[TableEntry] = []
        extend, make = out.extend, _from_line
        for lines in self.blocks():
            extend(map(make, lines))
        return tuple(out)

    def table(self) -> StickTable:
        """The whole table (the header and every remaining entry)."""
        entries = self.read_all()
        return StickTable(self.info, entries)

    def owners(self, names_by_id: Mapping[int, str]) -> dict[str, list[str]]:
        """Keys per owning server (see :func:`owner_of`), without building entry objects.

        Entries that point nowhere are left out; the order of the keys in a list is not
        significant.
        """
        return self._owners(names_by_id, None)

    def pins(self, names_by_id: Mapping[int, str]) -> TablePins:
        """:meth:`owners`, and which of those keys a stream holds right now (``use`` > 0): a
        re-pin of such an entry may be undone by the response of the request holding it
        (the rollout moves idle users first)."""
        busy: set[str] = set()
        owners = self._owners(names_by_id, busy)
        return TablePins(owners, frozenset(busy))

    def _owners(self, names_by_id: Mapping[int, str], busy: set[str] | None
                ) -> dict[str, list[str]]:
        by_key: dict[str, list[str]] = {}
        by_id: dict[str, list[str]] = {}
        reply = self._reply
        try:
            for block in reply.raw_blocks():
                _owners_block(block, by_key, by_id)
                if busy is not None:
                    _busy_block(block, busy)
        except _Refused as exc:
            raise reply.refusal(exc.note) from None
        return _resolve_owners(by_key, by_id, names_by_id)

    def close(self) -> None:
        """Stop reading; an unfinished reply is abandoned (its connection is dropped)."""
        self._entries.close()
        self._reply.close()

    def __enter__(self) -> TableReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# The layout HAProxy 2.6-3.x prints (table_dump_entry_to_buffer(): key, use, exp, 2.7+ shard,
# then the stored data types in their enum order, server_id being the first). The owners fast
# path reads it with one regex per block; a block where these do not match every line (another
# layout) is read by name, line by line (_owner_line).
_KEY_ID_RE = re.compile(
    r": key=([^ \n]*) use=[^ \n]* exp=[^ \n]*(?: shard=[^ \n]*)? server_id=([^ \n]*)")
_KEY_ID_SKEY_RE = re.compile(
    r": key=([^ \n]*) use=[^ \n]* exp=[^ \n]*(?: shard=[^ \n]*)? server_id=([^ \n]*)"
    r"(?: [^ \n]*)*? server_key=([^ \n]*)")


def _server_keys_unset(block: str) -> bool:
    """No line of ``block`` has a server_key value ("server_key=-" or no such token)."""
    unset = (block.count(" server_key=- ") + block.count(" server_key=-\n")
             + block.endswith(" server_key=-"))
    return block.count(" server_key=") == unset


def _owners_block(block: str, by_key: dict[str, list[str]],
                  by_id: dict[str, list[str]]) -> None:
    """Group the keys of one block of entry lines without building entries: by ``server_key``
    when it is set, else by the text of ``server_id`` (resolved to names once, at the end)."""
    lines = block.count("\n") + 1
    if block.count("\n0x") + block.startswith("0x") != lines or "\\" in block:
        # Not only plain entry lines (an empty line, the privilege note, garbage), or a key
        # with escapes (an escaped space would end a [^ ] match early): the careful way.
        for line in _checked_lines(block):
            _owner_line(line, by_key, by_id)
        return
    if _server_keys_unset(block):
        pairs = _KEY_ID_RE.findall(block)
        if len(pairs) == lines:
            for key, sid in pairs:
                keys = by_id.get(sid)
                if keys is None:
                    keys = by_id[sid] = []
                keys.append(key)
            return
    else:
        triples = _KEY_ID_SKEY_RE.findall(block)
        if len(triples) == lines:
            for key, sid, skey in triples:
                if skey == "-":
                    keys = by_id.get(sid)
                    if keys is None:
                        keys = by_id[sid] = []
                else:
                    keys = by_key.get(skey)
                    if keys is None:
                        keys = by_key[skey] = []
                keys.append(key)
            return
    for line in block.split("\n"):
        _owner_line(line, by_key, by_id)


_BUSY_RE = re.compile(r": key=([^ \n]*) use=[1-9][0-9]* ")


def _busy_block(block: str, in_use: set[str]) -> None:
    """Add the keys of the entries in use in one block (already checked by _owners_block)."""
    if "\\" in block:
        for line in _checked_lines(block):
            entry = _from_line(line)
            if entry.use:
                in_use.add(entry.key)
        return
    if block.count(" use=0 ") == block.count("\n") + 1:
        return  # the usual case: every entry idle, one C-level count
    in_use.update(_BUSY_RE.findall(block))


def _owner_line(line: str, by_key: dict[str, list[str]], by_id: dict[str, list[str]]) -> None:
    """One line, fields found by name (any order). Lines with escapes are parsed in full."""
    if "\\" in line:
        entry = _from_line(line)
        key, skey, sid = entry.key, entry.server_key, entry.server_id
        if skey is not None:
            by_key.setdefault(skey, []).append(key)
        elif sid is not None:
            by_id.setdefault(str(sid), []).append(key)
        return
    start = line.find(": key=")
    if start < 0 or not line.startswith("0x"):
        raise ProtocolError("not a 'show table' entry line", raw=snippet(line))
    start += 6
    end = line.find(" ", start)
    key = line[start:] if end < 0 else line[start:end]
    if end < 0:
        return
    printed_key = _token_value(line, " server_key=", end)
    if printed_key is not None and printed_key != "-":
        by_key.setdefault(printed_key, []).append(key)
        return
    printed_id = _token_value(line, " server_id=", end)
    if printed_id is not None:
        by_id.setdefault(printed_id, []).append(key)


def _token_value(line: str, token: str, start: int) -> str | None:
    pos = line.find(token, start)
    if pos < 0:
        return None
    pos += len(token)
    stop = line.find(" ", pos)
    return line[pos:] if stop < 0 else line[pos:stop]


def _resolve_owners(by_key: dict[str, list[str]], by_id: dict[str, list[str]],
                    names: Mapping[int, str]) -> dict[str, list[str]]:
    owners = by_key
    for raw, keys in by_id.items():
        if raw == "-":
            continue
        if _INT_RE.fullmatch(raw) is None:
            raise ProtocolError(f"'show table' entry has a non-numeric server_id {raw!r}",
                                raw=snippet(raw))
        owner = owner_of(None, int(raw), names)
        if owner is not None:
            owners.setdefault(owner, []).extend(keys)
    return owners


def parse_table(reply: str, *, name: str | None = None) -> StickTable:
    """Parse one table's contents (``show table <name> [filter]``).

    HAProxy prints nothing at all (not even the header) when a key filter cannot be parsed for
    the table's type (``show table be_stick key notanip``); that is reported as an empty table
    when ``name`` is given, since the filter matched nothing.
    """
    return TableReader([reply], name=name).table()
