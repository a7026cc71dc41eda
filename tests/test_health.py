"""health.classify and the findings on plain values."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.test_workload import T0, Entry, snap, table
from tuner import workload
from tuner.config import HealthSettings
from tuner.health import classify, duplicates, index_findings, table_findings
from tuner.models import (
    ActionKind,
    HealthStatus,
    IndexBuild,
    IndexStat,
    LongRunning,
    ReplicaLag,
    TableRef,
)

POLICY = HealthSettings()  # 95 % cache hits, 80 % connections, 1 h transactions, 5 min lag
T = TableRef("public", "orders")


def index(name: str, columns: str, oid: int, **flags: object) -> IndexStat:
    unique = bool(flags.get("is_unique", False))
    cols = tuple(c.strip().split()[0] for c in columns.split(","))
    where = flags.pop("predicate", None)
    assert where is None or isinstance(where, str)
    definition = (f"CREATE {'UNIQUE ' if unique else ''}INDEX {name} ON public.orders "
                  f"USING btree ({columns})" + (f" WHERE ({where})" if where else ""))  # fmt: skip
    base = IndexStat(
        indexrelid=oid, table=T, schema="public", name=name, definition=definition,
        method="btree", columns=cols, include=(), predicate=where, size_bytes=8192 * oid,
        idx_scan=10, idx_tup_read=10, idx_tup_fetch=10, is_valid=True, is_ready=True,
        is_unique=False, is_primary=False, backs_constraint=False, is_replica_identity=False,
        comment=None,
    )  # fmt: skip
    return replace(base, **flags)  # type: ignore[arg-type]


def test_a_quiet_database_is_healthy() -> None:
    health = classify(snap(0, tables=(table(n_live_tup=5000),)), None, POLICY)
    assert health.status == HealthStatus.HEALTHY
    assert health.reasons == ()


def test_cache_hit_ratio_degraded_then_unhealthy() -> None:
    degraded = classify(snap(0, blks_hit=92_000, blks_read=8_000), None, POLICY)
    assert degraded.status == HealthStatus.DEGRADED
    assert "cache hit ratio 92.0%" in degraded.reasons[0]
    unhealthy = classify(snap(0, blks_hit=80_000, blks_read=20_000), None, POLICY)
    assert unhealthy.status == HealthStatus.UNHEALTHY
    # Too few block reads to judge (a cold, idle database): no verdict on the ratio.
    assert classify(snap(0, blks_hit=10, blks_read=90), None, POLICY).status == "healthy"


def test_window_cache_ratio_takes_precedence_over_the_cumulative_one() -> None:
    entry = Entry()
    before = snap(0, (entry.stat(),) if entry.calls else ())
    after = snap(60, (entry.run(*[1.0] * 20_000).stat(),), blks_hit=50_000, blks_read=50_000)
    # Entry reads 1 of 11 blocks from disk: 90.9 % in the window, 50 % cumulative.
    health = classify(after, workload.diff(before, after), POLICY)
    assert health.status == HealthStatus.DEGRADED
    assert "90.9%" in health.reasons[0]


def test_connections_long_transactions_and_lag() -> None:
    crowded = snap(0, total_sessions=85, max_connections=100)
    assert classify(crowded, None, POLICY).status == HealthStatus.DEGRADED
    full = snap(0, total_sessions=97, max_connections=100)
    assert classify(full, None, POLICY).status == HealthStatus.UNHEALTHY

    old = classify(snap(0, oldest_xact_age=5400.0), None, POLICY)
    assert old.status == HealthStatus.DEGRADED and "open for 90m" in old.reasons[0]
    assert classify(snap(0, oldest_xact_age=3 * 3600.0), None, POLICY).status == "unhealthy"

    replica = ReplicaLag("standby1", "10.0.0.2", "streaming", 400.0, 1.0, 1.0)
    lagging = classify(snap(0, replicas=(replica,)), None, POLICY)
    assert lagging.status == HealthStatus.DEGRADED
    assert "standby standby1 lags 6m40s" in lagging.reasons[0]


def test_unhealthy_reasons_come_first() -> None:
    health = classify(snap(0, total_sessions=99, max_connections=100,
                           oldest_xact_age=4000.0), None, POLICY)  # fmt: skip
    assert health.status == HealthStatus.UNHEALTHY
    assert "connections" in health.reasons[0] and "transaction" in health.reasons[1]


def test_stale_statistics_and_dead_tuples() -> None:
    stale = table("stale", n_live_tup=10_000, n_mod_since_analyze=5_000)
    dead = table("dead", relid=2, n_live_tup=10_000, n_dead_tup=4_000)
    tiny = table("tiny", relid=3, n_live_tup=100, n_dead_tup=500, n_mod_since_analyze=600)
    never = replace(table("never", relid=4, n_live_tup=2_000), last_autoanalyze=None)
    shot = snap(0, tables=(stale, dead, tiny, never))
    found = {(f.table.name, f.action) for f in table_findings(shot, POLICY)}
    assert found == {("stale", ActionKind.ANALYZE), ("dead", ActionKind.VACUUM),
                     ("never", ActionKind.ANALYZE)}  # fmt: skip
    health = classify(shot, None, POLICY)
    assert health.status == HealthStatus.DEGRADED
    assert any("2 table(s) with stale statistics" in r for r in health.reasons)
    assert any("1 table(s) with many dead tuples: public.dead" in r for r in health.reasons)


def test_index_findings_invalid_duplicate_unused() -> None:
    pkey = index("orders_pkey", "id", 1, is_unique=True, is_primary=True, backs_constraint=True)
    by_customer = index("orders_customer_idx", "customer_id", 2)
    by_customer_date = index("orders_customer_date_idx", "customer_id, created_at", 3)
    twin = index("orders_customer_date_idx1", "customer_id, created_at", 4)
    desc = index("orders_customer_desc_idx", "customer_id DESC", 5)
    unused = index("orders_note_idx", "note", 6, idx_scan=0)
    unused_unique = index("orders_code_key", "code", 7, idx_scan=0, is_unique=True)
    broken = index("orders_total_idx", "total", 8, is_valid=False)
    building = index("orders_new_idx", "status", 9, is_valid=False)
    partial = index("orders_open_customer_idx", "customer_id", 10, predicate="status = 'open'")
    build = IndexBuild(pid=1, table=T, index="public.orders_new_idx",
                       command="CREATE INDEX CONCURRENTLY", phase="building index: scanning table",
                       blocks_done=50, blocks_total=200, tuples_done=0, tuples_total=0)  # fmt: skip
    shot = replace(
        snap(0, index_builds=(build,)),
        indexes=(pkey, by_customer, by_customer_date, twin, desc, unused, unused_unique,
                 broken, building, partial),
    )  # fmt: skip
    found = {(f.index, f.kind, f.other) for f in index_findings(shot)}
    assert found == {
        ("public.orders_total_idx", "invalid", None),
        ("public.orders_customer_idx", "duplicate", "public.orders_customer_date_idx"),
        ("public.orders_customer_date_idx1", "duplicate", "public.orders_customer_date_idx"),
        ("public.orders_note_idx", "unused", None),
    }
    assert build.percent == 25.0
    health = classify(shot, None, POLICY)
    assert health.reasons == ("1 invalid index(es): public.orders_total_idx",)


def test_a_plain_index_beside_the_covering_one_that_extends_it_is_the_duplicate() -> None:
    """A shield (customer_id, created_at) INCLUDE (total) beside the plain index on the same
    key: the plain one is reported, whichever is older; a covering index is not a duplicate
    of a longer key that lacks its INCLUDE column."""

    def covering(name: str, columns: str, oid: int, include: tuple[str, ...]) -> IndexStat:
        base = index(name, columns, oid)
        return replace(base, include=include,
                       definition=f"{base.definition} INCLUDE ({', '.join(include)})")  # fmt: skip

    shield = covering("orders_shield", "customer_id, created_at", 2, ("total",))
    plain = index("orders_plain", "customer_id, created_at", 3)
    found = duplicates((shield, plain))
    assert [(f.index, f.other) for f in found] == [("public.orders_plain", "public.orders_shield")]
    assert "same key and more INCLUDE columns" in found[0].detail
    narrow = covering("orders_narrow", "customer_id", 4, ("total",))
    longer = index("orders_longer", "customer_id, created_at", 5)
    assert duplicates((narrow, longer)) == ()
    assert [f.index for f in duplicates((narrow, shield))] == ["public.orders_narrow"]


def test_a_hash_index_beside_a_btree_its_column_leads_is_the_duplicate() -> None:
    def hashed(name: str, column: str, oid: int) -> IndexStat:
        base = index(name, column, oid)
        return replace(base, method="hash",
                       definition=base.definition.replace("USING btree", "USING hash"))  # fmt: skip

    by_trace = hashed("orders_trace_hash", "trace_id", 2)
    btree = index("orders_trace_date_idx", "trace_id, created_at", 3)
    found = duplicates((by_trace, btree))
    assert [(f.index, f.other) for f in found] == [
        ("public.orders_trace_hash", "public.orders_trace_date_idx")
    ]
    assert duplicates((by_trace, index("orders_date_trace_idx", "created_at, trace_id", 4))) == ()
    assert duplicates((by_trace, hashed("orders_other_hash", "other", 5))) == ()


def test_a_duplicate_of_a_constraint_index_is_the_droppable_one() -> None:
    key = index("orders_code_key", "code", 1, is_unique=True, backs_constraint=True)
    extra = index("orders_code_idx", "code", 2)
    (finding,) = duplicates((extra, key))
    assert (finding.index, finding.other, finding.droppable) == (
        "public.orders_code_idx", "public.orders_code_key", True)  # fmt: skip


def test_long_running_statements_degrade() -> None:
    slow = LongRunning(pid=5, user="app", query="SELECT pg_sleep(600)", fingerprint="x",
                       started_at=T0 - timedelta(minutes=10), duration=600.0, state="active",
                       wait_event="PgSleep")  # fmt: skip
    health = classify(snap(0, long_running=(slow,)), None, POLICY)
    assert health.status == HealthStatus.DEGRADED
    assert health.reasons == ("1 long-running statement(s), the longest 10m",)
