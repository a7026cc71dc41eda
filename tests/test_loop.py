"""The loop's own decisions that no single layer can make alone."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from tests.daemon_support import write_policy
from tuner import db
from tuner.config import load_policy
from tuner.daemon import Daemon
from tuner.journal import Journal
from tuner.models import ActionKind


def test_an_index_still_being_built_is_never_proposed_for_dropping(
    tmp_path: Path, dsn: str, conn: Any
) -> None:
    """A CREATE INDEX CONCURRENTLY in progress looks INVALID; it must not be taken for junk.

    Tried: a colleague's build of t_b waiting behind an open writer, while pg-tuner, allowed
    to drop foreign indexes, samples and advises.
    """
    db.execute(conn, "CREATE TABLE t (id int PRIMARY KEY, a int, b int)")
    db.execute(conn, "INSERT INTO t SELECT g, g % 1000, g % 7 FROM generate_series(1, 50000) g")
    db.execute(conn, "ANALYZE t")
    policy_path = write_policy(
        tmp_path / "policy.yaml", dsn, mode="apply",
        thresholds={"allow_drop_foreign": True},
    )  # fmt: skip
    blocker = db.connect(dsn, autocommit=False)
    db.execute(blocker, "INSERT INTO t VALUES (0, 0, 0)")  # an open writer: the build waits
    builder = db.connect(dsn)

    def build() -> None:
        with contextlib.suppress(db.Error):  # it may fail once the test is over: no matter
            db.execute(builder, "CREATE INDEX CONCURRENTLY t_b ON t (b)")

    thread = threading.Thread(target=build)
    thread.start()
    try:
        for _ in range(100):
            rows = db.fetch(
                conn,
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = 't_b'",
            )
            if rows:
                break
            time.sleep(0.1)
        assert rows == [{"indisvalid": False}], "the build should be waiting with an INVALID index"
        daemon = Daemon(load_policy(policy_path), policy_path=policy_path, metrics_listen=None)
        try:
            daemon.start(serve_metrics=False)
            daemon.run_job("sample")
            for _ in range(30):
                db.fetch(conn, "SELECT * FROM t WHERE a = 5")
            daemon.run_job("sample")
            daemon.run_job("advise")
        finally:
            daemon.close()
        journaled = [
            r for r in Journal(tmp_path / "journal.jsonl").read()
            if r.action and r.action.get("kind") == ActionKind.DROP_INDEX.value
            and r.action.get("index_name") == "t_b"
        ]  # fmt: skip
        assert journaled == [], [r.reason for r in journaled]
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(timeout=30)
        builder.close()


def test_the_queue_runs_the_most_beneficial_index_first(
    tmp_path: Path, dsn: str, conn: Any
) -> None:
    """Two missing indexes: the one serving most of the workload's time is queued first."""
    for table in ("alpha", "zeta"):
        db.execute(conn, f"CREATE TABLE {table} (id int PRIMARY KEY, k int, v text)")
        db.execute(conn, f"INSERT INTO {table} SELECT g, g % 5000, 'x' "
                         "FROM generate_series(1, 60000) g")  # fmt: skip
    # Flush this session's insert counts before ANALYZE, or they land after it and the
    # tables look stale (n_mod_since_analyze) to the advisor.
    db.fetch(conn, "SELECT pg_stat_force_next_flush()")
    db.fetch(conn, "SELECT 1")
    for table in ("alpha", "zeta"):
        db.execute(conn, f"ANALYZE {table}")
    policy_path = write_policy(tmp_path / "policy.yaml", dsn, mode="apply")
    daemon = Daemon(load_policy(policy_path), policy_path=policy_path, metrics_listen=None)
    try:
        daemon.start(serve_metrics=False)
        daemon.run_job("sample")
        for i in range(40):
            db.fetch(conn, "SELECT v FROM zeta WHERE k = %s", [i])
        for i in range(4):
            db.fetch(conn, "SELECT v FROM alpha WHERE k = %s", [i])
        daemon.run_job("sample")
        daemon.run_job("advise")
    finally:
        daemon.close()
    approved = [
        r.action["table"]["name"] for r in Journal(tmp_path / "journal.jsonl").read()
        if r.state == "approved" and r.action
    ]  # fmt: skip
    assert approved[:2] == ["zeta", "alpha"], approved
