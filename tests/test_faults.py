"""Faults during an index build, on a real server: restart, lock timeout, full load, kill -9.

After each: no INVALID index is left and no duplicate exists; building again gives exactly
one valid index. (The journal's side of the kill -9 recovery belongs to the daemon's tests;
here the executor's `recover` is called as the daemon's replay would call it.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.plugins.postgres import Server
from tests.test_executor import (
    Background,
    create,
    end_later,
    indexes,
    invalid_indexes,
    make_executor,
    wait_for_waiting_build,
    writer_blocker,
)
from tuner import db
from tuner.models import ActionState, IndexSpec, TableRef
from tuner.statements import NAME_PREFIX, index_name

ROOT = Path(__file__).resolve().parent.parent
PGBENCH = Path("/usr/lib/postgresql/15/bin/pgbench")
SPEC = IndexSpec(TableRef("public", "t"), ("a",))


@pytest.fixture
def table(conn: db.Connection) -> TableRef:
    db.execute(conn, "CREATE TABLE t (id int PRIMARY KEY, a int, b int)")
    db.execute(conn, "INSERT INTO t SELECT g, g % 100, g % 7 FROM generate_series(1, 20000) g")
    return SPEC.table


def assert_clean_then_one_index(dsn: str, spec: IndexSpec = SPEC) -> None:
    """No INVALID index, no tuner index left; a new build gives exactly one valid index."""
    with db.connect(dsn) as conn:
        assert invalid_indexes(conn) == []
        assert [n for n in indexes(conn, spec.table.name) if n.startswith(NAME_PREFIX)] == []
    with make_executor(dsn) as ex:
        assert ex.apply(create(spec, "retry")).state is ActionState.APPLIED
        assert ex.apply(create(spec, "retry-again")).reason == "already built"
    with db.connect(dsn) as conn:
        ours = {
            n: r for n, r in indexes(conn, spec.table.name).items() if n.startswith(NAME_PREFIX)
        }
        assert list(ours) == [index_name(spec)] and ours[index_name(spec)]["valid"]


def test_restart_of_postgresql_during_a_build(
    pg_server: Server, dsn: str, table: TableRef, conn: db.Connection
) -> None:
    if pg_server.sandbox is None:
        pytest.skip("restarting the server needs the sandbox (not TUNER_TEST_DSN or Docker)")
    # The build holds its catalog entry and waits for an open writer when the server restarts:
    # the same catalog state as a restart in the middle of a long build, without the timing.
    with writer_blocker(dsn), make_executor(dsn, recovery_wait=60, lock_timeout="60s") as ex:
        job = Background(ex, create(SPEC))
        wait_for_waiting_build(conn)
        assert invalid_indexes(conn) == [index_name(SPEC)]
        pg_server.sandbox.restart()
        result = job.join(timeout=90)
    assert result.state is ActionState.FAILED
    assert result.cleaned_up == (index_name(SPEC),), result.reason
    assert_clean_then_one_index(dsn)


@pytest.mark.parametrize("blocker", ["access exclusive lock", "open writer transaction"])
def test_conflicting_lock_makes_the_build_time_out(
    dsn: str, table: TableRef, conn: db.Connection, blocker: str
) -> None:
    # Tried: an ACCESS EXCLUSIVE lock (the build cannot start), and an open writing
    # transaction (the build has its catalog entry and waits in its second phase).
    with make_executor(dsn, lock_timeout="500ms") as ex:
        if blocker == "access exclusive lock":
            holder = db.connect(dsn, autocommit=False)
            db.execute(holder, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
            result = ex.apply(create(SPEC))
            holder.close()
        else:
            with writer_blocker(dsn) as holder:
                timer = end_later(holder, 1.5)  # the cleanup's DROP waits for it to end
                result = ex.apply(create(SPEC))
                timer.join()
            assert result.cleaned_up == (index_name(SPEC),)
    assert result.state is ActionState.FAILED
    assert "lock timeout" in result.reason
    assert_clean_then_one_index(dsn)


def _pgbench_args(dsn: str) -> list[str]:
    params = db.conninfo_to_dict(dsn)
    return ["-h", str(params["host"]), "-p", str(params["port"]), "-U", str(params["user"])]


@pytest.mark.skipif(not PGBENCH.exists(), reason=f"{PGBENCH} is not installed")
def test_pgbench_at_full_load_during_builds_has_no_failed_transactions(
    dsn: str, conn: db.Connection
) -> None:
    dbname = str(db.conninfo_to_dict(dsn)["dbname"])
    subprocess.run(
        [str(PGBENCH), *_pgbench_args(dsn), "-i", "-s", "3", "-q", dbname],
        check=True,
        capture_output=True,
        timeout=120,
    )
    accounts = IndexSpec(TableRef("public", "pgbench_accounts"), ("abalance",))
    bench = subprocess.Popen(
        [str(PGBENCH), *_pgbench_args(dsn), "-n", "-c", "4", "-j", "2", "-T", "15", dbname],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    builds: list[float] = []
    with make_executor(dsn, lock_timeout="5s") as ex:
        time.sleep(1)  # let the clients reach full speed first
        while bench.poll() is None:
            action = create(accounts, f"b{len(builds)}")
            built = ex.apply(action)
            assert built.state is ActionState.APPLIED, built.reason
            builds.append(built.seconds)
            if bench.poll() is None:
                assert ex.undo(action, built).state is ActionState.ROLLED_BACK
    output = bench.communicate(timeout=30)[0]
    assert bench.returncode == 0, output
    failed = int(re.search(r"number of failed transactions: (\d+)", output).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"number of transactions actually processed: (\d+)", output).group(1))  # type: ignore[union-attr]
    tps = re.search(r"tps = ([\d.]+)", output)
    print(
        f"\npgbench 4 clients 15 s during {len(builds)} CREATE INDEX CONCURRENTLY builds "
        f"(mean {sum(builds) / len(builds):.2f} s) on pgbench_accounts (scale 3): "
        f"{done} transactions, {failed} failed, tps {tps.group(1) if tps else '?'}"
    )
    assert failed == 0
    assert done > 0 and builds
    assert invalid_indexes(conn) == []


KILLED_TUNER = """
import sys
from tuner.config import Policy
from tuner.executor import Executor
from tuner.models import Action, ActionKind, IndexSpec, TableRef

