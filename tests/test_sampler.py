"""The sampler against a real PostgreSQL: content, exact windows, privileges, missing extension."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.plugins.postgres import Server
from tuner import db, workload
from tuner.errors import Canceled, DatabaseUnavailable, MissingExtension
from tuner.health import index_findings
from tuner.models import Snapshot, TableRef
from tuner.sampler import Sampler, fingerprint, normalize
from tuner.sandbox import Sandbox


def dbname(dsn: str) -> str:
    return str(db.conninfo_to_dict(dsn)["dbname"])


@pytest.fixture
def sampler(dsn: str) -> Iterator[Sampler]:
    with Sampler.from_dsn(dsn) as s:
        yield s


@pytest.fixture
def monitor_role(pg_server: Server, dsn: str) -> Iterator[str]:
    """A login role with nothing but pg_monitor."""
    name = f"monitor_{dbname(dsn)[-20:]}"
    with db.connect(pg_server.admin_dsn) as admin:
        db.execute(admin, db.SQL("DROP ROLE IF EXISTS {}").format(db.Identifier(name)))
        db.execute(admin, db.SQL("CREATE ROLE {} LOGIN").format(db.Identifier(name)))
        db.execute(admin, db.SQL("GRANT pg_monitor TO {}").format(db.Identifier(name)))
    yield name
    with db.connect(pg_server.admin_dsn) as admin:
        db.execute(admin, db.SQL("DROP ROLE IF EXISTS {}").format(db.Identifier(name)))


SCHEMA = """
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, note text, code text NOT NULL UNIQUE);
CREATE INDEX orders_customer_idx ON orders (customer_id) INCLUDE (note);
CREATE INDEX orders_lower_note_idx ON orders (lower(note)) WHERE customer_id > 3;
COMMENT ON INDEX orders_customer_idx IS 'pg-tuner: made by the tuner';
ALTER TABLE orders REPLICA IDENTITY USING INDEX orders_code_key;
INSERT INTO orders SELECT g, g % 100, 'note ' || g, 'c' || g FROM generate_series(1, 2000) g;
ANALYZE orders;
"""


def test_snapshot_reads_queries_tables_and_indexes_of_this_database(
    conn: Any, sampler: Sampler, pg_server: Server
) -> None:
    for statement in SCHEMA.strip().split(";\n"):
        db.execute(conn, statement)
    for customer in range(5):
        db.fetch(conn, "SELECT count(*) FROM orders WHERE customer_id = %s", (customer,))
    other = pg_server.create_database("t_sampler_other")
    with db.connect(other) as elsewhere:
        db.execute(elsewhere, "CREATE TABLE elsewhere (id int)")
        db.fetch(elsewhere, "SELECT count(*) FROM elsewhere WHERE id = 1")
    pg_server.drop_database("t_sampler_other")
    db.fetch(conn, "SELECT pg_stat_force_next_flush()")  # table counters reach the server now

    shot = sampler.sample()

    assert shot.taken_at.tzinfo is not None
    assert shot.server.version_num >= 140000 and shot.server.max_connections > 0
    assert shot.server.database == dbname(conn.info.dsn)
    assert shot.round_trips == 4  # the first sample also reads texts and index definitions
    texts = {q.query: q for q in shot.queries}
    counted = texts["SELECT count(*) FROM orders WHERE customer_id = $1"]
    assert counted.calls == 5 and counted.rows == 5 and counted.total_exec_time > 0
    assert all(q.dbid == shot.server.dbid for q in shot.queries)
    assert not any("elsewhere" in q.query for q in shot.queries)
    assert not any(q.query.startswith("/* pg-tuner") for q in shot.queries)
    assert [t.table for t in shot.tables] == [TableRef("public", "orders")]
    (orders,) = shot.tables
    assert orders.n_tup_ins == 2000 and orders.size_bytes > 0 and orders.indexes_bytes > 0
    indexes = {i.name: i for i in shot.indexes}
    assert set(indexes) == {"orders_pkey", "orders_code_key", "orders_customer_idx",
                            "orders_lower_note_idx"}  # fmt: skip
    assert indexes["orders_pkey"].is_primary and indexes["orders_pkey"].backs_constraint
    assert indexes["orders_code_key"].is_replica_identity
    made = indexes["orders_customer_idx"]
    assert (made.columns, made.include, made.comment) == (
        ("customer_id",), ("note",), "pg-tuner: made by the tuner")  # fmt: skip
    assert made.idx_scan >= 1 and made.size_bytes > 0 and not made.backs_constraint
    assert made.definition.startswith("CREATE INDEX orders_customer_idx ON public.orders")
    partial = indexes["orders_lower_note_idx"]
    assert partial.columns == ("lower(note)",) and partial.predicate == "customer_id > 3"
    assert shot.disabled == ()


def test_window_of_a_known_workload_has_its_exact_mean_and_variance(
    conn: Any, sampler: Sampler
) -> None:
    # History before the window, so that the backwards combination has work to do.
    for _ in range(10):
        db.fetch(conn, "SELECT pg_sleep(%s)", (0.005,))
    before = sampler.sample()
    durations_ms = [10.0 * k for k in range(1, 11)] * 2
    for ms in durations_ms:
        db.fetch(conn, "SELECT pg_sleep(%s)", (ms / 1000,))
    after = sampler.sample()

    window = workload.diff(before, after)

    (q,) = [q for q in window.queries if q.query == "SELECT pg_sleep($1)"]
    assert q.valid and q.calls == 20
    # pg_sleep overshoots by a little timer noise, never undershoots.
    assert 0 <= q.mean_ms - statistics.fmean(durations_ms) < 5.0
    assert q.variance_ms2 == pytest.approx(statistics.variance(durations_ms), rel=0.10)
    assert window.seconds >= sum(durations_ms) / 1000


def test_texts_and_definitions_are_read_once_and_again_when_they_change(
    conn: Any, sampler: Sampler
) -> None:
    db.execute(conn, "CREATE TABLE t (a int, b int)")
    db.execute(conn, "CREATE INDEX t_a_idx ON t (a)")
    first = sampler.sample()
    assert first.round_trips == 4
    # The second sample reads the texts of the first one's own statements (left out after).
    assert [sampler.sample().round_trips for _ in range(2)] == [3, 2]
    db.fetch(conn, "SELECT b FROM t WHERE a = %s", (1,))  # a new statement: its text is read
    new_text = sampler.sample()
    assert new_text.round_trips == 3
    assert "SELECT b FROM t WHERE a = $1" in {q.query for q in new_text.queries}
    db.execute(conn, "ALTER INDEX t_a_idx RENAME TO t_by_a")  # the definition names it
    renamed = sampler.sample()
    assert renamed.round_trips == 4  # the ALTER is a new statement too
    (index,) = renamed.indexes
    assert index.definition == "CREATE INDEX t_by_a ON public.t USING btree (a)"
    db.execute(conn, "ALTER TABLE t RENAME TO u")
    (index,) = sampler.sample().indexes
    assert index.definition == "CREATE INDEX t_by_a ON public.u USING btree (a)"
    assert index.table == TableRef("public", "u")


def test_a_reset_between_samples_invalidates_the_window(conn: Any, sampler: Sampler) -> None:
    db.fetch(conn, "SELECT 1 + %s", (1,))
    before = sampler.sample()
    db.fetch(conn, "SELECT pg_stat_statements_reset()")
    db.fetch(conn, "SELECT 1 + %s", (1,))
    after = sampler.sample()
    window = workload.diff(before, after)
    assert window.stats_reset
    assert window.queries and not window.valid_queries
    assert after.stats_reset is not None and after.stats_reset != before.stats_reset


def test_a_pg_monitor_role_sees_every_statement_in_at_most_five_round_trips(
    pg_server: Server, dsn: str, conn: Any, monitor_role: str
) -> None:
    db.execute(conn, "CREATE TABLE secret_orders (id int PRIMARY KEY, total int)")
    db.fetch(conn, "SELECT * FROM secret_orders WHERE total > %s", (10,))

    with Sampler.from_dsn(pg_server.dsn(dbname(dsn), user=monitor_role)) as sampler:
        shots = [sampler.sample() for _ in range(3)]

    shot = shots[-1]
    assert shot.disabled == ()
    texts = {q.query for q in shot.queries}
    assert "SELECT * FROM secret_orders WHERE total > $1" in texts
    assert "<insufficient privilege>" not in texts
    assert [t.table.name for t in shot.tables] == ["secret_orders"]
    assert [i.name for i in shot.indexes] == ["secret_orders_pkey"]
    # Count the sampler's statements on the server: everything that role ran is ours.
    rows = db.fetch(
        conn,
        "SELECT sum(calls)::int AS calls FROM pg_stat_statements "
        "WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = %s) AND toplevel",
        (monitor_role,),
    )
    assert rows[0]["calls"] == sum(s.round_trips for s in shots)
    assert [s.round_trips for s in shots] == [4, 3, 2]  # texts and definitions are kept


def test_a_role_without_pg_monitor_samples_with_the_gap_named(
    pg_server: Server, dsn: str, conn: Any
) -> None:
    db.execute(conn, "DROP ROLE IF EXISTS t_sampler_plain")
    db.execute(conn, "CREATE ROLE t_sampler_plain LOGIN")
    db.fetch(conn, "SELECT 40 + %s", (2,))
    try:
        with Sampler.from_dsn(pg_server.dsn(dbname(dsn), user="t_sampler_plain")) as sampler:
            shot = sampler.sample()
        assert len(shot.disabled) == 1
        assert "GRANT pg_monitor TO t_sampler_plain" in shot.disabled[0]
        # Statements of other roles are hidden (text and queryid), but nothing crashes.
        assert not any("40 +" in q.query for q in shot.queries)
        assert shot.tables == () and shot.server.version_num >= 140000
    finally:
        db.execute(conn, "DROP ROLE IF EXISTS t_sampler_plain")


def test_missing_extension_says_which_sql_to_run(conn: Any, sampler: Sampler) -> None:
    # Tried: sampling a database where pg_stat_statements was dropped.
    db.execute(conn, "DROP EXTENSION pg_stat_statements")
    with pytest.raises(MissingExtension) as raised:
        sampler.sample()
    message = str(raised.value)
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;" in message
    assert "not created in database" in message


def test_not_preloaded_says_what_to_change_in_postgresql_conf() -> None:
    # Tried: a server started without pg_stat_statements in shared_preload_libraries.
    with Sandbox(settings={"shared_preload_libraries": "''"}, require_hypopg=False) as sandbox:
        dsn = sandbox.create_database("app")
        with Sampler.from_dsn(dsn) as sampler, pytest.raises(MissingExtension) as raised:
            sampler.sample()
    message = str(raised.value)
    assert "shared_preload_libraries = 'pg_stat_statements'" in message
    assert "restart PostgreSQL" in message
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;" in message


def test_statements_cancelled_by_statement_timeout_are_kept_as_long_running(
    dsn: str, conn: Any
) -> None:
    def slow() -> None:
        with (
            db.connect(dsn, statement_timeout=timedelta(seconds=2)) as other,
            contextlib.suppress(Canceled),
        ):
            db.fetch(other, "SELECT pg_sleep(30), 'needle-7' AS tag")

    thread = threading.Thread(target=slow)
    thread.start()
    with Sampler.from_dsn(dsn) as sampler:
        sampler.long_query = timedelta(seconds=0.5)
        shot = _until(sampler, lambda s: bool(s.long_running))
        thread.join()
        later = sampler.sample()

    (running,) = shot.long_running
    assert running.query == "SELECT pg_sleep(30), 'needle-7' AS tag"
    assert running.duration >= 0.5 and running.wait_event == "PgSleep"
    assert running.fingerprint == fingerprint("select pg_sleep(5), 'other' as tag")
    assert not any("needle" in q.query or "pg_sleep" in q.query for q in later.queries)
    (group,) = workload.diff(shot, later).long_running
    assert group.count == 1 and group.example == running.query


def _until(sampler: Sampler, done: Any, timeout: float = 10.0) -> Snapshot:
    deadline = time.monotonic() + timeout
    while True:
        shot = sampler.sample()
        if done(shot) or time.monotonic() > deadline:
            return shot
        time.sleep(0.1)


def test_an_index_build_in_progress_is_reported_with_its_phase(dsn: str, conn: Any) -> None:
    db.execute(conn, "CREATE TABLE t (id int, a int)")
    db.execute(conn, "INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g")
    blocker = db.connect(dsn, autocommit=False)
    db.execute(blocker, "INSERT INTO t VALUES (0, 0)")  # an open writer: the build waits

    def build() -> None:
        with db.connect(dsn) as other:
            db.execute(other, "CREATE INDEX CONCURRENTLY t_a_idx ON t (a)")

    thread = threading.Thread(target=build)
    thread.start()
    try:
        with Sampler.from_dsn(dsn) as sampler:
            # Wait past 'initializing', before which PostgreSQL has no index oid to report.
            shot = _until(
                sampler,
                lambda s: any(b.phase.startswith("waiting for") for b in s.server.index_builds),
            )
    finally:
        blocker.rollback()
        blocker.close()
        thread.join()

    (progress,) = shot.server.index_builds
    assert progress.table == TableRef("public", "t")
    assert progress.index == "public.t_a_idx"
    assert progress.command == "CREATE INDEX CONCURRENTLY"
    assert progress.phase.startswith("waiting for")
    assert shot.server.waiting_locks >= 1
    assert shot.server.oldest_xact_age is not None
    # The not-yet-valid index under construction is not reported as a broken one.
    assert not [f for f in index_findings(shot) if f.kind == "invalid"]


def test_a_lost_connection_fails_one_sample_and_the_next_reconnects(
    conn: Any, sampler: Sampler
) -> None:
    first = sampler.sample()
    pids = db.fetch(
        conn,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'pg-tuner' "
        "AND datname = current_database() AND pid <> pg_backend_pid()",
    )
    for row in pids:
        db.fetch(conn, "SELECT pg_terminate_backend(%s)", (row["pid"],))
    with pytest.raises(DatabaseUnavailable):
        sampler.sample()
    assert sampler.sample().taken_at > first.taken_at


def test_normalize_folds_literals_comments_and_in_lists() -> None:
    assert normalize("SELECT * FROM t WHERE a = 'x''y' AND b IN (1, 2, 3) -- hi\n") == (
        "select * from t where a = ? and b in (?)"
    )
    assert fingerprint("SELECT $1::int") == fingerprint("select 42::int")
    # TPC-H Q7-Q9 as pg_stat_statements stores them and as a client sends them: one statement
    assert fingerprint("select extract($1 from o_orderdate) as o_year from orders") == (
        fingerprint("SELECT EXTRACT(YEAR FROM o_orderdate) AS o_year FROM orders")
    )


def test_counters_match_the_pg_stat_user_views_and_renames_show_at_once(
    conn: Any, sampler: Sampler
) -> None:
    for statement in (
        "CREATE TABLE plain (a int)",  # no index: idx_scan and idx_tup_fetch are 0, not NULL
        "CREATE TABLE t (id int PRIMARY KEY, a int)",
        "CREATE INDEX t_a_idx ON t (a)",
        "CREATE TABLE parted (id int, k int) PARTITION BY RANGE (id)",
        "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000)",
        "CREATE INDEX ON parted (k)",
        "INSERT INTO plain SELECT g FROM generate_series(1, 50) g",
        "INSERT INTO t SELECT g, g % 7 FROM generate_series(1, 500) g",
        "INSERT INTO parted SELECT g, g FROM generate_series(1, 500) g",
        "CREATE MATERIALIZED VIEW mv AS SELECT a FROM plain",
        "ANALYZE",
    ):
        db.execute(conn, statement)
    with db.connect(conn.info.dsn) as other:  # scans by another session, on every kind
        db.execute(other, "SET enable_seqscan = off")
        for query in ("SELECT * FROM t WHERE a = 3", "SELECT * FROM t WHERE id = 9",
                      "SELECT * FROM parted WHERE k = 5", "SELECT count(*) FROM plain",
                      "SELECT count(*) FROM mv"):  # fmt: skip
            db.fetch(other, query)
        db.fetch(other, "SELECT pg_stat_force_next_flush()")
    db.execute(conn, "SELECT pg_stat_force_next_flush()")

    def views() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        tables = db.fetch(conn, "SELECT * FROM pg_stat_user_tables")
        indexes = db.fetch(conn, "SELECT * FROM pg_stat_user_indexes")
        return tables, indexes

    before = views()
    shot = sampler.sample()
    assert views() == before  # nothing moved while sampling: the comparison below is exact
    tables, indexes = before
    columns = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_ins",
               "n_tup_upd", "n_tup_del", "n_tup_hot_upd", "n_live_tup", "n_dead_tup",
               "n_mod_since_analyze", "last_analyze", "last_autoanalyze")  # fmt: skip
    expected = {(r["relid"], r["schemaname"], r["relname"], *(r[c] or 0 for c in columns))
                for r in tables}  # fmt: skip
    sampled = {(t.relid, t.table.schema, t.table.name, *(getattr(t, c) or 0 for c in columns))
               for t in shot.tables}  # fmt: skip
    assert sampled == expected
    assert {t.table.name for t in shot.tables} == {"plain", "t", "parted", "parted_1", "mv"}
    assert next(t for t in shot.tables if t.table.name == "t").idx_scan >= 2
    expected_indexes = {
        (r["indexrelid"], r["schemaname"], r["relname"], r["indexrelname"], r["idx_scan"],
         r["idx_tup_read"], r["idx_tup_fetch"]) for r in indexes
    }  # fmt: skip
    sampled_indexes = {
        (i.indexrelid, i.schema, i.table.name, i.name, i.idx_scan, i.idx_tup_read,
         i.idx_tup_fetch) for i in shot.indexes
    }  # fmt: skip
    assert sampled_indexes == expected_indexes

    db.execute(conn, "CREATE SCHEMA app")
    db.execute(conn, "ALTER TABLE t SET SCHEMA app")
    renamed = sampler.sample()
    assert {i.ref for i in renamed.indexes if i.table.name == "t"} == {"app.t_pkey", "app.t_a_idx"}
    db.execute(conn, "ALTER SCHEMA app RENAME TO shop")  # no pg_class row changes
    db.execute(conn, "ALTER INDEX shop.t_a_idx RENAME TO t_a_key")
    db.execute(conn, "ALTER TABLE shop.t RENAME TO items")
    renamed = sampler.sample()
    assert {i.ref for i in renamed.indexes if i.table == TableRef("shop", "items")} == {
        "shop.t_pkey", "shop.t_a_key"}  # fmt: skip
    assert TableRef("shop", "items") in {t.table for t in renamed.tables}


def test_the_samplers_own_reads_never_enter_the_workload(conn: Any, sampler: Sampler) -> None:
    """Its catalog reads are marked; PostgreSQL 18 drops a leading comment from the text
    pg_stat_statements keeps, so the mark ends them too. Tried three samples on every
    version CI runs: none of the sampler's reads is among the statements it reports."""
    for _ in range(3):
        snapshot = sampler.sample()
    own = [q.query for q in snapshot.queries if q.query.startswith(("SELECT", "WITH"))
           and ("pg_stat_statements" in q.query or "pg_stat_user_tables" in q.query)]  # fmt: skip
    assert own == []
    db.fetch(conn, "SELECT 1 AS application_statement")
    assert any("application_statement" in q.query for q in sampler.sample().queries)
