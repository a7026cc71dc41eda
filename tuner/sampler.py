"""Snapshot from pg_stat_* in two round trips in the steady state, at most four.

1. `sample_catalog`: one row of JSON aggregates (server, sessions, locks, standbys, index
   builds, long statements, tables, indexes) that also says whether pg_stat_statements is
   preloaded and created;
2. `sample_statements`: pg_stat_statements without the texts, with pg_stat_statements_info;
3. only when entries appeared since the last sample: their texts;
4. only when indexes appeared or changed: their definitions and columns.
The texts and definitions are kept between samples, so a steady workload costs two cheap
statements. Everything works for a role with only `pg_monitor`; with less, the parts it
cannot read are listed in `Snapshot.disabled` with the GRANT that switches them on.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from tuner import db, log, queries
from tuner.config import Policy
from tuner.errors import DatabaseUnavailable, MissingExtension
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

_log = log.get(__name__)
# JIT compiles the catalog statement's many expressions on every sample: seconds on a large
# catalog for a statement that runs in tens of milliseconds without it. extra_float_digits > 0
# makes float8 print its shortest exact form, so the times survive JSON bit for bit.
SESSION = {"jit": "off", "extra_float_digits": "1"}
MIN_VERSION = 140000  # pg_stat_statements 1.9: toplevel, pg_stat_statements_info
OWN_MARK = "/* pg-tuner"  # pg-tuner's own statements start with this comment; left out

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
READ_ALL_STATS_HINT = (
    "statements of other roles, their texts and standby lag are hidden from this role: "
    "GRANT pg_monitor TO {user};"
)

_LITERAL = re.compile(
    r"""'(?:[^']|'')*'|\$(\w*)\$.*?\$\1\$|\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b|\$\d+""",
    re.IGNORECASE | re.DOTALL,
)
_IN_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_SPACE = re.compile(r"\s+")
_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.DOTALL)


def normalize(text: str) -> str:
    """The text with comments dropped, literals and parameters as `?`, IN lists folded."""
    text = _COMMENT.sub(" ", text)
    text = _LITERAL.sub("?", text)
    text = _IN_LIST.sub("(?)", text)
    return _SPACE.sub(" ", text).strip().rstrip(";").strip().lower()


def fingerprint(text: str) -> str:
    """A short stable hash of `normalize(text)`: texts that differ only in literals agree."""
    return hashlib.sha1(normalize(text).encode()).hexdigest()[:16]


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
        self._definitions: dict[int, tuple[str, dict[str, Any]]] = {}

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
            return self._sample(self._connection())
        except DatabaseUnavailable:
            self.close()  # the next sample reconnects
            raise

    def _sample(self, conn: db.Connection) -> Snapshot:
        started = self._clock()
        params = {"long_query": self.long_query.total_seconds()}
        catalog = db.fetch(conn, queries.get("sample_catalog"), params)[0]
        monotonic = self._clock()
        _check_extension(catalog)
        try:
            info = db.fetch(conn, queries.get("sample_statements"))[0]
        except db.ObjectNotInPrerequisiteState as exc:  # created but not loaded
            raise MissingExtension(PRELOAD_HINT.format(database=catalog["database"])) from exc
        entries: list[list[Any]] = info["entries"]
        round_trips = 2 + self._fetch_texts(conn, entries)
        round_trips += self._fetch_definitions(conn, catalog["indexes"])
        disabled: list[str] = []
        if not (catalog["superuser"] or catalog["read_all_stats"]):
            disabled.append(READ_ALL_STATS_HINT.format(user=conn.info.user))
        indexes = tuple(
            _index(i, self._definitions[i["indexrelid"]][1])
            for i in catalog["indexes"]
            if i["indexrelid"] in self._definitions
        )
        index_bytes: dict[TableRef, int] = {}
        for index in indexes:
            index_bytes[index.table] = index_bytes.get(index.table, 0) + index.size_bytes
        texts = self._texts
        statements = []
        for e in entries:  # userid, dbid, queryid, toplevel, calls, ... (QueryStat's order)
            text = texts.get((e[0], e[1], e[2], e[3]))
            if text is not None and not text.startswith(OWN_MARK):
                statements.append(QueryStat(e[0], e[1], e[2], e[3], text, *e[4:]))
        snapshot = Snapshot(
            taken_at=catalog["taken_at"],
            monotonic=monotonic,
            server=_server(catalog),
            queries=tuple(statements),
            stats_reset=info["stats_reset"],
            dealloc=int(info["dealloc"]),
            tables=tuple(_table(t, index_bytes) for t in catalog["tables"]),
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

    def _fetch_texts(self, conn: db.Connection, entries: list[list[Any]]) -> int:
        """Texts of entries not seen before (one round trip, or none); forget the rest."""
        keys = {(e[0], e[1], e[2], e[3]) for e in entries}
        self._texts = {k: v for k, v in self._texts.items() if k in keys}
        missing = sorted({k[2] for k in keys if k not in self._texts})
        if not missing:
            return 0
        found = db.fetch(conn, queries.get("sample_statement_texts"), {"queryids": missing})
        for r in found:
            self._texts[(r["userid"], r["dbid"], r["queryid"], r["toplevel"])] = r["query"]
        return 1

    def _fetch_definitions(self, conn: db.Connection, indexes: list[dict[str, Any]]) -> int:
        """Definitions of indexes new or changed since the last sample (one round trip, or none)."""
        current = {i["indexrelid"]: i["version"] for i in indexes}
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
            f"PostgreSQL {catalog['version_num']} is too old: pg-tuner needs 14 or later "
            "(pg_stat_statements 1.9 with pg_stat_statements_info)"
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


def _split_list(value: str) -> list[str]:
    return [part.strip().strip('"') for part in value.split(",") if part.strip()]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


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


_TIMES = ("last_vacuum", "last_autovacuum", "last_analyze", "last_autoanalyze")


def _table(row: dict[str, Any], index_bytes: dict[TableRef, int]) -> TableStat:
    table = TableRef(row.pop("schema"), row.pop("name"))
    row["indexes_bytes"] = index_bytes.get(table, 0)
    for key in _TIMES:
        row[key] = _ts(row[key])
    row["reltuples"] = float(row["reltuples"])
    return TableStat(table=table, **row)


def _index(row: dict[str, Any], definition: dict[str, Any]) -> IndexStat:
    columns: list[str] = definition["all_columns"]
    nkeys: int = definition["nkeys"]
    return IndexStat(
        indexrelid=row["indexrelid"], table=TableRef(row["table_schema"], row["table_name"]),
        schema=row["schema"], name=row["name"], definition=definition["definition"],
        method=definition["method"], columns=tuple(columns[:nkeys]),
        include=tuple(columns[nkeys:]), predicate=definition["predicate"],
        size_bytes=row["size_bytes"], idx_scan=row["idx_scan"],
        idx_tup_read=row["idx_tup_read"], idx_tup_fetch=row["idx_tup_fetch"],
        is_valid=row["is_valid"], is_ready=row["is_ready"], is_unique=row["is_unique"],
        is_primary=row["is_primary"], backs_constraint=row["backs_constraint"],
        is_replica_identity=row["is_replica_identity"], comment=row["comment"],
    )  # fmt: skip


def _long_running(row: dict[str, Any]) -> LongRunning:
    started = datetime.fromisoformat(row.pop("started_at"))
    return LongRunning(started_at=started, fingerprint=fingerprint(row["query"]), **row)
