"""Index kinds beyond plain btree columns, against the real server: expression and partial
btree indexes proposed, built by the executor, used by the plan, rolled back; the hostile
forms refused."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest

from tests.test_advisor import load
from tests.test_executor import create, make_executor
from tuner import db, journal
from tuner.advisor import Advice, Advisor
from tuner.config import PRESETS, Level
from tuner.errors import RefusedStatement
from tuner.executor import Executor
from tuner.models import ActionState, Confidence, IndexSpec, Proposal, TableRef
from tuner.observe import observe
from tuner.queue import rolled_back
from tuner.recovery import ActionStatus, spec_of
from tuner.sqlinfo import QueryInfo, analyze
from tuner.statements import check, index_name
from tuner.templates import create_sql
from tuner.whatif import WorkloadQuery, read_schema

pytestmark = pytest.mark.hypopg  # advice is costed with HypoPG

ACCOUNTS = (
    "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL,"
    " created timestamp NOT NULL, seen timestamptz NOT NULL, profile jsonb NOT NULL)",
    "INSERT INTO accounts SELECT g, 'User' || g || '@Example.com',"
    " timestamp '2024-01-01' + g * interval '1 minute', now(),"
    " jsonb_build_object('tier', (ARRAY['free','pro','team'])[1 + g % 3], 'ref', 'r' || g)"
    " FROM generate_series(1, 100000) g",
    "ANALYZE accounts",
)
TICKETS = (
    "CREATE TABLE tickets (id bigint PRIMARY KEY, status text NOT NULL,"
    " opened_at timestamptz NOT NULL, deleted_at timestamptz, owner int NOT NULL)",
    "INSERT INTO tickets SELECT g, CASE WHEN g % 200 = 0 THEN 'open' ELSE 'closed' END,"
    " timestamptz '2024-01-01' + g * interval '1 minute',"
    " CASE WHEN g % 10 = 0 THEN NULL ELSE now() END, g % 1000"
    " FROM generate_series(1, 200000) g",
    "ANALYZE tickets",
)


def advise(dsn: str, texts: Sequence[str]) -> Advice:
    """Advice for statements handed in with their literals (as captured from the activity)."""
    queries = [WorkloadQuery(n + 1, text, 100, 5000.0) for n, text in enumerate(texts)]
    with db.connect(dsn) as conn:
        return Advisor(conn, read_schema(conn), budget=1 << 30).advise(queries)


@pytest.fixture
def executor(dsn: str) -> Iterator[Executor]:
    with make_executor(dsn) as ex:
        yield ex


def plan(conn: db.Connection, text: str) -> str:
    rows = db.fetch(conn, "EXPLAIN (FORMAT JSON) " + text)
    return json.dumps(rows[0]["QUERY PLAN"])


def build_use_and_roll_back(
    dsn: str, executor: Executor, proposal: Proposal, query: str
) -> dict[str, Any]:
    """Build `proposal` through the executor, check the plan of `query` uses it, undo it;
    the built index's size and definition."""
    spec = proposal.index
    assert spec is not None
    action = create(spec)
    built = executor.apply(action)
    assert built.state is ActionState.APPLIED, built.reason
    assert built.index_name == proposal.index_name
    with db.connect(dsn) as conn:
        db.execute(conn, db.SQL("ANALYZE {}").format(db.Identifier(spec.table.name)))
        used = str(proposal.index_name) in plan(conn, query)
        row = db.fetch(
            conn,
            "SELECT pg_relation_size(c.oid) AS size, pg_get_indexdef(c.oid) AS def"
            " FROM pg_class c WHERE relname = %s",
            (proposal.index_name,),
        )[0]
    assert used, f"the plan of {query} does not use {proposal.index_name}"
    assert executor.undo(action, built).state is ActionState.ROLLED_BACK
    with db.connect(dsn) as conn:
        left = db.fetch(conn, "SELECT 1 FROM pg_class WHERE relname = %s", (proposal.index_name,))
    assert not left
    return dict(row)


def only(advice: Advice, table: str) -> list[Proposal]:
    return [p for p in advice.indexes if p.table.name == table]


# --- expression indexes -----------------------------------------------------------------------


