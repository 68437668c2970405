"""Output for the CLI: aligned tables for people, stable JSON for scripts. No logic."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

__all__ = ["Output"]


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class Output:
    """Writes results to stdout (data) and stderr (errors, progress)."""

    def __init__(self, *, json_mode: bool, quiet: bool = False, out: TextIO | None = None,
                 err: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr

    # data
    def json(self, value: Any) -> None:
        self.out.write(json.dumps(value, sort_keys=False, default=str) + "\n")
        self.out.flush()

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
        """``columns`` are (key, HEADER) pairs."""
        cells = [[_cell(r.get(k)) for k, _ in columns] for r in rows]
        headers = [h for _, h in columns]
        widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                  for row in cells]
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    def stream_table(self, rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]],
                     *, sample: int = 1000) -> None:
        """:meth:`table` for rows that arrive one by one (a stick table of a million entries):
        the column widths are those of the first ``sample`` rows, which are held back until
        then; later rows are written as they come, and a wider cell only shifts its own line.
        Up to ``sample`` rows the output is exactly :meth:`table`'s."""
        keys = [k for k, _ in columns]
        headers = [h for _, h in columns]
        it = iter(rows)
        first = [[_cell(r.get(k)) for k in keys] for r in itertools.islice(it, sample)]
        widths = [max([len(h), *(len(c[i]) for c in first)]) for i, h in enumerate(headers)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        write = self.out.write
        write("\n".join([line(headers), *(line(c) for c in first)]) + "\n")
        batch: list[str] = []
        for r in it:
            batch.append(line([_cell(r.get(k)) for k in keys]))
            if len(batch) >= sample:
                write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            write("\n".join(batch) + "\n")
        self.out.flush()

    def json_stream(self, head: Mapping[str, Any], key: str, items: Iterable[Any]) -> None:
        """Write ``{**head, key: [*items]}`` exactly as :meth:`json` would, one item at a time
        (nothing is held in memory). If ``items`` fails half-way the document stays
        unterminated, so a reader cannot mistake it for a complete one."""
        opening = json.dumps({**head, key: []}, sort_keys=False, default=str)
        if not opening.endswith("[]}"):  # pragma: no cover - json.dumps always ends so
            raise AssertionError(opening)
        write, dumps = self.out.write, json.dumps
        write(opening[:-2])  # '{..., "<key>": ['
        separator = ""
        batch: list[str] = []
        for item in items:
            batch.append(dumps(item, sort_keys=False, default=str))
            if len(batch) >= 1000:
                write(separator + ", ".join(batch))
                separator = ", "
                batch.clear()
        if batch:
            write(separator + ", ".join(batch))
        write("]}\n")
        self.out.flush()

    def pairs(self, items: Iterable[tuple[str, object]]) -> None:
        items = list(items)
        width = max((len(k) for k, _ in items), default=0)
        self.out.write("".join(f"{k.ljust(width)}  {_cell(v)}\n" for k, v in items))
        self.out.flush()

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def result(self, value: Any, human: Callable[[], None]) -> None:
        """JSON ``value`` in --json mode, else call ``human`` to print it for people."""
        if self.json_mode:
            self.json(value)
        else:
            human()

    # diagnostics
    def error(self, message: str) -> None:
        """One line, no traceback."""
        self.err.write("haproxyctl: error: " + " ".join(message.split("\n")) + "\n")
        self.err.flush()

    def note(self, message: str) -> None:
        if not self.quiet:
            self.err.write(message + "\n")
            self.err.flush()

    def progress(self, message: str) -> None:
        """A status line: rewritten in place on a terminal, one line per call otherwise."""
        if self.quiet:
            return
        if self.err.isatty():
            self.err.write("\r\033[K" + message)
        else:
            self.err.write(message + "\n")
        self.err.flush()

    def end_progress(self) -> None:
        if not self.quiet and self.err.isatty():
            self.err.write("\r\033[K")
            self.err.flush()
