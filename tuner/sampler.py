"""Snapshot from pg_stat_* in two round trips in the steady state, at most four.

1. `sample_catalog`: one row of JSON aggregates (server, sessions, locks, standbys, index
   builds, long statements, tables, indexes) that also says whether pg_stat_statements is
   preloaded and created;
2. `sample_statements`: pg_stat_statements without the texts, with pg_stat_statements_info;
3. only when entries appeared since the last sample: their texts;
4. only when indexes appeared or changed: their definitions and columns.
The texts and definitions are kept between samples, so a steady workload costs two cheap
statements. Tables, indexes and entries arrive as one binary array per column, zipped into
rows; a row equal to the previous sample's gives back the previous model object (frozen, equal
by value), so only what changed is built again. Everything works for a role with only
`pg_monitor`; with less, the parts it cannot read are listed in `Snapshot.disabled` with the
GRANT that switches them on.
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from tuner import db, log, queries
from tuner.config import Policy
from tuner.errors import DatabaseUnavailable, MissingExtension, NotInPrerequisiteState
from tuner.models import (
    IndexBuild,
    IndexStat,
    LongRunning,
    QueryKey,
    QueryStat,
    ReplicaLag,
    ServerStat,
    Snapshot,
    TableRef,
    TableStat,
)
from tuner.workload import fingerprint as fingerprint  # where callers have long found it
from tuner.workload import normalize as normalize

_log = log.get(__name__)
# JIT compiles the catalog statement's many expressions on every sample: seconds on a large
# catalog for a statement that runs in tens of milliseconds without it. extra_float_digits > 0
# makes float8 print its shortest exact form, so the times survive JSON bit for bit.
SESSION = {"jit": "off", "extra_float_digits": "1"}
MIN_VERSION = 140000  # pg_stat_statements 1.9: toplevel, pg_stat_statements_info
NEWEST_TESTED = 18  # the newest major CI runs the suite on

PRELOAD_HINT = (
    "pg_stat_statements is not preloaded. In postgresql.conf set\n"
    "    shared_preload_libraries = 'pg_stat_statements'   (append it to any existing list)\n"
    "    compute_query_id = on\n"
    "    pg_stat_statements.track = all\n"
    "restart PostgreSQL, then run as a superuser in database {database!r}:\n"
    "    CREATE EXTENSION IF NOT EXISTS pg_stat_statements;"
)
CREATE_HINT = (
    "pg_stat_statements is preloaded but not created in database {database!r}. "
    "Run as a superuser connected to that database:\n"
    "    CREATE EXTENSION IF NOT EXISTS pg_stat_statements;"
)
UPDATE_HINT = (
    "pg_stat_statements {version} in database {database!r} is too old (1.9 or later is "
    "needed for pg_stat_statements_info). Run as a superuser connected to that database:\n"
    "    ALTER EXTENSION pg_stat_statements UPDATE;"
)
QUERY_ID_HINT = (
    "compute_query_id is off, so pg_stat_statements records nothing. In postgresql.conf set\n"
    "    compute_query_id = on\n"
    "and reload PostgreSQL (SELECT pg_reload_conf();)."
)
# The catalog's per-column arrays, in the order of the rows the sampler zips them into.
TABLE_COLUMNS = (
    "t_relid", "t_schema", "t_name", "t_size_bytes", "t_reltuples", "t_n_live_tup",
    "t_n_dead_tup", "t_seq_scan", "t_seq_tup_read", "t_tup_fetched", "t_n_tup_ins",
    "t_n_tup_upd", "t_n_tup_del", "t_n_tup_hot_upd", "t_n_mod_since_analyze", "t_last_vacuum",
    "t_last_autovacuum", "t_last_analyze", "t_last_autoanalyze", "t_heap_blks_hit",
    "t_heap_blks_read",
)  # fmt: skip
INDEX_COLUMNS = (
    "i_indexrelid", "i_indrelid", "i_xmin", "i_table_xmin", "i_size_bytes", "i_idx_scan",
    "i_idx_tup_read", "i_idx_tup_fetch", "i_is_valid", "i_is_ready", "i_is_unique",
    "i_is_primary", "i_backs_constraint", "i_is_replica_identity", "i_comment",
)  # fmt: skip
QUERY_COLUMNS = (
    "userid", "dbid", "queryid", "toplevel", "calls", "total_exec_time", "mean_exec_time",
    "stddev_exec_time", "min_exec_time", "max_exec_time", "rows", "shared_blks_hit",
    "shared_blks_read",
)  # fmt: skip

Row = tuple[Any, ...]

READ_ALL_STATS_HINT = (
    "statements of other roles, their texts and standby lag are hidden from this role: "
    "GRANT pg_monitor TO {user};"
)


class Sampler:
    """Reads one Snapshot per `sample()` over a connection it keeps (and reopens if lost)."""

    def __init__(
        self,
        connect: Callable[[], db.Connection],
        *,
        long_query: timedelta = timedelta(seconds=5),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._conn: db.Connection | None = None
        self.long_query = long_query
        self._clock = clock
        self._texts: dict[QueryKey, str] = {}
        self._definitions: dict[int, tuple[Row, dict[str, Any]]] = {}  # by oid, with version
        # The previous sample's rows and the models built from them, by key.
        self._queries: dict[QueryKey, tuple[Row, QueryStat]] = {}
        self._tables: dict[int, tuple[Row, Row, TableStat]] = {}
        self._indexes: dict[int, tuple[Row, IndexStat]] = {}
        self._refs: dict[int, TableRef] = {}

    @classmethod
    def from_dsn(
        cls, dsn: str, *, password: str | None = None, policy: Policy | None = None
    ) -> Sampler:
        """A sampler whose sessions are fenced with the policy's timeouts (or 5 s / 30 s)."""
        lock = policy.timeouts.lock_timeout if policy else timedelta(seconds=5)
        statement = policy.timeouts.query_timeout if policy else timedelta(seconds=30)
        long_query = policy.schedule.long_query if policy else timedelta(seconds=5)

        def connect() -> db.Connection:
            return db.connect(dsn, password=password, lock_timeout=lock,
                              statement_timeout=statement, options=SESSION)  # fmt: skip

        return cls(connect, long_query=long_query)

    def __enter__(self) -> Sampler:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _connection(self) -> db.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def sample(self) -> Snapshot:
        """One snapshot; raises MissingExtension with the fix when pg_stat_statements is absent."""
        try:
            with _gc_paused():
                return self._sample(self._connection())
        except DatabaseUnavailable:
            self.close()  # the next sample reconnects
            raise

    def _sample(self, conn: db.Connection) -> Snapshot:
        started = self._clock()
        params = {"long_query": self.long_query.total_seconds()}
        catalog = db.fetch(conn, queries.get("sample_catalog"), params, binary=True)[0]
        monotonic = self._clock()
        _check_extension(catalog)
        try:
            info = db.fetch(conn, queries.get("sample_statements"), binary=True)[0]
        except NotInPrerequisiteState as exc:  # created but not loaded
            raise MissingExtension(PRELOAD_HINT.format(database=catalog["database"])) from exc
        entries = _zip(info, QUERY_COLUMNS)
        index_rows = _zip(catalog, INDEX_COLUMNS)
        round_trips = 2 + self._fetch_texts(conn, entries)
        round_trips += self._fetch_definitions(conn, index_rows)
        disabled: list[str] = []
        if not (catalog["superuser"] or catalog["read_all_stats"]):
            disabled.append(READ_ALL_STATS_HINT.format(user=conn.info.user))
        table_rows = _zip(catalog, TABLE_COLUMNS)
        refs = self._table_refs(table_rows)
        indexes, sums = self._index_stats(index_rows, refs)
        snapshot = Snapshot(
            taken_at=catalog["taken_at"],
            monotonic=monotonic,
            server=_server(catalog),
            queries=self._query_stats(entries),
            stats_reset=info["stats_reset"],
            dealloc=int(info["dealloc"]),
            tables=self._table_stats(table_rows, refs, sums),
            indexes=indexes,
            long_running=tuple(_long_running(a) for a in catalog["long_running"]),
            disabled=tuple(disabled),
            round_trips=round_trips,
        )
        _log.debug(
            "sample.taken", queries=len(snapshot.queries), tables=len(snapshot.tables),
            indexes=len(snapshot.indexes), round_trips=round_trips,
            ms=round((self._clock() - started) * 1000, 1),
        )  # fmt: skip
        return snapshot

    def _query_stats(self, entries: list[Row]) -> tuple[QueryStat, ...]:
        """The entries whose text is known, but pg-tuner's own; unchanged ones as last time."""
        texts, previous = self._texts, self._queries
        current: dict[QueryKey, tuple[Row, QueryStat]] = {}
        statements = []
        for e in entries:  # userid, dbid, queryid, toplevel, calls, ... (QueryStat's order)
            key: QueryKey = e[:4]
            known = previous.get(key)
            if known is not None and known[0] == e:
                stat = known[1]
            else:
                text = texts.get(key)
                if text is None or queries.own(text):
                    continue
                stat = QueryStat(e[0], e[1], e[2], e[3], text, *e[4:])
            current[key] = (e, stat)
            statements.append(stat)
        self._queries = current
        return tuple(statements)

    def _table_refs(self, rows: list[Row]) -> dict[int, TableRef]:
        """TableRef by relid, the previous sample's object while the names stay the same."""
        previous = self._refs
        refs: dict[int, TableRef] = {}
        for r in rows:  # relid, schema, name, ...
            ref = previous.get(r[0])
            if ref is None or ref.name != r[2] or ref.schema != r[1]:
                ref = TableRef(r[1], r[2])
            refs[r[0]] = ref
        self._refs = refs
        return refs

    def _table_stats(
        self, rows: list[Row], refs: dict[int, TableRef], sums: dict[int, list[int]]
    ) -> tuple[TableStat, ...]:
        previous = self._tables
        current: dict[int, tuple[Row, Row, TableStat]] = {}
        tables = []
        for r in rows:  # relid, schema, name, size_bytes, reltuples, ..., tup_fetched (9), ...
            s = sums.get(r[0])
            # as pg_stat_all_tables: idx_scan, idx_tup_fetch summed over the table's indexes
            derived = (s[0], s[1] + r[9], s[2]) if s is not None else (0, 0, 0)
            known = previous.get(r[0])
            if known is not None and known[0] == r and known[1] == derived:
                stat = known[2]
            else:
                stat = TableStat(
                    r[0], refs[r[0]], r[3], derived[2], r[4], r[5], r[6], r[7], r[8],
                    derived[0], derived[1], *r[10:],
                )  # fmt: skip
            current[r[0]] = (r, derived, stat)
            tables.append(stat)
        self._tables = current
        return tuple(tables)

    def _index_stats(
        self, rows: list[Row], refs: dict[int, TableRef]
    ) -> tuple[tuple[IndexStat, ...], dict[int, list[int]]]:
        """The indexes, and by table: idx_scan and idx_tup_fetch summed over all its indexes,
        size_bytes over those in the snapshot."""
        previous, definitions = self._indexes, self._definitions
        current: dict[int, tuple[Row, IndexStat]] = {}
        indexes = []
        sums: dict[int, list[int]] = {}
        for r in rows:  # indexrelid, indrelid, xmin, table_xmin, size_bytes, idx_scan, ...
            total = sums.get(r[1])
            if total is None:
                total = sums[r[1]] = [0, 0, 0]
            total[0] += r[5]
            total[1] += r[7]
            table = refs[r[1]]
            known = previous.get(r[0])
            if known is not None and known[0] == r and known[1].table is table:
                stat = known[1]
            elif r[0] in definitions:
                stat = _index(r, table, definitions[r[0]][1])
            else:
                continue
            total[2] += r[4]
            current[r[0]] = (r, stat)
            indexes.append(stat)
        self._indexes = current
        return tuple(indexes), sums

    def _fetch_texts(self, conn: db.Connection, entries: list[Row]) -> int:
        """Texts of entries not seen before (one round trip, or none); forget the rest."""
        texts = self._texts
        unknown = [k for k in (e[:4] for e in entries) if k not in texts]
        if len(texts) > len(entries) - len(unknown):  # entries are gone: forget their texts
            keys = {e[:4] for e in entries}
            self._texts = {k: v for k, v in texts.items() if k in keys}
        missing = sorted({k[2] for k in unknown})
        if not missing:
            return 0
        found = db.fetch(conn, queries.get("sample_statement_texts"), {"queryids": missing})
        for r in found:
            self._texts[(r["userid"], r["dbid"], r["queryid"], r["toplevel"])] = r["query"]
        return 1

    def _fetch_definitions(self, conn: db.Connection, indexes: list[Row]) -> int:
        """Definitions of indexes new or changed since the last sample (one round trip, or none)."""
        current = {i[0]: i[2:4] for i in indexes}  # the xmin of its and its table's pg_class rows
        self._definitions = {
            oid: known for oid, known in self._definitions.items() if current.get(oid) == known[0]
        }
        missing = sorted(oid for oid in current if oid not in self._definitions)
        if not missing:
            return 0
        for r in db.fetch(conn, queries.get("sample_index_definitions"), {"oids": missing}):
            self._definitions[r["indexrelid"]] = (current[r["indexrelid"]], r)
        return 1


