"""The executor against a real PostgreSQL: whitelist, fences, cleanup, drops, leader lock.

Safety invariants 1, 3, 4, 5 and 8 of DESIGN.md each have `test_invariant_N_...` tests here
(invariant 1's pure re-parse tests live in test_statements.py); the fault tests (restart, lock
timeout, pgbench, kill -9) live in test_faults.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.plugins.postgres import Server
from tuner import db
from tuner.config import Policy
from tuner.executor import Executor
from tuner.models import Action, ActionKind, ActionResult, ActionState, IndexSpec, TableRef
from tuner.statements import MARKER, NAME_PREFIX, check, index_name

T = TableRef("public", "t")


def make_policy(
    dsn: str, *, allow_drop_foreign: bool = False, timeouts: dict[str, str] | None = None
) -> Policy:
    """The aggressive level (REINDEX allowed) with short timeouts for the tests."""
    return Policy.model_validate(
        {
            "target": {"dsn": dsn},
            "level": "aggressive",
            "thresholds": {"allow_drop_foreign": allow_drop_foreign},
            "timeouts": {"lock_timeout": "2s", "statement_timeout": "60s", **(timeouts or {})},
        }
    )


def make_executor(dsn: str, recovery_wait: float = 15.0, **timeouts: str) -> Executor:
    """Most tests here fence a build's waits for older transactions with the lock_timeout
    they pass: that bound holds for the CONCURRENTLY statements too, unless a test sets its
    own `concurrent_lock_timeout`."""
    if "lock_timeout" in timeouts:
        timeouts.setdefault("concurrent_lock_timeout", timeouts["lock_timeout"])
    return Executor(dsn, None, make_policy(dsn, timeouts=timeouts), recovery_wait=recovery_wait)


@pytest.fixture
def table(conn: db.Connection) -> TableRef:
    """public.t(a int, b int, c text) with 20,000 rows."""
    db.execute(conn, "CREATE TABLE t (id int PRIMARY KEY, a int, b int, c text)")
    db.execute(
        conn,
        "INSERT INTO t SELECT g, g % 100, g % 7, md5(g::text) FROM generate_series(1, 20000) g",
    )
    return T


@pytest.fixture
def executor(dsn: str) -> Iterator[Executor]:
    with make_executor(dsn) as ex:
        yield ex


def create(spec: IndexSpec, action_id: str = "a1", **figures: Any) -> Action:
    return Action(action_id, ActionKind.CREATE_INDEX, spec.table, spec, figures=figures)


def indexes(conn: db.Connection, table: str = "t") -> dict[str, dict[str, Any]]:
    """name → {valid, comment, definition} of every index on `table`."""
    rows = db.fetch(
        conn,
        "SELECT c.relname AS name, i.indisvalid AS valid, pg_get_indexdef(i.indexrelid) AS def,"
        " obj_description(i.indexrelid, 'pg_class') AS comment FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid"
        " WHERE t.relname = %s",
        (table,),
    )
    return {r["name"]: r for r in rows}


def invalid_indexes(conn: db.Connection) -> list[str]:
    rows = db.fetch(
        conn,
        "SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE NOT i.indisvalid",
    )
    return [r["name"] for r in rows]


@contextmanager
def writer_blocker(dsn: str, table: str = "t") -> Iterator[db.Connection]:
    """An open transaction holding ROW EXCLUSIVE on `table`: CREATE INDEX CONCURRENTLY gets
    its catalog entry, then waits for this transaction to end (and lock_timeout fires)."""
    blocker = db.connect(dsn, autocommit=False)
    try:
        db.execute(
            blocker, db.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(db.Identifier(table))
        )
        yield blocker
    finally:
        blocker.close()


def end_later(blocker: db.Connection, seconds: float) -> threading.Timer:
    """Roll the blocker back after `seconds` (from a timer thread)."""
    timer = threading.Timer(seconds, blocker.rollback)
    timer.start()
    return timer


def wait_for_waiting_build(conn: db.Connection, timeout: float = 15.0) -> int:
    """The pid of the pg-tuner session once its build waits on a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = db.fetch(
            conn,
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pg-tuner'"
            " AND query LIKE 'CREATE INDEX CONCURRENTLY%%' AND wait_event_type = 'Lock'",
        )
        if rows:
            return int(rows[0]["pid"])
        time.sleep(0.05)
    raise AssertionError("the build never waited on the blocker")


