"""What an index advisor needs to know about one query text, read with sqlglot.

`analyze(text)` takes a query as pg_stat_statements stores it (`$1` placeholders, or
raw literals) and returns, per base table, the columns it filters on by equality or by
range, joins on, sorts and groups by, and otherwise reads. CTE names, derived tables and
LATERAL subqueries are looked through to the base tables inside them. A text it cannot
use (utility statement, syntax error, several statements) comes back as `Unparsed` with
a reason, never as an exception. Pure: no database, no I/O.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from tuner.sqlinfo.collector import _Collector
from tuner.sqlinfo.info import (
    QueryInfo,
    SkipReason,
    SortKey,
    StatementKind,
    TableName,
    TableUse,
    Unparsed,
    count_skipped,
    describe_skipped,
)
from tuner.sqlinfo.nodes import MAX_CONSTANT
from tuner.sqlinfo.placeholders import rewrite_typed_placeholders, substitute_parameters

__all__ = [
    "MAX_CONSTANT",
    "QueryInfo",
    "SkipReason",
    "SortKey",
    "StatementKind",
    "TableName",
    "TableUse",
    "Unparsed",
    "analyze",
    "count_skipped",
    "describe_skipped",
    "rewrite_typed_placeholders",
    "substitute_parameters",
]

# --- parsing --------------------------------------------------------------------------

_UTILITY_WORDS = frozenset(  # first words of statements that are not queries
    "abort alter analyze begin call checkpoint close cluster comment commit copy create "  # noqa: SIM905
    "deallocate declare discard do drop end execute explain fetch grant import listen load "
    "lock move notify prepare reassign refresh reindex release reset revoke rollback "
    "savepoint security set show start truncate unlisten vacuum".split()
)
_UTILITY_NODES: tuple[type[exp.Expr], ...] = (exp.Command, exp.Set, exp.Transaction, exp.Copy)
_UTILITY_NODES += (exp.Commit, exp.Rollback, exp.Create, exp.Drop, exp.Alter, exp.Show, exp.Use)
_FIRST_WORD = re.compile(r"^(?:\s|--[^\n]*|/\*[\s\S]*?\*/|\()*([A-Za-z]*)")


def analyze(text: str) -> QueryInfo | Unparsed:
    """Parse one query text and collect, per base table, how its columns are used."""
    first = _FIRST_WORD.match(text)
    word = first.group(1).lower() if first else ""
    if word in _UTILITY_WORDS:
        return Unparsed(SkipReason.UTILITY, f"{word.upper()} statement")
    try:
        statements = [s for s in sqlglot.parse(rewrite_typed_placeholders(text), "postgres") if s]
    except (SqlglotError, RecursionError) as error:
        return Unparsed(SkipReason.UNPARSABLE, str(error).splitlines()[0][:200])
    if not statements:
        return Unparsed(SkipReason.EMPTY, "no statement in the text")
    if len(statements) > 1:
        return Unparsed(SkipReason.MULTIPLE, f"{len(statements)} statements in one text")
    statement = statements[0]
    if isinstance(statement, exp.Query | exp.Insert | exp.Update | exp.Delete | exp.Merge):
        try:
            return _Collector().collect(statement)
        except RecursionError:  # nested deeper than Python's stack: this text only is skipped
            return Unparsed(SkipReason.TOO_DEEP, "nested too deeply to read")
    if isinstance(statement, exp.Values):
        return QueryInfo(StatementKind.OTHER, (), (), (), has_limit=False)
    if isinstance(statement, _UTILITY_NODES):
        return Unparsed(SkipReason.UTILITY, f"{statement.key.upper()} statement")
    return Unparsed(SkipReason.UNPARSABLE, f"not a statement but {statement.key.upper()}")