def _check_extension(catalog: dict[str, Any]) -> None:
    """Raise MissingExtension with the exact fix unless pg_stat_statements can be read."""
    database = catalog["database"]
    if catalog["version_num"] < MIN_VERSION:
        raise MissingExtension(
            f"PostgreSQL {major_version(catalog['version_num'])} is too old: pg-tuner needs "
            f"14 to {NEWEST_TESTED} (pg_stat_statements 1.9 with pg_stat_statements_info)"
        )
    settings: dict[str, str] = catalog["settings"] or {}
    preload = settings.get("shared_preload_libraries")
    if preload is not None and "pg_stat_statements" not in _split_list(preload):
        raise MissingExtension(PRELOAD_HINT.format(database=database))
    if catalog["pss_version"] is None:
        raise MissingExtension(CREATE_HINT.format(database=database))
    if _version_tuple(catalog["pss_version"]) < (1, 9):
        raise MissingExtension(
            UPDATE_HINT.format(version=catalog["pss_version"], database=database)
        )
    if settings.get("compute_query_id") == "off":
        raise MissingExtension(QUERY_ID_HINT)


def major_version(version_num: int) -> int:
    """The major version of a `server_version_num` (150014 → 15)."""
    return version_num // 10000


def version_warning(version_num: int) -> str | None:
    """What to tell about a server outside the versions pg-tuner is tested on, else None."""
    major = major_version(version_num)
    if major < MIN_VERSION // 10000:
        return f"PostgreSQL {major} is not supported: pg-tuner needs 14 to {NEWEST_TESTED}"
    if major > NEWEST_TESTED:
        return (
            f"PostgreSQL {major} is newer than pg-tuner is tested on (14 to {NEWEST_TESTED}): "
            "read its advice with care"
        )
    return None


