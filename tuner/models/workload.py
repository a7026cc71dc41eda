"""What happened between two snapshots: statements, tables and sessions in a window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tuner.models.action import TableRef
from tuner.models.snapshot import QueryKey

# --- workload --------------------------------------------------------------------------------
# What happened between two snapshots. Times in milliseconds; rates per second.


@dataclass(frozen=True, slots=True)
class QueryWindow:
    """One statement inside a window, exact from the cumulative counters.

    `variance_ms2` is the *sample* variance (divisor calls - 1) of the execution times of
    the calls inside the window, as Welch's t-test (scipy's `ttest_ind_from_stats`) expects;
    0.0 when the window holds fewer than two calls. `m2` is the sum of squared deviations,
    so the population variance is `m2 / calls`. When `valid` is False the figures are zero
    and `invalid_reason` says why (a reset, an eviction, counters going backwards).
    """

    key: QueryKey
    queryid: int
    query: str
    calls: int
    total_ms: float
    mean_ms: float
    variance_ms2: float
    m2: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int
    valid: bool = True
    invalid_reason: str | None = None
    roles: tuple[int, ...] = ()  # the userids that ran it (their search_path names its tables)

    @property
    def stddev_ms(self) -> float:
        return float(self.variance_ms2**0.5)


@dataclass(frozen=True, slots=True)
class TableWindow:
    """Scans and writes of one table inside a window: counts and rates per second."""

    table: TableRef
    seconds: float
    seq_scan: int
    seq_tup_read: int
    idx_scan: int
    idx_tup_fetch: int
    n_tup_ins: int
    n_tup_upd: int
    n_tup_del: int
    n_tup_hot_upd: int
    valid: bool = True
    invalid_reason: str | None = None

    def _rate(self, count: int) -> float:
        return count / self.seconds if self.seconds > 0 else 0.0

    @property
    def seq_scans_per_s(self) -> float:
        return self._rate(self.seq_scan)

    @property
    def idx_scans_per_s(self) -> float:
        return self._rate(self.idx_scan)

    @property
    def inserts_per_s(self) -> float:
        return self._rate(self.n_tup_ins)

    @property
    def updates_per_s(self) -> float:
        return self._rate(self.n_tup_upd)

    @property
    def deletes_per_s(self) -> float:
        return self._rate(self.n_tup_del)

    @property
    def writes(self) -> int:
        return self.n_tup_ins + self.n_tup_upd + self.n_tup_del

    @property
    def writes_per_s(self) -> float:
        return self._rate(self.writes)


@dataclass(frozen=True, slots=True)
class LongRunningGroup:
    """Long statements of one fingerprint seen in a window (they may never reach
    pg_stat_statements, e.g. when statement_timeout cancels them)."""

    fingerprint: str
    example: str  # one text with its literals
    count: int  # distinct executions seen (by pid and start time)
    max_duration: float  # seconds, the longest observed
    durations: tuple[float, ...]  # seconds, the longest observation of each execution


@dataclass(frozen=True, slots=True)
class TableActivity:
    """What the advisor knows of a table: the catalog's figures, and the rows written over
    `seconds` (the window the statements cover, so reads and writes share one clock)."""

    table: TableRef
    seconds: float
    reltuples: float
    n_live_tup: int
    n_dead_tup: int
    n_tup_ins: int
    n_tup_upd: int
    n_tup_del: int
    n_mod_since_analyze: int
    last_analyzed: datetime | None


@dataclass(frozen=True, slots=True)
class Workload:
    """The delta between two snapshots of the same database."""

    started_at: datetime
    ended_at: datetime
    seconds: float  # by the monotonic clock
    queries: tuple[QueryWindow, ...]
    tables: tuple[TableWindow, ...]
    long_running: tuple[LongRunningGroup, ...]
    stats_reset: bool = False  # pg_stat_statements was reset inside the window

    @property
    def valid_queries(self) -> tuple[QueryWindow, ...]:
        return tuple(q for q in self.queries if q.valid)

    @property
    def total_ms(self) -> float:
        """Execution time of every valid statement in the window."""
        return sum(q.total_ms for q in self.queries if q.valid)

    def query(self, key: QueryKey) -> QueryWindow | None:
        return next((q for q in self.queries if q.key == key), None)

    def by_queryid(self, queryid: int) -> tuple[QueryWindow, ...]:
        return tuple(q for q in self.queries if q.queryid == queryid)

    def table(self, table: TableRef) -> TableWindow | None:
        return next((t for t in self.tables if t.table == table), None)


# --- statements that did not come from pg_stat_statements (captured, or handed in) ---------


@dataclass(frozen=True, slots=True)
class WorkloadQuery:
    """A statement with its calls and execution time in the window (cf. QueryWindow)."""

    queryid: int
    query: str
    calls: int
    total_ms: float
    roles: tuple[int, ...] = ()  # the userids that ran it, where known
