"""Statement shapes that keep an index from helping, each with a reason and a fix.  (pure)

`find(text, tables)` parses one statement (sqlglot, PostgreSQL dialect) and reads it
against the tables' shapes (column types, NOT NULL, the key columns of their indexes). A
rule that cannot tell (an unknown table, a parameter where a literal would decide) stays
silent: a finding is something the reader can act on, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from tuner.sqlinfo import rewrite_typed_placeholders

LARGE_OFFSET = 1000  # rows an OFFSET reads and throws away before the page it returns
_INTEGERS = ("smallint", "integer", "bigint", "int2", "int4", "int8")
_INEXACT = ("numeric", "decimal", "double", "float", "real", "text", "varchar", "char")
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.In)


@dataclass(frozen=True, slots=True)
class Column:
    type_name: str
    not_null: bool


@dataclass(frozen=True, slots=True)
class Shape:
    """One table as the rules see it: its columns and the key columns of its indexes."""

    columns: Mapping[str, Column]
    indexes: tuple[tuple[str, ...], ...] = ()

    def indexed(self, column: str) -> bool:
        return any(column in key for key in self.indexes)

    def leads(self, column: str) -> bool:
        return any(key and key[0] == column for key in self.indexes)


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    where: str  # the part of the statement it is about
    reason: str
    fix: str


def find(text: str, tables: Mapping[str, Shape]) -> list[Finding]:
    """The findings for one statement; [] when it cannot be parsed. `tables` by name."""
    try:
        parsed = sqlglot.parse(rewrite_typed_placeholders(text), read="postgres")
    except (SqlglotError, RecursionError):
        return []
    if len(parsed) != 1 or parsed[0] is None:
        return []
    tree = parsed[0]
    found: list[Finding] = []
    for select in tree.find_all(exp.Select):
        scope = _Scope(select, tables)
        for rule in _RULES:
            found += rule(select, scope)
    unique: dict[tuple[str, str], Finding] = {}
    for f in found:
        unique.setdefault((f.rule, f.where), f)
    return list(unique.values())


class _Scope:
    """The tables one SELECT reads, by the name or alias it gives them."""

    def __init__(self, select: exp.Select, tables: Mapping[str, Shape]) -> None:
        self.aliases: dict[str, str] = {}
        for table in _own_tables(select):
            self.aliases[table.alias_or_name] = table.name
        self.tables = tables

    def shape(self, column: exp.Column) -> tuple[str, Shape] | None:
        """The table `column` belongs to, and its shape, when that is certain."""
        if column.table:
            name = self.aliases.get(column.table)
            shape = self.tables.get(name) if name else None
            return (name, shape) if name and shape else None
        owners = [(n, s) for n in set(self.aliases.values()) if (s := self.tables.get(n))
                  and column.name in s.columns]  # fmt: skip
        return owners[0] if len(owners) == 1 else None

    def column(self, column: exp.Column) -> tuple[str, Shape, Column] | None:
        found = self.shape(column)
        if found is None or column.name not in found[1].columns:
            return None
        return found[0], found[1], found[1].columns[column.name]


def _own_tables(select: exp.Select) -> Iterator[exp.Table]:
    """Tables in this SELECT's FROM and JOINs (not those of nested queries)."""
    sources = [select.args.get("from_") or select.args.get("from")]
    sources += list(select.args.get("joins") or [])
    for source in sources:
        if source is not None and isinstance(source.this, exp.Table):
            yield source.this


def _predicates(select: exp.Select) -> Iterator[exp.Expression]:
    where = select.args.get("where")
    if where is not None:
        yield where.this
    for join in select.args.get("joins") or []:
        if join.args.get("on") is not None:
            yield join.args["on"]


def _sql(node: Any, width: int = 80) -> str:
    """A node as PostgreSQL text, cut at `width` (sqlglot's node classes vary in typing)."""
    text = str(node.sql(dialect="postgres"))
    return text if len(text) <= width else text[: width - 1] + "…"


def _in_predicates(select: exp.Select, *kinds: type[exp.Expression]) -> Iterator[Any]:
    """Nodes of `kinds` in this SELECT's WHERE and JOIN ... ON (not in nested queries)."""
    for predicate in _predicates(select):
        for node in predicate.find_all(*kinds):
            if node.parent_select is select:
                yield node


