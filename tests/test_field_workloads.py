"""Workloads the tuner was not built on: a multi-tenant SaaS, a CRM, a marketplace and an
event log. Each is run as an application would run it (its statements through the driver,
no statistics reset after the load), then `pg-tuner advise --json`. The assertions are the
general rules an index advisor must follow, not figures tuned to one schema:

- equality columns lead, the sort or range column follows them;
- a join's foreign-key side gets an index when the join is driven from the other side;
- an index nothing reads often enough is not built on a table written all day;
- names a person would not type (spaces, quotes, mixed case) come back quoted in the DDL
  and build as printed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from tuner import db
from tuner.cli import main
from tuner.config import Policy
from tuner.executor import Executor
from tuner.models import Action, ActionKind, ActionState, IndexSpec, TableRef

pytestmark = pytest.mark.hypopg  # advice is costed with HypoPG


def _load(conn: db.Connection, statements: Iterable[str]) -> None:
    for statement in statements:
        db.execute(conn, statement)
    db.execute(conn, "SELECT pg_stat_statements_reset()")


def _advise(dsn: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    with db.connect(dsn) as conn:
        db.execute(conn, "SELECT pg_stat_force_next_flush()")
    assert main(["advise", "--dsn", dsn, "--json"]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def _indexes(document: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [p for p in document["proposals"] if p["kind"] == "create_index" and p["table"] == table]


TICKETS = (
    "CREATE TABLE tickets (id bigserial PRIMARY KEY, tenant_id int NOT NULL,"
    " status text NOT NULL, assignee int, priority int NOT NULL,"
    " created_at timestamptz NOT NULL, subject text NOT NULL)",
    # 400 tenants of very different sizes (a few large ones, a long tail), 5 statuses.
    "INSERT INTO tickets (tenant_id, status, assignee, priority, created_at, subject)"
    " SELECT (g % 400) * (g % 3) % 400, (ARRAY['open','pending','solved','closed','spam'])"
    "[1 + g % 5], g % 900, g % 4, now() - g * interval '37 seconds', 'subject ' || g"
    " FROM generate_series(1, 200000) g",
    "ANALYZE tickets",
)


def test_multi_tenant_inbox_gets_tenant_and_status_first_then_the_sort_column(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SaaS help desk: every read is scoped to one tenant, filtered by status, newest
    first. The index must lead with the equality columns (tenant, status) and end with
    created_at, so the LIMIT reads 25 rows instead of sorting the tenant's tickets."""
    inbox = (
        "SELECT id, subject, created_at FROM tickets WHERE tenant_id = %s AND status = %s"
        " ORDER BY created_at DESC LIMIT 25"
    )
    with db.connect(dsn) as conn:
        _load(conn, TICKETS)
        for n in range(40):
            db.fetch(conn, inbox, (n * 7 % 400, ("open", "pending")[n % 2]))
    document = _advise(dsn, capsys)
    [proposal] = _indexes(document, "public.tickets")
    assert set(proposal["columns"][:2]) == {"tenant_id", "status"}
    assert proposal["columns"][2:] == ["created_at"]
    assert proposal["cost_reduction"] > 0.9


CRM = (
    "CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL, region text NOT NULL)",
    "CREATE TABLE contacts (id serial PRIMARY KEY, account_id int NOT NULL REFERENCES"
    " accounts, email text NOT NULL, full_name text NOT NULL)",
    "CREATE TABLE deals (id serial PRIMARY KEY, contact_id int NOT NULL REFERENCES contacts,"
    " stage text NOT NULL, amount numeric NOT NULL, closed_at date)",
    "INSERT INTO accounts (name, region) SELECT 'acct ' || g, 'r' || (g % 12)"
    " FROM generate_series(1, 5000) g",
    "INSERT INTO contacts (account_id, email, full_name) SELECT 1 + g % 5000,"
    " 'person' || g || '@example.com', 'Person ' || g FROM generate_series(1, 100000) g",
    "INSERT INTO deals (contact_id, stage, amount) SELECT 1 + (g * 7) % 100000,"
    " (ARRAY['lead','qualified','won','lost'])[1 + g % 4], g % 10000"
    " FROM generate_series(1, 300000) g",
    "ANALYZE accounts, contacts, deals",
)


