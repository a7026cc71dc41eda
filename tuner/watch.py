"""Which queries verification watches after a change (pure): those whose plan shape the
change altered, the ones the advisor expected to serve, the reads that may use a new index,
and the writes to the table, pooled into one path; plus the controls on other tables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tuner import sqlinfo
from tuner.models import TableRef


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
) -> Watch:
    """The queries to verify: altered plans, expected ones and (for a new index led by
    `leading`) those that may use it, as reads; the table's writes; `controls`, statements
    on other tables (none of `texts`)."""
    writes = write_queries(texts, table)
    served = affected(plans_before, plans_after) | set(expected)
    guards = may_use(texts, table, leading) - served - writes if leading is not None else set()
    return Watch(frozenset((served | guards) - writes), frozenset(writes), frozenset(guards),
                 frozenset(controls) - texts.keys())  # fmt: skip


def watched_queries(watched: Watch) -> frozenset[int]:
    """Every query id verification reads, for the sampler to keep in its windows."""
    return watched.reads | watched.writes | watched.controls
