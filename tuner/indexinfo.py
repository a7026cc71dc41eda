"""An index as the catalog describes it, and whether it is the one a spec or action means.

Pure: `IndexInfo` is one row of exec_index_info.sql; `same_index` compares it to a spec by
its definition, `is_ours` also by the marker the executor wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuner.errors import RefusedStatement
from tuner.models import Action, IndexSpec
from tuner.statements import is_tuner_index, made_by, quote_ident, spec_from_definition


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """One index as the catalog describes it (exec_index_info.sql)."""

    schema: str
    name: str
    table_name: str
    definition: str
    valid: bool
    is_unique: bool
    replica_identity: bool
    backs_constraint: bool
    partitioned: bool
    comment: str | None
    size_bytes: int

    @property
    def tuner_made(self) -> bool:
        return is_tuner_index(self.comment)


def same_index(info: IndexInfo, spec: IndexSpec) -> bool:
    """Is `info` on `spec`'s table with `spec`'s columns, order, INCLUDE and method?"""
    if info.table_name != spec.table.name:
        return False
    try:
        _, found = spec_from_definition(info.definition, info.schema)
    except RefusedStatement:
        # pg_get_indexdef writes expressions and predicates its own way (`lower((email)
        # ::text)`, `WHERE (status = 'open'::text)`), which the whitelist does not read
        # back: compare what both spell alike. The marker check still follows.
        return bool(spec.expressions or spec.predicate) and _alike(info.definition, spec)
    return shape(found) == shape(spec)


def is_ours(info: IndexInfo, action: Action, *, unmarked: bool) -> bool:
    """Is `info` the index `action` builds: its table, its definition, and its marker
    (or, with `unmarked`, no comment at all)?"""
    if action.index is None or not same_index(info, action.index):
        return False
    return made_by(info.comment, action.id) or (unmarked and info.comment is None)


def _alike(definition: str, spec: IndexSpec) -> bool:
    """An expression or partial index's `pg_get_indexdef` text against `spec`: the method,
    each key and INCLUDE column named in order, a WHERE exactly when `spec` has one."""
    head, _, where = definition.partition(" WHERE ")
    method = f" USING {spec.method} ("
    if method not in head or bool(where) != bool(spec.predicate):
        return False
    keys, _, include = head.split(method, 1)[1].partition(" INCLUDE (")

    def at(text: str, column: str, start: int) -> int:  # bare, or quoted where it must be
        hits = [i for form in (column, quote_ident(column))
                if (i := text.find(form, start)) >= 0]  # fmt: skip
        return min(hits, default=-1)

    found = -1
    for column in spec.columns:
        found = at(keys, column, found + 1)
        if found < 0:
            return False
    return all(at(include, column, 0) >= 0 for column in spec.include)


def shape(spec: IndexSpec) -> tuple[tuple[str, ...], tuple[str, ...], tuple[bool, ...], str]:
    desc = spec.descending or (False,) * len(spec.columns)  # keys: lower(email) is not email
    return spec.keys, spec.include, desc, f"{spec.method} {spec.where}".strip()