def _split_list(value: str) -> list[str]:
    return [part.strip().strip('"') for part in value.split(",") if part.strip()]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def _server(row: dict[str, Any]) -> ServerStat:
    settings: dict[str, str] = row["settings"] or {}
    stats = row["database_stats"] or {}
    sessions: dict[str, int] = {k: int(v) for k, v in (row["sessions"] or {}).items()}
    return ServerStat(
        version_num=row["version_num"],
        version=row["version"],
        database=row["database"],
        dbid=row["dbid"],
        settings=settings,
        in_recovery=row["in_recovery"],
        blks_hit=int(stats.get("blks_hit", 0)),
        blks_read=int(stats.get("blks_read", 0)),
        xact_commit=int(stats.get("xact_commit", 0)),
        xact_rollback=int(stats.get("xact_rollback", 0)),
        deadlocks=int(stats.get("deadlocks", 0)),
        temp_bytes=int(stats.get("temp_bytes", 0)),
        sessions_by_state=sessions,
        active_sessions=sessions.get("active", 0),
        total_sessions=sum(sessions.values()),
        max_connections=int(settings.get("max_connections", "0")),
        oldest_xact_age=row["oldest_xact_age"],
        waiting_locks=int(row["waiting_locks"]),
        replicas=tuple(ReplicaLag(**r) for r in row["replicas"]),
        index_builds=tuple(_build(b) for b in row["index_builds"]),
    )


