"""A help desk (CRM) whose slow statements need each index kind beyond plain btree columns.

`load` makes three tables; `STATEMENTS` are the reads as the sampler captures them (with
their literals); `APPEND` is the log's write path. Used by `bench/advisor.py kinds`.

- contacts (300 k): sign-in by e-mail in any case (`lower(email)`), sign-ups of a day
  (`created::date`), contacts of a referral code in a jsonb profile (`profile ->> 'ref'`),
  the VIP contacts, 0.2 % (`profile @> '{"tags": ["vip"]}'`: gin), a name search with a
  leading wildcard (`ILIKE '%...%'`: trigram gin, pg_trgm installed by the bench as a user
  would), contacts whose name mentions a refund (`to_tsvector('english', name) @@`);
- tickets (1 M): the open queue, 0.5 % of the rows (`status = 'open'`), and an agent's
  live tickets (`deleted_at IS NULL`: 95 % of the rows, too many for a partial index);
- events (2 M): an append-only log in time order scanned by time range (brin).
"""

from __future__ import annotations

import time

from tuner import db

SCHEMA = (
    "DROP TABLE IF EXISTS contacts, tickets, events",
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",  # the user's; pg-tuner never creates one
    "CREATE TABLE contacts (id bigint PRIMARY KEY, email text NOT NULL,"
    " created timestamp NOT NULL, profile jsonb NOT NULL, name text NOT NULL)",
    "INSERT INTO contacts SELECT g, 'Contact' || g || '@Example.org',"
    " timestamp '2023-01-01' + g * interval '97 seconds',"
    " jsonb_build_object('ref', 'r' || (g % 60000), 'plan', (ARRAY['free','pro'])[1 + g % 2],"
    " 'tags', CASE WHEN g % 500 = 0 THEN '[\"vip\"]'::jsonb ELSE '[]'::jsonb END),"
    " 'Name ' || g || CASE WHEN g % 1000 = 0 THEN ' wants a refund' ELSE '' END"
    " FROM generate_series(1, {contacts}) g",
    "CREATE TABLE tickets (id bigint PRIMARY KEY, contact_id bigint NOT NULL,"
    " status text NOT NULL, agent int NOT NULL, opened_at timestamptz NOT NULL,"
    " deleted_at timestamptz, subject text NOT NULL)",
    "INSERT INTO tickets SELECT g, g % {contacts}, CASE WHEN g % 200 = 0 THEN 'open'"
    " WHEN g % 7 = 0 THEN 'pending' ELSE 'closed' END, g % 300,"
    " timestamptz '2023-01-01' + g * interval '30 seconds',"
    " CASE WHEN g % 20 = 0 THEN now() END, 'Subject ' || g FROM generate_series(1, {tickets}) g",
    "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, ticket_id bigint"
    " NOT NULL, kind text NOT NULL, body text NOT NULL)",
    "INSERT INTO events SELECT g, timestamptz '2023-01-01' + g * interval '5 seconds',"
    " g % {tickets}, (ARRAY['view','reply','note'])[1 + g % 3], repeat('e', 40)"
    " FROM generate_series(1, {events}) g",
    "VACUUM ANALYZE contacts, tickets, events",
)

STATEMENTS = {
    "sign_in": "SELECT id, name FROM contacts"
    " WHERE lower(email) = lower('contact4242@example.org')",
    "signups_of_a_day": "SELECT count(*) FROM contacts WHERE created::date = '2023-06-01'",
    "referrals": "SELECT id, email FROM contacts WHERE profile ->> 'ref' = 'r777'",
    "tagged": """SELECT count(*) FROM contacts WHERE profile @> '{"tags": ["vip"]}'""",
    "name_search": "SELECT id, email FROM contacts WHERE name ILIKE '%me 4242%'",
    "refund_notes": "SELECT id FROM contacts WHERE to_tsvector('english', name) @@"
    " plainto_tsquery('english', 'refund')",
    "open_queue": "SELECT id, subject, opened_at FROM tickets WHERE status = 'open'"
    " ORDER BY opened_at DESC LIMIT 50",
    "agent_live": "SELECT id, subject FROM tickets WHERE agent = 42 AND deleted_at IS NULL"
    " ORDER BY opened_at DESC LIMIT 20",
    "events_of_an_hour": "SELECT kind, count(*) FROM events WHERE at >= '2023-03-01 10:00'"
    " AND at < '2023-03-01 11:00' GROUP BY kind",
}

CALLS = {"events_of_an_hour": 20}  # a report, run now and then; the rest: --calls each

# Rows as wide as the loaded ones: narrower ones would fit the few bytes VACUUM left free in
# every old page, and scatter the new times all over the heap (a brin's ranges then all
# overlap: 740 ms for the hour's events with it, measured).
APPEND = (
    "INSERT INTO events SELECT {start} + g, now(), g, 'view', repeat('e', 40)"
    " FROM generate_series(1, {rows}) g"
)


def load(dsn: str, scale: float = 1.0) -> dict[str, int]:
    sizes = {
        "contacts": int(300_000 * scale),
        "tickets": int(1_000_000 * scale),
        "events": int(2_000_000 * scale),
    }
    with db.connect(dsn) as conn:
        for statement in SCHEMA:
            db.execute(conn, statement.format(**sizes))
    time.sleep(2)  # the loading session's counters reach the statistics before a reset
    return sizes
