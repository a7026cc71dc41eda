"""One rule set for invalid / duplicate / unused indexes and stale / dead tables: `status`
(through health) and the advisor (through candidates) read the same findings."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from tests.test_health import index
from tests.test_workload import snap, table
from tuner import db, findings
from tuner.candidates import maintenance_proposals
from tuner.config import HealthSettings
from tuner.errors import QueryFailed
from tuner.health import index_findings, table_findings
from tuner.models import ActionKind, IndexStat, ProposalKind, Snapshot
from tuner.sampler import Sampler

POLICY = HealthSettings()
_KINDS = {
    ProposalKind.DROP_INVALID_INDEX: "invalid",
    ProposalKind.DROP_DUPLICATE_INDEX: "duplicate",
    ProposalKind.DROP_UNUSED_INDEX: "unused",
    ProposalKind.ANALYZE: ActionKind.ANALYZE,
    ProposalKind.VACUUM: ActionKind.VACUUM,
}


def _shot() -> Snapshot:
    pkey = index("orders_pkey", "id", 1, is_unique=True, is_primary=True, backs_constraint=True)
    indexes: tuple[IndexStat, ...] = (
        pkey,
        index("orders_id_idx", "id", 2),  # same definition as the primary key
        index("orders_customer_idx", "customer_id", 3),  # a prefix of the next
        index("orders_customer_date_idx", "customer_id, created_at", 4),
        index("orders_note_idx", "note", 5, idx_scan=0),  # never scanned
        index("orders_code_key", "code", 6, idx_scan=0, is_unique=True),  # a guarantee
        index("orders_total_idx", "total", 7, is_valid=False),  # a failed build
        index("orders_ri", "ri", 8, idx_scan=0, is_replica_identity=True),  # never dropped
    )
    tables = (
        table("stale", n_live_tup=10_000, n_mod_since_analyze=5_000),
        table("dead", relid=2, n_live_tup=10_000, n_dead_tup=4_000),
        table("small", relid=3, n_live_tup=100, n_dead_tup=500, n_mod_since_analyze=600),
        replace(table("never", relid=4, n_live_tup=2_000), last_autoanalyze=None),
        table("borderline", relid=5, n_live_tup=2_000, n_dead_tup=700),  # few dead rows
        table("fine", relid=6, n_live_tup=50_000, n_mod_since_analyze=100),
    )
    return replace(snap(0, tables=tables), indexes=indexes)


def test_status_and_the_advisor_agree_on_the_same_snapshot() -> None:
    shot = _shot()
    status_indexes = {(f.index.split(".")[1], f.kind) for f in index_findings(shot) if f.droppable}
    status_tables = {(f.table.name, f.action) for f in table_findings(shot, POLICY)}
    proposals = maintenance_proposals(
        shot.tables, shot.indexes, stats_age=90 * 86400.0, unused_after=timedelta(days=30),
        stale_ratio=POLICY.stale_statistics_ratio, dead_ratio=POLICY.dead_tuple_ratio,
    )  # fmt: skip
    advised_indexes = {(p.index_name, _KINDS[p.kind]) for p in proposals if p.index_name}
    advised_tables = {(p.table.name, _KINDS[p.kind]) for p in proposals if not p.index_name}
    assert (
        status_indexes
        == advised_indexes
        == {
            ("orders_id_idx", "duplicate"),
            ("orders_customer_idx", "duplicate"),
            ("orders_note_idx", "unused"),
            ("orders_total_idx", "invalid"),
        }
    )
    assert (
        status_tables
        == advised_tables
        == {
            ("stale", ActionKind.ANALYZE),
            ("never", ActionKind.ANALYZE),
            ("dead", ActionKind.VACUUM),
        }
    )


def test_the_advisor_waits_for_statistics_that_cover_unused_after() -> None:
    shot = _shot()
    young = maintenance_proposals(shot.tables, shot.indexes, 3 * 86400.0, timedelta(days=30),
                                  0.2, 0.2)  # fmt: skip
    assert ProposalKind.DROP_UNUSED_INDEX not in {p.kind for p in young}
    unused = [f for f in findings.index_findings(shot.indexes) if f.problem == "unused"]
    assert [f.index.name for f in unused] == ["orders_note_idx"]  # not the replica identity


def test_an_index_being_built_is_not_invalid() -> None:
    broken = index("orders_new_idx", "status", 9, is_valid=False)
    assert findings.index_findings((broken,), building={"public.orders_new_idx"}) == ()
    (found,) = findings.index_findings((broken,))
    assert found.problem is findings.IndexProblem.INVALID and found.keeper is None


def test_duplicates_name_how_the_keeper_answers() -> None:
    plain = index("orders_a", "customer_id", 2)
    longer = index("orders_b", "customer_id, created_at", 3)
    twin = index("orders_c", "customer_id, created_at", 4)
    found = {(f.index.name, f.keeper.name if f.keeper else None, f.overlap)
             for f in findings.duplicates((plain, longer, twin))}  # fmt: skip
    assert found == {
        ("orders_a", "orders_b", findings.Overlap.PREFIX),
        ("orders_c", "orders_b", findings.Overlap.SAME),
    }


def test_of_two_identical_indexes_the_one_the_planner_reads_is_kept() -> None:
    # the planner reads the younger twin: dropping it would move every read to a cold one
    old = index("orders_a", "customer_id", 2, idx_scan=0)
    young = index("orders_b", "customer_id", 3, idx_scan=5000)
    [found] = findings.duplicates((old, young))
    assert (found.index.name, found.keeper and found.keeper.name) == ("orders_a", "orders_b")
    # unscanned both: the oldest stays, as before
    [found] = findings.duplicates((replace(young, idx_scan=0), old))
    assert (found.index.name, found.keeper and found.keeper.name) == ("orders_b", "orders_a")


def test_tables_below_the_row_floor_are_not_judged() -> None:
    small = table("small", n_live_tup=10, n_dead_tup=900, n_mod_since_analyze=900)
    assert findings.table_findings((small,), 0.2, 0.2) == ()
    big = table("big", n_live_tup=10_000, n_dead_tup=5_000, n_mod_since_analyze=9_000)
    assert [f.action for f in findings.table_findings((big,), 0.2, 0.2)] == [
        ActionKind.ANALYZE, ActionKind.VACUUM,
    ]  # fmt: skip


LIVE = """
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, status text, note text)
    WITH (autovacuum_enabled = false);
