"""Deltas between two snapshots: per statement calls, time, mean and variance; per table rates.

Pure: takes two Snapshots, returns a Workload.

The arithmetic (DESIGN.md, "Regression detection"). pg_stat_statements keeps per entry the
number of calls n, the total time S and the population standard deviation sd, so the sum of
squared deviations is M2 = sd² · n. For the calls before the window (b) and all calls at its
end (a), the calls inside the window (w) are n_w = n_a - n_b and S_w = S_a - S_b, their
mean is m_w = S_w / n_w, and Chan's parallel-variance combination of b and w,

    M2_a = M2_b + M2_w + (m_w - m_b)² · n_b · n_w / n_a,

run backwards gives M2_w exactly. The window's variance is reported as the *sample*
variance M2_w / (n_w - 1), which is what Welch's t-test takes; M2_w itself is kept too.
The subtraction loses precision when the history dwarfs the window (relative error about
1e-16 · M2_a / M2_w); a tiny negative M2_w from rounding is clamped to 0, a clearly
negative one marks the window invalid.

A window is never wrong silently. It is marked invalid, with the reason, when
pg_stat_statements was reset (stats_reset changed), when an entry's counters went
backwards or its min/max moved the wrong way (it was reset or evicted and added again),
when an entry disappeared (evicted or reset), and when an entry first appeared while
pg_stat_statements was evicting entries (dealloc grew), since some of its calls may be lost.
Statements with no calls in the window are left out.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from tuner import sqlinfo
from tuner.models import (
    LongRunning,
    LongRunningGroup,
    QueryStat,
    QueryWindow,
    Snapshot,
    TableActivity,
    TableRef,
    TableStat,
    TableWindow,
    Workload,
    WorkloadQuery,
)

# A negative M2 within this share of the sum of squares is rounding, not a reset.
M2_TOLERANCE = 1e-9


def diff(before: Snapshot, after: Snapshot) -> Workload:
    """What happened between `before` and `after` (same database, `after` taken later)."""
    if before.server.dbid != after.server.dbid:
        raise ValueError("the snapshots come from different databases")
    seconds = after.monotonic - before.monotonic
    if seconds <= 0:
        seconds = (after.taken_at - before.taken_at).total_seconds()
    if seconds <= 0:
        raise ValueError("`after` was not taken after `before`")
    reset = before.stats_reset != after.stats_reset
    return Workload(
        started_at=before.taken_at,
        ended_at=after.taken_at,
        seconds=seconds,
        queries=_queries(before, after, reset),
        tables=_tables(before.tables, after.tables, seconds),
        long_running=fold_long_running((*before.long_running, *after.long_running)),
        stats_reset=reset,
    )


def _queries(before: Snapshot, after: Snapshot, reset: bool) -> tuple[QueryWindow, ...]:
    old = before.query_map()
    new = after.query_map()
    evicting = after.dealloc > before.dealloc
    windows: list[QueryWindow] = []
    for key, stat in new.items():
        previous = old.get(key)
        if reset:
            windows.append(_invalid(stat, f"pg_stat_statements was reset at {after.stats_reset}"))
        elif previous is None:
            if evicting:
                windows.append(_invalid(stat, _EVICTING.format(n=after.dealloc - before.dealloc)))
            else:
                windows.append(window(None, stat))
        elif stat.calls != previous.calls:
            windows.append(window(previous, stat))
    for key, stat in old.items():
        if key not in new:
            reason = "pg_stat_statements was reset" if reset else _GONE
            windows.append(_invalid(stat, reason))
    return tuple(sorted(windows, key=lambda w: (not w.valid, -w.total_ms)))


_EVICTING = (
    "first seen in this window while pg_stat_statements evicted {n} entries "
    "(pg_stat_statements.max too small?): some of its calls may be lost"
)
_GONE = "no longer in pg_stat_statements: evicted or reset during the window"


def window(before: QueryStat | None, after: QueryStat) -> QueryWindow:
    """The calls of one entry between two readings (`before` None: the entry is new)."""
    if before is None:
        n_b, s_b, m2_b = 0, 0.0, 0.0
        rows_b = hit_b = read_b = 0
    else:
        n_b, s_b = before.calls, before.total_exec_time
        m2_b = before.stddev_exec_time**2 * n_b
        rows_b, hit_b, read_b = before.rows, before.shared_blks_hit, before.shared_blks_read
        backwards = (
            after.calls < n_b or after.total_exec_time < s_b or after.rows < rows_b
            or after.shared_blks_hit < hit_b or after.shared_blks_read < read_b
        )  # fmt: skip
        if backwards:
            return _invalid(after, "counters went backwards: the entry was reset or re-added")
        if after.min_exec_time > before.min_exec_time or after.max_exec_time < before.max_exec_time:
            return _invalid(after, "min/max moved the wrong way: the entry was reset or re-added")
    n_a, s_a = after.calls, after.total_exec_time
    m2_a = after.stddev_exec_time**2 * n_a
    n_w = n_a - n_b
    s_w = s_a - s_b
    if n_w <= 0:
        return _invalid(after, "no calls in the window")
    mean_w = s_w / n_w
    m2_w = m2_a - m2_b
    if n_b:
        mean_b = s_b / n_b
        m2_w -= (mean_w - mean_b) ** 2 * n_b * n_w / n_a
    if m2_w < 0:
        scale = m2_a + (s_a * s_a) / n_a
        if -m2_w > M2_TOLERANCE * scale:
            return _invalid(after, "inconsistent counters: the entry was reset or re-added")
        m2_w = 0.0
    return QueryWindow(
        key=after.key,
        queryid=after.queryid,
        query=after.query,
        roles=(after.userid,),
        calls=n_w,
        total_ms=s_w,
        mean_ms=mean_w,
        variance_ms2=m2_w / (n_w - 1) if n_w > 1 else 0.0,
        m2=m2_w,
        rows=after.rows - rows_b,
        shared_blks_hit=after.shared_blks_hit - hit_b,
        shared_blks_read=after.shared_blks_read - read_b,
    )


def _invalid(stat: QueryStat, reason: str) -> QueryWindow:
    return QueryWindow(
        key=stat.key, queryid=stat.queryid, query=stat.query, calls=0, total_ms=0.0,
        mean_ms=0.0, variance_ms2=0.0, m2=0.0, rows=0, shared_blks_hit=0, shared_blks_read=0,
        valid=False, invalid_reason=reason,
    )  # fmt: skip


_TABLE_COUNTERS = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_ins",
                   "n_tup_upd", "n_tup_del", "n_tup_hot_upd")  # fmt: skip


def _tables(
    before: Iterable[TableStat], after: Iterable[TableStat], seconds: float
) -> tuple[TableWindow, ...]:
    old = {t.table: t for t in before}
    windows = []
    for stat in after:
        previous = old.get(stat.table)
        if previous is not None and previous.relid != stat.relid:
            previous = None  # dropped and created again: everything counted is new
        counts = {
            name: getattr(stat, name) - (getattr(previous, name) if previous else 0)
            for name in _TABLE_COUNTERS
        }
        if any(v < 0 for v in counts.values()):
            windows.append(TableWindow(
                table=stat.table, seconds=seconds, **dict.fromkeys(_TABLE_COUNTERS, 0),
                valid=False, invalid_reason="statistics were reset (pg_stat_reset) in the window",
            ))  # fmt: skip
        else:
            windows.append(TableWindow(table=stat.table, seconds=seconds, **counts))
    return tuple(windows)


def fold_long_running(statements: Iterable[LongRunning]) -> tuple[LongRunningGroup, ...]:
    """Group long statements by fingerprint; one execution (pid, start) counts once."""
    executions: dict[tuple[int, object], LongRunning] = {}
    for s in statements:
        key = (s.pid, s.started_at)
        if key not in executions or s.duration > executions[key].duration:
            executions[key] = s
    groups: dict[str, list[LongRunning]] = {}
    for s in executions.values():
        groups.setdefault(s.fingerprint, []).append(s)
    folded = []
    for fp, runs in groups.items():
        runs.sort(key=lambda r: -r.duration)
        folded.append(LongRunningGroup(
            fingerprint=fp, example=runs[0].query, count=len(runs),
            max_duration=runs[0].duration, durations=tuple(r.duration for r in runs),
        ))  # fmt: skip
    return tuple(sorted(folded, key=lambda g: -g.max_duration))


# --- one snapshot: the window since pg_stat_statements' own reset ------------------------------


def since_reset(snapshot: Snapshot) -> Workload:
    """Everything pg_stat_statements counted since its last reset, as one window: its
    top-level statements, and per table the rows its INSERT, UPDATE, DELETE and COPY
    statements wrote (`statement_writes`).

    The tables' own counters are not used: they span their own period (a bulk load before
    the statements' reset, or months of history beside a day of statements) and no
    reading tells how it relates to the statements' one — a reset of one database's or one
    query's entries leaves `pg_stat_statements_info.stats_reset` where it was. A statement's
    rows are counted in the same entries as its calls, so reads and writes always share
    one window. Writes made inside functions and triggers count only where
    `pg_stat_statements.track = all` records them (as nested entries).
    """
    reset = snapshot.stats_reset
    seconds = max((snapshot.taken_at - reset).total_seconds() if reset else 1.0, 1.0)
    found = (window(None, q) for q in snapshot.queries if q.calls > 0 and q.toplevel)
    queries = tuple(sorted((q for q in found if q.valid), key=lambda w: -w.total_ms))
    everything = (window(None, q) for q in snapshot.queries if q.calls > 0)
    tables = statement_writes(
        (q for q in everything if q.valid), [t.table for t in snapshot.tables], seconds
    )
    return Workload(
        started_at=reset or snapshot.taken_at,
        ended_at=snapshot.taken_at,
        seconds=seconds,
        queries=queries,
        tables=tables,
        long_running=fold_long_running(snapshot.long_running),
    )


_COPY_FROM = re.compile(
    r'^\s*copy\s+((?:"(?:[^"]|"")+"|[a-z_][\w$]*)(?:\.(?:"(?:[^"]|"")+"|[a-z_][\w$]*))?)'
    r"\s*(?:\([^)]*\)\s*)?from\b",
    re.IGNORECASE,
)


def statement_writes(
    queries: Iterable[QueryWindow], tables: Sequence[TableRef], seconds: float
) -> tuple[TableWindow, ...]:
    """Rows written per table by the window's write statements (their `rows`).

    A name the statement leaves unqualified is the one table of that name; when several
    schemas have it, the rows are not attributed (no guess). Scans are not counted here.
    """
    written: dict[TableRef, dict[str, int]] = {t: {} for t in tables}
    for q in queries:
        for table, counter in _writes_of(q.query, tables):
            counts = written[table]
            counts[counter] = counts.get(counter, 0) + q.rows
    found = []
    for t, counts in written.items():
        figures: dict[str, Any] = dict.fromkeys(_TABLE_COUNTERS, 0) | counts
        found.append(TableWindow(table=t, seconds=seconds, **figures))
    return tuple(found)


_COUNTER_OF = {
    sqlinfo.StatementKind.INSERT: "n_tup_ins",
    sqlinfo.StatementKind.UPDATE: "n_tup_upd",
    sqlinfo.StatementKind.DELETE: "n_tup_del",
}


def _writes_of(text: str, tables: Sequence[TableRef]) -> list[tuple[TableRef, str]]:
    if copy := _COPY_FROM.match(text):
        name = _copy_target(copy.group(1))
        found = resolve(name, tables)
        return [(found, "n_tup_ins")] if found else []
    info = sqlinfo.analyze(text)
    if isinstance(info, sqlinfo.Unparsed) or info.kind not in _COUNTER_OF:
        return []
    counter = _COUNTER_OF[info.kind]
    return [(t, counter) for name in info.writes if (t := resolve(name, tables))]


def _copy_target(text: str) -> sqlinfo.TableName:
    parts = [
        p[1:-1].replace('""', '"') if p.startswith('"') else p.lower()
        for p in re.findall(r'"(?:[^"]|"")+"|[^.]+', text)
    ]
    return sqlinfo.TableName(parts[0] if len(parts) == 2 else None, parts[-1])


def resolve(
    name: sqlinfo.TableName,
    tables: Collection[TableRef],
    search_path: Sequence[str] | None = None,
) -> TableRef | None:
    """The table a statement names — the one rule for every reader of statement texts:
    exact when qualified; else the first schema of the statement's role's `search_path`
    that has it, as PostgreSQL resolved it; with no path known, the only table of that
    name, or None when several schemas have one (no guess)."""
    if name.schema is not None:
        ref = TableRef(name.schema, name.name)
        return ref if ref in tables else None
    if search_path is not None:
        return next((r for s in search_path if (r := TableRef(s, name.name)) in tables), None)
    matches = [t for t in tables if t.name == name.name]
    return matches[0] if len(matches) == 1 else None


def parse_search_path(value: str, role: str | None) -> tuple[str, ...]:
    """The schemas of a search_path setting (`"$user", public`), as PostgreSQL reads it:
    unquoted names folded to lower case, `$user` the role's name (left out when no role is
    known), pg_catalog and pg_temp left out (the what-if session places them itself)."""
    found: list[str] = []
    for item in re.findall(r'"(?:[^"]|"")*"|[^,\s][^,]*', value):
        item = item.strip()
        name = item[1:-1].replace('""', '"') if item.startswith('"') else item.lower()
        if name == "$user":
            name = role or ""
        if name and name not in ("pg_catalog", "pg_temp") and name not in found:
            found.append(name)
    return tuple(found)


def merged(queries: Iterable[QueryWindow]) -> tuple[QueryWindow, ...]:
    """One entry per statement text: psycopg sends a small int as int2 and a large one as
    int4/int8, so one `WHERE id = $1` can show under several queryids (and roles). Their
    calls add up; the mean and M2 combine exactly (Chan);
    the busiest entry lends its key and queryid. Busiest first."""
    groups: dict[tuple[str, bool], list[QueryWindow]] = {}
    for q in queries:  # a nested entry (inside a function, or an EXPLAIN's) stays apart
        groups.setdefault((" ".join(q.query.split()), q.key[3]), []).append(q)
    found = [_combined(g) for g in groups.values()]
    return tuple(sorted(found, key=lambda w: (not w.valid, -w.total_ms)))


def _combined(group: list[QueryWindow]) -> QueryWindow:
    valid = [q for q in group if q.valid]
    if len(valid) < 2:
        return valid[0] if valid else group[0]
    lead = max(valid, key=lambda q: q.calls)
    calls, total, m2 = 0, 0.0, 0.0
    for q in valid:
        if calls:
            delta = q.mean_ms - total / calls
            m2 += q.m2 + delta * delta * calls * q.calls / (calls + q.calls)
        else:
            m2 = q.m2
        calls += q.calls
        total += q.total_ms
    return QueryWindow(
        key=lead.key, queryid=lead.queryid, query=lead.query,
        roles=tuple(sorted({r for q in valid for r in q.roles})), calls=calls, total_ms=total,
        mean_ms=total / calls, variance_ms2=m2 / (calls - 1) if calls > 1 else 0.0, m2=m2,
        rows=sum(q.rows for q in valid),
        shared_blks_hit=sum(q.shared_blks_hit for q in valid),
        shared_blks_read=sum(q.shared_blks_read for q in valid),
    )  # fmt: skip


def table_activity(snapshot: Snapshot, workload: Workload) -> list[TableActivity]:
    """Per table: the catalog's figures from the snapshot, the writes from the window."""
    found = []
    for stat in snapshot.tables:
        w = workload.table(stat.table)
        found.append(
            TableActivity(
                table=stat.table,
                seconds=w.seconds if w else workload.seconds,
                reltuples=stat.reltuples,
                n_live_tup=stat.n_live_tup,
                n_dead_tup=stat.n_dead_tup,
                n_tup_ins=w.n_tup_ins if w and w.valid else 0,
                n_tup_upd=w.n_tup_upd if w and w.valid else 0,
                n_tup_del=w.n_tup_del if w and w.valid else 0,
                n_mod_since_analyze=stat.n_mod_since_analyze,
                last_analyzed=stat.last_analyzed,
            )
        )
    return found


