"""The planner's trap on a small table, for the tests that need it to spring.

`orders`: customer 1 placed a tenth of the 200,000 orders, one in five of the older half.
With an index on placed_at alone, the planner expects that customer's 20 latest orders
among the newest few hundred and walks the index backwards: it reads half the table
(~10-25 ms where the customer's own index takes ~0.05 ms). The wide `note` makes the
heap large enough that even an index on (customer, placed_at) costs more, in the planner's
eyes, than that walk. EXPLAIN with an ordinary customer does not show the trap.
"""

from __future__ import annotations

from typing import Any

from tuner import db

LATEST = "SELECT id, amount FROM orders WHERE customer = %s ORDER BY placed_at DESC LIMIT 20"
REPORT = "SELECT id, placed_at FROM orders ORDER BY placed_at DESC LIMIT 50"
FLAGSHIP, ORDINARY = 1, 500


def make_orders(conn: Any, index: str) -> None:
    """The table, with one index of the application's (`index`: its column list).

    The rows are committed with synchronous_commit on: VACUUM marks a page all-visible
    only once the commit that wrote it is on disk, and the sandbox commits asynchronously.
    Index-only scans (and their cost) depend on it.
    """
    db.execute(conn, "SET synchronous_commit = on")
    db.execute(conn, "CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, "
                     "placed_at timestamptz NOT NULL, amount numeric NOT NULL, "
                     "note text)")  # fmt: skip
    db.execute(conn, "INSERT INTO orders SELECT g, CASE WHEN g <= 100000 AND g % 5 = 0 THEN 1 "
                     "ELSE 2 + (g * 7919) % 2000 END, "
                     "timestamptz '2026-01-01' + g * interval '1 minute', g % 100, "
                     "repeat(md5(g::text), 3) "
                     "FROM generate_series(1, 200000) g")  # fmt: skip
    db.execute(conn, f"CREATE INDEX orders_app ON orders ({index})")
    db.fetch(conn, "SELECT pg_stat_force_next_flush()")  # the inserts counted before ANALYZE
    db.fetch(conn, "SELECT 1")
    db.execute(conn, "VACUUM (ANALYZE) orders")
    db.execute(conn, "RESET synchronous_commit")


def run(dsn: str, latest: int = 30, reports: int = 30) -> None:
    """The flagship's latest orders and the report, in a new session: a session that ran
    them before a build keeps a cached generic plan, which is not trapped (an application's
    pooled connections would be, once recycled)."""
    with db.connect(dsn) as app:
        for i in range(max(latest, reports)):
            if i < latest:
                db.fetch(app, LATEST, (FLAGSHIP,))
            if i < reports:
                db.fetch(app, REPORT)
