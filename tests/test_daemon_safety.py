"""The daemon on a database it has never seen: freezes that hold for every drop, recovery
whenever it takes the lead, a journal it cannot write or trust, and names it does not own.
Each test reproduces a fault found by a hostile review (issue 15) on a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import DaemonProcess, write_policy
from tuner import db
from tuner.config import load_policy
from tuner.daemon import Daemon
from tuner.journal import EntryKind, Journal
from tuner.models import Action, ActionKind, ActionState, IndexSpec, TableRef
from tuner.recovery import replay
from tuner.statements import index_name


def _make_table(conn: Any, table: str) -> None:
    db.execute(conn, f"CREATE TABLE {table} (id int PRIMARY KEY, k int, v text)")
    db.execute(conn, f"INSERT INTO {table} SELECT g, g % 5000, 'x' "
                     "FROM generate_series(1, 60000) g")  # fmt: skip
    db.fetch(conn, "SELECT pg_stat_force_next_flush()")
    db.execute(conn, f"ANALYZE {table}")


def _lookups(conn: Any, table: str, n: int = 40) -> None:
    for i in range(n):
        db.fetch(conn, f"SELECT v FROM {table} WHERE k = %s", [i])


def _policy(tmp_path: Path, dsn: str, **overrides: Any) -> Path:
    fields: dict[str, Any] = {
        "mode": "apply",
        "thresholds": {"baseline_window": "3s", "verification_window": "3s"},
    }
    return write_policy(tmp_path / "policy.yaml", dsn, **(fields | overrides))


def _freeze_now(name: str = "change-freeze") -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    return [{"name": name, "from": now - timedelta(hours=1), "to": now + timedelta(hours=1)}]


def _apply_one(daemon: Daemon, conn: Any, table: str) -> str:
    """Sample, run lookups over a window, advise, act: the index built; its action id."""
    daemon.run_job("sample")
    _lookups(conn, table)
    time.sleep(3.2)
    daemon.run_job("sample")
    daemon.run_job("advise")
    applied = daemon.run_job("act")
    assert applied.startswith("APPLIED"), applied
    return next(r.action_id for r in daemon.ctx.journal.read() if r.state == "applied"
                and r.action_id)  # fmt: skip


def _indexes(conn: Any, table: str) -> list[str]:
    rows = db.fetch(conn, "SELECT indexname FROM pg_indexes WHERE tablename = %s "
                          "ORDER BY indexname", [table])  # fmt: skip
    return [r["indexname"] for r in rows]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuner", *args], capture_output=True,
                          text=True, timeout=60)  # fmt: skip


# --- 10: an operator's rollback waits for the freeze, in the daemon too --------------------------


@pytest.mark.hypopg
def test_an_operator_rollback_asked_during_a_freeze_waits_for_the_window_to_open(
    tmp_path: Path, dsn: str, conn: Any
) -> None:
    """Before: `pg-tuner rollback` said the running tuner would carry it out when the window
    opens, and the daemon dropped the index at its next cycle, inside the freeze."""
    _make_table(conn, "orders")
    path = _policy(tmp_path, dsn)
    daemon = Daemon(load_policy(path), policy_path=path, metrics_listen=None)
    try:
        daemon.start(serve_metrics=False)
        action_id = _apply_one(daemon, conn, "orders")
        built = _indexes(conn, "orders")
        assert len(built) == 2, built
        _policy(tmp_path, dsn, freeze=_freeze_now())
        assert daemon.reload()
        asked = _cli("rollback", action_id, "--policy", str(path), "--journal",
                     str(tmp_path / "journal.jsonl"))  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        assert "not undone now: frozen by change-freeze" in asked.stdout, asked.stdout
        for _ in range(3):
            held = daemon.run_job("verify")
            assert held.startswith("FROZEN: change-freeze"), held
            assert "holding rollback of" in held, held
        assert _indexes(conn, "orders") == built, "dropped inside the freeze"
        _policy(tmp_path, dsn)  # the freeze is lifted
        assert daemon.reload()
        done = daemon.run_job("verify")
        assert done.startswith("ROLLED BACK"), done
    finally:
        daemon.close()
    assert _indexes(conn, "orders") == ["orders_pkey"]


# --- 12: taking the lead runs the recovery a start runs -----------------------------------------


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _invalid(conn: Any) -> list[str]:
    rows = db.fetch(conn, "SELECT c.relname FROM pg_index i JOIN pg_class c "
                          "ON c.oid = i.indexrelid WHERE NOT i.indisvalid")  # fmt: skip
    return [r["relname"] for r in rows]


@pytest.mark.hypopg
def test_a_second_daemon_that_takes_the_lead_after_a_kill_mid_build_recovers_first(
    tmp_path: Path, dsn: str, conn: Any
) -> None:
    """Before: the observer that took the lock after the leader was killed -9 during CREATE
    INDEX CONCURRENTLY left the action `applying` and the INVALID index in place. Tried: a
    writer's open transaction holds the build in its wait (the index exists, INVALID), the
    leader is killed, the writer ends; the observer's next sample takes the lead."""
    _make_table(conn, "orders")
    path = _policy(tmp_path, dsn, timeouts={"concurrent_lock_timeout": "5m"})
    journal = Journal(tmp_path / "journal.jsonl")
    first = DaemonProcess(path)
    second = Daemon(load_policy(path), policy_path=path, metrics_listen=None)
    writer = db.connect(dsn, autocommit=False)
    try:
        first.wait_for(lambda line: "LEADER" in line or "STARTED" in line, timeout=30)
        assert second.start(serve_metrics=False).startswith("OBSERVE"), second.last_verdict

        def approved() -> bool:
            _lookups(conn, "orders", 20)
            return any(r.state == "approved" for r in journal.read())

        _wait(approved, 60, "an approved action")
        db.execute(writer, "UPDATE orders SET v = 'y' WHERE id = 1")  # stays open
        _wait(lambda: _invalid(conn), 60, "the build waiting with its INVALID index")
        first.kill()
        time.sleep(2.5)  # the orphaned build notices its client is gone and stops
        writer.rollback()
        left = _invalid(conn)
        assert left, "the build was to leave an INVALID index"
        states = {s.action_id: s.state.value for s in replay(journal.read()).values()}
        assert "applying" in states.values(), states
        took = second.run_job("sample")
    finally:
        writer.close()
        first.kill()
        second.close()
    assert took.startswith("LEADER: took the lead; ") and " failed after restart" in took, took
    states = {s.action_id: s.state.value for s in replay(journal.read()).values()}
    assert "applying" not in states.values(), states
    assert _invalid(conn) == [], "the INVALID index the killed build left is still there"


