"""bench/daemon.py follows `pg-tuner run` as its own process, through the files it writes:
the journal's transitions and the log's verdicts reach the benchmark's Watch."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.daemon import Follower, Watch


def test_the_follower_reads_whole_lines_of_the_journal_and_the_log(
    tmp_path: Path, capsys: Any
) -> None:
    """Tried: a line still being written (no newline yet: read once it is whole), a
    traceback line that is not JSON (printed, not parsed), a log line of another event."""
    journal, log = tmp_path / "journal.jsonl", tmp_path / "daemon.log"
    client: Any = SimpleNamespace(report=SimpleNamespace(errors=0))
    watch = Watch(client)
    follower = Follower(log, journal)
    follower.poll(watch)  # neither file exists yet: nothing, no error
    record = {"action_id": "a1", "state": "applied", "reason": "built",
              "figures": {"seconds": 1.5, "size_bytes": 8192}}  # fmt: skip
    journal.write_text(json.dumps(record) + "\n" + json.dumps({**record, "state": "verifying"}))
    log.write_text(
        json.dumps({"event": "sample.taken", "level": "info"}) + "\n"
        + json.dumps({"event": "cycle.verdict", "job": "act", "verdict": "APPLIED: x"}) + "\n"
        + "Traceback (most recent call last):\n"
    )  # fmt: skip
    follower.poll(watch)
    assert watch.states == {"a1": "applied"}  # the second record is not whole yet
    assert watch.build_seconds == 1.5 and watch.built_bytes == 8192
    assert [(job, text) for _, job, text in watch.verdicts] == [("act", "APPLIED: x")]
    assert "daemon: Traceback (most recent call last):" in capsys.readouterr().out
    with journal.open("a") as fh:
        fh.write("\n" + json.dumps({**record, "state": "kept", "reason": "net change -90%"}) + "\n")
    follower.poll(watch)
    assert watch.states == {"a1": "kept"}
    assert [h[2] for h in watch.history] == ["applied", "verifying", "kept"]


def test_the_follower_feeds_both_files_in_the_order_they_were_written(tmp_path: Path) -> None:
    """An advise verdict names the kind of the actions it queued; act applies them within
    the same second, and a poll reads both files at once. Read journal first, an ANALYZE's
    verdict would arrive before its kind and count as an index change (bench run S did)."""
    journal, log = tmp_path / "journal.jsonl", tmp_path / "daemon.log"
    client: Any = SimpleNamespace(report=SimpleNamespace(errors=0))
    watch = Watch(client)

    def at(second: float) -> str:
        return f"2026-12-06T18:50:{second:06.3f}+00:00"

    records = [("approved", 1.0), ("applying", 3.0), ("applied", 3.1), ("kept", 3.2)]
    journal.write_text("".join(
        json.dumps({"action_id": "9c1e", "state": state, "reason": "", "figures": {},
                    "time": at(second)}) + "\n" for state, second in records
    ))  # fmt: skip
    queued = {"event": "cycle.verdict", "job": "advise", "timestamp": at(2.0),
              "verdict": "QUEUED: 1 (analyze public.t [9c1e])"}  # fmt: skip
    log.write_text(json.dumps(queued) + "\n")
    Follower(log, journal).poll(watch)
    assert watch.names == {"9c1e": "analyze"} and watch.states == {"9c1e": "kept"}
    assert watch.last_index_change == 0.0  # an ANALYZE is no index change