def test_lower_email_gets_an_expression_index_built_used_and_rolled_back(
    dsn: str, executor: Executor
) -> None:
    load(dsn, *ACCOUNTS)
    advice = advise(dsn, ["SELECT id FROM accounts WHERE lower(email) = lower($1)"])
    [proposal] = advice.indexes
    assert proposal.expressions == ("lower",) and proposal.columns == ("email",)
    assert '(pg_catalog.lower("email"))' in proposal.ddl
    assert "expression: the queries filter on lower(email)" in proposal.reason
    [served] = proposal.queries
    assert served.cost_after is not None and served.cost_after < served.cost_before / 2
    built = build_use_and_roll_back(
        dsn, executor, proposal, "SELECT id FROM accounts WHERE lower(email) = 'user7@example.com'"
    )
    assert "lower(email)" in built["def"]
    assert abs(built["size"] - proposal.estimated_size_bytes) / built["size"] < 0.30


@pytest.mark.parametrize(
    ("text", "form", "literal"),
    [
        ("SELECT id FROM accounts WHERE created::date = $1", "date",
         "SELECT id FROM accounts WHERE created::date = '2024-02-01'"),
        ("SELECT count(*) FROM accounts WHERE date_trunc('hour', created) = $1",
         "date_trunc:hour",
         "SELECT count(*) FROM accounts WHERE date_trunc('hour', created) = '2024-02-01 10:00'"),
        ("SELECT id FROM accounts WHERE profile->>'ref' = $1", "field:ref",
         "SELECT id FROM accounts WHERE profile->>'ref' = 'r77'"),
    ],
)  # fmt: skip
def test_casts_date_trunc_and_json_fields_get_expression_indexes(
    dsn: str, executor: Executor, text: str, form: str, literal: str
) -> None:
    load(dsn, *ACCOUNTS)
    [proposal] = advise(dsn, [text]).indexes
    assert proposal.expressions == (form,)
    build_use_and_roll_back(dsn, executor, proposal, literal)


def test_an_expression_that_is_not_immutable_gets_no_index(dsn: str) -> None:
    # date_trunc and ::date of a timestamptz depend on the TimeZone setting: CREATE INDEX
    # refuses them, so the advisor never proposes them (a plain index on seen is no help).
    load(dsn, *ACCOUNTS)
    advice = advise(dsn, ["SELECT id FROM accounts WHERE date_trunc('day', seen) = $1",
                          "SELECT id FROM accounts WHERE seen::date = $1"])  # fmt: skip
    assert not any(p.expressions for p in advice.indexes)


# --- partial indexes --------------------------------------------------------------------------


def test_open_tickets_get_a_partial_index_far_smaller_than_the_full_one(
    dsn: str, executor: Executor
) -> None:
    load(dsn, *TICKETS)
    text = "SELECT id, owner FROM tickets WHERE status = 'open' ORDER BY opened_at DESC LIMIT 50"
    [proposal] = advise(dsn, [text]).indexes
    assert proposal.predicate == (("status", "=", "open"),)
    assert proposal.columns == ("opened_at",)
    assert re.search(r"partial: 0\.[3-7]% of rows match status = 'open'", proposal.reason)
    full = IndexSpec(proposal.table, ("status", "opened_at"))
    with db.connect(dsn) as conn:
        db.execute(conn, create_sql(full, "full_one").as_string(conn))
        full_size = db.fetch(conn, "SELECT pg_relation_size('full_one') AS s")[0]["s"]
        db.execute(conn, "DROP INDEX full_one")
    built = build_use_and_roll_back(dsn, executor, proposal, text)
    assert "WHERE (status = 'open'::text)" in built["def"]
    assert built["size"] * 50 < full_size
    assert abs(built["size"] - proposal.estimated_size_bytes) / built["size"] < 0.30


def test_deleted_at_is_null_from_pg_stat_statements_gets_a_partial_index(
    dsn: str, executor: Executor
) -> None:
    # pg_stat_statements keeps `deleted_at IS NULL` as it is (no constant to normalize).
    load(dsn, *TICKETS)
    query = "SELECT id FROM tickets WHERE owner = %s AND deleted_at IS NULL"
    with db.connect(dsn) as conn:
        for n in range(30):
            db.fetch(conn, query, (n,))
    with db.connect(dsn) as conn:
        seen = observe(conn)
        advice = Advisor(conn, read_schema(conn), budget=1 << 30).advise(seen.queries)
    [proposal] = only(advice, "tickets")
    assert proposal.predicate == (("deleted_at", "is null", None),)
    assert proposal.columns[0] == "owner"
    built = build_use_and_roll_back(
        dsn, executor, proposal, "SELECT id FROM tickets WHERE owner = 5 AND deleted_at IS NULL"
    )
    assert abs(built["size"] - proposal.estimated_size_bytes) / built["size"] < 0.30


