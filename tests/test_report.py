"""`pg-tuner report`: the daemon's latency series and journal as one HTML page, rendered by
a real browser (Debian's chromium, headless)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import write_policy
from tuner import db, report, series
from tuner.cli import main
from tuner.config import load_policy
from tuner.daemon import Daemon
from tuner.journal import Journal
from tuner.windows import Calendar

# A table name a person would not choose: markup and a dollar sign, kept by
# pg_stat_statements in the statement text the report shows.
HOSTILE = "orders<script>alert(1)</script>$1"
LOOKUP = 'SELECT note FROM "{table}" WHERE customer = %s'


def _browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    return found


def _lookups(conn: Any, n: int) -> None:
    for i in range(n):
        db.fetch(conn, LOOKUP.format(table=HOSTILE), [i])


def _run_daemon_once(tmp_path: Path, dsn: str, conn: Any) -> tuple[Path, list[Any]]:
    """One index advised, built, verified and kept by the daemon, with windows of 3 s."""
    db.execute(conn, f'CREATE TABLE "{HOSTILE}" (id int PRIMARY KEY, customer int, note text)')
    db.execute(conn, f'INSERT INTO "{HOSTILE}" SELECT g, g % 4000, repeat(\'n\', 40)'
                     " FROM generate_series(1, 80000) g")  # fmt: skip
    db.fetch(conn, "SELECT pg_stat_force_next_flush()")  # the load's counts before ANALYZE
    db.fetch(conn, "SELECT 1")
    db.execute(conn, f'ANALYZE "{HOSTILE}"')
    policy_path = write_policy(
        tmp_path / "policy.yaml", dsn, mode="apply", timezone="UTC",
        thresholds={"baseline_window": "3s", "verification_window": "3s",
                    "read_regression_floor_ms": 0.05},
    )  # fmt: skip
    daemon = Daemon(load_policy(policy_path), policy_path=policy_path, metrics_listen=None)
    verdicts = []
    try:
        daemon.start(serve_metrics=False)
        daemon.run_job("sample")
        _lookups(conn, 40)
        time.sleep(3.2)
        daemon.run_job("sample")
        daemon.run_job("advise")
        verdicts.append(daemon.run_job("act"))
        _lookups(conn, 40)
        time.sleep(3.2)
        verdicts.append(daemon.run_job("verify"))
    finally:
        daemon.close()
    return policy_path, verdicts


@pytest.mark.hypopg
def test_the_daemon_keeps_a_latency_series_and_report_draws_each_action_in_a_browser(
    tmp_path: Path, dsn: str, conn: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The flow a DBA runs: the daemon tunes, then `pg-tuner report --out FILE`. The page
    opens in chromium, names the action, its index and its verdict on the chart and in the
    before/after table (the lookup faster after), and shows the hostile table name as text:
    tried a table named with a <script> element and a `$1` (matplotlib's math markup)."""
    browser = _browser()
    _, verdicts = _run_daemon_once(tmp_path, dsn, conn)
    assert verdicts[0].startswith("APPLIED"), verdicts
    assert verdicts[1].startswith("KEPT"), verdicts
    journal = tmp_path / "journal.jsonl"
    data = series.read(journal)
    [lookup] = [q for q, text in data.texts.items() if text.startswith("SELECT note FROM")]
    assert series.statements(data.points)[lookup][0] == 80  # every call, each sample once
    [applied] = [r for r in Journal(journal).read() if r.state == "applied"]
    assert applied.action is not None and applied.action_id is not None
    index_name = applied.action["index_name"]

    # The report's policy freezes the first part of the run: it is shaded and named.
    first = data.points[0].at
    frozen = write_policy(
        tmp_path / "report-policy.yaml", dsn, timezone="UTC",
        journal={"path": str(journal)},
        freeze=[{"name": "quarter-end", "from": (first - timedelta(hours=1)).isoformat(),
                 "to": (first + timedelta(seconds=2)).isoformat()}],
    )  # fmt: skip
    out = tmp_path / "report.html"
    assert main(["report", "--policy", str(frozen), "--out", str(out)]) == 0
    actions = {r.action_id for r in Journal(journal).read() if r.action_id}
    assert f"{len(actions)} action(s)" in capsys.readouterr().out
    page = out.read_text()
    assert "<script>" not in page  # the name is escaped, never markup
    assert index_name in page and applied.action_id in page

    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "alert(1)" in dom and "<script>alert" not in dom  # shown as text, not run
    assert f"{index_name}: kept" in dom  # the marker on the chart
    assert "frozen: quarter-end" in dom
    section = dom[dom.index(f"action-{applied.action_id}") :]
    row = section[section.index("SELECT note FROM") :].split("</tr>")[0]
    before, after = (float(cell.split(" ")[0].split(">")[-1]) for cell in
                     row.split("<td class=\"n\">")[1:3])  # fmt: skip
    assert after < before  # the index made the lookup faster
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
         "--window-size=1400,2400", out.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 20000  # a drawn page, not a blank one