dsn = sys.argv[1]
policy = Policy.model_validate({"target": {"dsn": dsn}, "timeouts": {"lock_timeout": "60s"}})
spec = IndexSpec(TableRef("public", "t"), ("a",))
Executor(dsn, None, policy).apply(Action("killed", ActionKind.CREATE_INDEX, spec.table, spec))
print("the build returned", flush=True)
"""


def test_kill_9_of_the_tuner_during_a_build_then_recover(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    with writer_blocker(dsn) as blocker:
        tuner = subprocess.Popen(
            [sys.executable, "-c", KILLED_TUNER, dsn],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            orphan = wait_for_waiting_build(conn, timeout=30)
        finally:
            tuner.send_signal(signal.SIGKILL)
            tuner.wait(timeout=10)
        assert tuner.returncode == -signal.SIGKILL
        assert invalid_indexes(conn) == [index_name(SPEC)]
        # client_connection_check_interval: the orphaned build notices its client is gone
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and db.fetch(
            conn, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (orphan,)
        ):
            time.sleep(0.1)
        gone = not db.fetch(conn, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (orphan,))
        timer = threading.Timer(1.0, blocker.rollback)
        timer.start()
        # The restarted daemon replays its journal: the action was `applying`.
        with make_executor(dsn) as ex:
            result = ex.recover(create(SPEC, "killed"))
        timer.join()
    assert gone, "the orphaned build kept running after its client was killed"
    assert result.state is ActionState.FAILED
    assert result.reason == "interrupted build; its INVALID index was dropped"
    assert_clean_then_one_index(dsn)


def test_recover_adopts_a_build_that_finished(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    # Tried: the tuner died after the build but before its COMMENT ON INDEX.
    name = index_name(SPEC)
    db.execute(conn, db.SQL("CREATE INDEX {} ON t (a)").format(db.Identifier(name)))
    with make_executor(dsn) as ex:
        result = ex.recover(create(SPEC, "late"))
    assert result.state is ActionState.APPLIED
    assert indexes(conn)[name]["comment"].startswith("pg-tuner: action late ")
