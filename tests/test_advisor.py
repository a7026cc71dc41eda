"""The advisor against the real server: a workload in pg_stat_statements → the right indexes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from tuner import db
from tuner.advisor import Advice, Advisor, statement_key
from tuner.candidates import candidates_for, covered_by, maintenance_proposals, shield_for
from tuner.labels import label
from tuner.models import (
    Confidence,
    IndexSpec,
    IndexStat,
    ProposalKind,
    TableActivity,
    TableRef,
    Trap,
)
from tuner.observe import observe
from tuner.sqlinfo import QueryInfo, analyze
from tuner.whatif import ColumnFacts, TableFacts, WorkloadQuery, estimate_size, read_schema

pytestmark = pytest.mark.hypopg  # advice is costed with HypoPG

MB = 1024 * 1024


def load(dsn: str, *statements: str) -> None:
    """Run setup statements in their own session, then start the statistics afresh."""
    with db.connect(dsn) as setup:
        for statement in statements:
            db.execute(setup, statement)
    with db.connect(dsn) as conn:
        db.execute(conn, "SELECT pg_stat_reset()")
        db.execute(
            conn,
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
            " WHERE datname = current_database()), 0)",
        )


def run(dsn: str, calls: Sequence[tuple[str, Sequence[Any]]], repeat: int = 20) -> None:
    """Run the workload with bound parameters, as an application would."""
    with db.connect(dsn) as conn:
        for n in range(repeat):
            for text, params in calls:
                db.fetch(conn, text, [p if p != "n" else n for p in params])
        db.execute(conn, "SELECT pg_stat_force_next_flush()")


def advise(
    dsn: str,
    conn: db.Connection | None = None,
    excluded: Sequence[IndexSpec] = (),
    **options: Any,
) -> Advice:
    options.setdefault("budget", 1024 * MB)
    with db.connect(dsn) if conn is None else _borrow(conn) as session:
        schema = read_schema(session)
        seen = observe(session)
        return Advisor(session, schema, **options).advise(
            seen.queries, seen.tables, seen.indexes, seen.stats_age, seen.seconds, excluded
        )


class _borrow:
    def __init__(self, conn: db.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> db.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        return None


def queryid(conn: db.Connection, fragment: str) -> int:
    rows = db.fetch(
        conn,
        "SELECT queryid FROM pg_stat_statements WHERE query = %s"
        " AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (fragment,),
    )
    assert len(rows) == 1, rows
    return int(rows[0]["queryid"])


ORDERS = (
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,"
    " placed_at timestamptz NOT NULL, total numeric(10,2), note text)",
    "INSERT INTO orders SELECT g, g % 5000, (ARRAY['new','paid','sent','void'])[1 + g % 4],"
    " timestamptz '2024-01-01' + (g % 900) * interval '1 hour', g % 300, repeat('x', 40)"
    " FROM generate_series(1, 100000) g",
    "ANALYZE orders",
)
BY_CUSTOMER = "SELECT id, total FROM orders WHERE customer_id = %s"
BY_CUSTOMER_STATUS = "SELECT id FROM orders WHERE customer_id = %s AND status = %s"


@pytest.mark.hypopg
def test_a_missing_index_is_proposed_and_really_lowers_the_cost(dsn: str) -> None:
    load(dsn, *ORDERS)
    run(dsn, [(BY_CUSTOMER, ["n"])])
    advice = advise(dsn)
    [proposal] = advice.indexes
    assert proposal.columns[0] == "customer_id"
    assert proposal.confidence is Confidence.HIGH
    assert proposal.ddl.startswith("CREATE INDEX CONCURRENTLY")
    [served] = proposal.queries
    assert served.cost_after is not None and served.cost_after < served.cost_before / 10
    assert served.calls == 20
    assert advice.workload_cost_after < advice.workload_cost_before / 10
    assert proposal.hypopg_size_bytes and proposal.estimated_size_bytes < proposal.hypopg_size_bytes
    assert "customer_id" in proposal.reason and "20 times" in proposal.reason
    # Build it: the real plan's cost falls as the what-if said.
    with db.connect(dsn) as conn:
        explain = "EXPLAIN (FORMAT JSON) SELECT id, total FROM orders WHERE customer_id = 42"
        before = db.fetch(conn, explain)[0]["QUERY PLAN"][0]["Plan"]["Total Cost"]
        db.execute(conn, proposal.ddl)
        after = db.fetch(conn, explain)[0]["QUERY PLAN"][0]["Plan"]["Total Cost"]
        real = db.fetch(conn, "SELECT pg_relation_size(%s::regclass) AS s", (proposal.index_name,))
    assert after < before / 10
    assert abs(real[0]["s"] - proposal.estimated_size_bytes) / real[0]["s"] < 0.25


def test_an_existing_index_prevents_a_duplicate(dsn: str) -> None:
    load(dsn, *ORDERS, "CREATE INDEX orders_customer ON orders (customer_id, status)")
    run(dsn, [(BY_CUSTOMER, ["n"]), (BY_CUSTOMER_STATUS, ["n", "paid"])])
    advice = advise(dsn)
    assert not [p for p in advice.indexes if p.columns[0] == "customer_id"]
    assert advice.indexes == ()  # and nothing else gains 5 % either


@pytest.mark.hypopg
def test_two_queries_share_one_composite_index_rather_than_two(dsn: str) -> None:
    load(dsn, *ORDERS)
    run(dsn, [(BY_CUSTOMER, ["n"]), (BY_CUSTOMER_STATUS, ["n", "paid"])])
    advice = advise(dsn)
    [proposal] = advice.indexes
    assert proposal.columns[:2] == ("customer_id", "status") or (
        proposal.columns[0] == "customer_id" and "status" in proposal.include
    )
    with db.connect(dsn) as conn:
        both = {
            queryid(conn, BY_CUSTOMER.replace("%s", "$1")),
            queryid(conn, BY_CUSTOMER_STATUS.replace("%s", "$1", 1).replace("%s", "$2")),
        }
    assert {q.queryid for q in proposal.queries} == both


def test_the_storage_budget_is_respected(dsn: str) -> None:
    tables = [
        f"CREATE TABLE t{n} AS SELECT g AS id, g % 20000 AS k, g AS v"
        " FROM generate_series(1, 60000) g"
        for n in range(3)
    ]
    load(dsn, *tables, *(f"ANALYZE t{n}" for n in range(3)))
    run(dsn, [(f"SELECT v FROM t{n} WHERE k = %s", ["n"]) for n in range(3)], repeat=5)
    everything = advise(dsn, include_columns=False)
    sizes = sorted(p.estimated_size_bytes for p in everything.indexes)
    assert len(sizes) == 3
    budget = sizes[0] + sizes[1] + sizes[2] // 2  # room for two of the three
    limited = advise(dsn, budget=budget, include_columns=False)
    assert len(limited.indexes) == 2
    assert sum(p.estimated_size_bytes for p in limited.indexes) <= budget
    assert advise(dsn, budget=0).indexes == ()


@pytest.mark.hypopg
def test_a_write_heavy_table_gets_no_index(dsn: str) -> None:
    """Two identical tables and the same lookups; one also takes 50,000 inserts."""
    make = (
        "CREATE TABLE {0} AS SELECT g AS id, g % 2000 AS k, g AS v FROM generate_series(1, 50000) g"
    )
    load(dsn, make.format("quiet"), make.format("busy"), "ANALYZE quiet", "ANALYZE busy")
    lookups = ("SELECT v FROM quiet WHERE k = %s", "SELECT v FROM busy WHERE k = %s")
    run(dsn, [(text, ["n"]) for text in lookups], repeat=3)
    with db.connect(dsn) as conn:
        db.execute(conn, "INSERT INTO busy SELECT g, g % 2000, g FROM generate_series(1, 50000) g")
        db.execute(conn, "SELECT pg_stat_force_next_flush()")
    advice = advise(dsn)
    assert [p.table.name for p in advice.indexes] == ["quiet"]
    # Without a write cost, both would be proposed.
    assert {p.table.name for p in advise(dsn, write_cost_per_row=0).indexes} == {"quiet", "busy"}


@pytest.mark.hypopg
def test_a_random_key_looked_up_by_equality_on_a_written_table_gets_a_hash_index(
    dsn: str,
) -> None:
    """events: a uuid key in no order and a serial number in heap order, each looked up by
    `=`, while rows are inserted. The uuid gets a hash index (a write adds a 4-byte code to
    a bucket, not the key to a random leaf); the serial number keeps a btree (new keys go to
    its last leaf). Without writes, both are btrees."""
    make = ("CREATE TABLE {0} (id bigint PRIMARY KEY, trace_id uuid NOT NULL, seq bigint NOT"
            " NULL, payload text) ; INSERT INTO {0} SELECT g, gen_random_uuid(), g,"
            " repeat('x', 60) FROM generate_series(1, 60000) g")  # fmt: skip
    load(dsn, make.format("events"), make.format("quiet"), "ANALYZE events", "ANALYZE quiet")
    with db.connect(dsn) as conn:  # the statements' window starts at a global reset only;
        db.fetch(conn, "SELECT pg_stat_statements_reset()")  # else it spans earlier tests
    key = "00000000-0000-0000-0000-000000000001"
    lookups = [(f"SELECT payload FROM {t} WHERE {c} = %s", [v]) for t in ("events", "quiet")
               for c, v in (("trace_id", key), ("seq", "n"))]  # fmt: skip
    run(dsn, lookups, repeat=20)
    with db.connect(dsn) as conn:  # few rows: the advisor scales them to the queries' window
        db.execute(conn, "INSERT INTO events SELECT g, gen_random_uuid(), g, 'y'"
                         " FROM generate_series(60001, 60500) g")  # fmt: skip
        db.execute(conn, "SELECT pg_stat_force_next_flush()")
    advice = advise(dsn)
    methods = {(p.table.name, p.columns): p.method for p in advice.indexes}
    assert methods == {
        ("events", ("trace_id",)): "hash", ("events", ("seq",)): "btree",
        ("quiet", ("trace_id",)): "btree", ("quiet", ("seq",)): "btree",
    }  # fmt: skip
    # With hash indexes turned off in the policy (limits.hash_indexes), a btree.
    plain = advise(dsn, hash_indexes=False)
    assert {p.method for p in plain.indexes} == {"btree"} and len(plain.indexes) == 4
    [hashed] = [p for p in advice.indexes if p.method == "hash"]
    assert "USING hash" in hashed.ddl and "A hash index, not a btree" in hashed.reason
    with db.connect(dsn) as conn:  # built, the real plan uses it, and its size was foreseen
        db.execute(conn, hashed.ddl)
        plan = db.fetch(conn, "EXPLAIN (FORMAT JSON) SELECT payload FROM events"
                              f" WHERE trace_id = '{key}'")[0]["QUERY PLAN"]  # fmt: skip
        real = db.fetch(conn, "SELECT pg_relation_size(%s::regclass) AS s", (hashed.index_name,))
    assert plan[0]["Plan"].get("Index Name") == hashed.index_name
    assert abs(real[0]["s"] - hashed.estimated_size_bytes) / real[0]["s"] < 0.25
    # A hash index in place covers its own candidate: nothing is proposed for trace_id again.
    again = advise(dsn)
    assert ("events", ("trace_id",)) not in {(p.table.name, p.columns) for p in again.indexes}


def test_measured_time_not_planner_cost_decides_which_index_gets_the_budget(dsn: str) -> None:
    """Room for one index. `hot` is called often and measured slow; `cold` has the bigger
    planner cost (wider rows, more calls) but took a millisecond in all: `hot` wins."""
    load(
        dsn,
        "CREATE TABLE hot AS SELECT g AS id, g % 5000 AS k, g AS v"
        " FROM generate_series(1, 80000) g",
        "CREATE TABLE cold AS SELECT g AS id, g % 5000 AS k, repeat('x', 400) AS v"
        " FROM generate_series(1, 80000) g",
        "ANALYZE hot",
        "ANALYZE cold",
    )
    hot = WorkloadQuery(1, "SELECT v FROM hot WHERE k = $1", 50, 5000.0)
    cold = WorkloadQuery(2, "SELECT v FROM cold WHERE k = $1", 100, 1.0)
    with db.connect(dsn) as conn:
        schema = read_schema(conn)
        one = estimate_size(IndexSpec(TableRef("public", "cold"), ("k",)), schema.tables[
            TableRef("public", "cold")])  # fmt: skip
        limited = Advisor(conn, schema, budget=one * 3 // 2, include_columns=False)
        advice = limited.advise([hot, cold])
        # The same statements with no measured time: calls decide, and `cold` has more.
        unmeasured = limited.advise([replace(hot, total_ms=0.0), replace(cold, total_ms=0.0)])
    [chosen] = advice.indexes
    assert chosen.table.name == "hot" and chosen.columns == ("k",)
    [served] = chosen.queries
    # The planner did rate `cold` the bigger prize: more calls times a higher cost.
    assert advice.workload_cost_before - 50 * served.cost_before > 3 * 50 * served.cost_before
    assert [p.table.name for p in unmeasured.indexes] == ["cold"]


@pytest.mark.hypopg
def test_a_statement_with_no_measured_time_still_gets_its_index(dsn: str) -> None:
    """total_ms 0 (nothing measured): a floor per call keeps it in the running."""
    load(dsn, *ORDERS)
    unmeasured = WorkloadQuery(7, "SELECT id, total FROM orders WHERE customer_id = $1", 30, 0.0)
    with db.connect(dsn) as conn:
        advice = Advisor(conn, read_schema(conn), budget=1024 * MB).advise([unmeasured])
    [proposal] = advice.indexes
    assert proposal.columns[0] == "customer_id"
    # ... but a table that takes writes (a zero-time statement saves little) gets none.
    busy = TableActivity(TableRef("public", "orders"), 60.0, 100000, 100000, 0, 100000, 0, 0, 0,
                         None)  # fmt: skip
    with db.connect(dsn) as conn:
        advice = Advisor(conn, read_schema(conn), budget=1024 * MB).advise([unmeasured], [busy])
    assert advice.indexes == ()


@pytest.mark.hypopg
def test_no_hypothetical_index_is_left_after_advise(dsn: str) -> None:
    load(dsn, *ORDERS)
    run(dsn, [(BY_CUSTOMER, ["n"]), (BY_CUSTOMER_STATUS, ["n", "paid"])])
    with db.connect(dsn) as conn:
        advice = advise(dsn, conn=conn)
        assert advice.indexes and advice.explains > 2
        assert db.fetch(conn, "SELECT count(*) AS n FROM hypopg_list_indexes")[0]["n"] == 0
        ours = "SELECT count(*) AS n FROM pg_prepared_statements WHERE name LIKE 'pgtuner%%'"
        assert db.fetch(conn, ours)[0]["n"] == 0  # the driver's own may stay
        real = db.fetch(conn, "SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'orders'")
        assert real[0]["n"] == 1  # only the primary key: advise built nothing


def test_a_query_that_cannot_be_prepared_is_skipped_and_counted(dsn: str) -> None:
    load(dsn, *ORDERS, "ALTER TABLE orders ADD COLUMN legacy int")
    run(dsn, [(BY_CUSTOMER, ["n"]), ("SELECT id FROM orders WHERE legacy = %s", ["n"])])
    with db.connect(dsn) as conn:
        db.execute(conn, "ALTER TABLE orders DROP COLUMN legacy")  # the query cannot plan now
    advice = advise(dsn)
    assert advice.skipped.get("cannot prepare") == 1
    assert [p.columns[0] for p in advice.indexes] == ["customer_id"]
    assert advice.skipped.get("utility", 0) >= 1  # the ALTER TABLE itself


def test_captured_statements_are_costed_and_a_slow_one_is_cut_by_the_timeout(dsn: str) -> None:
    """Statements with literals (as the sampler captures long-running ones) are EXPLAINed
    as they are; one whose planning outlasts statement_timeout is skipped as a timeout."""
    load(
        dsn,
        *ORDERS,
        "CREATE FUNCTION slow_one() RETURNS int IMMUTABLE LANGUAGE plpgsql"
        " AS 'BEGIN PERFORM pg_sleep(2); RETURN 1; END'",  # folded, so run, while planning
    )
    captured = "SELECT note FROM orders WHERE status = 'void' AND placed_at > '2024-02-01'"
    slow = "SELECT note FROM orders WHERE customer_id = slow_one()"
    statements = [WorkloadQuery(statement_key(text), text, 3, 9000.0) for text in (captured, slow)]
    with db.connect(dsn, statement_timeout=timedelta(milliseconds=500)) as conn:
        advice = Advisor(conn, read_schema(conn), budget=1024 * MB).advise(statements)
    assert advice.skipped == {"timeout": 1}
    [proposal] = advice.indexes
    # A quarter of the rows are void: the partial index on placed_at for them, not
    # (status, placed_at) over every row.
    assert proposal.columns[0] == "placed_at" and proposal.predicate == (("status", "=", "void"),)
    assert [q.queryid for q in proposal.queries] == [statement_key(captured)]


# --- pure: candidates and maintenance findings ---------------------------------------------


def _info(text: str) -> QueryInfo:
    info = analyze(text)
    assert isinstance(info, QueryInfo)
    return info


def test_candidates_put_equality_first_then_one_range_and_respect_the_width(dsn: str) -> None:
    load(dsn, *ORDERS, "ALTER TABLE orders ADD COLUMN spot point")
    with db.connect(dsn) as conn:
        facts = read_schema(conn).tables[TableRef("public", "orders")]
    text = ("SELECT id FROM orders WHERE customer_id = $1 AND status = $2 AND placed_at > $3"
            " AND spot = $4 ORDER BY placed_at")  # fmt: skip
    [use] = _info(text).tables
    found = candidates_for(use, facts, max_width=3)
    assert IndexSpec(facts.table, ("customer_id", "status", "placed_at")) in found
    assert IndexSpec(facts.table, ("customer_id", "placed_at")) in found
    assert all(len(c.columns) <= 3 for c in found)
    assert all("spot" not in c.columns for c in found)  # no btree operator class for point
    for spec in found:  # a range column is never followed by another key column
        ranged = [i for i, c in enumerate(spec.columns) if c == "placed_at"]
        assert not ranged or ranged[0] == len(spec.columns) - 1
    assert all(len(c.columns) <= 2 for c in candidates_for(use, facts, max_width=2))
    existing = _index("o_cs", ("customer_id", "status"), table=facts.table)
    assert covered_by(IndexSpec(facts.table, ("customer_id",)), [existing])
    assert not covered_by(IndexSpec(facts.table, ("status",)), [existing])


def test_candidates_lead_a_range_with_the_filters_alone_and_pair_two_ranges(dsn: str) -> None:
    """TPC-H Q12's and Q6's shapes: the best index for each was not among the candidates.

    A join column sorts first among the equality columns (it is the most distinct), so
    (join, filter, range) was the only prefix with the filter: (filter, range) was missing.
    Two range conditions got one range column each: (range, range) was missing, which lets
    the second be checked in the index instead of on the heap.
    """
    load(dsn, *ORDERS)
    with db.connect(dsn) as conn:
        facts = read_schema(conn).tables[TableRef("public", "orders")]
    joined = ("SELECT o.note FROM orders o JOIN customers c ON c.id = o.customer_id"
              " WHERE o.status IN ($1, $2) AND o.placed_at >= $3")  # fmt: skip
    [use] = [u for u in _info(joined).tables if u.table.name == "orders"]
    found = candidates_for(use, facts, max_width=3)
    assert IndexSpec(facts.table, ("status", "placed_at")) in found
    assert IndexSpec(facts.table, ("customer_id", "status", "placed_at")) in found
    ranged = "SELECT sum(total) FROM orders WHERE placed_at >= $1 AND placed_at < $2 AND total < $3"
    [use] = _info(ranged).tables
    found = candidates_for(use, facts, max_width=3)
    assert {IndexSpec(facts.table, ("placed_at", "total")),
            IndexSpec(facts.table, ("total", "placed_at"))} <= found  # fmt: skip
    assert not any(len(c.columns) > 1 for c in candidates_for(use, facts, max_width=1))


def _index(name: str, columns: tuple[str, ...], **flags: Any) -> IndexStat:
    """An index as the sampler reads it, with ordinary figures unless `flags` say otherwise."""
    table = flags.pop("table", TableRef("public", "t"))
    values: dict[str, Any] = dict(
        indexrelid=0, definition="", method="btree", include=(), predicate=None,
        size_bytes=8192 * 10, idx_scan=5, idx_tup_read=0, idx_tup_fetch=0, is_valid=True,
        is_ready=True, is_unique=False, is_primary=False, backs_constraint=False,
        is_replica_identity=False, comment=None,
    )  # fmt: skip
    values.update(flags)
    return IndexStat(table=table, schema=table.schema, name=name, columns=columns, **values)


def test_unused_duplicate_and_invalid_indexes_are_reported() -> None:
    indexes = [
        _index("t_pkey", ("id",), is_unique=True, is_primary=True, backs_constraint=True),
        _index("t_a", ("a",)),
        _index("t_a_b", ("a", "b")),
        _index("t_c", ("c",), idx_scan=0),
        _index("t_d", ("d",), is_valid=False),
        _index("t_id", ("id",)),
    ]
    found = maintenance_proposals([], indexes, 40 * 86400, timedelta(days=30), 0.2, 0.2)
    kinds = {(p.kind, p.index_name) for p in found}
    assert kinds == {
        (ProposalKind.DROP_DUPLICATE_INDEX, "t_a"),
        (ProposalKind.DROP_DUPLICATE_INDEX, "t_id"),
        (ProposalKind.DROP_UNUSED_INDEX, "t_c"),
        (ProposalKind.DROP_INVALID_INDEX, "t_d"),
    }
    # The statistics cover 3 days only: too short to call an index unused.
    short = maintenance_proposals([], indexes, 3 * 86400, timedelta(days=30), 0.2, 0.2)
    assert ProposalKind.DROP_UNUSED_INDEX not in {p.kind for p in short}
    assert all(p.ddl.startswith("DROP INDEX CONCURRENTLY") for p in found)


def test_a_plain_index_is_the_duplicate_of_a_covering_one_never_the_reverse() -> None:
    """A shield (a, b) INCLUDE (c) beside the plain (a, b) it extends: the plain one goes,
    whatever the names' order; a covering index is no duplicate of a longer plain one that
    lacks its INCLUDEs (an index-only scan would become a heap scan)."""
    for plain in ("t_a_b", "t_z_a_b"):  # sorts before and after the covering one's name
        indexes = [
            _index("t_pkey", ("id",), is_unique=True, is_primary=True, backs_constraint=True),
            _index(plain, ("a", "b")),
            _index("t_shield", ("a", "b"), include=("c",)),
            _index("t_x", ("x",), include=("y",)),
            _index("t_x_z", ("x", "z")),
        ]
        found = maintenance_proposals([], indexes, 0.0, timedelta(days=30), 0.2, 0.2)
        assert [(p.kind, p.index_name, p.duplicate_of) for p in found] == [
            (ProposalKind.DROP_DUPLICATE_INDEX, plain, "t_shield")
        ]
        assert "duplicates the leading columns of public.t_shield" in found[0].reason
    twins = [_index("t_1", ("a",), include=("c",)), _index("t_2", ("a",), include=("c",))]
    found = maintenance_proposals([], twins, 0.0, timedelta(days=30), 0.2, 0.2)
    assert [(p.index_name, p.duplicate_of) for p in found] == [("t_2", "t_1")]
    assert "INCLUDE (c)" in found[0].reason and "carries the same columns" in found[0].reason


def test_a_hash_index_is_the_duplicate_of_a_btree_on_its_column_never_the_reverse() -> None:
    """A btree led by k answers every `=` lookup a hash on k does, and ranges and sorts
    besides; a hash on k answers nothing a btree on (k, x) does beyond `=` on k."""
    indexes = [
        _index("t_k_hash", ("k",), method="hash"),
        _index("t_k_x", ("k", "x")),
        _index("t_y_hash", ("y",), method="hash"),
        _index("t_y", ("y",)),
        _index("t_z_hash", ("z",), method="hash"),
    ]
    found = maintenance_proposals([], indexes, 0.0, timedelta(days=30), 0.2, 0.2)
    assert [(p.index_name, p.duplicate_of) for p in found] == [
        ("t_k_hash", "t_k_x"), ("t_y_hash", "t_y"),
    ]  # fmt: skip
    hashed = IndexSpec(TableRef("public", "t"), ("z",), method="hash")
    assert covered_by(hashed, indexes) and covered_by(replace(hashed, columns=("k",)), indexes)
    assert not covered_by(replace(hashed, method="btree"), indexes)


def test_stale_and_dead_tables_get_analyze_and_vacuum() -> None:
    now = datetime(2026, 1, 1)

    def table(name: str, **figures: Any) -> TableActivity:
        values: dict[str, Any] = dict(
            seconds=3600.0, reltuples=10000.0, n_live_tup=10000, n_dead_tup=0, n_tup_ins=0,
            n_tup_upd=0, n_tup_del=0, n_mod_since_analyze=0, last_analyzed=now,
        )  # fmt: skip
        values.update(figures)
        return TableActivity(TableRef("public", name), **values)

    tables = [
        table("fine"),
        table("stale", n_mod_since_analyze=5000),
        table("never", last_analyzed=None),
        table("dead", n_dead_tup=6000),
        table("few_dead", n_dead_tup=500, n_live_tup=100),  # too few to bother
    ]
    found = maintenance_proposals(tables, [], 0, timedelta(days=30), 0.2, 0.2)
    got = {(p.kind, p.table.name) for p in found}
    assert got == {
        (ProposalKind.ANALYZE, "stale"),
        (ProposalKind.ANALYZE, "never"),
        (ProposalKind.VACUUM, "dead"),
    }
    assert json.dumps([p.reason for p in found])  # plain words, serializable


@pytest.mark.hypopg
def test_a_trapped_read_gets_a_covering_shield_only_where_it_has_the_shape(dsn: str) -> None:
    """`WHERE customer_id = $1 ORDER BY placed_at DESC LIMIT n`: key (customer_id,
    placed_at), every other column it uses INCLUDEd, at least the trapping index's figures.

    Tried: reads without the shape (no LIMIT; no equality), a trap whose read did not run
    in the window, a trap on a table that is gone, HypoPG absent, and a shield that
    already exists.
    """
    latest = "SELECT id, total FROM orders WHERE customer_id = %s ORDER BY placed_at DESC LIMIT 20"
    unlimited = "SELECT id, total FROM orders WHERE customer_id = %s ORDER BY placed_at"
    newest = "SELECT id FROM orders ORDER BY placed_at DESC LIMIT 5"
    load(dsn, *ORDERS)
    run(dsn, [(latest, [7]), (unlimited, [8]), (newest, [])], repeat=10)
    table = TableRef("public", "orders")
    with db.connect(dsn) as conn:
        schema = read_schema(conn)
        seen = observe(conn)
        ids = [
            queryid(conn, latest.replace("%s", "$1").replace("20", "$2")),
            queryid(conn, unlimited.replace("%s", "$1")),
            queryid(conn, newest.replace("5", "$1")),
        ]
        traps = [Trap(i, table, "ix_placed_at", 0.4, 0.9) for i in ids]
        traps += [Trap(123, table, "ix_placed_at"), Trap(ids[0], TableRef("x", "gone"), "i")]
        advisor = Advisor(conn, schema, budget=1024 * MB)
        (shield,) = advisor.shields(seen.queries, traps, seen.tables, seen.indexes)
        assert (shield.columns, shield.include) == (("customer_id", "placed_at"), ("id", "total"))
        assert shield.descending == ()  # one direction: a btree walks either way
        assert shield.shields == "ix_placed_at"
        # Never below the trapping index's figures; its own cut is larger here (a seq scan).
        assert shield.workload_share == 0.4 and shield.cost_reduction > 0.9
        assert [q.queryid for q in shield.queries] == [ids[0]]
        assert shield.reason.startswith(f"A shield for query {label(shield.queries[0].text)}: ")
        no_hypopg = Advisor(conn, replace(schema, has_hypopg=False), budget=1024 * MB)
        assert no_hypopg.shields(seen.queries, traps, seen.tables, seen.indexes) == []
        db.execute(conn, "CREATE INDEX built ON orders (customer_id, placed_at) "
                         "INCLUDE (total, id, note)")  # fmt: skip
        again = Advisor(conn, read_schema(conn), budget=1024 * MB)
        assert again.shields(seen.queries, traps, seen.tables, observe(conn).indexes) == []


def test_a_shield_keys_the_filters_then_the_sort_and_carries_the_rest() -> None:
    """Pure: mixed sort directions are kept, SELECT * carries the table, and what cannot be
    shielded gets None. Tried: a sort on a column without a btree operator class, a sort
    key that is also filtered on, more columns than a shield carries, and a key wider
    than the policy's max_index_width."""

    def column(name: str, btree: bool = True, distinct: float = 100.0) -> ColumnFacts:
        return ColumnFacts(name, "int4", btree, True, distinct, 4)

    names = ("id", "shop", "kind", "at", "price", "spot")
    facts = TableFacts(TableRef("public", "items"), 10_000.0, {
        n: column(n, btree=n != "spot", distinct=5_000.0 if n == "shop" else 10.0)
        for n in names})  # fmt: skip

    def shield(text: str, max_width: int = 3) -> IndexSpec | None:
        [use] = _info(text).tables
        return shield_for(use, facts, max_width)

    mixed = shield("SELECT id FROM items WHERE kind = $1 AND shop = $2 "
                   "ORDER BY at DESC, price LIMIT 5", max_width=4)  # fmt: skip
    assert mixed == IndexSpec(facts.table, ("shop", "kind", "at", "price"), ("id",),
                              (False, False, True, False))  # fmt: skip
    every = shield("SELECT * FROM items WHERE shop = $1 ORDER BY at LIMIT 5")
    assert every is not None and every.include == ("id", "kind", "price", "spot")
    assert shield("SELECT id FROM items WHERE shop = $1 ORDER BY spot LIMIT 5") is None
    assert shield("SELECT id FROM items WHERE shop = $1 ORDER BY shop LIMIT 5") is None
    assert shield("SELECT id FROM items WHERE kind = $1 AND shop = $2 ORDER BY at LIMIT 5",
                  max_width=2) is None  # fmt: skip
    more = {f"c{i}": column(f"c{i}") for i in range(9)}
    wide = TableFacts(facts.table, 10_000.0, {**facts.columns, **more})
    [use] = _info("SELECT * FROM items WHERE shop = $1 ORDER BY at LIMIT 5").tables
    assert shield_for(use, wide) is None


