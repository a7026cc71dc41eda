"""What `Sampler.sample()` reads from the server at one moment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tuner.models.action import TableRef

# --- sampler ---------------------------------------------------------------------------------
# One Snapshot is what `Sampler.sample()` read from the server at one moment. Counters are
# cumulative, as PostgreSQL keeps them; `workload.diff` turns two snapshots into a window.

QueryKey = tuple[int, int, int, bool]  # (userid, dbid, queryid, toplevel), as in pg_stat_statements


@dataclass(frozen=True, slots=True)
class QueryStat:
    """One pg_stat_statements entry. Times in milliseconds; stddev is the population one."""

    userid: int
    dbid: int
    queryid: int
    toplevel: bool
    query: str
    calls: int
    total_exec_time: float
    mean_exec_time: float
    stddev_exec_time: float
    min_exec_time: float
    max_exec_time: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int

    @property
    def key(self) -> QueryKey:
        return (self.userid, self.dbid, self.queryid, self.toplevel)


@dataclass(frozen=True, slots=True)
class TableStat:
    """One user table: size, tuples, scans and writes (cumulative), maintenance times."""

    relid: int
    table: TableRef
    size_bytes: int  # heap + TOAST, from pg_class.relpages (last VACUUM/ANALYZE): no locks
    indexes_bytes: int  # the sum of its indexes' size_bytes
    reltuples: float  # the planner's estimate (-1: never vacuumed or analyzed)
    n_live_tup: int
    n_dead_tup: int
    seq_scan: int
    seq_tup_read: int
    idx_scan: int
    idx_tup_fetch: int
    n_tup_ins: int
    n_tup_upd: int
    n_tup_del: int
    n_tup_hot_upd: int
    n_mod_since_analyze: int
    last_vacuum: datetime | None
    last_autovacuum: datetime | None
    last_analyze: datetime | None
    last_autoanalyze: datetime | None
    heap_blks_hit: int
    heap_blks_read: int

    @property
    def last_analyzed(self) -> datetime | None:
        stamps = [t for t in (self.last_analyze, self.last_autoanalyze) if t is not None]
        return max(stamps) if stamps else None

    @property
    def last_vacuumed(self) -> datetime | None:
        stamps = [t for t in (self.last_vacuum, self.last_autovacuum) if t is not None]
        return max(stamps) if stamps else None


@dataclass(frozen=True, slots=True)
class IndexStat:
    """One index of a user table. `columns` are the key columns (an expression as its text)."""

    indexrelid: int
    table: TableRef
    schema: str
    name: str
    definition: str  # pg_get_indexdef
    method: str  # btree, hash, gin, ...
    columns: tuple[str, ...]
    include: tuple[str, ...]
    predicate: str | None  # the WHERE of a partial index
    size_bytes: int  # exact for indexes pg-tuner made; else from relpages (no locks taken)
    idx_scan: int
    idx_tup_read: int
    idx_tup_fetch: int
    is_valid: bool
    is_ready: bool
    is_unique: bool
    is_primary: bool
    backs_constraint: bool  # primary key, unique or exclusion constraint
    is_replica_identity: bool
    comment: str | None  # obj_description: how the tuner recognizes indexes it made

    @property
    def ref(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)
class IndexBuild:
    """A CREATE INDEX / REINDEX in progress (pg_stat_progress_create_index)."""

    pid: int
    table: TableRef | None
    index: str | None  # schema.name, once the index exists in the catalog
    command: str
    phase: str
    blocks_done: int
    blocks_total: int
    tuples_done: int
    tuples_total: int

    @property
    def percent(self) -> float | None:
        """Progress of the current phase: blocks when counted, else tuples; None if unknown."""
        if self.blocks_total > 0:
            return 100.0 * self.blocks_done / self.blocks_total
        if self.tuples_total > 0:
            return 100.0 * self.tuples_done / self.tuples_total
        return None


@dataclass(frozen=True, slots=True)
class ReplicaLag:
    """One standby attached to this server (pg_stat_replication), lag in seconds."""

    name: str
    client: str | None
    state: str
    replay_lag: float | None
    write_lag: float | None
    flush_lag: float | None


@dataclass(frozen=True, slots=True)
class LongRunning:
    """A statement active longer than `schedule.long_query`, with its literals.

    A statement cancelled by statement_timeout never reaches pg_stat_statements; this is
    how the worst of them stay visible. `fingerprint` groups texts that differ in literals.
    """

    pid: int
    user: str | None
    query: str
    fingerprint: str
    started_at: datetime
    duration: float  # seconds, at the moment of the snapshot
    state: str
    wait_event: str | None


@dataclass(frozen=True, slots=True)
class ServerStat:
    """The server and the current database as a whole."""

    version_num: int
    version: str
    database: str
    dbid: int
    settings: dict[str, str] = field(hash=False)  # the settings that matter, as pg_settings shows
    in_recovery: bool
    blks_hit: int
    blks_read: int
    xact_commit: int
    xact_rollback: int
    deadlocks: int
    temp_bytes: int
    sessions_by_state: dict[str, int] = field(hash=False)  # whole server, client backends
    active_sessions: int
    total_sessions: int
    max_connections: int
    oldest_xact_age: float | None  # seconds; None when no transaction is open
    waiting_locks: int
    replicas: tuple[ReplicaLag, ...]
    index_builds: tuple[IndexBuild, ...]

    @property
    def cache_hit_ratio(self) -> float | None:
        """Share of block reads of this database served by shared buffers since stats reset."""
        total = self.blks_hit + self.blks_read
        return self.blks_hit / total if total else None

    @property
    def max_replica_lag(self) -> float | None:
        lags = [r.replay_lag for r in self.replicas if r.replay_lag is not None]
        return max(lags) if lags else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one sample read, at the server's clock `taken_at` and our `monotonic` clock.

    `queries` cover the current database only and leave out pg-tuner's own statements;
    `tables` and `indexes` the non-system schemas. `disabled` says which parts could not be
    read with this role's privileges, and how to switch them on.
    """

    taken_at: datetime
    monotonic: float
    server: ServerStat
    queries: tuple[QueryStat, ...]
    stats_reset: datetime | None  # pg_stat_statements_info
    dealloc: int  # entries evicted since stats_reset
    tables: tuple[TableStat, ...]
    indexes: tuple[IndexStat, ...]
    long_running: tuple[LongRunning, ...]
    disabled: tuple[str, ...] = ()
    round_trips: int = field(default=0, compare=False)

    def query_map(self) -> dict[QueryKey, QueryStat]:
        return {q.key: q for q in self.queries}

    def table_map(self) -> dict[TableRef, TableStat]:
        return {t.table: t for t in self.tables}

    def indexes_of(self, table: TableRef) -> tuple[IndexStat, ...]:
        return tuple(i for i in self.indexes if i.table == table)
