"""Output for the CLI: aligned tables for people, stable JSON for scripts. No logic."""

from __future__ import annotations

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
