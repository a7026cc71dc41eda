"""Snapshot from pg_stat_* in two round trips: the catalog in one, pg_stat_statements in the other.

The first statement returns one row of JSON aggregates (server, sessions, locks, standbys,
index builds, long statements, tables, indexes) and says whether pg_stat_statements is
preloaded and created; the second reads pg_stat_statements with pg_stat_statements_info.
Everything works for a role with only `pg_monitor`; with less, the parts it cannot read
are listed in `Snapshot.disabled` with the GRANT that switches them on.
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
    QueryStat,
    ReplicaLag,
    ServerStat,
    Snapshot,
    TableRef,
    TableStat,
)

_log = log.get(__name__)
MIN_VERSION = 140000  # pg_stat_statements 1.9: toplevel, pg_stat_statements_info

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
                              statement_timeout=statement)  # fmt: skip

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
        try:
            rows = db.fetch(conn, queries.get("sample_statements"))
        except db.ObjectNotInPrerequisiteState as exc:  # created but not loaded
            raise MissingExtension(PRELOAD_HINT.format(database=database)) from exc
        disabled: list[str] = []
        if not (catalog["superuser"] or catalog["read_all_stats"]):
            user = conn.info.user
            disabled.append(READ_ALL_STATS_HINT.format(user=user))
        snapshot = Snapshot(
            taken_at=catalog["taken_at"],
            monotonic=monotonic,
            server=_server(catalog),
            queries=tuple(_query(r) for r in rows if r["queryid"] is not None),
            stats_reset=rows[0]["stats_reset"] if rows else None,
            dealloc=int(rows[0]["dealloc"]) if rows else 0,
            tables=tuple(_table(t) for t in catalog["tables"]),
            indexes=tuple(_index(i) for i in catalog["indexes"]),
            long_running=tuple(_long_running(a) for a in catalog["long_running"]),
            disabled=tuple(disabled),
            round_trips=2,
        )
        _log.debug(
            "sample.taken", queries=len(snapshot.queries), tables=len(snapshot.tables),
            indexes=len(snapshot.indexes), ms=round((self._clock() - started) * 1000, 1),
        )  # fmt: skip
        return snapshot


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


def _query(row: dict[str, Any]) -> QueryStat:
    return QueryStat(
        userid=row["userid"], dbid=row["dbid"], queryid=row["queryid"],
        toplevel=row["toplevel"], query=row["query"], calls=row["calls"],
        total_exec_time=row["total_exec_time"], mean_exec_time=row["mean_exec_time"],
        stddev_exec_time=row["stddev_exec_time"], min_exec_time=row["min_exec_time"],
        max_exec_time=row["max_exec_time"], rows=row["rows"],
        shared_blks_hit=row["shared_blks_hit"], shared_blks_read=row["shared_blks_read"],
    )  # fmt: skip


_TIMES = ("last_vacuum", "last_autovacuum", "last_analyze", "last_autoanalyze")


def _table(row: dict[str, Any]) -> TableStat:
    table = TableRef(row.pop("schema"), row.pop("name"))
    for key in _TIMES:
        row[key] = _ts(row[key])
    row["reltuples"] = float(row["reltuples"])
    return TableStat(table=table, **row)


def _index(row: dict[str, Any]) -> IndexStat:
    table = TableRef(row.pop("table_schema"), row.pop("table_name"))
    columns: list[str] = row.pop("all_columns")
    nkeys: int = row.pop("nkeys")
    return IndexStat(
        table=table, columns=tuple(columns[:nkeys]), include=tuple(columns[nkeys:]), **row
    )


def _long_running(row: dict[str, Any]) -> LongRunning:
    started = datetime.fromisoformat(row.pop("started_at"))
    return LongRunning(started_at=started, fingerprint=fingerprint(row["query"]), **row)
