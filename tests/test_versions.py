"""PostgreSQL 14 to 18: what differs between the majors, read the same way on each."""

from __future__ import annotations

import pytest

from tuner import db
from tuner.commands.run import refuse_old_server
from tuner.errors import MissingExtension
from tuner.models import TableRef
from tuner.sampler import _check_extension, version_warning
from tuner.sqlinfo import analyze
from tuner.whatif import WhatIf, parameter_count, read_schema

T = TableRef("public", "t")


def test_only_a_server_outside_14_to_18_gets_a_warning() -> None:
    for version_num in (140000, 150014, 160010, 170006, 180001):
        assert version_warning(version_num) is None
    assert version_warning(130012) == "PostgreSQL 13 is not supported: pg-tuner needs 14 to 18"
    assert "PostgreSQL 19 is newer than pg-tuner is tested on" in (version_warning(190000) or "")


def test_below_14_the_sampler_refuses_with_the_versions_it_needs() -> None:
    # Tried: a PostgreSQL 13.12 catalog (no pg_stat_statements_info, no toplevel column);
    # advise, status and the daemon all read the server through this check.
    catalog = {"database": "app", "version_num": 130012, "settings": {}, "pss_version": "1.8"}
    with pytest.raises(
        MissingExtension, match=r"PostgreSQL 13 is too old: pg-tuner needs 14 to 18"
    ):
        _check_extension(catalog)


def test_an_in_list_reads_the_same_whether_squashed_or_not() -> None:
    # pg_stat_statements 18 keeps one entry for `IN (...)` of any length (2 or more), as
    # `IN ($1 /*, ... */)`; 14-17 keep one per length, `IN ($1, $2, $3)`.
    squashed = analyze("SELECT * FROM t WHERE k IN ($1 /*, ... */) AND id = $2")
    listed = analyze("SELECT * FROM t WHERE k IN ($1, $2, $3) AND id = $4")
    assert squashed == listed
    assert parameter_count("SELECT * FROM t WHERE k IN ($1 /*, ... */) AND id = $2") == 2


def test_in_lists_as_this_server_records_them_are_costed(conn: db.Connection) -> None:
    db.execute(conn, "CREATE TABLE t (id int PRIMARY KEY, k int NOT NULL)")
    db.execute(conn, "INSERT INTO t SELECT g, g % 100 FROM generate_series(1, 20000) g")
    db.execute(conn, "ANALYZE t")
    db.execute(conn, "SELECT pg_stat_statements_reset()")
    for n in (2, 3, 9):
        listed = ", ".join(str(i) for i in range(n))
        db.execute(conn, f"SELECT * FROM t WHERE k IN ({listed}) AND id > 5")
    rows = db.fetch(
        conn,
        "SELECT query, calls FROM pg_stat_statements WHERE query LIKE %s ORDER BY query",
        ("SELECT * FROM t WHERE k IN%",),
    )
    version = conn.info.server_version
    if version >= 180000:
        assert [(r["query"], r["calls"]) for r in rows] == [
            ("SELECT * FROM t WHERE k IN ($1 /*, ... */) AND id > $2", 3)
        ]
    else:
        assert len(rows) == 3 and {r["calls"] for r in rows} == {1}
    with WhatIf(conn, read_schema(conn)) as whatif:
        for i, row in enumerate(rows):
            assert analyze(row["query"]).tables[0].equality == ("k",)  # type: ignore[union-attr]
            prepared = whatif.prepare(i, row["query"], {T})
            assert whatif.cost(prepared).cost > 0


def test_the_explains_the_tuner_reads_parse_on_this_server(conn: db.Connection) -> None:
    # 18 adds buffers to EXPLAIN ANALYZE by default and new keys ("Disabled", I/O times);
    # the tuner reads plans by key and never by position, so they keep parsing.
    db.execute(conn, "CREATE TABLE t (id int PRIMARY KEY, k int NOT NULL)")
    generic = "SELECT id FROM t WHERE k = $1"
    with WhatIf(conn, read_schema(conn)) as whatif:
        plan = whatif.plan(whatif.prepare(1, generic, {T}))
        assert plan["Node Type"] == "Seq Scan" and plan["Total Cost"] > 0
    analyzed = db.fetch(conn, "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM t WHERE k = 1")
    node = analyzed[0]["QUERY PLAN"][0]["Plan"]
    assert node["Node Type"] == "Seq Scan" and "Actual Rows" in node


def test_the_daemons_version_check_passes_14_to_18_and_leaves_an_outage_to_the_daemon(
    dsn: str,
) -> None:
    refuse_old_server(dsn, None)  # this server is 14-18: no refusal
    # Tried: nothing listens on port 1; the daemon starts degraded and retries, not refused.
    refuse_old_server("host=127.0.0.1 port=1 dbname=x connect_timeout=2", None)
