"""The README's first command: `pg-tuner demo` runs end to end and cleans up after itself.

Its output is read as a user reads it: every line on one clock that never goes back, no
line twice in a row, no figure cut, and the report's file named at the end.
"""

from __future__ import annotations

import itertools
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.commands.demo import Show, _short, clock

pytestmark = pytest.mark.hypopg  # advice is costed with HypoPG

CLOCK = re.compile(r"^\[ *(\d+)s\] ")
CUT_NUMBER = re.compile(r"\d\s?…")  # a figure, then the ellipsis of a cut


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One short demo run (its output and its --out directory) for the tests below."""
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "demo", "--scale", "0.05", "--minutes", "1.7",
         "--out", str(out)],
        capture_output=True, text=True, timeout=420, check=False,
    )  # fmt: skip
    return proc, out


def assert_one_clock(out: str) -> list[str]:
    """Every line starts with the demo's clock, which never goes back; the lines' texts."""
    seconds, texts = -1, []
    for line in out.splitlines():
        match = CLOCK.match(line)
        assert match, f"a line without the demo's clock: {line!r}"
        assert int(match.group(1)) >= seconds, f"the clock went back: {line!r}"
        seconds = int(match.group(1))
        texts.append(line[match.end() :])
    return texts


@pytest.mark.slow
def test_demo_runs_end_to_end_and_leaves_its_report(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """A small, short demo: it must tune, report, draw and leave no cluster behind."""
    proc, tmp_path = demo
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


@pytest.mark.slow
def test_demo_prints_on_one_clock_each_line_once_no_number_cut(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """Relayed daemon lines too: no wall-clock time, no verdict repeating its transition."""
    proc, _ = demo
    assert proc.returncode == 0, proc.stderr[-3000:]
    texts = assert_one_clock(proc.stdout)
    for before, after in itertools.pairwise(texts):
        assert before != after, f"printed twice in a row: {after!r}"
    for text in texts:
        assert not CUT_NUMBER.search(text), f"a figure cut short: {text!r}"
        assert not re.search(r"\d{2}:\d{2}:\d{2}", text), f"a wall-clock time: {text!r}"
    kept = [t for t in texts if t.startswith(("kept ", "verdict   KEPT"))]
    assert kept and all(t.startswith("kept ") for t in kept), kept  # told once, not twice


@pytest.mark.slow
def test_demo_ends_with_the_report_pg_tuner_report_wrote(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, out = demo
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = assert_one_clock(proc.stdout)[-2:]
    assert last[0] == "== The report (pg-tuner report) ==", last
    assert last[1].startswith(f"wrote {out / 'report.html'}: "), last  # `pg-tuner report`'s line
    assert (out / "report.html").stat().st_size > 0


def _stopped_by(tmp_path: Path, signum: int, marker: str) -> tuple[int, str, str, int]:
    """Start the demo, send `signum` once `marker` shows on its stdout while its server is
    up; (status, out, err, the postmaster's pid)."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "tuner", "demo", "--scale", "0.05", "--minutes", "3",
         "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    postmaster = 0
    for line in proc.stdout:
        seen.append(line)
        cluster = re.search(r"PostgreSQL 15 on 127\.0\.0\.1:\d+ in (\S+)", line)
        if cluster:
            pid_file = Path(cluster.group(1)) / "data" / "postmaster.pid"
            postmaster = int(pid_file.read_text().splitlines()[0])
        if marker in line:
            break
    proc.send_signal(signum)
    rest, err = proc.communicate(timeout=150)
    return proc.returncode, "".join(seen) + rest, err, postmaster


def _running(pid: int) -> bool:
    """Whether process `pid` runs (a zombie waiting for init to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(
    ("signum", "status", "marker"),
    [
        (signal.SIGTERM, 143, "PostgreSQL 15 on"),  # before the data is loaded
        (signal.SIGTERM, 143, "tables have primary keys only"),  # before the workload
        (signal.SIGTERM, 143, "baselining"),  # the daemon and the clients at work
        (signal.SIGINT, 130, "baselining"),  # Ctrl-C: the same, status 128 + 2
    ],
)
def test_a_signal_stops_the_demo_cleanly(
    tmp_path: Path, signum: int, status: int, marker: str
) -> None:
    """`kill PID` of the demo is as clean as Ctrl-C: server and directory gone, 128 + signal."""
    code, out, err, postmaster = _stopped_by(tmp_path, signum, marker)
    assert code == status, (out[-2000:], err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    texts = assert_one_clock(out)
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    assert texts[-1].startswith(f"pg-tuner demo: stopped by {name}"), texts[-3:]
    cluster = re.search(r"PostgreSQL 15 on 127\.0\.0\.1:(\d+) in (\S+)", out)
    assert cluster and postmaster, out[:2000]
    assert texts[-1].endswith(f"PostgreSQL stopped, {cluster.group(2)} removed"), texts[-1]
    assert not Path(cluster.group(2)).exists(), "the demo left its cluster directory behind"
    assert not _running(postmaster), "the postmaster is still running"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(cluster.group(1)))) != 0, "server still up"


def test_shortened_text_never_cuts_a_figure() -> None:
    """Cut between clauses or words, never inside a number nor between it and its unit."""
    text = (
        "net change -57.3% of the watched queries' time by look 1 of 4; query -648325522661"
        " 96.813 → 0.195 ms (-99.8%, p=4.64e-175, 276/96 calls) and 3.0 MiB more"
    )
    for width in range(40, len(text)):
        short = _short(text, width)
        assert len(short) <= width + 2 and short.endswith(" …"), short
        assert not CUT_NUMBER.search(short), short
        assert text.startswith(short[:-2]), short


def test_the_daemons_times_are_read_on_the_demos_clock() -> None:
    show = Show()
    show.wall0 = 1_796_555_100.0  # 2026-12-06 11:05:00 UTC
    assert show.clocked("BASELINE: x; applying after 2026-12-06 11:05:57 UTC") == (
        "BASELINE: x; applying after 57s"
    )
    assert clock(41.6) == "[  42s]"