# --- 2: a name the tuner would give, taken by another team's index ------------------------------


def _index_row(conn: Any, name: str) -> dict[str, Any] | None:
    rows = db.fetch(conn, "SELECT t.relname AS tbl, obj_description(i.indexrelid, 'pg_class') "
                          "AS comment FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                          "JOIN pg_class t ON t.oid = i.indrelid WHERE c.relname = %s",
                    [name])  # fmt: skip
    return dict(rows[0]) if rows else None


@pytest.mark.hypopg
def test_an_index_squatting_the_tuners_name_on_another_table_is_never_adopted_nor_dropped(
    tmp_path: Path, dsn: str, conn: Any
) -> None:
    """Before: an index named `pgt_orders_k_<hash>` on another table, with its team's
    comment, was adopted as applied ("already built"), its comment overwritten with the
    tuner's marker, and dropped by a rollback. Tried: that index on `reports`, then an
    operator's rollback of the tuner's action."""
    _make_table(conn, "orders")
    db.execute(conn, "CREATE TABLE reports (k int)")
    taken = index_name(IndexSpec(TableRef("public", "orders"), ("k",)))
    db.execute(conn, f'CREATE INDEX "{taken}" ON reports (k)')
    db.execute(conn, f"COMMENT ON INDEX \"{taken}\" IS 'team-b: month-end report'")
    path = _policy(tmp_path, dsn)
    daemon = Daemon(load_policy(path), policy_path=path, metrics_listen=None)
    try:
        daemon.start(serve_metrics=False)
        action_id = _apply_one(daemon, conn, "orders")
        built = [n for n in _indexes(conn, "orders") if n != "orders_pkey"]
        assert len(built) == 1 and built[0] != taken, built
        assert _index_row(conn, taken) == {"tbl": "reports", "comment": "team-b: month-end report"}
        daemon.ctx.journal.append(EntryKind.ROLLBACK_REQUESTED, action_id=action_id,
                                   actor="operator:test", reason="test")  # fmt: skip
        undone = daemon.run_job("verify")
        assert undone.startswith("ROLLED BACK"), undone
    finally:
        daemon.close()
    assert _indexes(conn, "orders") == ["orders_pkey"]
    assert _index_row(conn, taken) == {"tbl": "reports", "comment": "team-b: month-end report"}


# --- 13: a build the role may not run fails, and says so ---------------------------------------


