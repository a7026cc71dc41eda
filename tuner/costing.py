"""The statements the advisor costs: each read with sqlinfo (qualified with the catalog's
column names where sqlinfo alone could not place a column), resolved on the search_path its
roles ran it with, and prepared and costed once as it is in the what-if session.

A statement that cannot be used is skipped and counted by why (`skipped`): unparsed, an
ambiguous search_path, no user table, a timeout, an untrusted function, no privilege.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import sqlglot
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify_columns import qualify_columns
from sqlglot.schema import MappingSchema

from tuner import log
from tuner.catalog import Schema
from tuner.errors import DatabaseUnavailable, MissingPrivilege, QueryFailed, UntrustedCode
from tuner.models import TableRef
from tuner.sqlinfo import QueryInfo, Unparsed, analyze, rewrite_typed_placeholders
from tuner.whatif import Prepared, WhatIf, timed_out

LOG = log.get("tuner.advisor")

FLOOR_MS_PER_CALL = 0.01  # the measured time assumed per call when none was measured


class QueryInput(Protocol):
    @property
    def queryid(self) -> int: ...
    @property
    def query(self) -> str: ...
    @property
    def calls(self) -> int: ...
    @property
    def total_ms(self) -> float: ...


@dataclass
class Item:
    """One costed statement."""

    query: QueryInput
    info: QueryInfo
    prepared: Prepared
    columns: dict[TableRef, frozenset[str]]
    base: float
    path: tuple[str, ...] = ()  # the search_path its unqualified names resolve on

    @property
    def ms(self) -> float:
        """Measured time in the window (the floor per call when nothing was measured)."""
        if self.query.total_ms > 0:
            return float(self.query.total_ms)
        return max(self.query.calls, 1) * FLOOR_MS_PER_CALL

    def saved(self, current: float, after: float) -> float:
        """Milliseconds saved when the estimated cost goes from `current` to `after`."""
        return self.ms * (current - after) / self.base if self.base > 0 else 0.0


@dataclass
class StatementReader:
    """Reads and prepares statements against one schema; `analyze` keeps the column map it
    builds the first time sqlinfo needs it."""

    schema: Schema
    _mapping: MappingSchema | None = field(default=None, init=False, repr=False)

    def prepare(
        self, whatif: WhatIf, queries: Sequence[QueryInput], skipped: Counter[str]
    ) -> list[Item]:
        items: list[Item] = []
        for query in queries:
            info = self.analyze(query.query)
            if isinstance(info, Unparsed):
                skipped[info.reason.value] += 1
                continue
            path = self.search_path(query, info)
            if path is None:
                skipped["ambiguous search_path"] += 1
                continue
            columns: dict[TableRef, frozenset[str]] = {}
            for use in info.tables:
                facts = self.schema.resolve(use.table.schema, use.table.name, path)
                if facts is not None:
                    sort = {k.column for k in use.order_by}
                    columns[facts.table] = use.columns | sort | frozenset(use.written)
            for name in (*info.reads, *info.writes):
                facts = self.schema.resolve(name.schema, name.name, path)
                if facts is not None:
                    columns.setdefault(facts.table, frozenset())
            if not columns:
                skipped["no user table"] += 1
                continue
            try:
                prepared = whatif.prepare(query.queryid, query.query, columns, path)
                base = whatif.cost(prepared).cost
            except DatabaseUnavailable as exc:
                if not timed_out(exc):
                    raise
                skipped["timeout"] += 1
                continue
            except UntrustedCode as exc:  # never planned: the planner could have run it
                skipped["untrusted function"] += 1
                LOG.warning("advisor.untrusted", queryid=query.queryid, reason=str(exc)[:300])
                continue
            except MissingPrivilege as exc:  # e.g. no USAGE on its schema: skip this one
                skipped["no privilege"] += 1
                LOG.info("advisor.skipped", queryid=query.queryid, error=str(exc)[:200])
                continue
            except QueryFailed as exc:
                if timed_out(exc):
                    skipped["timeout"] += 1
                    continue
                skipped["cannot prepare"] += 1
                LOG.info("advisor.skipped", queryid=query.queryid,
                         error=str(exc).strip().splitlines()[0][:200])  # fmt: skip
                continue
            items.append(Item(query, info, prepared, columns, base, path))
        return items

    def search_path(self, query: QueryInput, info: QueryInfo) -> tuple[str, ...] | None:
        """The search_path the statement's roles ran it with; None when they ran it with
        paths on which its unqualified table names mean different tables (no guess)."""
        roles = getattr(query, "roles", ())
        paths = sorted({self.schema.path_of(r) for r in roles} or {self.schema.search_path})
        names = {n.name for n in (*info.reads, *info.writes) if n.schema is None}
        names |= {u.table.name for u in info.tables if u.table.schema is None}
        meant = {
            tuple(self.schema.resolve(None, name, path) for name in sorted(names)) for path in paths
        }
        return paths[0] if len(meant) == 1 else None

    def analyze(self, text: str) -> QueryInfo | Unparsed:
        """sqlinfo's reading; where it could not place unqualified columns (`FROM a, b WHERE
        x = y`), read again after qualifying them with the catalog's column names."""
        info = analyze(text)
        if isinstance(info, Unparsed) or not info.unattributed:
            return info
        if self._mapping is None:
            tables: dict[str, object] = {}
            for schema in reversed(self.schema.search_path):  # the first schema wins
                for ref, facts in self.schema.tables.items():
                    if ref.schema == schema:
                        tables[ref.name] = {c: "int" for c in facts.columns}
            self._mapping = MappingSchema(tables, dialect="postgres")
        try:
            tree = sqlglot.parse_one(rewrite_typed_placeholders(text), dialect="postgres")
            qualified = qualify_columns(tree, self._mapping, expand_alias_refs=False,
                                        expand_stars=False, allow_partial_qualification=True,
                                        dialect="postgres")  # fmt: skip
            again = analyze(qualified.sql("postgres"))
        except (SqlglotError, RecursionError, ValueError, KeyError):
            return info
        return again if isinstance(again, QueryInfo) else info
