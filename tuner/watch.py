"""Which queries an action is measured on (pure: takes statements and plans, no I/O).

An action's baseline and verification windows are reduced to the statements of its table
(`table_queries`, EXPLAINed before and after it) and a few busy statements elsewhere that
measure the load (`controls`, read by `evidence.load_change`). Of those, verification
watches the ones whose plan shape the change altered, the ones the advisor expected to
serve, the reads that may use a new index, and the table's writes pooled into one path
(`watch`). The watch is journaled as plain lists (`watch_data`) and read back after a
restart (`watch_from_data`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tuner import sqlinfo
from tuner.models import QueryWindow, TableRef
from tuner.models.records import TransitionData, WatchData

MAX_EXPLAINED = 200  # queries of the action's table EXPLAINed before and after it
MAX_CONTROLS = 20  # statements on other tables that measure the load (evidence.load_change)
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
Parsed = tuple[QueryWindow, tuple[sqlinfo.TableName, ...]]  # a statement and its tables


def parsed(queries: Iterable[QueryWindow]) -> list[Parsed]:
    """The statements that sqlinfo reads, with the tables each reads or writes: parsed once
    for both the action's table queries and the load's controls."""
    found = []
    for q in queries:
        info = sqlinfo.analyze(q.query)
        if not isinstance(info, sqlinfo.Unparsed):
            found.append((q, (*info.reads, *info.writes)))
    return found


def names(name: sqlinfo.TableName, table: TableRef) -> bool:
    """Whether a statement's table name (schema optional) is `table`."""
    return name.name == table.name and name.schema in (None, table.schema)


def table_queries(statements: Iterable[Parsed], table: TableRef) -> dict[int, str]:
    """queryid → text of the statements that read or write `table`, busiest first (at most
    MAX_EXPLAINED)."""
    found: dict[int, str] = {}
    for q, tables in sorted(statements, key=lambda p: -p[0].total_ms):
        if any(names(n, table) for n in tables):
            found[q.queryid] = q.query
        if len(found) >= MAX_EXPLAINED:
            break
    return found


class ChangeLike(Protocol):
    """A change of a table's indexes (`flight.Change`)."""

    @property
    def table(self) -> TableRef: ...
    @property
    def ours(self) -> bool: ...
    @property
    def watched(self) -> frozenset[int] | None: ...
    @property
    def unmoved(self) -> frozenset[int]: ...


def moves(
    statements: Sequence[Parsed], table: TableRef
) -> Callable[[ChangeLike], frozenset[int] | None]:
    """Which of the queries of `table` (an action's) a change (`flight.Change`) may have
    moved, so that their samples from before it no longer count; None when it moves all of
    them (an operator's change of `table` itself, or the tuner's before it is known what
    it left alone).

    The tuner's change of `table` moves all but the queries it left alone (`unmoved`: plan
    unchanged, never among those it could serve); its change of another table moves the
    queries of `table` it is verified on (a join it left alone was not moved by it); an
    operator's change of another table moves the queries that read both."""
    ids = table_queries(statements, table)
    reads = {q.queryid: tables for q, tables in statements if q.queryid in ids}

    def moved(change: ChangeLike) -> frozenset[int] | None:
        if change.table == table:
            if change.ours and change.watched is not None:
                return frozenset(ids.keys() - change.unmoved)
            return None
        if change.watched is not None:
            return frozenset(change.watched & ids.keys())
        return frozenset(q for q, tables in reads.items()
                         if any(names(n, change.table) for n in tables))  # fmt: skip

    return moved


def linked(statements: Sequence[Parsed], table: TableRef) -> Callable[[ChangeLike], bool]:
    """Whether a change moves any of the queries of `table` (`moves`)."""
    moved = moves(statements, table)
    return lambda change: (found := moved(change)) is None or bool(found)


def controls(
    statements: Iterable[Parsed],
    texts: Mapping[int, str],
    table: TableRef,
    min_calls: int,
    changed: Collection[TableRef] = (),
) -> set[int]:
    """The busiest statements on user tables, none of them `table` nor among `texts`, called
    `min_calls` times: verification's measure of the load (`evidence.load_change`). None on
    a table `changed` within the window either: they measure that change, not the load."""
    found: set[int] = set()
    left_out = (table, *changed)
    for q, tables in sorted(statements, key=lambda p: -p[0].calls):
        if q.queryid in texts or q.calls < min_calls or not tables:
            continue
        if not any(n.schema in SYSTEM_SCHEMAS or n.name.startswith("pg_")
                   or any(names(n, t) for t in left_out) for n in tables):  # fmt: skip
            found.add(q.queryid)
            if len(found) >= MAX_CONTROLS:
                break
    return found


def watch_data(watch: Watch | None) -> dict[str, list[int]]:
    """The watch as the journal keeps it (`verifying` records' data)."""
    if watch is None:
        return {"reads": [], "writes": []}
    return WatchData(watch.reads, watch.writes, watch.guards, watch.controls).to_data()


def watch_from_data(
    journaled: TransitionData,
    table: TableRef,
    baseline: Iterable[int] | None,
    texts: Mapping[int, str],
) -> Watch | None:
    """The watch back from an action's journaled data. Records from before the watch was
    journaled: the baseline's queries of the table (`texts`), reads and writes told apart
    by their text; the load's controls are not known then. None without either."""
    if (watched := journaled.watch) is not None:
        return Watch(watched.reads, watched.writes, watched.guards, watched.controls)
    if baseline is None:
        return None
    ids = {q: texts.get(q, "") for q in baseline if q in texts or not texts}
    writes = write_queries(ids, table)
    return Watch(frozenset(ids) - writes, frozenset(writes))


