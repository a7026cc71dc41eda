"""Frozen models passed between layers. Each layer adds the models it produces here.

The action lifecycle (DESIGN.md): proposed → approved → baselined → applying → applied →
verifying → kept, with exits rejected, failed and rolled_back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class ActionKind(StrEnum):
    """The closed set of things the executor may do; nothing else is ever rendered."""

    CREATE_INDEX = "create_index"
    DROP_INDEX = "drop_index"
    ANALYZE = "analyze"
    VACUUM = "vacuum"
    REINDEX = "reindex"


class ActionState(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    BASELINED = "baselined"
    APPLYING = "applying"
    APPLIED = "applied"
    VERIFYING = "verifying"
    KEPT = "kept"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (ActionState.REJECTED, ActionState.KEPT, ActionState.ROLLED_BACK,
                        ActionState.FAILED)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TableRef:
    """A table as (schema, name), both exactly as stored in the catalog (no quoting)."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


INDEX_METHODS = ("btree", "hash", "brin", "gin")  # what the tuner builds
# a gin key's operator class other than the default; gin_trgm_ops:<schema> names pg_trgm's
GIN_OPCLASSES = ("jsonb_path_ops", "gin_trgm_ops")
# a gin key to_tsvector('config', c) ("tsvector:config"): the built-in configurations only
TS_CONFIGS = ("simple", "arabic", "armenian", "basque", "catalan", "danish", "dutch",
              "english", "finnish", "french", "german", "greek", "hindi", "hungarian",
              "indonesian", "irish", "italian", "lithuanian", "nepali", "norwegian",
              "portuguese", "romanian", "russian", "serbian", "spanish", "swedish", "tamil",
              "turkish", "yiddish")  # fmt: skip
# The closed set of key expressions (`IndexSpec.expressions`), each IMMUTABLE on the column
# types the advisor offers it for, rendered with pg_catalog-qualified names only:
# lower(c), upper(c), c::date (of a timestamp), date_trunc('unit', c) (of a timestamp),
# (c ->> 'key') (of a jsonb).
EXPRESSION_FORMS = ("lower", "upper", "date", "date_trunc", "field")
DATE_UNITS = ("microseconds", "milliseconds", "second", "minute", "hour", "day", "week",
              "month", "quarter", "year", "decade", "century", "millennium")  # fmt: skip
PREDICATE_OPS = ("=", "is null", "is not null")  # a partial index's WHERE: `c = 'v'`, ...
MAX_LITERAL = 200  # characters of a json key or a predicate's constant


def _literal_ok(value: str) -> bool:
    return 0 < len(value) <= MAX_LITERAL and "\x00" not in value


