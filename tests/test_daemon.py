"""The daemon: verdicts, signals, reload, backoff; `pg-tuner run` as a user starts it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from tests.daemon_support import DaemonProcess, write_policy
from tests.plugins.postgres import Server
from tuner import db, journal
from tuner.config import load_policy
from tuner.daemon import Backoff, Daemon, Notice, most_important
from tuner.errors import QueryFailed
from tuner.flight import Flight, Phase
from tuner.journal import Journal, operator_actor
from tuner.models import Action, ActionKind, ActionState, IndexSpec, TableRef
from tuner.statements import index_name


def event(line: str) -> dict[str, object]:
    try:
        parsed = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def is_event(name: str, **fields: object) -> Callable[[str], bool]:
    def check(line: str) -> bool:
        e = event(line)
        return e.get("event") == name and all(e.get(k) == v for k, v in fields.items())

    return check


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(first=1, cap=10)
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_the_most_important_verdict_wins() -> None:
    assert most_important(["OBSERVE: 3 queries sampled", "PROPOSED: 1 (awaiting approval)"]) == (
        "PROPOSED: 1 (awaiting approval)"
    )
    assert most_important(["KEPT: x", "DEGRADED: database unreachable, retry in 2s"]).startswith(
        "DEGRADED"
    )
    assert most_important(["OBSERVE: a", "OBSERVE: b"]) == "OBSERVE: b"


def test_invariant_11_bad_policy_exit_2(dsn: str, tmp_path: Path) -> None:
    # tried: an apply-mode policy with a misspelt key and an out-of-range threshold
    good = write_policy(tmp_path / "p.yaml", dsn, mode="apply")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        good.read_text().replace("level: aggressive", "level: aggressive\nthreshold:\n  x: 1")
        + "limits:\n  max_index_width: 99\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "run", "--policy", str(bad), "--once"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}:" in proc.stderr and "threshold" in proc.stderr
    assert "limits.max_index_width" in proc.stderr
    assert not (tmp_path / "journal.jsonl").exists()  # nothing journaled, so nothing applied


def test_once_runs_one_cycle_and_exits(dsn: str, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml", dsn)
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "run", "--policy", str(policy), "--once"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    verdict = proc.stdout.strip().splitlines()[-1]
    assert verdict.startswith("OBSERVE: "), proc.stdout
    jobs = [event(line).get("job") for line in proc.stderr.splitlines()]
    assert jobs.count("sample") == 2 and "advise" in jobs, proc.stderr


def test_sigterm_exits_0_after_stopping(dsn: str, tmp_path: Path) -> None:
    daemon = DaemonProcess(write_policy(tmp_path / "p.yaml", dsn))
    try:
        daemon.wait_for(is_event("cycle.verdict", job="sample"))
        daemon.signal(signal.SIGTERM)
        assert daemon.stop() == 0
        daemon.wait_for(is_event("daemon.stopped"), timeout=5)
    finally:
        daemon.kill()


def test_invariant_11_sighup_bad_policy_keeps_old(dsn: str, tmp_path: Path) -> None:
    path = write_policy(tmp_path / "p.yaml", dsn, mode="observe")
    daemon = DaemonProcess(path)
    try:
        daemon.wait_for(is_event("daemon.started", mode="observe"))
        # tried: switching to apply mode in a file with a negative duration and a bad zone
        text = path.read_text()
        path.write_text(text.replace("mode: observe", "mode: apply\ntimezone: Mars/Olympus")
                        .replace("sample_interval: 1s", "sample_interval: -5s"))  # fmt: skip
        daemon.signal(signal.SIGHUP)
        refused = daemon.wait_for(is_event("policy.refused"))
        assert f"{path}:" in str(event(refused)["problem"])
        seen = len(daemon.lines)
        daemon.wait_for(lambda line: daemon.lines.index(line) > seen and
                        is_event("cycle.verdict", job="sample")(line))  # fmt: skip
        assert daemon.proc.poll() is None  # still running, on the old policy
        assert not any(is_event("policy.reloaded")(line) for line in daemon.lines)
        # a good file is then taken, which shows the refusal above was a real decision
        path.write_text(text.replace("mode: observe", "mode: recommend"))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(is_event("policy.reloaded", mode="recommend"))
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_degraded_with_backoff_then_resumes(pg_server: Server, tmp_path: Path) -> None:
    # tried: a database that does not exist yet; it is created while the daemon retries
    name = "t_daemon_appears_later"
    pg_server.drop_database(name)
    policy = load_policy(write_policy(tmp_path / "p.yaml", pg_server.dsn(name)))
    events: list[Notice] = []
    daemon = Daemon(policy, on_event=events.append)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len([e for e in events if "retry in" in e.text]) < 3:
            time.sleep(0.1)
        degraded = [e.text for e in events if e.text.startswith("DEGRADED")]
        assert degraded and all("database unreachable, retry in" in t for t in degraded)
        assert any(e.kind == "degraded" for e in events)
        assert daemon.health.check()[0] is False
        pg_server.create_database(name)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not daemon.last_verdict.endswith("queries sampled"):
            time.sleep(0.2)
        assert daemon.last_verdict.endswith("queries sampled"), daemon.last_verdict
        assert not daemon.degraded and daemon.health.check() == (True, "ok")
        assert any(e.job == "reconnect" for e in events if e.kind == "verdict")
    finally:
        daemon.request_stop()
        thread.join(30)
        pg_server.drop_database(name)


def make_table(dsn: str, rows: int = 50000) -> None:
    with db.connect(dsn) as conn:
        db.execute(conn, "CREATE TABLE t (id bigserial PRIMARY KEY, v int NOT NULL)")
        db.execute(conn, f"INSERT INTO t (v) SELECT g % 997 FROM generate_series(1, {rows}) g")
        db.execute(conn, "ANALYZE t")


def index_action(action_id: str) -> Action:
    table = TableRef("public", "t")
    spec = IndexSpec(table, ("v",))
    return Action(id=action_id, kind=ActionKind.CREATE_INDEX, table=table, index=spec,
                  index_name=index_name(spec), reason="test")  # fmt: skip


def approve(path: Path, action: Action) -> None:
    j = Journal(path)
    j.append(ActionState.PROPOSED, action=action, actor=operator_actor())
    j.append(ActionState.APPROVED, action=action, actor=operator_actor(), reason="test")


def invalid_indexes(dsn: str) -> list[db.Row]:
    with db.connect(dsn) as conn:
        return db.fetch(conn, "SELECT indexrelid::regclass::text AS name FROM pg_index "
                              "WHERE NOT indisvalid")  # fmt: skip


def test_sigterm_cancels_a_running_build_after_the_grace(dsn: str, tmp_path: Path) -> None:
    make_table(dsn)
    path = write_policy(
        tmp_path / "p.yaml", dsn, mode="apply",
        thresholds={"baseline_window": "1s", "verification_window": "60s"},
        timeouts={"shutdown_grace": "2s", "lock_timeout": "60s"},
    )  # fmt: skip
    action = index_action("buildcancel1")
    approve(tmp_path / "journal.jsonl", action)
    # An open writing transaction: CREATE INDEX CONCURRENTLY waits for it to end.
    blocker = db.connect(dsn, autocommit=False)
    db.execute(blocker, "INSERT INTO t (v) VALUES (1)")
    daemon = DaemonProcess(path)
    try:
        daemon.wait_for(is_event("action.transition", action="buildcancel1", state="applying"))
        time.sleep(0.5)
        sent = time.monotonic()
        daemon.signal(signal.SIGTERM)
        daemon.wait_for(is_event("daemon.cancelling"), timeout=15)
        waited = time.monotonic() - sent
        assert waited >= 1.9, f"cancelled after {waited:.1f}s, before the 2s grace"
        blocker.rollback()  # the cleanup's DROP INDEX CONCURRENTLY waits for it too
        assert daemon.stop(timeout=60) == 0, daemon.log_tail()
    finally:
        blocker.close()
        daemon.kill()
    assert invalid_indexes(dsn) == []
    statuses = journal.replay(Journal(tmp_path / "journal.jsonl").read())
    assert statuses["buildcancel1"].state is ActionState.FAILED
    assert "cancel" in statuses["buildcancel1"].reason
    assert Journal(tmp_path / "journal.jsonl").verify().ok


def test_invariant_8_a_second_daemon_only_observes(dsn: str, tmp_path: Path) -> None:
    first_policy = load_policy(write_policy(tmp_path / "a.yaml", dsn, mode="apply"))
    (tmp_path / "b").mkdir()
    second_policy = load_policy(write_policy(tmp_path / "b" / "b.yaml", dsn, mode="apply"))
    first, second = Daemon(first_policy), Daemon(second_policy)
    try:
        assert first.start().startswith("STARTED: apply mode")
        assert second.start() == "OBSERVE: another pg-tuner leads this database; observing only"
        assert second.run_job("act").startswith("OBSERVE: another pg-tuner leads")
        assert second.run_job("advise") == "OBSERVE: no advice (not the leader)"
        assert second.metrics.registry.get_sample_value("pg_tuner_leader") == 0
        first.close()  # the leader goes away: the next sample takes the lead
        assert second.run_job("sample") == "LEADER: took the lead; nothing to recover"
        assert second.metrics.registry.get_sample_value("pg_tuner_leader") == 1
    finally:
        first.close()
        second.close()


def test_restart_settles_actions_left_in_flight(dsn: str, tmp_path: Path) -> None:
    # tried: a crash after a build finished (valid index, journal says applying), and a crash
    # mid-build (INVALID index left, journal says applying)
    make_table(dsn, rows=2000)
    path = tmp_path / "journal.jsonl"
    done, broken = index_action("crashdone001"), index_action("crashbroken1")
    broken = Action(id=broken.id, kind=broken.kind, table=broken.table,
                    index=IndexSpec(broken.table, ("id", "v")),
                    index_name=index_name(IndexSpec(broken.table, ("id", "v"))))  # fmt: skip
    for action in (done, broken):
        approve(path, action)
        Journal(path).append(ActionState.APPLYING, action=action, reason="running")
    with db.connect(dsn) as conn:
        db.execute(
            conn, db.SQL("CREATE INDEX {} ON t (v)").format(db.Identifier(done.index_name or ""))
        )
        db.execute(conn, "INSERT INTO t (v) SELECT 5 FROM generate_series(1, 3)")
        # a unique build over duplicates fails and leaves its INVALID index behind
        with pytest.raises(QueryFailed):
            db.execute(conn, db.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON t (v)")
                       .format(db.Identifier(broken.index_name or "")))  # fmt: skip
    assert [r["name"] for r in invalid_indexes(dsn)] == [broken.index_name]
    policy = load_policy(write_policy(tmp_path / "p.yaml", dsn, mode="apply"))
    daemon = Daemon(policy)
    try:
        verdict = daemon.start()
    finally:
        daemon.close()
    assert "crashdone001 applied after restart" in verdict, verdict
    assert "crashbroken1 failed after restart" in verdict, verdict
    assert "verification of crashdone001 resumes" in verdict, verdict
    assert invalid_indexes(dsn) == []
    statuses = journal.replay(Journal(path).read())
    assert statuses["crashdone001"].state is ActionState.VERIFYING
    assert statuses["crashbroken1"].state is ActionState.FAILED
    assert Journal(path).verify().ok


def test_act_runs_at_once_after_a_verdict_and_at_a_baselines_end(tmp_path: Path, dsn: str) -> None:
    """The jobs on the real scheduler (paused, so none runs by itself), sample interval 60 s.
    Act's next turn comes forward to now after a verdict (the next action's baseline may be
    the samples already taken) and after an action that needs none; to a baseline's end
    when that comes before its turn; and stays where it was after anything else."""
    policy_path = write_policy(tmp_path / "policy.yaml", dsn, mode="apply",
                               schedule={"sample_interval": "60s"},
                               thresholds={"baseline_window": "20s"})  # fmt: skip
    daemon = Daemon(load_policy(policy_path), policy_path=policy_path, metrics_listen=None)
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.start(paused=True)
    daemon._scheduler = scheduler
    try:
        daemon._schedule_jobs()

        def act_at() -> datetime:
            job = scheduler.get_job("act")
            assert job is not None and job.next_run_time is not None
            return job.next_run_time  # type: ignore[no-any-return]

        later = datetime.now(UTC) + timedelta(seconds=60)
        scheduler.modify_job("act", next_run_time=later)
        daemon._hurry_act("verify", "VERIFYING: create_index public.t_k until 12:00 UTC")
        daemon._hurry_act("act", "HELD: create_index public.t_k: replication lag")
        assert act_at() == later
        daemon._hurry_act("verify", "KEPT: create_index public.t_k [a1]: net change -90%")
        assert act_at() < datetime.now(UTC) + timedelta(seconds=1)
        scheduler.modify_job("act", next_run_time=later)
        daemon._hurry_act("act", "APPLIED: analyze public.t [a2] in 0.5s")
        assert act_at() < datetime.now(UTC) + timedelta(seconds=1)
        action = Action("a3", ActionKind.CREATE_INDEX, TableRef("public", "t"),
                        IndexSpec(TableRef("public", "t"), ("k",)))  # fmt: skip
        started = datetime.now(UTC)
        daemon.ctx.flight = Flight(action, Phase.BASELINE, None, started)
        scheduler.modify_job("act", next_run_time=later)
        daemon._hurry_act("act", "BASELINE: create_index public.t_k; applying after 12:00")
        assert act_at() == started + timedelta(seconds=20)  # the baseline window's end
    finally:
        scheduler.shutdown(wait=False)
        daemon.close()