def test_a_parameter_or_a_common_value_never_makes_a_partial_index(dsn: str) -> None:
    load(dsn, *TICKETS)
    advice = advise(dsn, [
        "SELECT id FROM tickets WHERE status = $1 ORDER BY opened_at DESC LIMIT 50",
        "SELECT id FROM tickets WHERE owner = $1 AND status = 'closed'",  # 99.5 % of rows
    ])  # fmt: skip
    assert advice.indexes and not any(p.predicate for p in advice.indexes)


# --- hostile forms ----------------------------------------------------------------------------

T = TableRef("public", "accounts")
HOSTILE_KEY = "k'); DROP TABLE accounts; --\\"


def test_a_hostile_json_key_and_constant_are_quoted_built_and_read_back(
    dsn: str, executor: Executor
) -> None:
    load(dsn, *ACCOUNTS)
    spec = IndexSpec(T, ("profile",), expressions=(f"field:{HOSTILE_KEY}",),
                     predicate=(("email", "=", HOSTILE_KEY),))  # fmt: skip
    with db.connect(dsn) as conn:
        text = create_sql(spec, index_name(spec)).as_string(conn)
    assert check(text).spec == spec
    built = executor.apply(create(spec))
    assert built.state is ActionState.APPLIED, built.reason
    with db.connect(dsn) as conn:
        assert db.fetch(conn, "SELECT count(*) AS n FROM accounts")[0]["n"] == 100000


