"""The daemon with the index kinds, as an operator runs it: `pg-tuner run` in apply mode as
its own process, a workload that only an expression, a partial and a GIN index serve. It
must find each from pg_stat_statements, build it, prove it by measurement and keep it, say
in the journal which kind each is and why; then `pg-tuner rollback ID` on the expression
index must drop it through the running daemon."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import DaemonProcess, write_policy
from tuner import db
from tuner.cli import main

pytestmark = pytest.mark.hypopg  # the btree kinds are costed with HypoPG

FAST = {
    "mode": "apply",
    "thresholds": {"baseline_window": "4s", "verification_window": "4s"},
    "schedule": {"sample_interval": "1s", "advise_interval": "3s", "min_calls": 5,
                 "max_window_extensions": 3},
}  # fmt: skip

SCHEMA = (
    # a CRM's contacts: people sign in with their e-mail typed in any case
    "CREATE TABLE contacts (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL)",
    "INSERT INTO contacts SELECT g, 'Person' || g || '@Example.org', 'person ' || g"
    " FROM generate_series(1, 200000) g",
    # a task list where nearly everything is done: the open ones are read newest first
    "CREATE TABLE tasks (id bigint PRIMARY KEY, owner int NOT NULL,"
    " created_at timestamptz NOT NULL, done_at timestamptz)",
    "INSERT INTO tasks SELECT g, g % 500, timestamptz '2025-01-01' + g * interval '1 minute',"
    " CASE WHEN g % 250 = 0 THEN NULL ELSE timestamptz '2026-01-01' END"
    " FROM generate_series(1, 300000) g",
    # an event log searched by a jsonb attribute that 1 event in 400 has
    "CREATE TABLE events (id bigint PRIMARY KEY, payload jsonb NOT NULL)",
    "INSERT INTO events SELECT g, jsonb_build_object('type', CASE WHEN g % 400 = 0"
    " THEN 'refund' ELSE 'sale' END, 'amount', g % 997, 'shop', 's' || (g % 50))"
    " FROM generate_series(1, 200000) g",
    "ANALYZE events",
    "ANALYZE contacts",
    "ANALYZE tasks",
)
SIGN_IN = "SELECT id, name FROM contacts WHERE lower(email) = lower(%s)"
REFUNDS = "SELECT count(*) FROM events WHERE payload @> %s::jsonb"
OPEN_TASKS = "SELECT id, owner FROM tasks WHERE done_at IS NULL ORDER BY created_at DESC LIMIT 20"


def drive(dsn: str, stop: threading.Event) -> None:
    with db.connect(dsn) as conn:
        while not stop.is_set():
            db.fetch(conn, SIGN_IN, (f"person{random.randint(1, 200000)}@example.org",))
            db.fetch(conn, OPEN_TASKS)
            db.fetch(conn, REFUNDS, ('{"type": "refund"}',))


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(
    path: Path, daemon: DaemonProcess, what: str, check: Callable[[dict[str, Any]], bool],
    timeout: float = 120,
) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in records(path):
            if check(record):
                return record
        if daemon.proc.poll() is not None:
            break
        time.sleep(0.2)
    states = "\n".join(f"{r['action_id']} {r['state']} {r['reason'][:160]}" for r in records(path))
    raise AssertionError(f"no journal record for {what}; journal:\n{states}\nlog:\n"
                         + daemon.log_tail())  # fmt: skip


def index_action(path: Path, daemon: DaemonProcess, table: str, needle: str) -> dict[str, Any]:
    """The approved CREATE INDEX on `table` whose definition contains `needle`."""

    def check(r: dict[str, Any]) -> bool:
        action = r.get("action") or {}
        return (
            r["state"] == "approved"
            and action.get("kind") == "create_index"
            and (action.get("table") or {}).get("name") == table
            and needle in json.dumps(action)
        )

    return wait_for(path, daemon, f"an approved index on {table} with {needle}", check)


def outcome(path: Path, daemon: DaemonProcess, action_id: str, states: set[str]) -> dict[str, Any]:
    return wait_for(path, daemon, f"{action_id} in {states}",
                    lambda r: r["action_id"] == action_id and r["state"] in states)  # fmt: skip


def indexes_on(dsn: str, table: str) -> dict[str, str]:
    with db.connect(dsn) as conn:
        rows = db.fetch(conn, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s"
                        " AND indexname LIKE 'pgt\\_%%'", (table,))  # fmt: skip
    return {r["indexname"]: r["indexdef"] for r in rows}


def test_the_daemon_builds_proves_keeps_and_rolls_back_expression_and_partial_indexes(
    dsn: str, tmp_path: Path
) -> None:
    with db.connect(dsn) as conn:
        for statement in SCHEMA:
            db.execute(conn, statement)
    policy = write_policy(tmp_path / "policy.yaml", dsn, **FAST)
    journal = tmp_path / "journal.jsonl"
    stop = threading.Event()
    workers = [threading.Thread(target=drive, args=(dsn, stop), daemon=True) for _ in range(2)]
    for w in workers:
        w.start()
    daemon = DaemonProcess(policy)
    try:
        sign_in = index_action(journal, daemon, "contacts", "lower")
        kept = outcome(journal, daemon, sign_in["action_id"], {"kept", "rolled_back", "failed"})
        assert kept["state"] == "kept", kept["reason"]
        built = indexes_on(dsn, "contacts")
        assert any("lower(email)" in d for d in built.values()), built
        # the open tasks: a partial index on the rows the statement reads, not all 300,000
        open_tasks = index_action(journal, daemon, "tasks", "done_at")
        kept = outcome(journal, daemon, open_tasks["action_id"], {"kept", "rolled_back", "failed"})
        assert kept["state"] == "kept", kept["reason"]
        partial = [d for d in indexes_on(dsn, "tasks").values() if "WHERE (done_at IS NULL)" in d]
        assert partial, indexes_on(dsn, "tasks")
        # a GIN index HypoPG cannot cost: built at this level, kept only on measurement
        refunds = index_action(journal, daemon, "events", "gin")
        kept = outcome(journal, daemon, refunds["action_id"], {"kept", "rolled_back", "failed"})
        assert kept["state"] == "kept", kept["reason"]
        assert any("USING gin" in d for d in indexes_on(dsn, "events").values())
        assert "measured" in refunds["reason"], refunds["reason"]
        # the journal says which kind each is, and why it was chosen
        assert "Kind: expression" in sign_in["reason"], sign_in["reason"]
        assert re.search(r"Kind: partial: [0-9.]+ ?% of (the )?rows", open_tasks["reason"]), (
            open_tasks["reason"]
        )
        # the operator undoes the expression index through the running daemon
        assert main(["rollback", sign_in["action_id"], "--policy", str(policy),
                     "--reason", "test: undo the sign-in index"]) == 0  # fmt: skip
        undone = outcome(journal, daemon, sign_in["action_id"], {"rolled_back", "failed"})
        assert undone["state"] == "rolled_back", undone["reason"]
        assert not any("lower(email)" in d for d in indexes_on(dsn, "contacts").values())
    finally:
        stop.set()
        status = daemon.stop()
        for w in workers:
            w.join(10)
    assert status == 0, daemon.log_tail()
    assert main(["audit", "--journal", str(journal), "--verify"]) == 0