def test_crm_join_from_an_account_indexes_both_foreign_key_sides(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CRM's account page: the account's contacts and their open deals. PostgreSQL does
    not index foreign keys; the join is driven from the account, so both referencing
    columns (contacts.account_id, deals.contact_id) need an index."""
    page = (
        "SELECT c.full_name, d.stage, d.amount FROM contacts c JOIN deals d"
        " ON d.contact_id = c.id WHERE c.account_id = %s AND d.stage <> 'lost'"
    )
    with db.connect(dsn) as conn:
        _load(conn, CRM)
        for n in range(30):
            db.fetch(conn, page, (1 + n * 97 % 5000,))
    document = _advise(dsn, capsys)
    leading = {(p["table"], p["columns"][0]) for p in document["proposals"]
               if p["kind"] == "create_index"}  # fmt: skip
    assert ("public.contacts", "account_id") in leading
    assert ("public.deals", "contact_id") in leading
    assert document["workload_cost_after"] < document["workload_cost_before"] / 10


LISTINGS = (
    "CREATE TABLE listings (id bigserial PRIMARY KEY, category_id int NOT NULL,"
    " seller_id int NOT NULL, price_cents int NOT NULL, title text NOT NULL)",
    "INSERT INTO listings (category_id, seller_id, price_cents, title) SELECT g % 300,"
    " g % 20000, (g::bigint * 7919) % 500000, 'item ' || g FROM generate_series(1, 300000) g",
    "ANALYZE listings",
)


def test_marketplace_price_range_puts_the_category_before_the_range(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A marketplace's browse page: one category, a price band, cheapest first. Equality
    before range: (category_id, price_cents) serves the band and the order; the reverse
    order would scan every category's band."""
    browse = (
        "SELECT id, title, price_cents FROM listings WHERE category_id = %s"
        " AND price_cents BETWEEN %s AND %s ORDER BY price_cents LIMIT 50"
    )
    with db.connect(dsn) as conn:
        _load(conn, LISTINGS)
        for n in range(40):
            low = n * 9000 % 400000
            db.fetch(conn, browse, (n * 11 % 300, low, low + 50000))
    document = _advise(dsn, capsys)
    [proposal] = _indexes(document, "public.listings")
    assert proposal["columns"][:2] == ["category_id", "price_cents"]


EVENTS = (
    "CREATE TABLE event_log (id bigserial PRIMARY KEY, source text NOT NULL,"
    " kind text NOT NULL, at timestamptz NOT NULL DEFAULT now(), body jsonb NOT NULL)",
    "INSERT INTO event_log (source, kind, body) SELECT 'svc' || (g % 40), 'k' || (g % 25),"
    " jsonb_build_object('n', g) FROM generate_series(1, 150000) g",
    "ANALYZE event_log",
)


def test_event_log_written_all_day_gets_no_index_for_a_rare_cheap_read(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An append-only event log: thousands of inserts in the window and one look-up a
    person ran once. An index would slow every insert to save one scan; nothing on
    event_log may pay for itself."""
    add = "INSERT INTO event_log (source, kind, body) VALUES (%s, %s, '{}')"
    with db.connect(dsn) as conn:
        _load(conn, EVENTS)
        with conn.cursor() as cursor:
            cursor.executemany(add, [(f"svc{n % 40}", f"k{n % 25}") for n in range(6000)])
        db.fetch(conn, "SELECT count(*) FROM event_log WHERE source = %s AND kind = %s",
                 ("svc3", "k7"))  # fmt: skip
    document = _advise(dsn, capsys)
    assert _indexes(document, "public.event_log") == []


ODD = (
    'CREATE SCHEMA "Sales Ops"',
    'CREATE TABLE "Sales Ops"."Order Items" (id bigserial PRIMARY KEY,'
    ' "Order ID" int NOT NULL, "qty""s" int NOT NULL, note text)',
    'INSERT INTO "Sales Ops"."Order Items" ("Order ID", "qty""s", note)'
    " SELECT g % 30000, g % 9, 'n' FROM generate_series(1, 200000) g",
    'ANALYZE "Sales Ops"."Order Items"',
)


def test_names_with_spaces_and_quotes_come_back_quoted_and_build_as_printed(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Object names written by whoever made the schema: a schema and a table with spaces, a
    column with a double quote in it. The DDL `advise` prints must be the statement the
    executor runs, and the index it builds must be on the quoted column."""
    lookup = 'SELECT id, "qty""s" FROM "Sales Ops"."Order Items" WHERE "Order ID" = %s'
    with db.connect(dsn) as conn:
        _load(conn, ODD)
        for n in range(30):
            db.fetch(conn, lookup, (n * 101 % 30000,))
    document = _advise(dsn, capsys)
    [proposal] = _indexes(document, "Sales Ops.Order Items")
    assert proposal["columns"][0] == "Order ID"
    spec = IndexSpec(TableRef("Sales Ops", "Order Items"), tuple(proposal["columns"]),
                     tuple(proposal["include"]), method=proposal["method"])  # fmt: skip
    policy = Policy.model_validate({"target": {"dsn": dsn}, "level": "aggressive"})
    with Executor(dsn, None, policy) as executor:
        result = executor.apply(Action("a1", ActionKind.CREATE_INDEX, spec.table, index=spec))
    assert result.state is ActionState.APPLIED
    assert result.statement == proposal["ddl"]
    with db.connect(dsn) as conn:
        [row] = db.fetch(
            conn,
            "SELECT pg_get_indexdef(indexrelid) AS ddl FROM pg_index"
            ' WHERE indrelid = \'"Sales Ops"."Order Items"\'::regclass AND NOT indisprimary',
        )
    assert '("Order ID"' in row["ddl"]
