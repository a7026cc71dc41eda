"""What `analyze` returns: per base table, how a statement uses its columns; or why it
could not read the text (`Unparsed`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class StatementKind(StrEnum):
    SELECT = "select"
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    OTHER = "other"


class SkipReason(StrEnum):
    EMPTY = "empty"
    UTILITY = "utility"
    UNPARSABLE = "unparsable"
    MULTIPLE = "multiple"
    TOO_DEEP = "too deep"


_SKIP_LABELS = {  # (one, several) for `describe_skipped`
    SkipReason.EMPTY: ("empty text", "empty texts"),
    SkipReason.UTILITY: ("utility statement", "utility statements"),
    SkipReason.UNPARSABLE: ("unparsable", "unparsable"),
    SkipReason.MULTIPLE: ("multi-statement text", "multi-statement texts"),
    SkipReason.TOO_DEEP: ("text nested too deeply", "texts nested too deeply"),
}


@dataclass(frozen=True, slots=True)
class TableName:
    """A table as the query names it; `schema` is None when the query leaves it out."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ORDER BY key; `nulls_first` follows PostgreSQL's default when not spelled out."""

    column: str
    descending: bool = False
    nulls_first: bool = False


@dataclass(frozen=True, slots=True)
class TableUse:
    """How one base table's columns are used; each tuple is in order of first use."""

    table: TableName
    equality: tuple[str, ...] = ()
    ranges: tuple[str, ...] = ()
    joins: tuple[str, ...] = ()
    order_by: tuple[SortKey, ...] = ()
    group_by: tuple[str, ...] = ()
    returned: tuple[str, ...] = ()
    returns_all: bool = False
    written: tuple[str, ...] = ()
    expression_predicates: tuple[str, ...] = ()
    # (column, form, role) of `lower(c) = $1`-like filters: form as `IndexSpec.expressions`
    # ("lower", "date", "date_trunc:day", "field:key"), role "equality" or "ranges"
    expression_keys: tuple[tuple[str, str, str], ...] = ()
    # (column, op, constant) filters every row the statement reads meets (top-level AND):
    # `status = 'open'` ("=", "open"), `deleted_at IS NULL` ("is null", None), `NOT flag`
    # ("=", "false"); never one with a parameter
    constants: tuple[tuple[str, str, str | None], ...] = ()
    # (column, operator) of jsonb filters a gin index serves: `@>`, `?`, `?|`, `?&`, `@?`
    jsonb: tuple[tuple[str, str], ...] = ()
    # columns matched by a pattern a btree cannot serve: LIKE/ILIKE with a leading wildcard
    # or a parameter, `~`, `~*` (a trigram gin index can)
    patterns: tuple[str, ...] = ()
    # (column, configuration) of full-text matches `to_tsvector('english', c) @@ ...`
    fulltext: tuple[tuple[str, str], ...] = ()

    @property
    def columns(self) -> frozenset[str]:
        """Every column of the table the query touches (for index-only-scan checks)."""
        keys = (key.column for key in self.order_by)
        return frozenset(
            (*self.equality, *self.ranges, *self.joins, *keys, *self.group_by, *self.returned)
        )


@dataclass(frozen=True, slots=True)
class QueryInfo:
    """The index-relevant facts of one parsed statement."""

    kind: StatementKind
    reads: tuple[TableName, ...]
    writes: tuple[TableName, ...]
    tables: tuple[TableUse, ...]
    has_limit: bool
    unattributed: tuple[str, ...] = ()

    def use(self, name: str, schema: str | None = None) -> TableUse | None:
        """The usage of table `name` (and `schema`, if given), or None."""
        for use in self.tables:
            if use.table.name == name and (schema is None or use.table.schema == schema):
                return use
        return None


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A text the advisor has to skip, and why."""

    reason: SkipReason
    detail: str


def count_skipped(results: Iterable[QueryInfo | Unparsed]) -> Counter[SkipReason]:
    """How many of `results` were skipped, by reason."""
    return Counter(r.reason for r in results if isinstance(r, Unparsed))


def describe_skipped(counts: Counter[SkipReason]) -> str:
    """One line such as `skipped 12 queries: 7 utility statements, 5 unparsable`."""
    total = sum(counts.values())
    parts = ", ".join(f"{n} {_SKIP_LABELS[r][n > 1]}" for r, n in counts.most_common())
    return f"skipped {total} queries: {parts}" if total else "skipped 0 queries"