def expression_label(column: str, expression: str) -> str:
    """How an index key reads in advice: `email`, `lower(email)`, `(payload ->> 'kind')`."""
    form, _, arg = expression.partition(":")
    if not form:
        return column
    if form == "date":
        return f"{column}::date"
    if form == "date_trunc":
        return f"date_trunc('{arg}', {column})"
    if form == "field":
        return f"({column} ->> '{arg}')"
    if form == "tsvector":
        return f"to_tsvector('{arg}', {column})"
    if form in GIN_OPCLASSES:
        return f"{column} {form}"  # the schema of gin_trgm_ops left out
    return f"{form}({column})"


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """An index the tuner could build: key columns in order, optional INCLUDE columns.

    `method` btree (the default), hash or brin: a hash index answers only `=` on its one
    column, carries no INCLUDE columns and no order, and costs a write less than a btree
    on a wide random key (see `advisor.HASH_WRITE_SHARE`); a brin index has one plain
    column whose values follow the heap's order.
    `expressions`, one per key column ("" for the column itself): `form[:arg]` of
    EXPRESSION_FORMS, e.g. `lower` or `date_trunc:day` or `field:kind`.
    `predicate`: a partial index's WHERE, (column, op, constant) terms of PREDICATE_OPS
    joined by AND; the constant is None for IS [NOT] NULL. Never a parameter.
    """

    table: TableRef
    columns: tuple[str, ...]
    include: tuple[str, ...] = ()
    descending: tuple[bool, ...] = ()
    method: str = "btree"
    expressions: tuple[str, ...] = ()
    predicate: tuple[tuple[str, str, str | None], ...] = ()

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("an index needs at least one column")
        if self.descending and len(self.descending) != len(self.columns):
            raise ValueError("descending flags must match the columns")
        if self.method not in INDEX_METHODS:
            raise ValueError(f"index method {self.method!r} is not one of {INDEX_METHODS}")
        hashed = self.method == "hash"
        if hashed and (len(self.columns) > 1 or self.include or any(self.descending)
                       or any(self.expressions) or self.predicate):  # fmt: skip
            raise ValueError("a hash index has one plain key column, no INCLUDE, no order "
                             "and no WHERE")  # fmt: skip
        plain_one = len(self.columns) == 1 and not any(self.expressions)
        if self.method == "brin" and (not plain_one or self.include or self.predicate
                                      or any(self.descending)):  # fmt: skip
            raise ValueError("a brin index has one plain key column, no INCLUDE, no order "
                             "and no WHERE")  # fmt: skip
        if self.expressions and not any(self.expressions):  # all plain: one spelling
            object.__setattr__(self, "expressions", ())
        if self.method == "gin":
            opclass, _, schema = (self.expressions or ("",))[0].partition(":")
            if (len(self.columns) > 1 or self.include or any(self.descending) or self.predicate
                    or (opclass and opclass not in (*GIN_OPCLASSES, "tsvector"))
                    or (opclass == "tsvector" and schema not in TS_CONFIGS)
                    or (opclass in ("gin_trgm_ops", "tsvector")) != bool(schema)
                    or len(schema.encode()) > 63 or "\x00" in schema):  # fmt: skip
                raise ValueError(f"a gin index has one column, with the default operator "
                                 f"class or one of {GIN_OPCLASSES} (gin_trgm_ops with the "
                                 "schema pg_trgm is installed in), or to_tsvector of it with "
                                 "a built-in configuration")  # fmt: skip
        elif self.expressions:
            if len(self.expressions) != len(self.columns):
                raise ValueError("expressions must match the columns")
            for expression in self.expressions:
                form, colon, arg = expression.partition(":")
                if form and form not in EXPRESSION_FORMS:
                    raise ValueError(f"key expression {form!r} is not one of {EXPRESSION_FORMS}")
                if form == "date_trunc" and arg not in DATE_UNITS:
                    raise ValueError(f"date_trunc unit {arg!r} is not one of {DATE_UNITS}")
                if form == "field" and not _literal_ok(arg):
                    raise ValueError("a json key must be 1-200 characters without NUL")
                if form in ("lower", "upper", "date") and colon:
                    raise ValueError(f"{form} takes no argument")
        for column, op, value in self.predicate:
            if op not in PREDICATE_OPS:
                raise ValueError(f"predicate operator {op!r} is not one of {PREDICATE_OPS}")
            if (op == "=") != (value is not None) or (value is not None and not _literal_ok(value)):
                raise ValueError(f"predicate {column} {op} needs a constant of 1-200 characters "
                                 "exactly when it is `=`")  # fmt: skip

    @property
    def keys(self) -> tuple[str, ...]:
        """Each key as advice shows it: the column, or its expression (`lower(email)`)."""
        forms = self.expressions or ("",) * len(self.columns)
        return tuple(expression_label(c, e) for c, e in zip(self.columns, forms, strict=True))

    @property
    def where(self) -> str:
        """The partial index's predicate as advice shows it ("" for a full index)."""
        return " AND ".join(
            f"{c} {op}" + (f" '{v}'" if v is not None else "") for c, op, v in self.predicate
        )

    @property
    def key(self) -> tuple[str, tuple[str, ...], tuple[str, ...], str]:
        tail = f"{self.method} WHERE {self.where}" if self.predicate else self.method
        return (str(self.table), self.keys if any(self.expressions) else self.columns,
                self.include, tail)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Action:
    """One change the executor may make. `index_name` names the index created or affected."""

    id: str
    kind: ActionKind
    table: TableRef
    index: IndexSpec | None = None
    index_name: str | None = None
    index_definition: str | None = None  # pg_get_indexdef of an index to drop, for undo
    reason: str = ""
    figures: dict[str, float | int | str] = field(default_factory=dict, compare=False)


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


