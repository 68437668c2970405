"""Row views: typed access to table-shaped replies, resolved by column name. No I/O.

``show stat`` has 128+ columns per server, and listing 10,000 servers means 1.3 million fields.
Converting every field to a Python int and setting it on a frozen object costs ~5x the time
HAProxy takes to send the reply (measured in ``bench/``), so the row models are *views*: a
frozen attrs object holding the row's strings for its columns (in a fixed order resolved once
per header, by name) and a typed :class:`Column` descriptor per attribute that converts on
access. Reading an attribute never does I/O; a value HAProxy sent that does not convert raises
:class:`~haproxyctl.errors.ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from typing_extensions import Self

from haproxyctl.errors import ProtocolError

__all__ = [
    "Column",
    "Columns",
    "RowView",
    "flag",
    "opt_int",
    "opt_str",
    "req_int",
    "row_view",
    "snippet",
    "text",
]

T = TypeVar("T")
V = TypeVar("V", bound="RowView")


def snippet(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


# -- converters: str -> value; ValueError for bad input ---------------------------------------


def opt_int(value: str) -> int | None:
    """``""``/``"-"`` (HAProxy's "no value") -> None, else the integer."""
    if value == "" or value == "-":
        return None
    return int(value)


def req_int(value: str) -> int:
    """A counter HAProxy always fills; an empty one reads as 0."""
    if value == "" or value == "-":
        return 0
    return int(value)


def opt_str(value: str) -> str | None:
    return None if value == "" or value == "-" else value


def text(value: str) -> str:
    return value


def flag(value: str) -> bool:
    return value == "1"


# -- header -------------------------------------------------------------------------------------


class Columns:
    """Column positions of one header, looked up by name (never by position).

    Unknown columns are ignored; a column this HAProxy version lacks reads as ``""`` (position
    -1, because the parsers append ``""`` to every row).
    """

    __slots__ = ("_plans", "index", "names")

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.index: dict[str, int] = {}
        for i, name in enumerate(self.names):
            self.index.setdefault(name, i)
        self._plans: dict[tuple[str, ...], tuple[Callable[[Sequence[str]], Any], int]] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def plan(self, wanted: tuple[str, ...]) -> tuple[Callable[[Sequence[str]], Any], int]:
        """A getter returning the ``wanted`` columns of a row as a tuple, and the number of
        splits a line needs to reach the last of them (the rest of the line is never split)."""
        plan = self._plans.get(wanted)
        if plan is None:
            positions = [self.index.get(name, -1) for name in wanted]
            getter = itemgetter(*positions) if len(positions) > 1 else _single(positions[0])
            plan = (getter, max(positions) + 1)
            self._plans[wanted] = plan
        return plan


def _single(position: int) -> Callable[[Sequence[str]], tuple[str]]:
    def get(row: Sequence[str]) -> tuple[str]:
        return (row[position],)

    return get


# -- typed views --------------------------------------------------------------------------------


class Column(Generic[T]):
    """A typed attribute of a row view: reads the raw string and converts it on access."""

    __slots__ = ("attr", "convert", "index", "name")

    def __init__(self, name: str, convert: Callable[[str], T]) -> None:
        self.name = name
        self.convert = convert
        self.index = -1
        self.attr = name

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    @overload
    def __get__(self, obj: None, owner: type) -> Column[T]: ...

    @overload
    def __get__(self, obj: RowView, owner: type) -> T: ...

    def __get__(self, obj: RowView | None, owner: type) -> Column[T] | T:
        if obj is None:
            return self
        raw = obj.values[self.index]
        try:
            return self.convert(raw)
        except ValueError:
            raise ProtocolError(
                f"{type(obj).__name__}.{self.attr}: HAProxy sent {snippet(raw, 60)!r} for column "
                f"{self.name!r}, which is not a valid value",
                raw=snippet(raw),
            ) from None


class RowView:
    """Base of the row views. Subclasses are attrs frozen classes with one field, ``values``."""

    values: tuple[str, ...]
    COLUMNS: tuple[str, ...] = ()
    _FIELDS: tuple[Column[Any], ...] = ()
    #: Attributes shown by repr() (the rest is available by name and in to_dict()).
    REPR: tuple[str, ...] = ()

    if TYPE_CHECKING:  # attrs generates the real __init__ in each subclass

        def __init__(self, values: tuple[str, ...]) -> None: ...

    @classmethod
    def from_row(cls, row: Sequence[str], columns: Columns) -> Self:
        """Build from one row of a reply whose header is ``columns`` (looked up by name).

        Raises ProtocolError if the row is shorter than the header says.
        """
        getter, _ = columns.plan(cls.COLUMNS)
        try:
            return cls(getter(row))
        except IndexError:
            raise ProtocolError(
                f"{cls.__name__}: row has {len(row)} fields, fewer than its header",
                raw=snippet(repr(row)),
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """Every typed attribute by name (what ``--json`` prints)."""
        return {f.attr: getattr(self, f.attr) for f in self._FIELDS}

    def __repr__(self) -> str:
        shown = ", ".join(f"{a}={getattr(self, a)!r}" for a in self.REPR)
        return f"{type(self).__name__}({shown})"

    def validate(self: V) -> V:
        """Convert every column once; raise ProtocolError for the first bad one."""
        for f in self._FIELDS:
            getattr(self, f.attr)
        return self


def row_view(cls: type[V]) -> type[V]:
    """Class decorator: number the class's :class:`Column` attributes in definition order and
    record their column names in ``COLUMNS`` (the order ``values`` is stored in)."""
    fields: list[Column[Any]] = []
    for klass in reversed(cls.__mro__):
        for value in vars(klass).values():
            if isinstance(value, Column) and value not in fields:
                fields.append(value)
    for i, f in enumerate(fields):
        f.index = i
    cls.COLUMNS = tuple(f.name for f in fields)
    cls._FIELDS = tuple(fields)
    return cls
