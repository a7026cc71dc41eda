"""`pg-tuner report`: one self-contained HTML page from the journal, opened in a real
headless browser (Debian's chromium)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.test_audit_cli import CREATE, history
from tuner.cli import main
from tuner.journal import Journal
from tuner.labels import label
from tuner.models import Action, ActionKind, ActionState, IndexSpec, TableRef
from tuner.series import series_path

READ = "SELECT * FROM bookings WHERE package_id = $1"
WRITE = "INSERT INTO bookings VALUES ($1)"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def journal_and_policy(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "journal.jsonl"
    j = history(path)  # a1 kept, a2 proposed, a3 rejected
    figures = {"net_change": -0.38, "write_change": 0.04, "size_bytes": 44040192}
    j.append(ActionState.KEPT, action=CREATE, reason="net change -38%", figures=figures)
    table = TableRef("public", "bookings")
    trap = Action("a4", ActionKind.CREATE_INDEX, table, IndexSpec(table, ("created_at",)),
                  "ix_bookings_created_at", reason="an operator's request")  # fmt: skip
    for state in (ActionState.APPROVED, ActionState.APPLIED, ActionState.VERIFYING):
        j.append(state, action=trap)
    Journal(path).append(ActionState.ROLLED_BACK, action=trap,
                         reason="query select bookings #1 slowed +310% <beyond> the bound",
                         figures={"net_change": 1.25, "write_change": 0.02})  # fmt: skip
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=5), now + timedelta(minutes=5)
    read_q, write_q = READ, WRITE
    points = [
        {"t": (now - timedelta(minutes=4 - n)).isoformat(timespec="seconds"), "s": 60,
         "q": {"11": [100, 2.0 + n], "22": [30, 0.4]},
         **({"labels": {"11": [label(read_q), read_q], "22": [label(write_q), write_q]}}
            if n == 0 else {})}
        for n in range(4)
    ]  # fmt: skip
    series_path(path).write_text("".join(json.dumps(p) + "\n" for p in points))
    policy = tmp_path / "p.yaml"
    policy.write_text(
        f'target:\n  dsn: "dbname=x"\njournal:\n  path: "{path}"\nfreeze:\n'
        f"  - name: release-freeze\n    from: {start:%Y-%m-%dT%H:%M:%S}\n"
        f"    to: {end:%Y-%m-%dT%H:%M:%S}\n"
    )
    return path, policy


def test_the_report_is_one_file_with_every_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, policy = journal_and_policy(tmp_path)
    out = tmp_path / "report.html"
    assert main(["report", "--policy", str(policy), "--out", str(out)]) == 0
    assert "4 action(s)" in capsys.readouterr().out
    page = out.read_text()
    assert "<script src=" not in page, "self-contained: no script from the network"
    for name in ("ix_orders_customer_id", "ix_bookings_created_at", "ix_orders_status"):
        assert name in page
    assert "&lt;beyond&gt;" in page, "journal text is escaped in the table"
    assert "freeze: release-freeze" in page and "+125.0%" in page


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # tried: a journal that does not exist, a --since that is not a date or an age
    assert main(["report", "--journal", str(tmp_path / "none.jsonl")]) == 2
    assert "no journal" in capsys.readouterr().err
    path, _ = journal_and_policy(tmp_path)
    assert main(["report", "--journal", str(path), "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")
def test_the_report_renders_in_a_headless_browser_without_errors(tmp_path: Path) -> None:
    _, policy = journal_and_policy(tmp_path)
    out = tmp_path / "report.html"
    assert main(["report", "--policy", str(policy), "--out", str(out)]) == 0
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", out.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    dom, console = proc.stdout, proc.stderr
    assert proc.returncode == 0, console[-2000:]
    assert dom.count('class="main-svg"') >= 2, "plotly drew both charts"
    for name in ("ix_orders_customer_id: kept", "ix_bookings_created_at: rolled_back"):
        assert name in dom, f"the timeline marks {name}"
    assert dom.count("freeze: release-freeze") >= 3, "shaded and named in each time chart"
    assert "Reads: mean time per statement" in dom and "Writes: mean time per statement" in dom
    assert dom.count(label(READ)) >= 1 and dom.count(label(WRITE)) >= 1, "lines by label"
    assert dom.count('class="main-svg"') >= 4
    errors = [line for line in console.splitlines()
              if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]  # fmt: skip
    assert errors == [], errors