@dataclass(frozen=True, slots=True)
class Watch:
    """What verification compares: read queries, and write statements pooled as one path.

    `guards` are the reads watched only for a slowdown beyond the bound (`may_use`: their
    plans did not change and the change was not made for them); they stay out of the net
    change, which they would only dilute with their own time and drift. `controls` are
    statements on other tables, which the change cannot touch: how much they slowed between
    the windows is the load's share of a guard's slowdown (`load_change`).
    """

    reads: frozenset[int]
    writes: frozenset[int] = frozenset()
    guards: frozenset[int] = frozenset()
    controls: frozenset[int] = frozenset()


Shape = tuple[Any, ...]


def plan_shape(plan: Any) -> Shape:
    """Node types, index names and relations of an EXPLAIN (FORMAT JSON) plan, as a tree.

    Costs and row estimates are left out: a change of estimate is not a change of plan.
    Accepts the EXPLAIN output as text, as its list, or as one `{"Plan": ...}` or plan node.
    """
    if isinstance(plan, str):
        plan = json.loads(plan)
    if isinstance(plan, list):
        return tuple(plan_shape(p) for p in plan)
    if isinstance(plan, dict) and "Plan" in plan:
        return plan_shape(plan["Plan"])
    if not isinstance(plan, dict):
        return ()
    return (
        plan.get("Node Type"),
        plan.get("Index Name"),
        plan.get("Relation Name"),
        plan.get("Join Type"),
        plan.get("Strategy"),
        tuple(plan_shape(child) for child in plan.get("Plans", ())),
    )


def affected(plans_before: Mapping[int, Any], plans_after: Mapping[int, Any]) -> set[int]:
    """Query ids whose plan shape differs; a query explained on one side only counts too."""
    changed: set[int] = set()
    for queryid in plans_before.keys() | plans_after.keys():
        before, after = plans_before.get(queryid), plans_after.get(queryid)
        if before is None or after is None or plan_shape(before) != plan_shape(after):
            changed.add(queryid)
    return changed


def write_queries(texts: Mapping[int, str], table: TableRef) -> set[int]:
    """Query ids of INSERT, UPDATE and DELETE statements that write to `table`.

    A table named without a schema in the query is taken to be this one when the names match.
    """
    found: set[int] = set()
    for queryid, text in texts.items():
        info = sqlinfo.analyze(text)
        if isinstance(info, sqlinfo.Unparsed) or info.kind not in _WRITES:
            continue
        if any(w.name == table.name and w.schema in (None, table.schema) for w in info.writes):
            found.add(queryid)
    return found


_WRITES = (sqlinfo.StatementKind.INSERT, sqlinfo.StatementKind.UPDATE, sqlinfo.StatementKind.DELETE)


def may_use(texts: Mapping[int, str], table: TableRef, leading: str) -> set[int]:
    """Query ids of statements on `table` that filter, join, sort or group by `leading`:
    the planner may choose an index led by it for them with some parameter values, even
    where the generic plan does not (`WHERE a = $1 ORDER BY b LIMIT n` walks a new index
    on b for the values it thinks frequent)."""
    found: set[int] = set()
    for queryid, text in texts.items():
        info = sqlinfo.analyze(text)
        if isinstance(info, sqlinfo.Unparsed):
            continue
        for use in info.tables:
            if use.table.name != table.name or use.table.schema not in (None, table.schema):
                continue
            keys = (*use.equality, *use.ranges, *use.joins, *use.group_by,
                    *(k.column for k in use.order_by))  # fmt: skip
            if leading in keys:
                found.add(queryid)
    return found


def watch(
    plans_before: Mapping[int, Any],
    plans_after: Mapping[int, Any],
    texts: Mapping[int, str],
    table: TableRef,
    expected: Iterable[int] = (),
    leading: str | None = None,
    controls: Iterable[int] = (),
    removes: bool = False,
) -> Watch:
    """The queries to verify: altered plans, expected ones and (for a new index led by
    `leading`) those that may use it, as reads; the table's writes; `controls`, statements
    on other tables (none of `texts`).

    An index dropped (`removes`) no longer has to be maintained, so it cannot slow a write
    by that; only the writes whose own plan changed (an UPDATE or DELETE that found its
    rows through it) are watched."""
    altered = affected(plans_before, plans_after)
    every_write = write_queries(texts, table)
    writes = every_write & altered if removes else every_write
    served = altered | set(expected)
    guards = may_use(texts, table, leading) - served - every_write if leading is not None else set()
    return Watch(frozenset((served | guards) - every_write), frozenset(writes), frozenset(guards),
                 frozenset(controls) - texts.keys())  # fmt: skip


def unmoved(
    plans_before: Mapping[int, Any],
    plans_after: Mapping[int, Any],
    texts: Mapping[int, str],
    table: TableRef,
    watched: Watch,
) -> frozenset[int]:
    """The queries of `table` a change left alone: EXPLAINed before and after it with the
    same plan shape, not watched (so none it could serve), and no write (an index added or
    dropped changes what every write maintains)."""
    explained = plans_before.keys() & plans_after.keys()
    moved = affected(plans_before, plans_after) | watched.reads | write_queries(texts, table)
    return frozenset(explained - moved)


def watched_queries(watched: Watch) -> frozenset[int]:
    """Every query id verification reads, for the sampler to keep in its windows."""
    return watched.reads | watched.writes | watched.controls