@pytest.mark.parametrize(
    "text",
    [
        # a function outside pg_catalog, or not in the closed set
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ((public.lower("a")))',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ((pg_catalog.pg_sleep("a")))',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ((lower("a")))',
        # an operator not schema-qualified, a cast to another type
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree (("a" ->> \'k\'))',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ((CAST("a" AS public.date)))',
        # a predicate with OR, a parameter, a function, a comparison other than =
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ("a") WHERE "a" = \'x\' OR true',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ("a") WHERE "a" = $1',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ("a") WHERE pg_sleep(1) IS NULL',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ("a") WHERE "a" < \'x\'',
        # an escape that could end the literal, an unknown unit, an expression on brin/hash
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree (("a" OPERATOR(pg_catalog.->>)'
        " E'\\x27'))",
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree'
        " ((pg_catalog.date_trunc('fortnight', \"a\")))",
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING brin ((pg_catalog.lower("a")))',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING hash ("a") WHERE "a" IS NULL',
        # gin: an operator class outside pg_catalog or not in the set, two columns, an expression
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin ("a" public.jsonb_path_ops)',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin ("a" pg_catalog.jsonb_ops)',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin ("a" gin_trgm_ops)',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin ("a" "public".gin_bigm_ops)',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin ("a" "public"."gin_trgm_ops")',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin ("a", "b")',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin ((pg_catalog.lower("a")))',
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin ("a") WHERE "a" IS NULL',
        # full text: an unknown configuration, a function outside pg_catalog, a cast
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin'
        " ((pg_catalog.to_tsvector('mine', \"a\")))",
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin'
        " ((public.to_tsvector('english', \"a\")))",
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin'
        " ((pg_catalog.to_tsvector('english'::regconfig, \"a\")))",
        # a second statement after a WHERE
        'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ("a") WHERE "a" IS NULL;'
        " SELECT 1",
    ],
)  # fmt: skip
def test_hostile_expressions_and_predicates_are_refused(text: str) -> None:
    with pytest.raises(RefusedStatement):
        check(text)


def test_sqlinfo_reads_expressions_and_constants_but_never_a_parameter_as_one() -> None:
    info = analyze(
        "SELECT 1 FROM t WHERE lower(email) = lower($1) AND date_trunc($2, ts) = $3"
        " AND status = 'open' AND kind = $4 AND deleted_at IS NULL AND NOT archived"
        " AND (a = 'x' OR b IS NULL)"
    )
    assert isinstance(info, QueryInfo)
    [use] = info.tables
    assert use.expression_keys == (("email", "lower", "equality"),)
    assert set(use.constants) == {
        ("status", "=", "open"), ("deleted_at", "is null", None), ("archived", "=", "false")
    }  # fmt: skip


# --- brin -------------------------------------------------------------------------------------

EVENTS = (
    "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, source int NOT NULL,"
    " body text NOT NULL)",
    "INSERT INTO events SELECT g, timestamptz '2024-01-01' + g * interval '1 second', g % 100,"
    " repeat('x', 60) FROM generate_series(1, 1000000) g",
    "VACUUM ANALYZE events",
)
RANGE = "SELECT count(*), sum(source) FROM events WHERE at >= %s AND at < %s"
APPEND = (
    "INSERT INTO events SELECT 2000000 + %s::int * 20000 + g, now(), g %% 100, 'y'"
    " FROM generate_series(1, 20000) g"
)


def test_an_append_only_log_gets_a_brin_index_for_its_range_scans(
    dsn: str, executor: Executor
) -> None:
    # A log in time order, appended to (200,000 rows in the window) and scanned by time
    # range (3 s in the window): a btree on `at` would cost every insert more than it saves
    # over a brin of a few pages (figures fixed: the machine's timing varies too much).
    load(dsn, *EVENTS)
    with db.connect(dsn) as conn:
        db.execute(conn, APPEND, (1,))
        seen = observe(conn)
        tables = [replace(t, n_tup_ins=200_000) for t in seen.tables]
        queries = [WorkloadQuery(1, RANGE.replace("%s", "$1", 1).replace("%s", "$2"), 20, 3000.0)]
        advice = Advisor(conn, read_schema(conn), budget=1 << 30).advise(
            queries, tables, seen.indexes, seen.stats_age, tables[0].seconds
        )
    [proposal] = only(advice, "events")
    assert proposal.method == "brin" and proposal.columns == ("at",)
    assert 'USING brin ("at")' in proposal.ddl
    assert "brin: the table's rows lie in at's order (correlation 1.00)" in proposal.reason
    [served] = proposal.queries  # the generic plan's guess: 0.5 % of the rows in range
    assert served.cost_after is not None and served.cost_after < served.cost_before * 0.7
    built = build_use_and_roll_back(
        dsn, executor, proposal,
        "SELECT count(*) FROM events WHERE at >= '2024-01-05' AND at < '2024-01-05 01:00'",
    )  # fmt: skip
    assert abs(built["size"] - proposal.estimated_size_bytes) / built["size"] < 0.30
    assert built["size"] < 100_000  # a btree on 1 M timestamps takes about 22 MB


# --- the journal and the queue ----------------------------------------------------------------


def test_an_expression_partial_index_round_trips_through_the_journal() -> None:
    spec = IndexSpec(T, ("email", "created"), expressions=("lower", ""),
                     predicate=(("deleted", "is null", None), ("state", "=", "open")))  # fmt: skip
    action = create(spec)
    data = journal.action_data(action)
    assert spec_of(T, json.loads(json.dumps(data))) == spec
    assert index_name(spec) != index_name(IndexSpec(T, ("email", "created")))


def _status(n: int, spec: IndexSpec, state: ActionState) -> ActionStatus:
    data = journal.action_data(create(spec, f"a{n}"))
    return ActionStatus(f"a{n}", state, data, "", {}, None, "", n, (state,))


def test_the_queue_hands_the_rolled_back_indexes_to_the_advisor() -> None:
    # What verification rolled back (and may not retry) is excluded from the next advice,
    # so the queries it was meant to serve get the next-best index; kept ones are not.
    narrow = IndexSpec(TableRef("public", "efforts"), ("distance_m",))
    kept = IndexSpec(TableRef("public", "efforts"), ("athlete_id",))
    statuses = {
        "a1": _status(1, kept, ActionState.KEPT),
        "a2": _status(2, narrow, ActionState.ROLLED_BACK),
    }
    assert rolled_back(statuses, Counter()) == [narrow]
    # One that trapped a read waits for its shield instead (`Advisor.shields`).
    trapped = _status(2, narrow, ActionState.ROLLED_BACK)
    trapped.figures["trapped"] = "42"
    assert rolled_back({**statuses, "a2": trapped}, Counter()) == []
    # An index kept on the table since may let it be tried again (`may_retry`): not excluded.
    statuses["a3"] = _status(3, IndexSpec(narrow.table, ("kind",)), ActionState.KEPT)
    assert rolled_back(statuses, Counter()) == []


# --- gin --------------------------------------------------------------------------------------


def test_jsonb_containment_gets_a_measured_only_gin_index_built_used_and_rolled_back(
    dsn: str, executor: Executor
) -> None:
    load(dsn, *ACCOUNTS)
    text = """SELECT id FROM accounts WHERE profile @> '{"ref": "r77"}'"""
    [proposal] = advise(dsn, [text]).indexes
    assert proposal.method == "gin" and proposal.expressions == ("jsonb_path_ops",)
    assert proposal.confidence is Confidence.MEASURED_ONLY
    assert 'USING gin ("profile" pg_catalog.jsonb_path_ops)' in proposal.ddl
    assert proposal.reason.startswith("Measured-only: HypoPG cannot simulate a gin index")
    assert "gin (jsonb_path_ops)" in proposal.reason
    built = build_use_and_roll_back(dsn, executor, proposal, text)
    assert "USING gin (profile jsonb_path_ops)" in built["def"]
    # the per-entry figure was fitted on this table: this guards it, it does not validate it
    assert abs(built["size"] - proposal.estimated_size_bytes) / built["size"] < 0.30


def test_key_existence_gets_the_default_operator_class(dsn: str) -> None:
    load(dsn, *ACCOUNTS)
    [proposal] = advise(dsn, ["SELECT id FROM accounts WHERE profile ? 'vip'"]).indexes
    assert proposal.method == "gin" and proposal.expressions == ()
    assert "gin (jsonb_ops)" in proposal.reason


def test_a_measured_only_index_waits_for_approval_unless_the_level_allows_it() -> None:
    assert not PRESETS[Level.CONSERVATIVE].apply_measured_only
    assert PRESETS[Level.MODERATE].apply_measured_only


def test_a_leading_wildcard_gets_a_trigram_gin_index_only_where_pg_trgm_is_installed(
    dsn: str, executor: Executor
) -> None:
    load(dsn, *ACCOUNTS)
    text = "SELECT id FROM accounts WHERE email ILIKE '%r4242@%'"
    # Without pg_trgm (the tuner never creates an extension) the advice says what it would do.
    advice = advise(dsn, [text])
    assert not [p for p in advice.indexes if p.method == "gin"]
    assert any("pg_trgm is not installed" in n and "(email)" in n for n in advice.notes)
    with db.connect(dsn) as conn:
        db.execute(conn, "CREATE EXTENSION pg_trgm")
    [proposal] = advise(dsn, [text]).indexes
    assert proposal.method == "gin" and proposal.expressions == ("gin_trgm_ops:public",)
    assert proposal.confidence is Confidence.MEASURED_ONLY
    assert 'USING gin ("email" "public".gin_trgm_ops)' in proposal.ddl
    assert "gin (gin_trgm_ops)" in proposal.reason
    built = build_use_and_roll_back(dsn, executor, proposal, text)
    assert "gin_trgm_ops" in built["def"]
    # the per-entry figure was fitted on this table: this guards it, it does not validate it
    assert abs(built["size"] - proposal.estimated_size_bytes) / built["size"] < 0.30


NOTES = (
    "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)",
    "INSERT INTO notes SELECT g, 'call ' || (ARRAY['alpha','bravo','delta','echo'])[1 + g % 4]"
    " || ' about order ' || g || CASE WHEN g % 1000 = 0 THEN ' quasar' ELSE '' END"
    " FROM generate_series(1, 100000) g",
    "ANALYZE notes",
)


def test_full_text_gets_a_gin_index_on_its_to_tsvector_expression(
    dsn: str, executor: Executor
) -> None:
    load(dsn, *NOTES)
    text = (
        "SELECT id FROM notes WHERE to_tsvector('english', body) @@"
        " plainto_tsquery('english', 'quasar')"
    )
    [proposal] = advise(dsn, [text]).indexes
    assert proposal.method == "gin" and proposal.expressions == ("tsvector:english",)
    assert proposal.confidence is Confidence.MEASURED_ONLY
    assert "(pg_catalog.to_tsvector('english', \"body\"))" in proposal.ddl
    assert "gin (full text)" in proposal.reason
    built = build_use_and_roll_back(dsn, executor, proposal, text)
    assert "to_tsvector('english'::regconfig, body)" in built["def"]
    # the per-entry figure was fitted on this table: this guards it, it does not validate it
    assert abs(built["size"] - proposal.estimated_size_bytes) / built["size"] < 0.30
