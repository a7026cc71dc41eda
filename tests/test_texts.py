"""Texts that must not contradict themselves (issue 19, item 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_health import POLICY
from tests.test_workload import snap
from tuner.cli import main
from tuner.health import classify


def test_a_ratio_just_below_the_bound_never_reads_as_the_bound() -> None:
    # 94.96 %: rounded it would read "95.0% is below 95%"
    health = classify(snap(0, blks_hit=94_960, blks_read=5_040), None, POLICY)
    assert health.reasons[0].startswith("cache hit ratio 94.9% is below 95%"), health.reasons


def test_check_policy_shows_an_unset_write_bound_as_the_read_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text('target:\n  dsn: "dbname=app"\nlevel: moderate\n')
    assert main(["check-policy", str(path)]) == 0
    out = capsys.readouterr().out
    [line] = [x for x in out.splitlines() if "thresholds.max_write_regression" in x]
    assert "same as max_query_regression (0.1)" in line and "never" not in line
