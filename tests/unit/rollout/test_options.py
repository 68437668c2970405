"""RolloutOptions validation: every refusal names the flag (``UsageError.field``)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from haproxyctl.errors import UsageError
from haproxyctl.rollout.options import RolloutOptions

TIMES = ["drain_timeout", "sessions_timeout", "kill_after", "health_timeout", "settle", "ramp",
         "exec_timeout", "poll_interval"]


def refused(**kw: Any) -> UsageError:
    with pytest.raises(UsageError) as info:
        RolloutOptions(**kw)
    return info.value


def test_defaults() -> None:
    o = RolloutOptions()
    assert (o.strategy, o.batch_size, o.percent, o.groups, o.max_unavailable) == (
        "rolling", None, None, None, None)
    assert (o.drain_timeout, o.sessions_timeout, o.kill_after, o.health_timeout) == (
        None, 120.0, None, 60.0)  # drain grace: automatic (Plan.drain_grace)
    assert o.rebalance
    assert not o.allow_version_flips
    assert not o.include_disabled


@pytest.mark.parametrize("name", TIMES)
@pytest.mark.parametrize("value", [-1, -0.001, "5", True])
def test_times_must_be_numbers_at_least_zero(name: str, value: object) -> None:
    exc = refused(**{name: value})
    flag = "--" + name.replace("_", "-")
    assert exc.field == flag
    assert flag in str(exc)
    assert exc.value == value


@pytest.mark.parametrize("name", [n for n in TIMES if n != "poll_interval"])
def test_zero_times_are_accepted(name: str) -> None:
    kw: dict[str, Any] = {name: 0}
    assert getattr(RolloutOptions(**kw), name) == 0


@pytest.mark.parametrize("name", ["sessions_timeout", "health_timeout", "drain_timeout"])
def test_nan_times_are_refused(name: str) -> None:
    exc = refused(**{name: math.nan})
    assert exc.field == "--" + name.replace("_", "-")


@pytest.mark.parametrize(("kw", "field", "words"), [
    ({"batch_size": 0}, "batch-size", "--batch-size must be >= 1"),
    ({"batch_size": True}, "batch-size", "--batch-size"),
    ({"percent": 0}, "percent", "--percent must be in (0, 100]"),
    ({"percent": 100.5}, "percent", "--percent"),
    ({"max_unavailable": 0}, "max-unavailable", "--max-unavailable must be >= 1"),
    ({"groups": ()}, "groups", "--groups needs at least one non-empty group"),
    ({"groups": (("s1",), ())}, "groups", "--groups"),
    ({"kill_after": 30, "sessions_timeout": 20}, "kill-after", "it would never fire"),
    ({"poll_interval": 0.001}, "poll-interval", "--poll-interval must be >= 0.01"),
    ({"strategy": "canary"}, "strategy", "unknown strategy 'canary'"),
])
def test_refusals_name_the_flag(kw: dict[str, Any], field: str, words: str) -> None:
    exc = refused(**kw)
    assert exc.field is not None
    assert exc.field.lstrip("-") == field
    assert words in str(exc)


@pytest.mark.parametrize(("kw", "flags"), [
    ({"batch_size": 2, "percent": 50}, ["--batch-size", "--percent"]),
    ({"batch_size": 2, "groups": (("s1",),)}, ["--batch-size", "--groups"]),
    ({"percent": 10, "groups": (("s1",),)}, ["--percent", "--groups"]),
])
def test_grouping_options_cannot_be_combined(kw: dict[str, Any], flags: list[str]) -> None:
    exc = refused(**kw)
    assert exc.field == "--batch-size/--percent/--groups"
    assert all(f in str(exc) for f in flags)
    assert "cannot be combined" in str(exc)


@pytest.mark.parametrize("kw", [{"batch_size": 2}, {"percent": 50}, {"groups": (("s1",),)}])
def test_halves_does_its_own_grouping(kw: dict[str, Any]) -> None:
    exc = refused(strategy="halves", **kw)
    assert exc.field == "--batch-size/--percent/--groups"
    assert "--strategy halves" in str(exc)


def test_valid_combinations() -> None:
    o = RolloutOptions(percent=100, kill_after=120, sessions_timeout=120, poll_interval=0.01,
                       max_unavailable=3)
    assert (o.percent, o.kill_after, o.max_unavailable) == (100, 120, 3)
    assert RolloutOptions(strategy="halves", max_unavailable=2).strategy == "halves"


@pytest.mark.parametrize(("text", "groups"), [
    ("s1,s2 s3,s4", (("s1", "s2"), ("s3", "s4"))),
    ("s1;s2,s3", (("s1",), ("s2", "s3"))),
    ("  s1,,s2   s3 ", (("s1", "s2"), ("s3",))),
])
def test_parse_groups(text: str, groups: tuple[tuple[str, ...], ...]) -> None:
    assert RolloutOptions.parse_groups(text) == groups


@pytest.mark.parametrize("text", ["", "   ", " ; "])
def test_parse_groups_naming_nothing_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="names no server") as info:
        RolloutOptions.parse_groups(text)
    assert info.value.field == "--groups"