EFFORTS = (
    "CREATE TABLE efforts (id bigint PRIMARY KEY, athlete_id int NOT NULL,"
    " week_start date NOT NULL, kind text NOT NULL, distance_m int NOT NULL)",
    "INSERT INTO efforts SELECT g, g % 20000, date '2024-01-01' + 7 * (g % 8),"
    " (ARRAY['run','ride','swim'])[1 + (g / 11) % 3], ((g::bigint * 7919) % 40000)::int"
    " FROM generate_series(1, 400000) g",
    "ANALYZE efforts",
)
LEADERBOARD = (
    "SELECT athlete_id, distance_m FROM efforts WHERE week_start = %s AND kind = %s"
    " ORDER BY distance_m DESC LIMIT 50"
)
EFFORT_WRITES = (  # 300 rows a call: written, but not so much that a 2 s window's write
    # rate outweighs the leaderboard on a fast machine (3,000 did, now and then)
    "INSERT INTO efforts SELECT 1000000 + %s::int * 5000 + g, g, date '2024-01-01', 'run', g"
    " FROM generate_series(1, 300) g"
)


def test_the_full_equality_then_sort_index_beats_the_sort_column_alone(dsn: str) -> None:
    # The weekly leaderboard on a written table: gain per byte alone picks (distance_m),
    # which the planner walks and filters; the full index costs it less and reads less.
    load(dsn, *EFFORTS)
    week = datetime(2024, 1, 1).date()
    run(dsn, [(LEADERBOARD, [week, "run"]), (EFFORT_WRITES, ["n"])])
    advice = advise(dsn)
    [proposal] = advice.indexes
    assert proposal.columns == ("week_start", "kind", "distance_m")
    [served] = proposal.queries
    assert served.cost_after is not None and served.cost_after < served.cost_before / 3
    # Built, the real plan uses it and reads far fewer buffers than a walk of distance_m.
    explain = (
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT athlete_id, distance_m FROM efforts"
        " WHERE week_start = '2024-01-01' AND kind = 'run' ORDER BY distance_m DESC LIMIT 50"
    )
    with db.connect(dsn) as conn:
        db.execute(conn, "CREATE INDEX narrow ON efforts (distance_m)")
        walk = db.fetch(conn, explain)[0]["QUERY PLAN"][0]["Plan"]
        db.execute(conn, proposal.ddl)
        full = db.fetch(conn, explain)[0]["QUERY PLAN"][0]["Plan"]
    assert proposal.index_name and proposal.index_name in json.dumps(full)
    assert (
        full["Shared Hit Blocks"] + full.get("Shared Read Blocks", 0)
        < (walk["Shared Hit Blocks"] + walk.get("Shared Read Blocks", 0)) / 3
    )


def test_after_a_rollback_the_next_best_index_for_its_queries_is_proposed(dsn: str) -> None:
    load(dsn, *EFFORTS)
    week = datetime(2024, 1, 1).date()
    run(dsn, [(LEADERBOARD, [week, "run"]), (EFFORT_WRITES, ["n"])])
    full = IndexSpec(TableRef("public", "efforts"), ("week_start", "kind", "distance_m"))
    narrow = IndexSpec(TableRef("public", "efforts"), ("distance_m",))
    # The case: (distance_m) rolled back; the full index is what comes next.
    [again] = advise(dsn, excluded=[narrow]).indexes
    assert again.index == full
    # The full index rolled back: something else still serves the leaderboard.
    [other] = advise(dsn, excluded=[full]).indexes
    assert other.index != full and "distance_m" in other.columns
    assert [q.text for q in other.queries] == [q.text for q in again.queries]
