"""CLI rendering: the streamed table and JSON writers print exactly what the buffered ones do."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxyctl.cli.render import Output

COLUMNS = (("key", "KEY"), ("n", "N"), ("note", "NOTE"))

rows = st.lists(st.fixed_dictionaries({
    "key": st.text(alphabet="ab.:", min_size=1, max_size=12),
    "n": st.one_of(st.none(), st.integers(-5, 10**6)),
    "note": st.one_of(st.none(), st.booleans(), st.text(alphabet="xy ", max_size=5)),
}), max_size=30)


def _out(json_mode: bool = False) -> tuple[Output, io.StringIO]:
    buf = io.StringIO()
    return Output(json_mode=json_mode, out=buf, err=io.StringIO()), buf


@given(rows, st.integers(min_value=1, max_value=40))
def test_stream_table_equals_table_within_the_sample(data: list[dict[str, Any]],
                                                     sample: int) -> None:
    buffered, expected = _out()
    buffered.table(data, COLUMNS)
    streamed, got = _out()
    streamed.stream_table(iter(data), COLUMNS, sample=max(sample, len(data)))
    assert got.getvalue() == expected.getvalue()
    # Beyond the sample, every row is still there, one line each, in order.
    small, text = _out()
    small.stream_table(iter(data), COLUMNS, sample=sample)
    lines = text.getvalue().split("\n")
    assert len(lines) == len(data) + 2
    assert lines[-1] == ""
    assert [line.split(" ")[0] for line in lines[1:-1]] == [r["key"] for r in data]


@given(st.lists(st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3)),
                max_size=2500))
def test_json_stream_equals_json(items: list[dict[str, Any]]) -> None:
    head = {"name": "t", "type": "ip", "size": 10, "used": len(items)}
    buffered, expected = _out(True)
    buffered.json({**head, "entries": items})
    streamed, got = _out(True)
    streamed.json_stream(head, "entries", iter(items))
    assert got.getvalue() == expected.getvalue()


def test_json_stream_left_open_when_items_fail() -> None:
    def failing() -> Any:
        yield {"a": 1}
        raise RuntimeError("boom")

    streamed, got = _out(True)
    with pytest.raises(RuntimeError):
        streamed.json_stream({"name": "t"}, "entries", failing())
    with pytest.raises(json.JSONDecodeError):
        json.loads(got.getvalue())
