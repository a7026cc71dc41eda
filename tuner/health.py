"""Healthy, degraded or unhealthy, with the reasons; and the findings `status` lists.

Pure: takes a Snapshot (and optionally the Workload of the last window) and the policy's
`health` section. Each bound of the policy makes the database *degraded* when crossed and
*unhealthy* when crossed by twice as much (twice the cache miss rate, twice the age or the
lag); connection use is unhealthy from 95 %. Tables smaller than MIN_ROWS rows are not
judged: their statistics and dead tuples cost nothing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from tuner.config import Health as HealthPolicy
from tuner.config import format_duration
from tuner.models import (
    ActionKind,
    HealthReport,
    HealthStatus,
    IndexFinding,
    IndexStat,
    Snapshot,
    TableFinding,
    TableRef,
    Workload,
)

MIN_ROWS = 1000  # live + dead tuples a table needs before its statistics are judged
MIN_BLOCKS = 10_000  # block accesses needed before a cache hit ratio means anything
FULL_CONNECTIONS = 0.95


def classify(snapshot: Snapshot, workload: Workload | None, policy: HealthPolicy) -> HealthReport:
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


def table_findings(snapshot: Snapshot, policy: HealthPolicy) -> tuple[TableFinding, ...]:
    """Tables that need ANALYZE (rows changed since the last one) or VACUUM (dead tuples)."""
    findings = []
    for t in snapshot.tables:
        rows = t.n_live_tup + t.n_dead_tup
        if rows < MIN_ROWS:
            continue
        changed = t.n_mod_since_analyze / max(t.n_live_tup, 1)
        if t.last_analyzed is None or changed > policy.stale_statistics_ratio:
            never = t.last_analyzed is None
            findings.append(TableFinding(
                table=t.table, action=ActionKind.ANALYZE, ratio=changed,
                detail="never analyzed" if never else
                f"{t.n_mod_since_analyze} rows changed since the last ANALYZE ({changed:.0%})",
            ))  # fmt: skip
        dead = t.n_dead_tup / rows
        if dead > policy.dead_tuple_ratio:
            findings.append(TableFinding(
                table=t.table, action=ActionKind.VACUUM, ratio=dead,
                detail=f"{t.n_dead_tup} dead tuples ({dead:.0%} of rows)",
            ))  # fmt: skip
    return tuple(sorted(findings, key=lambda f: -f.ratio))


def index_findings(snapshot: Snapshot) -> tuple[IndexFinding, ...]:
    """Invalid indexes (not being built now), duplicates, and unused indexes."""
    building = {b.index for b in snapshot.server.index_builds if b.index}
    findings = [
        _finding(i, "invalid", "INVALID: a failed or interrupted build; drop it or REINDEX")
        for i in snapshot.indexes
        if not i.is_valid and i.ref not in building and _quoted_ref(i) not in building
    ]
    findings += duplicates(snapshot.indexes)
    redundant = {f.index for f in findings}
    findings += [
        _finding(i, "unused", "0 scans since statistics were reset")
        for i in snapshot.indexes
        if i.idx_scan == 0 and i.is_valid and _droppable(i) and not i.is_unique
        and i.ref not in redundant
    ]  # fmt: skip
    return tuple(findings)


def _quoted_ref(index: IndexStat) -> str:
    return f"{_quote(index.schema)}.{_quote(index.name)}"


def _quote(name: str) -> str:
    plain = name.isidentifier() and name == name.lower() and name.isascii()
    return name if plain else '"' + name.replace('"', '""') + '"'


def _droppable(index: IndexStat) -> bool:
    return not (index.backs_constraint or index.is_replica_identity or index.is_primary)


def _finding(index: IndexStat, kind: str, detail: str, other: str | None = None) -> IndexFinding:
    return IndexFinding(
        table=index.table, index=index.ref, kind=kind, detail=detail,
        size_bytes=index.size_bytes, other=other, droppable=_droppable(index),
    )  # fmt: skip


def duplicates(indexes: Iterable[IndexStat]) -> tuple[IndexFinding, ...]:
    """Indexes made redundant by another on the same table: identical, or a btree prefix."""
    by_table: dict[TableRef, list[IndexStat]] = defaultdict(list)
    for index in indexes:
        if index.is_valid:
            by_table[index.table].append(index)
    findings: list[IndexFinding] = []
    for group in by_table.values():
        # Keepers first: those backing constraints, unique ones, then the oldest.
        group.sort(key=lambda i: (not i.backs_constraint, not i.is_unique, i.indexrelid))
        reported: set[int] = set()
        for pos, index in enumerate(group):
            shape = _shape(index)
            for keeper in group[:pos] + group[pos + 1 :]:
                if keeper.indexrelid in reported:
                    continue
                other = _shape(keeper)
                if shape == other and group.index(keeper) < pos:
                    findings.append(_finding(index, "duplicate", f"same definition as "
                                             f"{keeper.ref}", keeper.ref))  # fmt: skip
                    reported.add(index.indexrelid)
                    break
                if _is_prefix(index, keeper):
                    if len(shape[1]) == len(other[1]):
                        detail = f"{keeper.ref} has the same key and more INCLUDE columns"
                    else:
                        detail = f"its columns are a prefix of {keeper.ref}" + (
                            ", which carries its INCLUDE columns too" if index.include else ""
                        )
                    findings.append(_finding(index, "duplicate", detail, keeper.ref))
                    reported.add(index.indexrelid)
                    break
    return tuple(findings)


def _is_prefix(index: IndexStat, keeper: IndexStat) -> bool:
    """`keeper` answers every lookup `index` does: `index`'s key leads it, and `index`'s
    INCLUDE columns are among its columns; with the same key, it carries more INCLUDEs
    (a plain index beside the covering one that extends it, as a shield does). A hash is
    answered by a btree its column leads."""
    if keeper.method != "btree" or index.is_unique or index.method not in ("btree", "hash"):
        return False
    mine, theirs = _shape(index), _shape(keeper)
    if index.method == "hash":  # `=` on its one column: a btree that column leads answers it
        return index.predicate == keeper.predicate and theirs[1][:1] == mine[1]
    carried = set(index.include) <= {*keeper.columns, *keeper.include}
    wider = len(mine[1]) < len(theirs[1]) or (
        len(mine[1]) == len(theirs[1]) and set(index.include) < set(keeper.include)
    )
    return (
        carried and wider and index.predicate == keeper.predicate
        and theirs[1][: len(mine[1])] == mine[1]
    )  # fmt: skip


def _shape(index: IndexStat) -> tuple[str, tuple[str, ...], str]:
    """(method, key elements as written, the rest) from pg_get_indexdef, without the name."""
    definition = index.definition
    marker = f" USING {index.method} ("
    start = definition.find(marker)
    if start < 0:
        return (index.method, index.columns, definition)
    depth, pos = 0, start + len(marker)
    elements: list[str] = []
    current: list[str] = []
    quoted = False
    while pos < len(definition):
        char = definition[pos]
        pos += 1
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            if depth == 0:
                break
            depth -= 1
        elif not quoted and char == "," and depth == 0:
            elements.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    elements.append("".join(current).strip())
    return (index.method, tuple(elements), definition[pos:].strip())