@pytest.mark.hypopg
def test_a_non_owner_in_apply_mode_fails_the_action_instead_of_applying_forever(
    tmp_path: Path, dsn: str, conn: Any, pg_server: Any
) -> None:
    """Before: as a role that does not own the table, `must be owner of table` escaped the
    executor, the daemon printed "APPLYING" every second, /healthz said ok and
    pg_tuner_actions{state="applying"} said 0. Tried: a role with pg_monitor and SELECT."""
    _make_table(conn, "orders")
    role = "t_sec_daemon_lo"
    db.execute(conn, f"DROP ROLE IF EXISTS {role}")
    db.execute(conn, f"CREATE ROLE {role} LOGIN")
    db.execute(conn, f"GRANT pg_monitor TO {role}")
    db.execute(conn, f"GRANT SELECT ON orders TO {role}")
    db.execute(conn, f"GRANT SET ON PARAMETER pg_stat_statements.track TO {role}")
    dbname = db.conninfo_to_dict(dsn)["dbname"]
    path = _policy(tmp_path, pg_server.dsn(str(dbname), user=role))
    daemon = Daemon(load_policy(path), policy_path=path, metrics_listen=None)
    try:
        daemon.start(serve_metrics=False)
        daemon.run_job("sample")
        _lookups(conn, "orders")
        time.sleep(3.2)
        daemon.run_job("sample")
        daemon.run_job("advise")
        verdicts = [daemon.run_job("act") for _ in range(3)]
        actions = {s: daemon.metrics.actions.labels(s)._value.get() for s in ("applying",
                   "failed")}  # fmt: skip
    finally:
        daemon.close()
        db.execute(conn, f"DROP OWNED BY {role}")
        db.execute(conn, f"DROP ROLE {role}")
    assert verdicts[0].startswith("FAILED: ") and "must be owner" in verdicts[0], verdicts
    assert not any(v.startswith("APPLYING") for v in verdicts), verdicts
    assert actions == {"applying": 0, "failed": 1}, actions
    states = {s.state.value for s in replay(Journal(tmp_path / "journal.jsonl").read()).values()}
    assert states == {"failed"}, states


# --- 13: a journal that cannot be written (a full disk) ----------------------------------------

# Run in its own process: RLIMIT_FSIZE limits every file the process writes (Python ignores
# SIGXFSZ, so a write past the limit fails with EFBIG, as one on a full disk fails with
# ENOSPC), and the test runner's own capture files must not be limited.
_FULL_DISK = r"""
import json, resource, sys, time
from pathlib import Path
from tuner import db
from tuner.config import load_policy
from tuner.daemon import Daemon

dsn, path = sys.argv[1], Path(sys.argv[2])
journal = path.parent / "journal.jsonl"
daemon = Daemon(load_policy(path), policy_path=path, metrics_listen=None)
real_apply = daemon.ctx.executor.apply
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

def apply_then_fill_the_disk(action, **kwargs):
    result = real_apply(action, **kwargs)
    # the build is done; 40 more bytes fit, then the disk is full mid-record
    resource.setrlimit(resource.RLIMIT_FSIZE, (journal.stat().st_size + 40, hard))
    return result

daemon.ctx.executor.apply = apply_then_fill_the_disk
out = {}
with db.connect(dsn) as conn:
    daemon.start(serve_metrics=False)
    daemon.run_job("sample")
    for i in range(40):
        db.fetch(conn, "SELECT v FROM orders WHERE k = %s", [i])
    time.sleep(3.2)
    daemon.run_job("sample")
    daemon.run_job("advise")
    out["full"] = [daemon.run_job(job) for job in ("act", "act", "verify", "advise")]
    out["health_full"] = daemon.health.check()
    out["sample_full"] = daemon.run_job("sample")
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space freed
    out["freed"] = [daemon.run_job("act"), daemon.run_job("act")]
    out["health_freed"] = daemon.health.check()
daemon.close()
print(json.dumps(out))
"""


