"""The booking application: its data, every statement of its workload, the driver, the trap."""

from __future__ import annotations

import random

import pytest

from tuner import db
from tuner.demo import booking

SCALE = 0.01


@pytest.fixture
def app(dsn: str) -> str:
    """This test's database with the booking schema loaded at a small scale."""
    booking.load(dsn, SCALE)
    return dsn


def test_load_gives_plausible_row_counts_and_primary_keys_only(app: str) -> None:
    sizes = booking.Sizes.at(SCALE)
    with db.connect(app) as conn:
        counts = {
            t: db.fetch(conn, db.SQL("SELECT count(*) AS n FROM {}").format(db.Identifier(t)))[0][
                "n"
            ]
            for t in booking.TABLES
        }
        indexes = db.fetch(
            conn,
            "SELECT indexrelid::regclass::text AS name, indisprimary FROM pg_index"
            " WHERE indrelid = ANY(%s::regclass[])",
            (list(booking.TABLES),),
        )
        statuses = {
            r["status"]: r["n"]
            for r in db.fetch(conn, "SELECT status, count(*) AS n FROM bookings GROUP BY 1")
        }
    assert counts["users"] == sizes.users
    assert counts["packages"] == sizes.packages
    assert counts["bookings"] == sizes.bookings
    assert counts["reviews"] == sizes.reviews
    assert 0.6 * sizes.bookings < counts["payments"] < 0.95 * sizes.bookings
    assert all(i["indisprimary"] for i in indexes) and len(indexes) == len(booking.TABLES)
    assert set(statuses) == {"pending", "confirmed", "cancelled", "completed"}


def test_every_template_runs(app: str) -> None:
    rng = random.Random(1)
    sizes = booking.Sizes.at(SCALE)
    with db.connect(app) as conn:
        for template in booking.TEMPLATES.values():
            for _ in range(3):
                db.fetch(conn, template.sql, template.draw(rng, sizes))
        login = db.fetch(conn, booking.TEMPLATES["login"].sql, (booking._email(42),))
    assert [r["id"] for r in login] == [42]


def test_driver_reports_latencies_and_no_errors(app: str) -> None:
    report = booking.Driver(app, threads=2, seed=3).run(duration_s=3)
    assert report.errors == 0, report.first_errors
    stats = report.stats()
    assert report.calls > 50
    assert stats["user_bookings"].calls > 0 and stats["user_bookings"].mean_ms > 0
    assert 2.5 < report.seconds < 15
    assert "user_bookings" in report.table()


def test_driver_counts_client_errors(app: str) -> None:
    with db.connect(app) as conn:
        db.execute(conn, "ALTER TABLE reviews RENAME COLUMN rating TO stars")
    report = booking.Driver(app, threads=1, weights={"package_rating": 1}).run(max_calls=5)
    assert report.errors == 5 and report.calls == 0
    assert "rating" in report.first_errors[0]


def test_trap_index_on_the_sort_column_alone_is_chosen_for_a_flagship(app: str) -> None:
    name, table, columns = booking.TRAP_ORDER_BY_LIMIT
    sql = booking.TEMPLATES[name].sql.replace("%s", "1")  # package 1 is a flagship
    with db.connect(app) as conn:
        db.execute(
            conn,
            db.SQL("CREATE INDEX trap_idx ON {} ({})").format(
                db.Identifier(table), db.SQL(", ").join(map(db.Identifier, columns))
            ),
        )
        plan = db.fetch(conn, "EXPLAIN (ANALYZE, FORMAT JSON) " + sql)[0]["QUERY PLAN"][0]
    walk = plan["Plan"]["Plans"][0]
    assert walk["Node Type"] == "Index Scan" and walk["Index Name"] == "trap_idx"
    # Far more rows are filtered away than the planner expected to read for 20 matches.
    assert walk["Rows Removed by Filter"] > 20 * walk["Plan Rows"]
