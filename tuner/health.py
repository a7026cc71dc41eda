"""Healthy, degraded or unhealthy, with the reasons; and the findings `status` lists.

Pure: takes a Snapshot (and optionally the Workload of the last window) and the policy's
`health` section. Each bound of the policy makes the database *degraded* when crossed and
*unhealthy* when crossed by twice as much (twice the cache miss rate, twice the age or the
lag); connection use is unhealthy from 95 %. The index and table findings
are `tuner.findings`' (the advisor proposes from the same rules), worded for `status`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tuner import findings
from tuner.config import HealthSettings
from tuner.models import (
    ActionKind,
    HealthReport,
    HealthStatus,
    IndexFinding,
    IndexStat,
    Snapshot,
    TableFinding,
    Workload,
)
from tuner.units import format_duration

MIN_BLOCKS = 10_000  # block accesses needed before a cache hit ratio means anything
FULL_CONNECTIONS = 0.95


def classify(snapshot: Snapshot, workload: Workload | None, policy: HealthSettings) -> HealthReport:
    """The verdict for `snapshot` under `policy`, every reason named, the worst first."""
    found: list[tuple[HealthStatus, str]] = []

    def judge(value: float, bound: float, doubled: float, text: str) -> None:
        if value > bound:
            found.append((HealthStatus.UNHEALTHY if value > doubled else HealthStatus.DEGRADED,
                          text))  # fmt: skip

    server = snapshot.server
    ratio = cache_hit_ratio(snapshot, workload)
    if ratio is not None:
        allowed_miss = 1.0 - policy.min_cache_hit_ratio
        judge(1.0 - ratio, allowed_miss, 2 * allowed_miss,
              f"cache hit ratio {floor_percent(ratio)} is below "
              f"{policy.min_cache_hit_ratio:.0%}")  # fmt: skip
    if server.max_connections:
        use = server.total_sessions / server.max_connections
        if use > policy.max_connection_use:
            status = HealthStatus.UNHEALTHY if use >= FULL_CONNECTIONS else HealthStatus.DEGRADED
            found.append(
                (
                    status,
                    f"{server.total_sessions} of {server.max_connections} "
                    f"connections in use ({use:.0%}, bound {policy.max_connection_use:.0%})",
                )
            )
    bound = policy.long_transaction.total_seconds()
    if server.oldest_xact_age is not None:
        judge(server.oldest_xact_age, bound, 2 * bound,
              f"a transaction has been open for {_seconds(server.oldest_xact_age)} "
              f"(bound {format_duration(policy.long_transaction)})")  # fmt: skip
    bound = policy.max_replication_lag.total_seconds()
    for replica in server.replicas:
        if replica.replay_lag is not None:
            judge(replica.replay_lag, bound, 2 * bound,
                  f"standby {replica.name or replica.client} lags {_seconds(replica.replay_lag)} "
                  f"behind (bound {format_duration(policy.max_replication_lag)})")  # fmt: skip
    invalid = [f for f in index_findings(snapshot) if f.kind == "invalid"]
    if invalid:
        names = ", ".join(f.index for f in invalid[:3]) + (" ..." if len(invalid) > 3 else "")
        found.append((HealthStatus.DEGRADED, f"{len(invalid)} invalid index(es): {names}"))
    for action, what in ((ActionKind.ANALYZE, "stale statistics"),
                         (ActionKind.VACUUM, "many dead tuples")):  # fmt: skip
        tables = [f for f in table_findings(snapshot, policy) if f.action == action]
        if tables:
            names = ", ".join(str(f.table) for f in tables[:3]) + (
                " ..." if len(tables) > 3 else ""
            )
            found.append((HealthStatus.DEGRADED, f"{len(tables)} table(s) with {what}: {names}"))
    groups = workload.long_running if workload is not None else ()
    longest = max([g.max_duration for g in groups] +
                  [s.duration for s in snapshot.long_running], default=None)  # fmt: skip
    if longest is not None:
        count = sum(g.count for g in groups) if groups else len(snapshot.long_running)
        found.append((HealthStatus.DEGRADED, f"{count} long-running statement(s), the longest "
                      f"{_seconds(longest)}"))  # fmt: skip
    if not found:
        return HealthReport(HealthStatus.HEALTHY)
    order = {HealthStatus.UNHEALTHY: 0, HealthStatus.DEGRADED: 1}
    found.sort(key=lambda f: order[f[0]])
    return HealthReport(found[0][0], tuple(reason for _, reason in found))


def floor_percent(ratio: float) -> str:
    """94.96 % as '94.9%', never rounded up to the bound it is below."""
    return f"{math.floor(ratio * 1000) / 10:.1f}%"


def cache_hit_ratio(snapshot: Snapshot, workload: Workload | None) -> float | None:
    """The window's ratio when it read enough blocks, else the database's since its reset."""
    if workload is not None:
        hit = sum(q.shared_blks_hit for q in workload.valid_queries)
        read = sum(q.shared_blks_read for q in workload.valid_queries)
        if hit + read >= MIN_BLOCKS:
            return hit / (hit + read)
    server = snapshot.server
    if server.blks_hit + server.blks_read >= MIN_BLOCKS:
        return server.cache_hit_ratio
    return None


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes}m{seconds:02d}s" if seconds else f"{minutes}m"
    return f"{value / 3600:.1f}h"


def table_findings(snapshot: Snapshot, policy: HealthSettings) -> tuple[TableFinding, ...]:
    """Tables that need ANALYZE or VACUUM (`findings.table_findings`), the worst first."""
    found = [
        TableFinding(table=f.table.table, action=f.action, ratio=f.ratio, detail=_table_detail(f))
        for f in findings.table_findings(
            snapshot.tables, policy.stale_statistics_ratio, policy.dead_tuple_ratio
        )
    ]
    return tuple(sorted(found, key=lambda f: -f.ratio))


def _table_detail(f: findings.TableFinding) -> str:
    t = f.table
    if f.action is ActionKind.VACUUM:
        return f"{t.n_dead_tup} dead tuples ({f.ratio:.0%} of rows)"
    if f.never_analyzed:
        return "never analyzed"
    return f"{t.n_mod_since_analyze} rows changed since the last ANALYZE ({f.ratio:.0%})"


def index_findings(snapshot: Snapshot) -> tuple[IndexFinding, ...]:
    """Invalid indexes (not being built now), duplicates, and unused indexes."""
    building = {b.index for b in snapshot.server.index_builds if b.index}
    return tuple(_reported(f) for f in findings.index_findings(snapshot.indexes, building))


def duplicates(indexes: Iterable[IndexStat]) -> tuple[IndexFinding, ...]:
    """Indexes made redundant by another on the same table (`findings.duplicates`)."""
    return tuple(_reported(f) for f in findings.duplicates(tuple(indexes)))


_DETAILS = {
    findings.IndexProblem.INVALID: "INVALID: a failed or interrupted build; drop it or REINDEX",
    findings.IndexProblem.UNUSED: "0 scans since statistics were reset",
}


def _ref(index: findings.IndexLike) -> str:
    return f"{index.schema}.{index.name}"


def _reported(f: findings.IndexFinding) -> IndexFinding:
    """A finding as `status` words it."""
    index, keeper = f.index, f.keeper
    if keeper is None:
        detail = _DETAILS[f.problem]
    elif f.overlap is findings.Overlap.SAME:
        detail = f"same definition as {_ref(keeper)}"
    elif f.overlap is findings.Overlap.MORE_INCLUDE:
        detail = f"{_ref(keeper)} has the same key and more INCLUDE columns"
    else:
        detail = f"its columns are a prefix of {_ref(keeper)}" + (
            ", which carries its INCLUDE columns too" if index.include else ""
        )
    return IndexFinding(
        table=index.table, index=_ref(index), kind=f.problem.value, detail=detail,
        size_bytes=index.size_bytes, other=_ref(keeper) if keeper else None,
        droppable=f.droppable,
    )  # fmt: skip