@pytest.mark.hypopg
def test_a_full_disk_while_journaling_stops_acting_says_why_and_resumes_by_itself(
    tmp_path: Path, dsn: str, conn: Any
) -> None:
    """Before: the index built and valid, the journal left at `applying` by a failed write,
    and the daemon said "APPLYING" until a restart while /healthz said ok. Tried: the disk
    filling up 40 bytes into the `applied` record, then space freed."""
    import json

    _make_table(conn, "orders")
    path = _policy(tmp_path, dsn)
    env_path = str(Path(__file__).resolve().parents[1])
    run = subprocess.run([sys.executable, "-c", _FULL_DISK, dsn, str(path)], capture_output=True,
                         text=True, timeout=120, cwd=env_path)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    for verdict in out["full"]:
        assert verdict.startswith("DEGRADED: cannot write the journal"), out["full"]
        assert "not acting until the journal can be written" in verdict
    assert out["health_full"][0] is False and "journal cannot be written" in out["health_full"][1]
    assert out["sample_full"].startswith("OBSERVE"), "sampling goes on"
    assert all(not v.startswith(("DEGRADED", "APPLYING", "ERROR")) for v in out["freed"]), out
    assert out["health_freed"] == [True, "ok"], out
    journal = Journal(tmp_path / "journal.jsonl")
    result = journal.verify()
    assert result.ok, result.problems
    assert any("fragment of an interrupted write" in n for n in result.notes), result.notes
    records = journal.read()
    assert [r.state for r in records if r.action_id is None][-2:] == [
        "journal_repair", "journal_resumed"]  # fmt: skip
    states = {s.state.value for s in replay(records).values()}
    assert states == {"verifying"}, states  # the build was found valid and is verified
    assert len(_indexes(conn, "orders")) == 2


@pytest.mark.hypopg
def test_a_kept_index_someone_dropped_by_hand_is_noticed_journaled_and_may_return(
    tmp_path: Path, dsn: str, conn: Any
) -> None:
    """Before: the action stayed `kept` forever, so the index was never proposed again.
    Tried: DROP INDEX of the tuner's kept index by an operator's session."""
    _make_table(conn, "orders")
    path = _policy(tmp_path, dsn, thresholds={"baseline_window": "3s",
                   "verification_window": "3s", "read_regression_floor_ms": 0.0})  # fmt: skip
    daemon = Daemon(load_policy(path), policy_path=path, metrics_listen=None)
    try:
        daemon.start(serve_metrics=False)
        action_id = _apply_one(daemon, conn, "orders")
        _lookups(conn, "orders")
        time.sleep(3.2)
        kept = daemon.run_job("verify")
        assert kept.startswith("KEPT"), kept
        name = next(n for n in _indexes(conn, "orders") if n != "orders_pkey")
        db.execute(conn, f'DROP INDEX "{name}"')
        daemon.run_job("sample")
        noticed = daemon.run_job("housekeeping")
        again = daemon.run_job("housekeeping")
    finally:
        daemon.close()
    assert noticed.startswith("FAILED: dropped outside pg-tuner") and action_id in noticed
    assert not again.startswith("FAILED"), "journaled once"
    final = replay(Journal(tmp_path / "journal.jsonl").read())[action_id]
    assert final.state.value == "failed" and "no longer in the catalog" in final.reason


# --- 14: a journal whose chain is broken -------------------------------------------------------


@pytest.mark.hypopg
def test_a_broken_chain_holds_apply_mode_until_an_operator_acknowledges_it(
    tmp_path: Path, dsn: str, conn: Any
) -> None:
    """Before: the daemon started and acted on a journal whose chain was broken without a
    word. Tried: one record's reason edited by hand (its hash no longer matches)."""
    _make_table(conn, "orders")
    path = _policy(tmp_path, dsn)
    journal_path = tmp_path / "journal.jsonl"
    journal = Journal(journal_path)
    journal.append(EntryKind.ROLLBACK_REQUESTED, action_id="x1", actor="operator:test", reason="a")
    journal.append(EntryKind.ROLLBACK_REQUESTED, action_id="x2", actor="operator:test", reason="b")
    lines = journal_path.read_bytes().splitlines(keepends=True)
    journal_path.write_bytes(lines[0].replace(b'"reason":"a"', b'"reason":"z"') + lines[1])
    daemon = Daemon(load_policy(path), policy_path=path, metrics_listen=None)
    try:
        started = daemon.start(serve_metrics=False)
        assert "journal" in started and "broken" in started, started
        daemon.run_job("sample")
        _lookups(conn, "orders")
        time.sleep(3.2)
        daemon.run_job("sample")
        daemon.run_job("advise")
        held = [daemon.run_job("act") for _ in range(2)]
        health = daemon.health.check()
        assert _indexes(conn, "orders") == ["orders_pkey"], "acted on a broken journal"
        acked = _cli("audit", "--journal", str(journal_path), "--acknowledge",
                     "--reason", "restored from backup")  # fmt: skip
        assert acked.returncode == 0, acked.stderr
        assert "acknowledged 1 problem" in acked.stdout, acked.stdout
        applied = daemon.run_job("act")
    finally:
        daemon.close()
    for verdict in held:
        assert verdict.startswith("HELD: the journal's hash chain is broken"), held
        assert "pg-tuner audit --acknowledge" in verdict
    assert health[0] is False and "hash chain is broken" in health[1], health
    assert applied.startswith("APPLIED"), applied
    records = Journal(journal_path).read()
    ack = next(r for r in records if r.state == "chain_acknowledged")
    assert ack.actor.startswith("operator:") and ack.reason == "restored from backup"
    again = _cli("audit", "--journal", str(journal_path), "--acknowledge")
    assert again.returncode == 0 and "nothing to acknowledge" in again.stdout, again.stdout


