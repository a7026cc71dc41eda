"""The README's first command: `pg-tuner demo` runs end to end and cleans up after itself."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.hypopg  # advice is costed with HypoPG


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


def _stopped_by_sigterm_after(tmp_path: Path, marker: str) -> tuple[int, str, str]:
    """Start the demo, send SIGTERM once `marker` shows on its stdout; (status, out, err)."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "tuner", "demo", "--scale", "0.05", "--minutes", "3",
         "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + rest, err


@pytest.mark.parametrize("marker", ["PostgreSQL 15 on", "tables have primary keys only"])
def test_sigterm_stops_the_demo_cleanly(tmp_path: Path, marker: str) -> None:
    """`kill PID` of the demo, while it loads and while it runs: as clean as Ctrl-C."""
    status, out, err = _stopped_by_sigterm_after(tmp_path, marker)
    assert status == 143, (out[-2000:], err[-2000:])
    assert "stopped by SIGTERM" in out and "Traceback" not in err, err[-2000:]
    cluster = re.search(r"PostgreSQL 15 on 127\.0\.0\.1:(\d+) in (\S+)", out)
    assert cluster, out[:2000]
    assert not Path(cluster.group(2)).exists(), "the demo left its cluster directory behind"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(cluster.group(1)))) != 0, "server still up"
