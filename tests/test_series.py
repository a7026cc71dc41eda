"""The latency series beside the journal: one compact point a minute per busy statement."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_workload import Entry, snap
from tuner.labels import label
from tuner.series import LatencySeries, read, series_path


def test_a_point_a_minute_with_labels_written_once(tmp_path: Path) -> None:
    path = series_path(tmp_path / "journal.jsonl")
    assert path.name == "journal.latency.jsonl"
    series = LatencySeries(path)
    entry = Entry(queryid=-(2**62), query="SELECT * FROM t WHERE id = $1")
    series.add(snap(0, (entry.run(1.0).stat(),)))
    series.add(snap(30, (entry.run(2.0, 2.0).stat(),)))  # too soon: no point
    assert not path.exists()
    series.add(snap(61, (entry.run(4.0).stat(),)))
    series.add(snap(125, (entry.run(1.0, 1.0).stat(),)))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2
    key = str(-(2**62))
    assert lines[0]["q"][key] == [3, round(8.0 / 3, 4)], "calls and mean inside the minute"
    assert lines[0]["labels"][key][0] == label(entry.query)
    assert "labels" not in lines[1], "a statement is named once"
    assert lines[1]["q"][key] == [2, 1.0]


def test_a_damaged_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    # tried: a line cut by a crash, a line that is JSON but not a point
    path = tmp_path / "j.latency.jsonl"
    lines = (
        '{"t":"2026-12-06T05:00:00+00:00","s":60,"q":{}}',
        '{"t":"2026-12-06T05:01',
        "[1, 2]",
        '{"t":"2026-12-06T05:02:00+00:00","s":60,"q":{"1":[2,0.5]}}',
    )
    path.write_text("\n".join(lines) + "\n")
    points = list(read(path))
    assert [p["t"][-14:-6] for p in points] == ["05:00:00", "05:02:00"]
    assert list(read(tmp_path / "none.jsonl")) == []
