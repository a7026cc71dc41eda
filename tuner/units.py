"""Sizes and durations: parsing what a person writes ('500MB', '15m') and formatting back (pure).

As in postgresql.conf, kB/MB/GB/TB are powers of 1024; the formatter names the binary unit
it prints (KiB, MiB) so nobody reads a MiB as a million bytes.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
# As in postgresql.conf, kB/MB/GB/TB are powers of 1024; KiB/MiB/GiB/TiB say so outright.
_SIZES = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}  # fmt: skip
_SIZE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
MAX_DURATION = timedelta(days=36500)
MAX_SIZE = 2**63 - 1  # PostgreSQL's bigint, in which it counts bytes


def parse_duration(value: Any) -> Any:
    """'90s', '15m', '2h', '7d', '500ms' or a number of seconds → timedelta; negative refused."""
    if isinstance(value, timedelta) or value is None:
        seconds = value.total_seconds() if value is not None else None
    elif isinstance(value, bool):
        raise ValueError("expected a duration such as '30s', '15m', '2h' or '7d'")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        unit = match.group(2).lower() or "s"
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r}; use ms, s, m, h, d or w")
        seconds = float(match.group(1)) * _UNITS[unit]
    else:
        raise ValueError("expected a duration such as '30s', '15m', '2h' or '7d'")
    if seconds is None:
        return None
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number such as '30s' or '7d'")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"a duration cannot be longer than {MAX_DURATION.days}d (100 years)")
    return timedelta(seconds=seconds)


def parse_size(value: Any) -> Any:
    """'500MB', '10GB', '1TB' or a number of bytes → int bytes; negative refused."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as '500MB' or '10GB'")
    if isinstance(value, int | float):
        size = float(value)
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        unit = match.group(2).lower()
        unit = unit if unit.endswith("b") or not unit else unit + "b"
        if unit not in _SIZES:
            raise ValueError(f"unknown unit {match.group(2)!r}; use kB, MB, GB or TB")
        size = float(match.group(1)) * _SIZES[unit]
    else:
        raise ValueError("expected a size such as '500MB' or '10GB'")
    if not math.isfinite(size):
        raise ValueError("a size must be a finite number such as '500MB'")
    if size < 0:
        raise ValueError("a size cannot be negative")
    if size > MAX_SIZE:
        raise ValueError("a size cannot be larger than 8 EB (PostgreSQL's largest byte count)")
    return int(size)


def format_duration(value: timedelta) -> str:
    """The shortest exact rendering: 90s → '90s', 1800s → '30m', 86400s → '1d'."""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_size(size: int) -> str:
    """Bytes in the largest binary unit that keeps one decimal, named as the binary unit it
    is (1536 → '1.5 KiB'; a MiB is 1,048,576 bytes, not a million)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
