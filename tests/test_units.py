"""Sizes and durations: what a person writes → values, and values → what we print."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tuner.units import MAX_SIZE, format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("15min", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800),
     ("500ms", 0.5), ("30", 30), (45, 45), (1.5, 1.5), (" 2 H ", 7200)],
)  # fmt: skip
def test_parse_duration_reads_every_unit(text: Any, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_parse_duration_passes_none_and_timedeltas_through() -> None:
    assert parse_duration(None) is None
    assert parse_duration(timedelta(minutes=3)) == timedelta(minutes=3)


@pytest.mark.parametrize(
    ("value", "why"),
    [("5y", "unknown unit"), ("-1s", "cannot be negative"), (True, "expected a duration"),
     ("soon", "expected a duration"), (float("inf"), "finite"), ("36501d", "100 years")],
)  # fmt: skip
def test_parse_duration_refuses_with_a_reason(value: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "size"),
    [("500MB", 500 * 1024**2), ("10GB", 10 * 1024**3), ("1TB", 1024**4), ("2kB", 2048),
     ("1.5GiB", int(1.5 * 1024**3)), ("64M", 64 * 1024**2), ("100", 100), (4096, 4096)],
)  # fmt: skip
def test_parse_size_reads_binary_units(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("value", "why"),
    [("5PB", "unknown unit"), ("-1MB", "cannot be negative"), (False, "expected a size"),
     ("big", "expected a size"), (float("nan"), "finite"), (MAX_SIZE * 2.0, "8 EB")],
)  # fmt: skip
def test_parse_size_refuses_with_a_reason(value: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_size(value)


def test_format_duration_is_the_shortest_exact_rendering() -> None:
    assert format_duration(timedelta(seconds=90)) == "90s"
    assert format_duration(timedelta(minutes=30)) == "30m"
    assert format_duration(timedelta(hours=2)) == "2h"
    assert format_duration(timedelta(days=1)) == "1d"
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(timedelta(milliseconds=500)) == "0.5s"


def test_format_size_names_the_binary_unit() -> None:
    assert format_size(512) == "512 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(1024**2) == "1.0 MiB"
    assert format_size(3 * 1024**3) == "3.0 GiB"
    assert format_size(2 * 1024**4) == "2.0 TiB"


def test_a_formatted_duration_parses_back_to_itself() -> None:
    for value in (timedelta(seconds=90), timedelta(minutes=15), timedelta(days=30)):
        assert parse_duration(format_duration(value)) == value