INSERT INTO orders SELECT g, g % 500, 'open', 'n' || (g % 7) FROM generate_series(1, 20000) g;
ANALYZE orders;
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_customer_status_idx ON orders (customer_id, status);
CREATE INDEX orders_id_idx ON orders (id);
CREATE INDEX orders_status_idx ON orders (status);
UPDATE orders SET status = 'closed' WHERE id <= 8000;
SELECT pg_stat_force_next_flush()
"""


def test_status_and_the_advisor_agree_on_a_sampled_database(dsn: str, conn: Any) -> None:
    """The same rules on a real catalog: a prefix duplicate, a twin of the primary key, an
    INVALID index a failed build left, unused indexes and stale statistics."""
    for statement in LIVE.strip().split(";\n"):
        db.fetch(conn, statement)
    with pytest.raises(QueryFailed):  # duplicates make the build fail: an INVALID index stays
        db.execute(conn, "CREATE UNIQUE INDEX CONCURRENTLY orders_note_key ON orders (note)")
    db.fetch(conn, "SELECT pg_stat_force_next_flush()")
    with Sampler.from_dsn(dsn) as sampler:
        shot = sampler.sample()
    status_indexes = {(f.index.split(".")[1], f.kind) for f in index_findings(shot) if f.droppable}
    status_tables = {(f.table.name, f.action) for f in table_findings(shot, POLICY)}
    proposals = maintenance_proposals(
        shot.tables, shot.indexes, stats_age=90 * 86400.0, unused_after=timedelta(days=30),
        stale_ratio=POLICY.stale_statistics_ratio, dead_ratio=POLICY.dead_tuple_ratio,
    )  # fmt: skip
    assert {(p.index_name, _KINDS[p.kind]) for p in proposals if p.index_name} == status_indexes
    assert {(p.table.name, _KINDS[p.kind]) for p in proposals if not p.index_name} == status_tables
    assert {
        ("orders_customer_idx", "duplicate"),
        ("orders_id_idx", "duplicate"),
        ("orders_note_key", "invalid"),
    } <= status_indexes
    assert ("orders", ActionKind.ANALYZE) in status_tables