def test_report_without_a_series_or_journal_says_so_and_writes_a_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before the daemon has run: no journal, no series. Tried also --out naming a
    directory and --since 99999999d (a date before year 1)."""
    out = tmp_path / "r.html"
    journal = tmp_path / "nothing.jsonl"
    assert main(["report", "--journal", str(journal), "--out", str(out)]) == 0
    assert "no series beside" in capsys.readouterr().out
    assert "latency series is empty" in out.read_text()
    assert main(["report", "--journal", str(journal), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["report", "--journal", str(journal), "--since", "99999999d",
                 "--out", str(out)]) in (0, 2)  # fmt: skip
    assert "Traceback" not in capsys.readouterr().err


def test_series_reader_skips_damaged_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    """A torn last line (a crash), a line edited by hand, a negative count, NaN: skipped
    and counted; the good lines before and after still read."""
    journal = tmp_path / "j.jsonl"
    good = {"t": "2026-12-06T10:00:00+00:00", "s": 10, "q": {"42": [3, 1.5]},
            "texts": {"42": "SELECT 1"}}  # fmt: skip
    later = {**good, "t": "2026-12-06T10:00:10+00:00", "texts": {}}
    lines = [
        json.dumps(good),
        '{"t": "2026-12-06T10:00:05+00:00", "s": 5, "q": {"42": [-1, 2.0]}}',
        '{"t": "not a time", "s": 5, "q": {}}',
        '{"t": "2026-12-06T10:00:06+00:00", "s": NaN, "q": {}}',
        "[1, 2, 3]",
        json.dumps(later),
        '{"t": "2026-12-06T10:00:20+00:00", "s": 10, "q": {"42": [1',
    ]
    series.path_for(journal).write_text("\n".join(lines))
    data = series.read(journal)
    assert [p.at.second for p in data.points] == [0, 10]
    assert data.unreadable == 5
    assert data.texts == {42: "SELECT 1"}
    start = datetime(2026, 12, 6, 9, 59, tzinfo=UTC)
    assert data.mean_ms(42, start, start + timedelta(minutes=5)) == (6, 0.5)


def test_freeze_spans_follow_the_calendar_across_chained_windows() -> None:
    """A night freeze 20:00-08:00 and a day freeze 08:00-20:00 on weekdays: the whole
    weekday is shaded, the weekend is not."""
    policy = load_policy_from({
        "timezone": "UTC",
        "freeze": [{"name": "night", "days": ["mon", "tue"], "from": "20:00", "to": "08:00"},
                   {"name": "day", "days": ["tue"], "from": "08:00", "to": "20:00"}],
    })  # fmt: skip
    calendar = Calendar.from_policy(policy)
    monday = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    spans = report.freeze_spans(calendar.freeze_at, monday, monday + timedelta(days=3))
    covered = sum(((b - a) for a, b, _ in spans), timedelta())
    # Monday 20:00 to Wednesday 08:00: 36 hours, give or take the 5-minute step.
    assert timedelta(hours=35, minutes=50) <= covered <= timedelta(hours=36)
    assert {name for _, _, name in spans} == {"night", "day"}


def load_policy_from(overrides: dict[str, Any]) -> Any:
    from tuner.config import Policy

    return Policy.model_validate({"target": {"dsn": "dbname=x"}, **overrides})


def test_statements_are_charted_as_reads_or_writes_by_their_first_word() -> None:
    """Comments before the verb, a CTE, DDL and the tuner's own utility statements (not
    charted). Tried also 20,000 blanks before a bracket: answered, not backtracked for ever."""
    assert report.kind("/* app:42 */ -- note\n  WITH x AS (SELECT 1) SELECT * FROM x") == "read"
    assert report.kind("\n\tupdate t SET a = $1") == "write"
    assert report.kind("COPY t FROM STDIN") == "write"
    assert report.kind('CREATE INDEX CONCURRENTLY "i" ON t (a)') is None
    assert report.kind("DISCARD PLANS") is None
    assert report.kind(" " * 20000 + "(") is None
