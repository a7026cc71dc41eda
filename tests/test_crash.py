"""kill -9 of a running `pg-tuner run` while it verifies an index, then a restart.

Invariant 7's "a restart resumes or cleans up every action that was in flight", with a real
process killed the hard way: no signal handler, no journal write, no cleanup runs.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import DaemonProcess, write_policy
from tests.test_e2e import drive, load
from tuner import db
from tuner.journal import Journal, replay


def _event(name: str, **fields: str) -> Any:
    def match(line: str) -> bool:
        try:
            record = json.loads(line)
        except ValueError:
            return False
        return record.get("event") == name and all(
            needle in str(record.get(key, "")) for key, needle in fields.items()
        )

    return match


@pytest.mark.hypopg
@pytest.mark.slow
def test_kill_9_while_verifying_then_restart_resumes_and_decides(dsn: str, tmp_path: Path) -> None:
    random.seed(7)
    load(dsn)
    policy = write_policy(
        tmp_path / "policy.yaml", dsn, mode="apply",
        thresholds={"baseline_window": "3s", "verification_window": "6s"},
        schedule={"sample_interval": "1s", "advise_interval": "2s", "min_calls": 5},
    )  # fmt: skip
    journal_path = tmp_path / "journal.jsonl"
    stop = threading.Event()
    workers = [threading.Thread(target=drive, args=(dsn, stop), daemon=True) for _ in range(2)]
    for worker in workers:
        worker.start()
    first = DaemonProcess(policy)
    try:
        first.wait_for(_event("cycle.verdict", verdict="APPLIED: "), timeout=120)
        first.kill()  # SIGKILL while the verification window is open
        statuses = replay(Journal(journal_path).read())
        verifying = [s for s in statuses.values() if s.state.value == "verifying"]
        assert len(verifying) == 1, {k: s.state for k, s in statuses.items()}
        action_id, index_name = verifying[0].action_id, verifying[0].index_name

        second = DaemonProcess(policy)
        try:
            second.wait_for(_event("cycle.verdict", verdict=f"verification of {action_id}"),
                            timeout=60)  # fmt: skip
            second.wait_for(
                lambda line: (
                    any(f'"{w}: ' in line for w in ("KEPT", "ROLLED BACK")) and action_id in line
                ),
                timeout=120,
            )
        finally:
            assert second.stop() == 0
    finally:
        stop.set()
        first.kill()
        for worker in workers:
            worker.join(timeout=10)

    final = replay(Journal(journal_path).read())[action_id]
    assert final.state.value in ("kept", "rolled_back")
    assert Journal(journal_path).verify().ok
    with db.connect(dsn) as conn:
        invalid = db.fetch(conn, "SELECT c.relname FROM pg_index i JOIN pg_class c "
                                 "ON c.oid = i.indexrelid WHERE NOT i.indisvalid")  # fmt: skip
        same = db.fetch(conn, "SELECT count(*) AS n FROM pg_class WHERE relname = %s",
                        (index_name,))  # fmt: skip
    assert invalid == []
    assert same[0]["n"] == (1 if final.state.value == "kept" else 0)