class Background:
    """Run `apply` in a thread and collect its result."""

    def __init__(self, ex: Executor, action: Action) -> None:
        self.result: ActionResult | None = None
        self.thread = threading.Thread(target=self._run, args=(ex, action), daemon=True)
        self.thread.start()

    def _run(self, ex: Executor, action: Action) -> None:
        self.result = ex.apply(action)

    def join(self, timeout: float = 60.0) -> ActionResult:
        self.thread.join(timeout)
        assert self.result is not None, "apply did not return"
        return self.result


# --- invariant 1: only whitelisted statements reach the server -----------------------------


@pytest.mark.parametrize(
    "bad",
    ['DROP TABLE "public"."t"', 'VACUUM FULL "public"."t"', 'ANALYZE "public"."t"; DROP TABLE t'],
)
def test_invariant_1_executor_refuses_a_rendered_statement_that_fails_the_check(
    dsn: str, table: TableRef, conn: db.Connection, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    # Tried: a template bug that renders a statement outside the whitelist (one PostgreSQL
    # would run happily); the re-parse must stop it before it reaches the server.
    import tuner.executor as executor_module

    monkeypatch.setattr(executor_module, "render", lambda action: db.SQL(bad))
    relfile = "SELECT pg_relation_filenode('public.t') AS f"
    before = db.fetch(conn, relfile)[0]["f"]
    with make_executor(dsn) as ex:
        result = ex.apply(Action("x", ActionKind.ANALYZE, table))
    assert result.state is ActionState.REJECTED and "refused" in result.reason
    assert db.fetch(conn, "SELECT to_regclass('public.t') IS NOT NULL AS here")[0]["here"]
    assert db.fetch(conn, relfile)[0]["f"] == before  # not rewritten by VACUUM FULL


HOSTILE = [
    ("public", 'a"b', 'c"d'),
    ("public", "x; DROP TABLE t", "y; DROP TABLE t --"),
    ("public", "t--", "-- c"),
    ("public", "/* t", "c */"),
    ("public", "ünïcödé", "spälte"),
    ("public", "emoji 🐘", "🔑 key"),
    ("public", "select", "order"),
    ("public", "user", "from"),
    ("public", "MixedCase", "CamelCol"),
    ("public", "l" * 63, "c" * 63),
    ("public", "L" * 100, "C" * 100),  # PostgreSQL truncates both to 63 bytes
    ("public", "é" * 40, "ö" * 40),  # truncated on a character boundary (62 bytes)
    ('My "Schema"; --', "$t$", "E'x'"),
]


@pytest.mark.parametrize(("schema", "table_name", "column"), HOSTILE)
def test_invariant_1_hostile_identifiers_build_the_right_index(
    conn: db.Connection, dsn: str, schema: str, table_name: str, column: str
) -> None:
    db.execute(conn, db.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(db.Identifier(schema)))
    db.execute(
        conn,
        db.SQL("CREATE TABLE {}.{} (id int, {} int)").format(
            db.Identifier(schema), db.Identifier(table_name), db.Identifier(column)
        ),
    )
    # The catalog's names (PostgreSQL truncated the long ones when it created them).
    row = db.fetch(
        conn,
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = 2"
        " WHERE n.nspname = %s AND c.relkind = 'r'",
        (schema,),
    )[0]
    ref = TableRef(schema, row["relname"])
    spec = IndexSpec(ref, (row["attname"],), ("id",))
    with make_executor(dsn) as ex:
        result = ex.apply(create(spec))
    assert result.state is ActionState.APPLIED, result.reason
    name = result.index_name
    assert name is not None and len(name.encode()) <= 63
    built = db.fetch(
        conn,
        "SELECT i.indisvalid AS valid, t.relname AS tbl, a.attname AS col,"
        " obj_description(i.indexrelid, 'pg_class') AS comment"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_index i ON i.indexrelid = c.oid JOIN pg_class t ON t.oid = i.indrelid"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    )
    assert len(built) == 1, "the index is not in the catalog under the tuner's exact name"
    assert built[0]["valid"]
    assert (built[0]["tbl"], built[0]["col"]) == (row["relname"], row["attname"])
    assert built[0]["comment"].startswith(f"{MARKER}action a1 ")
    assert check(result.statement).spec == spec
    assert db.fetch(conn, "SELECT count(*) AS n FROM pg_class WHERE relname = 't'")[0]["n"] == 0


# --- invariant 3: fenced sessions, one action at a time --------------------------------------


def test_invariant_3_work_session_carries_the_policys_fences(dsn: str) -> None:
    with make_executor(dsn, lock_timeout="1500ms", statement_timeout="7min") as ex:
        row = db.fetch(
            ex.session(),
            "SELECT current_setting('lock_timeout') AS lt, current_setting('statement_timeout')"
            " AS st, current_setting('maintenance_work_mem') AS mwm,"
            " current_setting('application_name') AS app",
        )[0]
        assert row == {"lt": "1500ms", "st": "7min", "mwm": "256MB", "app": "pg-tuner"}
        ex.reload(make_policy(dsn, timeouts={"lock_timeout": "250ms"}))  # SIGHUP
        after = db.fetch(ex.session(), "SELECT current_setting('lock_timeout') AS lt")[0]
        assert after["lt"] == "250ms"


def test_invariant_3_build_gives_up_at_lock_timeout(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    # Tried: an ACCESS EXCLUSIVE lock held by another session for longer than lock_timeout.
    holder = db.connect(dsn, autocommit=False)
    db.execute(holder, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
    try:
        with make_executor(dsn, lock_timeout="300ms") as ex:
            started = time.monotonic()
            result = ex.apply(create(IndexSpec(table, ("a",))))
            elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert result.state is ActionState.FAILED
    assert "LockNotAvailable" in result.reason
    assert elapsed < 5, "the build queued far beyond lock_timeout"
    assert invalid_indexes(conn) == []


def test_a_build_waits_out_older_transactions_up_to_its_own_bound_not_lock_timeout(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    """CREATE INDEX CONCURRENTLY waits for every transaction that may use the table; that
    wait holds up no reads or writes, so it has its own bound. Tried: an open writing
    transaction that lasts 2 s, with lock_timeout 300 ms and concurrent_lock_timeout 30 s —
    the build waits it out; with the concurrent bound at 300 ms too, it gives up."""
    with (
        writer_blocker(dsn) as blocker,
        make_executor(dsn, lock_timeout="300ms", concurrent_lock_timeout="30s") as ex,
    ):
        timer = end_later(blocker, 2.0)
        started = time.monotonic()
        result = ex.apply(create(IndexSpec(table, ("a",))))
        elapsed = time.monotonic() - started
        timer.join()
        # the session is fenced by lock_timeout again for whatever comes next
        after = db.fetch(ex.session(), "SELECT current_setting('lock_timeout') AS lt")[0]
    assert result.state is ActionState.APPLIED, result.reason
    assert elapsed >= 1.5, "the build did not wait for the writer"
    assert after["lt"] == "300ms"
    with writer_blocker(dsn) as blocker, make_executor(dsn, lock_timeout="300ms") as ex:
        timer = end_later(blocker, 1.5)  # then the INVALID leftover can be dropped
        failed = ex.apply(create(IndexSpec(table, ("b",))))
        timer.join()
    assert failed.state is ActionState.FAILED and "LockNotAvailable" in failed.reason
    assert invalid_indexes(conn) == []


def test_invariant_3_build_gives_up_at_statement_timeout(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    # Tried: a build that waits longer than statement_timeout (lock_timeout set far higher).
    with (
        writer_blocker(dsn) as blocker,
        make_executor(dsn, lock_timeout="60s", statement_timeout="500ms") as ex,
    ):
        timer = end_later(blocker, 2.0)
        result = ex.apply(create(IndexSpec(table, ("a",))))
        timer.join()
    assert result.state is ActionState.FAILED
    assert "statement timeout" in result.reason
    assert invalid_indexes(conn) == []


def test_invariant_3_one_action_at_a_time(dsn: str, table: TableRef, conn: db.Connection) -> None:
    with writer_blocker(dsn) as blocker, make_executor(dsn, lock_timeout="30s") as ex:
        first = Background(ex, create(IndexSpec(table, ("a",)), "first"))
        wait_for_waiting_build(conn)
        second = ex.apply(create(IndexSpec(table, ("b",)), "second"))
        assert second.state is ActionState.REJECTED
        assert second.reason == "another action is in flight"
        blocker.rollback()
        assert first.join().state is ActionState.APPLIED
    assert [n for n in indexes(conn) if n.startswith(NAME_PREFIX)] == [first.join().index_name]


# --- invariant 4: no INVALID index after a failed or cancelled build --------------------------


def test_invariant_4_cancelled_build_drops_its_invalid_index(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    with writer_blocker(dsn) as blocker, make_executor(dsn, lock_timeout="30s") as ex:
        job = Background(ex, create(IndexSpec(table, ("a",))))
        wait_for_waiting_build(conn)
        assert invalid_indexes(conn) == [index_name(IndexSpec(table, ("a",)))]
        assert ex.cancel()
        timer = end_later(blocker, 1.0)  # the cleanup's DROP waits for the blocker too
        result = job.join()
        timer.join()
    assert result.state is ActionState.FAILED
    assert result.reason.startswith("cancelled by the tuner")
    assert result.cleaned_up == (result.index_name,)
    assert invalid_indexes(conn) == []


def test_invariant_4_leftover_that_outlives_the_wait_is_reported_then_cleaned(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    with writer_blocker(dsn), make_executor(dsn, recovery_wait=1.0, lock_timeout="300ms") as ex:
        result = ex.apply(create(IndexSpec(table, ("a",))))
        assert result.state is ActionState.FAILED
        assert "INVALID" in result.reason and "cleanup_invalid" in result.reason
    # The blocker is gone: the next start's cleanup drops the tuner's leftover, and only it.
    db.execute(conn, "CREATE INDEX CONCURRENTLY IF NOT EXISTS foreign_ok ON t (b)")
    with make_executor(dsn) as ex:
        assert ex.cleanup_invalid() == [result.index_name]
    assert invalid_indexes(conn) == []
    assert "foreign_ok" in indexes(conn)


def test_invariant_4_failed_reindex_drops_its_ccnew_copy(
    dsn: str, table: TableRef, conn: db.Connection, executor: Executor
) -> None:
    built = executor.apply(create(IndexSpec(table, ("a",))))
    reindex = Action("r", ActionKind.REINDEX, table, index_name=built.index_name)
    with writer_blocker(dsn) as blocker, make_executor(dsn, lock_timeout="300ms") as ex:
        executor.close()
        timer = end_later(blocker, 1.5)
        result = ex.apply(reindex)
        timer.join()
    assert result.state is ActionState.FAILED
    assert result.cleaned_up and all("_ccnew" in n for n in result.cleaned_up)
    assert invalid_indexes(conn) == []
    assert indexes(conn)[built.index_name or ""]["valid"]


def test_build_records_real_size_next_to_estimate(executor: Executor, table: TableRef) -> None:
    result = executor.apply(create(IndexSpec(table, ("a",)), estimated_size_bytes=500_000))
    assert result.state is ActionState.APPLIED
    assert result.estimated_size_bytes == 500_000
    assert result.size_bytes is not None and result.size_bytes > 8192


def test_equivalent_index_is_not_built_twice(
    executor: Executor, table: TableRef, conn: db.Connection
) -> None:
    db.execute(conn, "CREATE INDEX by_hand ON t (a, b DESC)")
    result = executor.apply(create(IndexSpec(table, ("a", "b"), descending=(False, True))))
    assert result.state is ActionState.REJECTED and "by_hand" in result.reason
    assert executor.apply(create(IndexSpec(table, ("a", "b")))).state is ActionState.APPLIED


def test_a_hash_index_is_built_marked_and_undone_beside_a_btree_on_its_column(
    executor: Executor, table: TableRef, conn: db.Connection
) -> None:
    db.execute(conn, "CREATE INDEX by_hand ON t (c)")
    action = create(IndexSpec(table, ("c",), method="hash"))
    built = executor.apply(action)  # a btree on c is no reason to refuse the hash
    assert built.state is ActionState.APPLIED, built.reason
    made = indexes(conn)[built.index_name or ""]
    assert "USING hash (c)" in made["def"] and made["valid"]
    assert made["comment"].startswith(MARKER)
    assert executor.apply(action).reason == "already built"
    assert executor.undo(action, built).state is ActionState.ROLLED_BACK
    assert set(indexes(conn)) == {"t_pkey", "by_hand"}


def test_apply_twice_is_idempotent(
    executor: Executor, table: TableRef, conn: db.Connection
) -> None:
    action = create(IndexSpec(table, ("a",)))
    assert executor.apply(action).state is ActionState.APPLIED
    again = executor.apply(action)
    assert again.state is ActionState.APPLIED and again.reason == "already built"
    assert len([n for n in indexes(conn) if n.startswith(NAME_PREFIX)]) == 1


# --- invariant 5: drops only what it made, and keeps the definition ---------------------------


def drop(name: str, table: TableRef = T) -> Action:
    return Action("d1", ActionKind.DROP_INDEX, table, index_name=name)


def test_invariant_5_refuses_to_drop_an_index_it_did_not_make(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    db.execute(conn, "CREATE INDEX theirs ON t (a)")
    policy = make_policy(dsn)  # allow_drop_foreign: false
    with Executor(dsn, None, policy) as ex:
        result = ex.apply(drop("theirs"))
    assert result.state is ActionState.REJECTED and "not made by pg-tuner" in result.reason
    assert "theirs" in indexes(conn)


def test_invariant_5_refuses_a_tuner_index_whose_marker_was_removed(
    executor: Executor, table: TableRef, conn: db.Connection
) -> None:
    built = executor.apply(create(IndexSpec(table, ("a",))))
    db.execute(
        conn, db.SQL("COMMENT ON INDEX {} IS NULL").format(db.Identifier(built.index_name or ""))
    )
    assert executor.apply(drop(built.index_name or "")).state is ActionState.REJECTED
    assert built.index_name in indexes(conn)


@pytest.mark.parametrize(
    ("ddl", "name", "why"),
    [
        ("SELECT 1", "t_pkey", "backs a constraint"),
        ("ALTER TABLE t ADD CONSTRAINT t_ab UNIQUE (a, b, id)", "t_ab", "backs a constraint"),
        ("CREATE UNIQUE INDEX t_uc ON t (c)", "t_uc", "unique"),
        ("CREATE TABLE r (id int REFERENCES t (id))", "t_pkey", "backs a constraint"),
        (
            "ALTER TABLE t ADD CONSTRAINT t_no_overlap EXCLUDE USING btree (c WITH =)",
            "t_no_overlap",
            "backs a constraint",
        ),
    ],
)
def test_invariant_5_never_drops_an_index_backing_a_constraint(
    dsn: str, table: TableRef, conn: db.Connection, ddl: str, name: str, why: str
) -> None:
    # Tried: primary key, unique constraint, unique index, FK target, exclusion constraint,
    # with allow_drop_foreign: true.
    db.execute(conn, ddl)
    policy = make_policy(dsn, allow_drop_foreign=True)
    with Executor(dsn, None, policy) as ex:
        result = ex.apply(drop(name))
    assert result.state is ActionState.REJECTED and why in result.reason
    assert name in indexes(conn)


def test_invariant_5_never_drops_the_replica_identity(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    db.execute(conn, "ALTER TABLE t ALTER COLUMN a SET NOT NULL")
    db.execute(conn, "CREATE UNIQUE INDEX t_ident ON t (a, id)")
    db.execute(conn, "ALTER TABLE t REPLICA IDENTITY USING INDEX t_ident")
    policy = make_policy(dsn, allow_drop_foreign=True)
    with Executor(dsn, None, policy) as ex:
        result = ex.apply(drop("t_ident"))
    assert result.state is ActionState.REJECTED and "replica identity" in result.reason
    assert "t_ident" in indexes(conn)


def test_invariant_5_definition_is_handed_over_before_the_drop(
    executor: Executor, table: TableRef, conn: db.Connection, dsn: str
) -> None:
    built = executor.apply(create(IndexSpec(table, ("a", "b"), ("c",), (True, False))))
    name = built.index_name or ""
    seen: list[tuple[str, bool]] = []

    def journal(definition: str) -> None:
        with db.connect(dsn) as other:  # the index must still exist when this is called
            seen.append((definition, name in indexes(other)))

    result = executor.apply(drop(name), before_drop=journal)
    assert result.state is ActionState.APPLIED
    assert seen == [(built.index_definition, True)]
    assert result.index_definition == built.index_definition and result.tuner_made
    assert name not in indexes(conn)
    # rollback recreates it from the definition, with its name and the marker
    undone = executor.undo(drop(name), result)
    assert undone.state is ActionState.ROLLED_BACK
    again = indexes(conn)[name]
    assert again["def"] == built.index_definition and again["valid"]
    assert again["comment"].startswith(MARKER)


def test_invariant_5_a_failing_journal_stops_the_drop(
    executor: Executor, table: TableRef, conn: db.Connection
) -> None:
    # Tried: the journal write fails (disk full); the drop must not happen without it.
    built = executor.apply(create(IndexSpec(table, ("a",))))

    def journal(definition: str) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        executor.apply(drop(built.index_name or ""), before_drop=journal)
    assert built.index_name in indexes(conn)


def test_invariant_5_foreign_drop_when_allowed_round_trips(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    db.execute(conn, 'CREATE INDEX "Theirs ""odd""" ON t (b DESC) INCLUDE (c)')
    before = indexes(conn)['Theirs "odd"']["def"]
    policy = make_policy(dsn, allow_drop_foreign=True)
    with Executor(dsn, None, policy) as ex:
        result = ex.apply(drop('Theirs "odd"'))
        assert result.state is ActionState.APPLIED and result.index_definition == before
        assert not result.tuner_made
        assert ex.undo(drop('Theirs "odd"'), result).state is ActionState.ROLLED_BACK
    after = indexes(conn)['Theirs "odd"']
    assert after["def"] == before and after["comment"] is None  # not marked as the tuner's


def test_invariant_5_a_foreign_hash_index_drop_round_trips(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    """A hash index is now a shape the whitelist can recreate: dropped where the policy
    allows foreign drops, its journaled definition builds it back unchanged."""
    db.execute(conn, "CREATE INDEX their_hash ON t USING hash (c)")
    before = indexes(conn)["their_hash"]["def"]
    with Executor(dsn, None, make_policy(dsn, allow_drop_foreign=True)) as ex:
        result = ex.apply(drop("their_hash"))
        assert result.state is ActionState.APPLIED and result.index_definition == before
        assert "their_hash" not in indexes(conn)
        assert ex.undo(drop("their_hash"), result).state is ActionState.ROLLED_BACK
    assert indexes(conn)["their_hash"]["def"] == before


def test_invariant_5_refuses_a_foreign_index_rollback_could_not_recreate(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    db.execute(conn, "CREATE INDEX partial ON t (a) WHERE b > 3")
    db.execute(conn, "CREATE INDEX expr ON t ((a + b))")
    policy = make_policy(dsn, allow_drop_foreign=True)
    with Executor(dsn, None, policy) as ex:
        for name in ("partial", "expr"):
            result = ex.apply(drop(name))
            assert (
                result.state is ActionState.REJECTED and "could not be recreated" in result.reason
            )
    assert {"partial", "expr"} <= set(indexes(conn))


def test_undo_of_a_build_drops_it(executor: Executor, table: TableRef, conn: db.Connection) -> None:
    action = create(IndexSpec(table, ("a",)))
    built = executor.apply(action)
    undone = executor.undo(action, built)
    assert undone.state is ActionState.ROLLED_BACK
    assert built.index_name not in indexes(conn)


# --- analyze, vacuum, reindex ------------------------------------------------------------------


def test_maintenance_actions_run(executor: Executor, table: TableRef, conn: db.Connection) -> None:
    for kind in (ActionKind.ANALYZE, ActionKind.VACUUM):
        assert executor.apply(Action("m", kind, table)).state is ActionState.APPLIED
    deadline = time.monotonic() + 5  # 14's statistics collector shows them a moment later
    while True:
        stats = db.fetch(
            conn, "SELECT last_analyze, last_vacuum FROM pg_stat_user_tables WHERE relname = 't'"
        )[0]
        if None not in stats.values() or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert stats["last_analyze"] is not None and stats["last_vacuum"] is not None
    built = executor.apply(create(IndexSpec(table, ("a",))))
    reindex = executor.apply(Action("r", ActionKind.REINDEX, table, index_name=built.index_name))
    assert reindex.state is ActionState.APPLIED
    assert indexes(conn)[built.index_name or ""]["valid"]


# --- invariant 8: one leader per database -----------------------------------------------------


def test_invariant_8_second_tuner_is_refused_and_observes(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    first, second = make_executor(dsn), make_executor(dsn)
    try:
        assert first.leadership.acquire()
        assert not second.leadership.acquire()
        result = second.apply(create(IndexSpec(table, ("a",))))
        assert result.state is ActionState.REJECTED and "not the leader" in result.reason
        assert [n for n in indexes(conn) if n.startswith(NAME_PREFIX)] == []
        assert second.cleanup_invalid() == []
        holders = db.fetch(
            conn,
            "SELECT a.application_name AS app FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        assert holders == [{"app": "pg-tuner"}]
        first.close()  # the leader stops: the lock passes on
        assert second.apply(create(IndexSpec(table, ("a",)))).state is ActionState.APPLIED
    finally:
        first.close()
        second.close()


def test_invariant_8_leaders_of_different_databases_do_not_block_each_other(
    pg_server: Server, dsn: str
) -> None:
    other = pg_server.create_database("t_executor_other_db")
    try:
        with make_executor(dsn) as one, make_executor(other) as two:
            assert one.leadership.acquire() and two.leadership.acquire()
    finally:
        pg_server.drop_database("t_executor_other_db")


def test_invariant_8_lock_is_taken_again_after_the_session_is_lost(
    dsn: str, table: TableRef, conn: db.Connection
) -> None:
    with make_executor(dsn) as ex:
        assert ex.leadership.acquire()
        db.execute(
            conn,
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'",
        )
        assert ex.apply(create(IndexSpec(table, ("a",)))).state is ActionState.APPLIED
        assert ex.leadership.held


def test_a_same_named_index_with_a_comment_of_its_own_is_neither_adopted_nor_retagged(
    conn: db.Connection, table: TableRef, executor: Executor
) -> None:
    """Tried: an index named exactly as the tuner names (t.a), on t (a), commented by its
    team; and one of that name on another table. Before: adopted "already built", its
    comment overwritten with the marker, then dropped by the undo."""
    spec = IndexSpec(T, ("a",))
    name = index_name(spec)
    db.execute(conn, f'CREATE INDEX "{name}" ON t (a)')
    db.execute(conn, f"COMMENT ON INDEX \"{name}\" IS 'team-b'")
    result = executor.apply(create(spec))
    assert result.state is ActionState.REJECTED, result
    assert "equivalent index" in (result.reason or ""), result.reason
    assert indexes(conn)[name]["comment"] == "team-b"
    undone = executor.undo(create(spec), ActionResult("a1", ActionKind.CREATE_INDEX,
                           ActionState.APPLIED, index_name=name, tuner_made=True))  # fmt: skip
    assert undone.state is ActionState.FAILED and "not the one" in (undone.reason or "")
    assert indexes(conn)[name]["comment"] == "team-b"
