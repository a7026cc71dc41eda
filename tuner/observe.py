"""One read of the workload for a one-shot command (`advise`): the sampler's snapshot, the
window since pg_stat_statements' reset (`workload.since_reset`), and the advisor's inputs.

The daemon reads the same snapshots and turns two of them into a window with
`workload.diff`; both end in `workload.table_activity` and `workload.merged`, so the
command and the daemon see one workload the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from tuner import db, queries, workload
from tuner.models import IndexStat, QueryWindow, Snapshot, TableActivity, Workload
from tuner.sampler import Sampler


@dataclass(frozen=True, slots=True)
class Observed:
    """What the advisor reads: the statements (one per text), the tables' writes in the
    statements' window, the indexes, and the spans the counters cover."""

    snapshot: Snapshot
    window: Workload
    queries: tuple[QueryWindow, ...]
    tables: tuple[TableActivity, ...]
    indexes: tuple[IndexStat, ...]
    stats_age: float  # seconds the index and table counters cover
    seconds: float  # seconds the statements' counters cover


def counters_age(conn: db.Connection) -> float:
    """Seconds since the database's statistics (table and index counters) were reset."""
    rows = db.fetch(conn, queries.get("advisor_stats_age"))
    return float(rows[0]["stats_age"]) if rows else 0.0


def observe(conn: db.Connection, long_query: timedelta = timedelta(seconds=5)) -> Observed:
    """One snapshot over `conn` (left open), read as the window since the statements' reset."""
    stats_age = counters_age(conn)
    snapshot = Sampler(lambda: conn, long_query=long_query).sample()
    window = workload.since_reset(snapshot)
    return Observed(
        snapshot=snapshot,
        window=window,
        queries=workload.merged(window.valid_queries),
        tables=tuple(workload.table_activity(snapshot, window)),
        indexes=snapshot.indexes,
        stats_age=stats_age,
        seconds=window.seconds,
    )
