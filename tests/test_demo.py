"""The README's first command: `pg-tuner demo` runs end to end and cleans up after itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.hypopg  # the demo tunes its booking workload with HypoPG
def test_demo_runs_end_to_end_and_leaves_its_report(tmp_path: Path) -> None:
    """A small, short demo: it must tune, report, draw and leave no cluster behind."""
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "demo", "--scale", "0.05", "--minutes", "1.7",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=420, check=False,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "operator asks for an index on bookings(created_at)" in out
    assert re.search(r"applied\s+CREATE INDEX CONCURRENTLY", out), out[-3000:]
    assert "== What pg-tuner did (pg-tuner audit) ==" in out
    assert "== Latency per query" in out
    match = re.search(r"client errors during the whole run: (\d+) of", out)
    assert match and match.group(1) == "0"
    page = (tmp_path / "report.html").read_text()
    assert page.count("<section class=action") >= 2  # the trap and the tuner's own advice
    assert "pgt_bookings_created_at" in page  # the trap index, by name
    assert page.count("<svg") == 2  # reads and writes drawn
    assert "frozen: demo-freeze" in page  # the freeze the operator added, shaded
    assert (tmp_path / "journal.jsonl").stat().st_size > 0
    verify = subprocess.run(
        [sys.executable, "-m", "tuner", "audit", "--verify", "--journal",
         str(tmp_path / "journal.jsonl")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    cluster = re.search(r"PostgreSQL 15 on 127\.0\.0\.1:\d+ in (\S+)", out)
    assert cluster, out[:2000]
    assert not Path(cluster.group(1)).exists(), "the demo left its cluster directory behind"
