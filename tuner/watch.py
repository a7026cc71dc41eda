"""Which queries an action is measured on (pure: takes the window's statements, no I/O).

An action's baseline and verification windows are reduced to the statements of its table
(`table_queries`, EXPLAINed before and after it) and a few busy statements elsewhere that
measure the load (`controls`, read by `verify.load_change`). The watch that verification
keeps is journaled as plain lists (`watch_data`) and read back after a restart
(`watch_from_data`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tuner import sqlinfo, verify
from tuner.models import QueryWindow, TableRef

MAX_EXPLAINED = 200  # queries of the action's table EXPLAINed before and after it
MAX_CONTROLS = 20  # statements on other tables that measure the load (verify.load_change)
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


def controls(
    statements: Iterable[Parsed], texts: Mapping[int, str], table: TableRef, min_calls: int
) -> set[int]:
    """The busiest statements on user tables, none of them `table` nor among `texts`, called
    `min_calls` times: verification's measure of the load (`verify.load_change`)."""
    found: set[int] = set()
    for q, tables in sorted(statements, key=lambda p: -p[0].calls):
        if q.queryid in texts or q.calls < min_calls or not tables:
            continue
        if not any(n.schema in SYSTEM_SCHEMAS or n.name.startswith("pg_") or names(n, table)
                   for n in tables):  # fmt: skip
            found.add(q.queryid)
            if len(found) >= MAX_CONTROLS:
                break
    return found


def watch_data(watch: verify.Watch | None) -> dict[str, list[int]]:
    """The watch as the journal keeps it (`verifying` records' data)."""
    if watch is None:
        return {"reads": [], "writes": []}
    return {
        "reads": sorted(watch.reads),
        "writes": sorted(watch.writes),
        "guards": sorted(watch.guards),
        "controls": sorted(watch.controls),
    }


def watch_from_data(
    data: Mapping[str, Any],
    table: TableRef,
    baseline: Iterable[int] | None,
    texts: Mapping[int, str],
) -> verify.Watch | None:
    """The watch back from an action's journaled data. Records from before the watch was
    journaled: the baseline's queries of the table (`texts`), reads and writes told apart
    by their text; the load's controls are not known then. None without either."""
    watched = data.get("watch")
    if isinstance(watched, dict):
        return verify.Watch(
            frozenset(watched.get("reads", ())),
            frozenset(watched.get("writes", ())),
            frozenset(watched.get("guards", ())),
            frozenset(watched.get("controls", ())),
        )
    if baseline is None:
        return None
    ids = {q: texts.get(q, "") for q in baseline if q in texts or not texts}
    writes = verify.write_queries(ids, table)
    return verify.Watch(frozenset(ids) - writes, frozenset(writes))