# --- the rules ---------------------------------------------------------------------------------


def _leading_wildcard(select: exp.Select, scope: _Scope) -> list[Finding]:
    out = []
    for like in (*_in_predicates(select, exp.Like), *_in_predicates(select, exp.ILike)):
        pattern = like.expression
        if isinstance(pattern, exp.Literal) and pattern.is_string and pattern.this[:1] in "%_":
            out.append(Finding(
                "leading-wildcard-like", _sql(like),
                "the pattern starts with a wildcard, so no btree can narrow the search: every "
                "row is read and matched",
                "anchor the pattern (`'abc%'`), or create a trigram index: CREATE EXTENSION "
                "pg_trgm; CREATE INDEX … USING gin (column gin_trgm_ops)",
            ))  # fmt: skip
    return out


def _function_on_indexed_column(select: exp.Select, scope: _Scope) -> list[Finding]:
    out = []
    for comparison in _in_predicates(select, *_COMPARISONS, exp.Like, exp.ILike):
        side = comparison.this
        if not isinstance(side, exp.Func) or isinstance(side, exp.AggFunc | exp.Cast):
            continue
        columns = [c for c in side.find_all(exp.Column)]
        if len(columns) != 1:
            continue
        found = scope.column(columns[0])
        if found is None or not found[1].indexed(columns[0].name):
            continue
        expression = _sql(side, 60)
        out.append(Finding(
            "function-on-indexed-column", _sql(comparison),
            f"{columns[0].name} is indexed, but the statement compares {expression}: an "
            "index on the column does not hold the function's results",
            f"compare the bare column (move the function to the other side), or create an "
            f"expression index on {found[0]} (({expression}))",
        ))  # fmt: skip
    return out


def _large_offset(select: exp.Select, scope: _Scope) -> list[Finding]:
    offset = select.args.get("offset")
    value = offset.expression if offset is not None else None
    if not isinstance(value, exp.Literal) or value.is_string:
        return []
    try:
        rows = int(value.this)
    except ValueError:
        return []
    if rows < LARGE_OFFSET:
        return []
    return [Finding(
        "large-offset", _sql(offset),
        f"OFFSET {rows} reads and throws away {rows:,} rows before the page it returns, and "
        "each next page reads more",
        "paginate by key: remember the last row's ORDER BY values and ask for "
        "`WHERE (key) > (last) ORDER BY key LIMIT n`, served by an index on the key",
    )]  # fmt: skip


def _not_in_nullable(select: exp.Select, scope: _Scope) -> list[Finding]:
    out = []
    for node in _in_predicates(select, exp.Not):
        inner = node.this
        query = inner.args.get("query") if isinstance(inner, exp.In) else None
        sub = query.this if isinstance(query, exp.Subquery) else query
        if not isinstance(sub, exp.Select) or len(sub.expressions) != 1:
            continue
        picked = sub.expressions[0]
        if not isinstance(picked, exp.Column):
            continue
        found = _Scope(sub, scope.tables).column(picked)
        if found is None or found[2].not_null:
            continue
        out.append(Finding(
            "not-in-nullable", _sql(node),
            f"{found[0]}.{picked.name} may be NULL: one NULL makes NOT IN return no row at all, "
            "and the planner cannot turn NOT IN into an anti-join, so it scans the subquery "
            "for every row (or hashes it whole)",
            "write NOT EXISTS (SELECT 1 FROM … WHERE … = outer.column), an anti-join that "
            "can use an index; or declare the column NOT NULL",
        ))  # fmt: skip
    return out


def _implicit_cast(select: exp.Select, scope: _Scope) -> list[Finding]:
    out = []
    for comparison in _in_predicates(select, exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE):
        column, other = comparison.this, comparison.expression
        if not isinstance(column, exp.Column):
            column, other = other, column
        if not isinstance(column, exp.Column):
            continue
        found = scope.column(column)
        if found is None or not found[1].indexed(column.name):
            continue
        type_name = found[2].type_name.lower()
        if not type_name.startswith(_INTEGERS):
            continue
        inexact = (isinstance(other, exp.Literal) and not other.is_string
                   and any(c in str(other.this).lower() for c in ".e"))  # fmt: skip
        cast = isinstance(other, exp.Cast) and other.to.sql("postgres").lower().startswith(_INEXACT)
        if not (inexact or cast):
            continue
        out.append(Finding(
            "implicit-cast", _sql(comparison),
            f"{column.name} is {type_name} but is compared with {_sql(other, 40)}: "
            f"PostgreSQL casts the column to the other side's type for every row, and "
            "its index (on the integer) cannot serve the comparison",
            f"compare with a value of the column's type ({column.name} = 42, or "
            f"$1::{type_name.split()[0]})",
        ))  # fmt: skip
    return out