def _build(row: dict[str, Any]) -> IndexBuild:
    schema, name = row.pop("table_schema"), row.pop("table_name")
    table = TableRef(schema, name) if schema is not None and name is not None else None
    for key in ("blocks_done", "blocks_total", "tuples_done", "tuples_total"):
        row[key] = row[key] or 0
    return IndexBuild(table=table, **row)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while one sample allocates its ~10^4 short-lived
    rows: otherwise tens of collections per sample, some walking every object the process
    keeps, cost about a quarter of the sampler's CPU. Nothing a sample makes is cyclic."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _zip(row: dict[str, Any], columns: tuple[str, ...]) -> list[Row]:
    """Rows from one array per column (all NULL when there are no rows)."""
    arrays = [row[c] for c in columns]
    return list(zip(*arrays, strict=True)) if arrays[0] is not None else []


def _index(row: Row, table: TableRef, definition: dict[str, Any]) -> IndexStat:
    columns: list[str] = definition["all_columns"]
    nkeys: int = definition["nkeys"]
    return IndexStat(
        row[0], table, table.schema, definition["name"], definition["definition"],
        definition["method"], tuple(columns[:nkeys]), tuple(columns[nkeys:]),
        definition["predicate"], *row[4:],
    )  # fmt: skip


def _long_running(row: dict[str, Any]) -> LongRunning:
    started = datetime.fromisoformat(row.pop("started_at"))
    return LongRunning(started_at=started, fingerprint=fingerprint(row["query"]), **row)
