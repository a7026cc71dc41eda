"""The latency series: what each busy statement cost, sample by sample, beside the journal.

The journal says what the tuner did; this file says what the database felt, so that
`pg-tuner report` can draw latency per statement over time with each action on it. One
JSON line per sample the daemon takes:

    {"t": "2026-12-06T10:00:00+00:00", "s": 30.0, "q": {"<queryid>": [calls, total_ms]}}

with the window's delta (calls and execution time since the previous sample) of its
busiest statements. A statement's text is written once, the first time the file meets it
(`"texts": {"<queryid>": "..."}`), cut to `TEXT_LIMIT` characters. Queryids are strings:
they are 64-bit and JSON readers in other languages lose their low bits.

The file is `<journal>.latency.jsonl`. It is not an audit record (no chain, no fsync): a
crash loses at most the last line, and a reader skips lines it cannot parse. When it
passes `MAX_BYTES` it is renamed to `<file>.1` (replacing the previous one) and a new file
starts, so the disk it takes is bounded by twice that.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tuner.models import Workload

SUFFIX = ".latency.jsonl"
TOP = 40  # statements kept per sample, by execution time in the window
TEXT_LIMIT = 2000
MAX_BYTES = 16 * 1024 * 1024


def path_for(journal: Path) -> Path:
    return journal.with_name(journal.name + SUFFIX)


@dataclass(frozen=True, slots=True)
class Point:
    """One sample: when it ended, how long it spanned, and each statement's delta."""

    at: datetime
    seconds: float
    queries: dict[int, tuple[int, float]]  # queryid → (calls, total_ms)


@dataclass(slots=True)
class Series:
    """All points read back, oldest first, and the texts of the statements in them."""

    points: list[Point] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)
    unreadable: int = 0  # lines skipped (a torn last line, or an edited file)

    def between(self, start: datetime, end: datetime) -> Iterator[Point]:
        return (p for p in self.points if start < p.at <= end)

    def mean_ms(self, queryid: int, start: datetime, end: datetime) -> tuple[int, float] | None:
        """(calls, mean ms) of `queryid` over the samples that ended in (start, end]."""
        calls, total = 0, 0.0
        for point in self.between(start, end):
            c, t = point.queries.get(queryid, (0, 0.0))
            calls, total = calls + c, total + t
        return (calls, total / calls) if calls else None


class Recorder:
    """Appends one line per sample; the daemon owns one per journal path."""

    def __init__(self, journal: Path, top: int = TOP, max_bytes: int = MAX_BYTES) -> None:
        self.path = path_for(journal)
        self.top, self.max_bytes = top, max_bytes
        self._written: set[int] = set()  # queryids whose text this file already holds

    def record(self, window: Workload) -> None:
        """The window's busiest statements as one line (nothing when none ran)."""
        busiest = sorted(
            (q for q in window.valid_queries if q.calls > 0),
            key=lambda q: -q.total_ms,
        )[: self.top]
        if not busiest:
            return
        merged: dict[int, tuple[int, float]] = {}
        texts: dict[str, str] = {}
        for q in busiest:
            calls, total = merged.get(q.queryid, (0, 0.0))
            merged[q.queryid] = (calls + q.calls, total + q.total_ms)
            if q.queryid not in self._written:
                texts[str(q.queryid)] = q.query[:TEXT_LIMIT]
        self._rotate()
        body: dict[str, object] = {
            "t": window.ended_at.isoformat(),
            "s": round(window.seconds, 3),
            "q": {str(k): [c, round(t, 4)] for k, (c, t) in merged.items()},
        }
        if texts:
            body["texts"] = texts
        line = json.dumps(body, ensure_ascii=True, separators=(",", ":")) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="ascii") as out:
            out.write(line)
        self._written.update(int(k) for k in texts)

    def _rotate(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            self._written.clear()
            return
        if size >= self.max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._written.clear()  # the new file names its texts again


def read(journal: Path, since: datetime | None = None) -> Series:
    """The series beside `journal` (its rotated part first), points after `since`."""
    series = Series()
    current = path_for(journal)
    for path in (current.with_name(current.name + ".1"), current):
        try:
            lines = path.read_text(encoding="ascii", errors="replace").splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            point = _parse(line, series)
            if point is not None and (since is None or point.at > since):
                series.points.append(point)
    series.points.sort(key=lambda p: p.at)
    return series


def _parse(line: str, series: Series) -> Point | None:
    try:
        body = json.loads(line)
        at = datetime.fromisoformat(body["t"])
        seconds = float(body["s"])
        queries = {int(k): (int(v[0]), float(v[1])) for k, v in body["q"].items()}
        texts = {int(k): str(v) for k, v in body.get("texts", {}).items()}
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        series.unreadable += 1
        return None
    if at.tzinfo is None or not math.isfinite(seconds) or seconds <= 0:
        series.unreadable += 1
        return None
    if any(c < 0 or not math.isfinite(t) or t < 0 for c, t in queries.values()):
        series.unreadable += 1
        return None
    for queryid, text in texts.items():
        series.texts.setdefault(queryid, text)
    return Point(at, seconds, queries)


def statements(points: Iterable[Point]) -> dict[int, tuple[int, float]]:
    """Each statement's (calls, total ms) over `points`."""
    total: dict[int, tuple[int, float]] = {}
    for point in points:
        for queryid, (calls, ms) in point.queries.items():
            c, t = total.get(queryid, (0, 0.0))
            total[queryid] = (c + calls, t + ms)
    return total