def _select_star(select: exp.Select, scope: _Scope) -> list[Finding]:
    if not any(isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this,
               exp.Star)) for e in select.expressions):  # fmt: skip
        return []
    names = set(scope.aliases.values())
    if len(names) != 1 or select.args.get("joins"):
        return []
    name = names.pop()
    shape = scope.tables.get(name)
    if shape is None:
        return []
    used = {c.name for p in _predicates(select) for c in p.find_all(exp.Column)}
    order = select.args.get("order")
    used |= {c.name for c in order.find_all(exp.Column)} if order is not None else set()
    if not used:
        return []
    for key in shape.indexes:
        if used <= set(key) and len(shape.columns) > len(key):
            return [Finding(
                "select-star", f"SELECT * FROM {name}",
                f"the index on ({', '.join(key)}) holds every column the statement filters "
                f"and sorts on; SELECT * asks for all {len(shape.columns)} columns, so each "
                "row found is fetched from the table instead of read from the index alone",
                f"name only the columns you need; with just ({', '.join(key)}) (or an index "
                "that INCLUDEs the rest you need) an index-only scan does",
            )]  # fmt: skip
    return []


def _cross_join(select: exp.Select, scope: _Scope) -> list[Finding]:
    tables = [t.alias_or_name for t in _own_tables(select)]
    if len(tables) < 2:
        return []
    group = {name: name for name in tables}  # union-find: tables a predicate relates

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    def relate(names: set[str]) -> None:
        known = [root(n) for n in names if n in group]
        for other in known[1:]:
            group[other] = known[0]

    for join in select.args.get("joins") or []:
        this = join.this.alias_or_name if isinstance(join.this, exp.Table) else None
        if this in group and join.args.get("using"):
            relate({this, tables[0]})
        if join.args.get("on") is not None:
            named = {c.table for c in join.args["on"].find_all(exp.Column) if c.table}
            relate(named | ({this} if this else set()))
    for predicate in _predicates(select):
        for eq in predicate.find_all(exp.EQ):
            relate({c.table for c in eq.find_all(exp.Column) if c.table})
    apart = sorted({root(n) for n in tables})
    if len(apart) < 2:
        return []
    loose = [n for n in tables if root(n) != root(tables[0])]
    return [Finding(
        "cross-join", ", ".join(tables),
        f"nothing relates {', '.join(loose)} to {tables[0]}: every row of one is paired "
        "with every row of the other (a cross join), and no index can help",
        "add the join condition (JOIN … ON a.id = b.a_id); write CROSS JOIN if every "
        "pair is really meant",
    )]  # fmt: skip


def _or_across_columns(select: exp.Select, scope: _Scope) -> list[Finding]:
    out = []
    where = select.args.get("where")
    for node in where.find_all(exp.Or) if where is not None else ():
        if node.parent_select is not select or isinstance(node.parent, exp.Or):
            continue
        sides = list(node.flatten())
        columns = [frozenset(c.name for c in side.find_all(exp.Column)) for side in sides]
        if any(not c for c in columns) or len(set(columns)) < 2:
            continue
        out.append(Finding(
            "or-across-columns", _sql(node),
            f"the OR compares different columns ({', '.join(sorted(set().union(*columns)))}): "
            "an index on one of them cannot answer the other side, so the planner scans the "
            "table unless each column has its own index to combine (a BitmapOr)",
            "give each column its own index, or split the statement into a UNION of one "
            "SELECT per column",
        ))  # fmt: skip
    return out


_RULES = (
    _leading_wildcard,
    _function_on_indexed_column,
    _large_offset,
    _not_in_nullable,
    _implicit_cast,
    _select_star,
    _cross_join,
    _or_across_columns,
)