# --- decisions ---
# What policy.py, guards.py and verify.py produce: a proposal accepted or rejected, whether an
# action may start now, and whether an applied change is kept, with the figures behind it.


@dataclass(frozen=True, slots=True)
class Decision:
    """A proposal turned into an action (proposed or approved) or rejected with its reason.

    `rule` is a stable code (e.g. `below_bar`, `budget_spent`) for metrics and tests; `reason`
    says the same in words with the figures, for the journal and for a person.
    """

    action: Action
    state: ActionState
    rule: str = ""
    reason: str = ""

    @property
    def rejected(self) -> bool:
        return self.state is ActionState.REJECTED


class GuardReason(StrEnum):
    """Why an action may not start now; stable values, used as a metrics label."""

    STANDBY = "standby"
    FROZEN = "frozen"
    OUTSIDE_MAINTENANCE = "outside_maintenance"
    IN_FLIGHT = "in_flight"
    ACTIVE_SESSIONS = "active_sessions"
    REPLICATION_LAG = "replication_lag"
    OLD_TRANSACTION = "old_transaction"
    WAITING_LOCKS = "waiting_locks"


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """May an action start now? `reason` is None when it may; `detail` says why in words."""

    reason: GuardReason | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None

    def __str__(self) -> str:
        return "OK" if self.reason is None else f"{self.reason.value.upper()}: {self.detail}"


class Outcome(StrEnum):
    KEEP = "keep"
    ROLLBACK = "rollback"
    UNDECIDED = "undecided"


@dataclass(frozen=True, slots=True)
class QueryFigures:
    """One query (or the table's pooled writes) compared across baseline and verification.

    Times in milliseconds; `change` is (after - before) / before, positive when slower;
    `p_value` from Welch's t-test, None when either window had fewer than `min_calls` calls.
    """

    queryid: int | None  # None for the pooled write path
    role: str  # "read", "write", or "bound" (a read whose baseline is a lower bound)
    calls_before: int
    calls_after: int
    mean_before: float
    mean_after: float
    change: float | None
    p_value: float | None
    significant: bool = False

    @property
    def measured(self) -> bool:
        return self.p_value is not None

    def describe(self) -> str:
        what = "writes" if self.queryid is None else f"query {self.queryid}"
        if not self.measured or self.change is None:
            return f"{what}: too few calls ({self.calls_before} before, {self.calls_after} after)"
        return (
            f"{what}: {self.mean_before:.3f} → {self.mean_after:.3f} ms ({self.change:+.1%}, "
            f"p={self.p_value:.3g}, {self.calls_before}/{self.calls_after} calls)"
        )