# --- statement identity: texts that differ only in literals are one statement -------------

_LITERAL = re.compile(
    r"""'(?:[^']|'')*'|\$(\w*)\$.*?\$\1\$|\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b|\$\d+""",
    re.IGNORECASE | re.DOTALL,
)
_IN_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
# pg_stat_statements turns the field of EXTRACT(year FROM x) into a constant: `extract($1 from`
_EXTRACT_FIELD = re.compile(r"\bextract\s*\(\s*[a-z_]+\s+from\b", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.DOTALL)


def normalize(text: str) -> str:
    """The text with comments dropped, literals and parameters as `?`, IN lists folded."""
    text = _COMMENT.sub(" ", text)
    text = _EXTRACT_FIELD.sub("extract(? from", text)
    text = _LITERAL.sub("?", text)
    text = _IN_LIST.sub("(?)", text)
    return _SPACE.sub(" ", text).strip().rstrip(";").strip().lower()


def fingerprint(text: str) -> str:
    """A short stable hash of `normalize(text)`: texts that differ only in literals agree."""
    return hashlib.sha1(normalize(text).encode()).hexdigest()[:16]


def statement_key(text: str) -> int:
    """A stable key for a statement captured with literals (it has no queryid)."""
    return -int(zlib.crc32(text.encode()))


def captured_queries(groups: Iterable[LongRunningGroup]) -> list[WorkloadQuery]:
    """Long statements the samples caught, as the advisor reads a workload: their literal
    text, executions seen, and the time they were seen running (a lower bound)."""
    return [
        WorkloadQuery(statement_key(g.example), g.example, g.count, 1000.0 * sum(g.durations))
        for g in groups
    ]
