"""One workload reader: `pg-tuner advise` reads what the daemon reads, the window since the
statements' reset, and prices only the writes that window saw."""

from __future__ import annotations

import json
import time

import pytest

from tuner import db
from tuner.cli import main
from tuner.config import Policy
from tuner.executor import Executor
from tuner.models import Action, ActionKind, ActionState, IndexSpec, TableRef
from tuner.observe import observe

EVENTS = (
    "CREATE TABLE events (id bigserial PRIMARY KEY, account_id int NOT NULL,"
    " kind text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), body text)",
    # The bulk load: 400,000 rows the table counters keep long after the statements' reset.
    "INSERT INTO events (account_id, kind, body) SELECT g % 5000, 'k' || (g % 7),"
    " repeat('x', 60) FROM generate_series(1, 400000) g",
    "ANALYZE events",
)
BY_ACCOUNT = "SELECT id, created_at FROM events WHERE account_id = %s AND kind = %s"
ADD = "INSERT INTO events (account_id, kind, body) VALUES (%s, 'k1', 'new')"


def _reset_statements(conn: db.Connection) -> None:
    db.execute(conn, "SELECT pg_stat_statements_reset()")


@pytest.mark.hypopg
def test_advise_after_a_bulk_load_prices_the_window_s_writes_not_the_load(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The field case: tables loaded (or counting for months) before pg_stat_statements was
    reset. Tried: 400,000 loaded rows in the table counters, no pg_stat_reset, then a
    window of slow reads and 60 single-row inserts. Before, `advise` divided every row the
    table ever received by the counters' age and scaled it to the window."""
    with db.connect(dsn) as conn:
        for statement in EVENTS:
            db.execute(conn, statement)
        db.execute(conn, "SELECT pg_stat_force_next_flush()")
        _reset_statements(conn)
        started = time.monotonic()
        for n in range(15):
            db.fetch(conn, BY_ACCOUNT, (n * 7, f"k{n % 7}"))
        inserted = 60
        for n in range(inserted):
            db.execute(conn, ADD, (n,))
        db.execute(conn, "SELECT pg_stat_force_next_flush()")
        loaded = db.fetch(
            conn, "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'events'"
        )
    assert loaded[0]["n_tup_ins"] >= 400000  # the load is still in the table counters
    assert main(["advise", "--dsn", dsn, "--json"]) == 0
    elapsed = time.monotonic() - started
    document = json.loads(capsys.readouterr().out)
    [proposal] = [p for p in document["proposals"] if p["kind"] == "create_index"]
    assert proposal["table"] == "public.events"
    assert set(proposal["columns"][:2]) == {"account_id", "kind"}
    # The write figure is the window's: 60 rows over the seconds since the reset.
    # (A window shorter than a second counts as one: the lower bound allows for it.)
    window_rate = inserted / elapsed
    low = inserted / max(elapsed, 1.0) / 2
    assert low <= proposal["write_rate"] <= window_rate * 2 * (elapsed + 1) / elapsed


def test_one_template_sent_with_different_parameter_types_counts_as_one_statement(
    dsn: str,
) -> None:
    """psycopg sends 7 as int2 and 70,000 as int4: one text under two queryids. Tried
    both, 10 calls each; the advisor sees one statement with 20 calls."""
    with db.connect(dsn) as conn:
        for statement in EVENTS:
            db.execute(conn, statement)
        _reset_statements(conn)
        for n in range(10):
            db.fetch(conn, BY_ACCOUNT, (7, "k1"))
            db.fetch(conn, BY_ACCOUNT, (70000 + n, "k1"))
        entries = db.fetch(
            conn, "SELECT queryid, calls FROM pg_stat_statements WHERE query LIKE %s",
            ("SELECT id, created_at FROM events%",),
        )  # fmt: skip
        assert len(entries) == 2  # the server counts them apart
        seen = observe(conn)
    [merged] = [q for q in seen.queries if q.query.startswith("SELECT id, created_at")]
    assert merged.calls == 20
    assert merged.mean_ms == pytest.approx(merged.total_ms / 20)


@pytest.mark.hypopg
def test_the_name_and_ddl_advise_prints_are_what_the_executor_runs(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One namer, one renderer: an operator who copies the name from `advise` finds the
    index the daemon built under it, and the journaled DDL is the statement that ran."""
    with db.connect(dsn) as conn:
        for statement in EVENTS:
            db.execute(conn, statement)
        _reset_statements(conn)
        for n in range(15):
            db.fetch(conn, BY_ACCOUNT, (n * 7, f"k{n % 7}"))
    assert main(["advise", "--dsn", dsn, "--json"]) == 0
    [proposal] = [
        p for p in json.loads(capsys.readouterr().out)["proposals"] if p["kind"] == "create_index"
    ]
    schema, name = proposal["table"].split(".")
    spec = IndexSpec(TableRef(schema, name), tuple(proposal["columns"]), tuple(proposal["include"]),
                     method=proposal["method"])  # fmt: skip
    action = Action("a1", ActionKind.CREATE_INDEX, spec.table, index=spec)
    policy = Policy.model_validate({"target": {"dsn": dsn}, "level": "aggressive"})
    with Executor(dsn, None, policy) as executor:
        result = executor.apply(action)
    assert result.state is ActionState.APPLIED
    assert result.index_name == proposal["index_name"]
    assert result.statement == proposal["ddl"]