@dataclass(frozen=True, slots=True)
class Method:
    """How a verdict was reached: the test, the look at the window, the level spent there,
    the corrected threshold and the noise floors a slowdown had to clear."""

    test: str  # "Welch t, Holm over 14 tests"
    look: int  # 1-based; `looks` is the window's end (an extension looks again at it)
    looks: int
    level: float  # the share of the significance level this look tested at
    threshold: float | None  # the corrected p threshold that decided (None: no test did)
    read_floor_ms: float | None  # the largest floor of the deciding reads (else of all)
    write_floor_ms: float | None
    floor_source: str  # "measured" (the baseline's noise), "policy", or "none"

    def describe(self) -> str:
        """One line a DBA can read: `Welch t, Holm over 14 tests, look 2/4 at level 0.0021
        (threshold 0.00015); noise floor reads up to 0.042 ms, writes 0.010 ms (measured)`
        (the largest floor of the reads that decided, or of all watched reads)."""
        look = f"look {self.look}/{self.looks}" if self.looks > 1 else "at the window's end"
        threshold = "" if self.threshold is None else f" (threshold {self.threshold:.2g})"
        floors = ", ".join(
            f"{what} {ms:.3f} ms"
            for what, ms in (("reads up to", self.read_floor_ms), ("writes", self.write_floor_ms))
            if ms is not None
        )
        floor = f"noise floor {floors} ({self.floor_source})" if floors else "no noise floor"
        return f"{self.test}, {look} at level {self.level:.2g}{threshold}; {floor}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """keep | rollback | undecided for an applied change, and the figures that decided it.

    `net_change` is the change in the measured queries' time (reads and writes), relative to
    what they would have cost at baseline speed: -0.25 means a quarter of that time saved.
    A `discarded` verdict means the verification window was invalid (statistics reset).
    `trapped` names the reads a rolled-back index slowed beyond the bound while it made
    another read significantly faster: the planner chose it where it should not have.
    """

    outcome: Outcome
    reason: str
    queries: tuple[QueryFigures, ...] = ()
    writes: QueryFigures | None = None
    net_change: float | None = None
    extensions: int = 0
    discarded: bool = False
    trapped: tuple[int, ...] = ()
    load_change: float | None = None  # how much the statements on other tables slowed
    method: Method | None = None

    def figures(self) -> dict[str, float | int | str]:
        """Flat figures for the journal and `pg-tuner audit`."""
        out: dict[str, float | int | str] = {"outcome": self.outcome.value, "reason": self.reason}
        if (d := self.method) is not None:
            out["decided"] = d.describe()
            out.update(test=d.test, look=d.look, looks=d.looks, level=d.level)
            for key, value in (("threshold", d.threshold), ("read_floor_ms", d.read_floor_ms),
                               ("write_floor_ms", d.write_floor_ms)):  # fmt: skip
                if value is not None:
                    out[key] = value
        if self.net_change is not None:
            out["net_change"] = round(self.net_change, 6)
        if self.writes is not None and self.writes.change is not None:
            out["write_change"] = round(self.writes.change, 6)
        if self.load_change is not None:
            out["load_change"] = round(self.load_change, 6)
        out["extensions"] = self.extensions
        if self.trapped:
            out["trapped"] = " ".join(str(q) for q in self.trapped)
        for q in (*self.queries, *((self.writes,) if self.writes else ())):
            out[f"{'writes' if q.queryid is None else q.queryid}"] = q.describe()
        return out


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


# --- advisor ---------------------------------------------------------------------------------
# What `Advisor.advise()` produces: proposals of every kind, each with the figures behind it.


class ProposalKind(StrEnum):
    CREATE_INDEX = "create_index"
    DROP_UNUSED_INDEX = "drop_unused_index"
    DROP_DUPLICATE_INDEX = "drop_duplicate_index"
    DROP_INVALID_INDEX = "drop_invalid_index"
    ANALYZE = "analyze"
    VACUUM = "vacuum"


class Confidence(StrEnum):
    HIGH = "high"  # costed by the planner with hypothetical indexes (HypoPG)
    LOW = "low"  # a heuristic: HypoPG missing, or a catalog rule of thumb
    # a kind HypoPG cannot simulate (gin): the gain estimated from the statements' measured
    # time and the planner's row estimates; applied alone only where the policy allows
    MEASURED_ONLY = "measured-only"


@dataclass(frozen=True, slots=True)
class ProposalQuery:
    """One query a proposal serves: planner cost per call before and after, calls, share.

    `cost_after` is None when it could not be costed (no HypoPG). `share` is the query's
    part of the workload's execution time in the window.
    """

    queryid: int
    cost_before: float
    cost_after: float | None
    calls: int
    share: float = 0.0
    text: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Proposal:
    """One thing the advisor recommends, with everything an operator needs to judge it.

    For create_index: `columns`/`include`/`descending` the new index, `ddl` the statement,
    sizes the corrected estimate and HypoPG's raw one. For drops: `index_name` the existing
    index and `ddl` the DROP. For analyze/vacuum: the table and its statement.
    `write_rate` is rows written per second to the table (what an index slows down).
    """

    kind: ProposalKind
    table: TableRef
    ddl: str
    reason: str
    columns: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    descending: tuple[bool, ...] = ()
    method: str = "btree"
    index_name: str | None = None
    estimated_size_bytes: int = 0
    hypopg_size_bytes: int | None = None
    queries: tuple[ProposalQuery, ...] = ()
    calls: int = 0
    workload_share: float = 0.0
    cost_reduction: float = 0.0  # 1 - Σ calls·after / Σ calls·before over `queries`
    write_rate: float = 0.0
    confidence: Confidence = Confidence.HIGH
    shields: str | None = None  # a shield (`Advisor.shields`): the index it lets back in
    duplicate_of: str | None = None  # drop_duplicate_index: the index that stays
    expressions: tuple[str, ...] = ()  # create_index: as IndexSpec.expressions
    predicate: tuple[tuple[str, str, str | None], ...] = ()  # create_index: a partial's WHERE
    why_kind: str = ""  # create_index other than a plain btree: why this kind ("partial: ...")

    @property
    def index(self) -> IndexSpec | None:
        """The index to create, for create_index proposals."""
        if self.kind is not ProposalKind.CREATE_INDEX or not self.columns:
            return None
        return IndexSpec(self.table, self.columns, self.include, self.descending, self.method,
                         self.expressions, self.predicate)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Trap:
    """A read that an index, rolled back since, slowed beyond the bound while it made other
    reads faster: the planner walked that index for it. `workload_share` and
    `cost_reduction` are the rolled-back index's own figures, what shielding the read is
    worth."""

    queryid: int
    table: TableRef
    index_name: str
    workload_share: float = 0.0
    cost_reduction: float = 0.0


# --- health ----------------------------------------------------------------------------------
# `health.classify` and the findings `pg-tuner status` prints, from a Snapshot (and Workload).


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class Health:
    """The verdict and every reason behind it, worst first."""

    status: HealthStatus
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TableFinding:
    """A table that needs ANALYZE (stale statistics) or VACUUM (dead tuples)."""

    table: TableRef
    action: ActionKind  # ANALYZE or VACUUM
    detail: str
    ratio: float  # modified (or dead) rows per live row


@dataclass(frozen=True, slots=True)
class IndexFinding:
    """An index worth a DBA's look: unused, duplicate (of `other`) or invalid."""

    table: TableRef
    index: str  # schema.name
    kind: str  # "unused" | "duplicate" | "invalid"
    detail: str
    size_bytes: int
    other: str | None = None  # for a duplicate: the index that makes it redundant
    droppable: bool = False  # backs no constraint and is not the replica identity


# --- executor ------------------------------------------------------------------------------
# What `Executor.apply`/`undo`/`recover` return: the statement that ran, the state it left the
# action in, and what a later undo needs (the definition of a dropped index, captured first).


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The result of running one action (or its undo): APPLIED, ROLLED_BACK, FAILED or REJECTED.

    `index_definition` is pg_get_indexdef of the index, read before a drop (so that undo can
    recreate it) or after a build. `cleaned_up` names the INVALID leftovers that were dropped.
    `transient` marks a failure that trying again later may cure: a lock or statement timeout
    (not a cancellation by the tuner itself).
    """

    action_id: str
    kind: ActionKind
    state: ActionState
    statement: str = ""
    reason: str = ""
    index_name: str | None = None
    index_definition: str | None = None
    tuner_made: bool = False
    size_bytes: int | None = None
    estimated_size_bytes: int | None = None
    seconds: float = 0.0
    cleaned_up: tuple[str, ...] = ()
    transient: bool = False

    @property
    def ok(self) -> bool:
        return self.state in (ActionState.APPLIED, ActionState.ROLLED_BACK)
