"""A compact latency series per statement, beside the journal, for `pg-tuner report`.

At most once per `every` seconds, the window between two samples gives each of the busiest
statements its calls and mean time; one JSON line holds them all: `{"t": ISO time,
"s": seconds, "q": {queryid: [calls, mean_ms]}, "labels": {queryid: label}}`, a statement's
label and shortened text written the first time this process writes it. About a kilobyte a
line, a line a minute. Losing a line loses a point, never a decision: the journal holds
those.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner import labels, log, workload
from tuner.models import Snapshot

_log = log.get("series")
EVERY = 60.0  # seconds between points
TOP = 20  # statements per point, by time in the window


def series_path(journal: Path) -> Path:
    """Where the series of the journal at `journal` lives: beside it."""
    return journal.with_name(journal.stem + ".latency.jsonl")


@dataclass
class LatencySeries:
    """Appends one point per `every` seconds of samples to `path`."""

    path: Path
    every: float = EVERY
    top: int = TOP
    _previous: Snapshot | None = None
    _named: set[int] = field(default_factory=set)

    def add(self, snapshot: Snapshot) -> None:
        """Take a sample; write a point once `every` seconds have passed since the last."""
        previous = self._previous
        if previous is None or snapshot.monotonic < previous.monotonic:
            self._previous = snapshot
            return
        if snapshot.monotonic - previous.monotonic < self.every:
            return
        self._previous = snapshot
        window = workload.diff(previous, snapshot)
        busiest = sorted((q for q in window.valid_queries if q.calls), key=lambda q: -q.total_ms)
        point: dict[str, Any] = {
            "t": snapshot.taken_at.isoformat(timespec="seconds"),
            "s": round(window.seconds, 1),
            "q": {str(q.queryid): [q.calls, round(q.mean_ms, 4)] for q in busiest[: self.top]},
        }
        fresh = {q.queryid: q.query for q in busiest[: self.top] if q.queryid not in self._named}
        if fresh:
            point["labels"] = {str(k): [labels.label(v), labels.shorten(v, 120)]
                               for k, v in fresh.items()}  # fmt: skip
        try:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(point, separators=(",", ":")) + "\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            _log.warning("series.unwritable", path=str(self.path), error=str(exc))
            return
        self._named |= fresh.keys()


def read(path: Path) -> Iterator[dict[str, Any]]:
    """The points of a series file; a damaged line (a crash mid-write) is skipped."""
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                point = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(point, dict) and "t" in point and isinstance(point.get("q"), dict):
                yield point