@pytest.mark.hypopg
def test_a_reload_that_moves_the_journal_mid_verification_settles_the_action_first(
    tmp_path: Path, dsn: str, conn: Any
) -> None:
    """Before: SIGHUP with a new `journal.path` during verification left the action
    `verifying` forever in the old file (its verdict went to the new one). Tried: the path
    changed while an index was being verified."""
    _make_table(conn, "orders")
    thresholds = {"baseline_window": "3s", "verification_window": "3s",
                  "read_regression_floor_ms": 0.0}  # fmt: skip
    path = _policy(tmp_path, dsn, thresholds=thresholds)
    old, new = tmp_path / "journal.jsonl", tmp_path / "moved" / "journal.jsonl"
    daemon = Daemon(load_policy(path), policy_path=path, metrics_listen=None)
    try:
        daemon.start(serve_metrics=False)
        action_id = _apply_one(daemon, conn, "orders")
        _policy(tmp_path, dsn, thresholds=thresholds, journal={"path": str(new)})
        assert daemon.reload()
        _lookups(conn, "orders")
        time.sleep(3.2)
        kept = daemon.run_job("verify")
        assert kept.startswith("KEPT"), kept
        daemon.run_job("act")
        moved = daemon.ctx.journal.path
    finally:
        daemon.close()
    assert replay(Journal(old).read())[action_id].state.value == "kept"
    assert moved == new, "the journal moves once nothing is in flight"


def test_status_names_an_action_stuck_in_applying(tmp_path: Path, dsn: str, conn: Any) -> None:
    """Before: `status` said nothing of the journal; an action stuck in `applying` (a build
    that no longer runs) was invisible there. Tried: the journal at `applying`, no build."""
    _make_table(conn, "orders")
    path = _policy(tmp_path, dsn)
    spec = IndexSpec(TableRef("public", "orders"), ("k",))
    action = Action("s1", ActionKind.CREATE_INDEX, spec.table, spec, index_name=index_name(spec))
    journal = Journal(tmp_path / "journal.jsonl")
    for state in (ActionState.APPROVED, ActionState.APPLYING):
        journal.append(state, action=action)
    shown = _cli("status", "--policy", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "action s1 stuck: applying since" in shown.stdout, shown.stdout
    assert "STUCK: applying since" in shown.stdout


# --- 11: chained freeze windows hold the CLI's rollback too ------------------------------------


def test_rollback_inside_chained_day_and_night_freezes_is_held(
    tmp_path: Path, dsn: str, conn: Any
) -> None:
    """Before: a day window 08-20 plus a night window 20-08 exceeded the calendar's step
    limit, read "OPEN", and `rollback` ran DROP INDEX CONCURRENTLY inside the night window.
    Tried: both windows every day, and an applied tuner index to roll back."""
    _make_table(conn, "orders")
    spec = IndexSpec(TableRef("public", "orders"), ("k",))
    name = index_name(spec)
    db.execute(conn, f'CREATE INDEX "{name}" ON orders (k)')
    db.execute(conn, f"COMMENT ON INDEX \"{name}\" IS 'pg-tuner: action r1 2026-12-06T00:00:00Z'")
    action = Action("r1", ActionKind.CREATE_INDEX, spec.table, spec, index_name=name)
    journal = Journal(tmp_path / "journal.jsonl")
    for state in (ActionState.APPROVED, ActionState.APPLYING, ActionState.APPLIED):
        journal.append(state, action=action)
    freeze = [{"name": "day", "from": "08:00", "to": "20:00"},
              {"name": "night", "from": "20:00", "to": "08:00"}]  # fmt: skip
    path = _policy(tmp_path, dsn, freeze=freeze)
    asked = _cli("rollback", "r1", "--policy", str(path))
    assert asked.returncode == 0, asked.stderr
    assert "not undone now: frozen by" in asked.stdout, asked.stdout
    assert name in _indexes(conn, "orders"), "dropped inside the freeze"
