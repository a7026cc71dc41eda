"""sqlglot nodes as the collector reads them: names, columns, operands and their roles,
key forms and constants, and the scopes that resolve a column to its table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlglot import exp

from tuner.sqlinfo.info import SortKey, TableName, TableUse

_Node = exp.Expr  # the root of sqlglot's node classes (queries included)
_COMPARISONS = (exp.GT, exp.GTE, exp.LT, exp.LTE)
_LOOKS_THROUGH = (exp.From, exp.Join, exp.CTE, exp.Lateral)  # visited as sources


def _name(identifier: _Node | None) -> str:
    """An identifier as PostgreSQL stores it: quoted kept, unquoted folded to lower case."""
    if not isinstance(identifier, exp.Identifier):
        return ""
    return str(identifier.this) if identifier.quoted else str(identifier.this).lower()


def _plain_column(node: _Node | None) -> exp.Column | None:
    node = node.unnest() if node is not None else None
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        return node
    return None


def _local_columns(node: _Node) -> Iterator[exp.Column]:
    """Column references of `node`'s own query level, not of queries nested in it."""
    for child in node.walk(prune=lambda n: isinstance(n, exp.Query) and n is not node):
        if isinstance(child, exp.Column):
            yield child


def _nested_queries(node: _Node) -> Iterator[exp.Query]:
    """The outermost queries nested in `node`."""
    for child in node.walk(prune=lambda n: isinstance(n, exp.Query) and n is not node):
        if isinstance(child, exp.Query) and child is not node:
            yield child


def _is_value(node: _Node) -> bool:
    """True when `node` reads no column of this query level: a parameter, literal, cast..."""
    return next(_local_columns(node), None) is None


def _operands(node: _Node) -> list[_Node]:
    """Every operand of a predicate but its first (`this`)."""
    found: list[_Node] = []
    for key, value in node.args.items():
        values = value if isinstance(value, list) else [value]
        found += [v for v in values if key != "this" and isinstance(v, exp.Expr)]
    return found


def _role(node: _Node, operands: list[_Node]) -> str | None:
    """The index use a `column <op> value` predicate allows, if any."""
    if isinstance(node, exp.EQ | exp.In | exp.Is):
        return "equality"
    if isinstance(node, (*_COMPARISONS, exp.Between)):
        return "ranges"
    if isinstance(node, exp.Like):  # prefix-able unless the pattern opens with a wildcard
        pattern = operands[0] if operands else None
        if isinstance(pattern, exp.Literal) and pattern.is_string:
            return "ranges" if str(pattern.this)[:1] not in ("%", "_", "") else None
        return "ranges"
    return None


_DATE_UNITS = frozenset("microseconds milliseconds second minute hour day week month quarter "  # noqa: SIM905
                        "year decade century millennium".split())  # fmt: skip
_JSONB_OPERATORS: dict[type[exp.Expr], str] = {
    exp.ArrayContainsAll: "@>",
    exp.JSONBContainsTopKey: "?",
    exp.JSONBContainsAnyTopKeys: "?|",
    exp.JSONBContainsAllTopKeys: "?&",
    exp.JSONBPathExists: "@?",
}
MAX_CONSTANT = 200  # characters of a constant or json key worth an index on


def _key_form(node: _Node) -> str | None:
    """The index key form of an expression on one column (`IndexSpec.expressions`), or
    None: lower(c), upper(c), c::date, date_trunc('unit', c), c ->> 'key'."""
    node = node.unnest()
    column = _plain_column(node.this) if isinstance(node.this, exp.Expr) else None
    if column is None:
        return None
    if isinstance(node, exp.Lower | exp.Upper):
        return node.key.lower()
    if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.DATE):
        return "date"
    if isinstance(node, exp.TimestampTrunc | exp.DateTrunc):
        unit = node.args.get("unit")
        text = str(unit.this).lower() if isinstance(unit, exp.Var | exp.Literal) else ""
        return f"date_trunc:{text}" if text in _DATE_UNITS else None
    if isinstance(node, exp.JSONExtractScalar) and isinstance(node.expression, exp.JSONPath):
        path = node.expression.expressions
        if len(path) == 2 and isinstance(path[1], exp.JSONPathKey):
            key = str(path[1].this)
            return f"field:{key}" if 0 < len(key) <= MAX_CONSTANT and "\x00" not in key else None
    return None


def _constant_text(node: _Node | None) -> str | None:
    """The text of a literal constant (`'open'`, `5`, `false`), None for anything else
    (a parameter, an expression, NULL)."""
    node = node.unnest() if node is not None else None
    if isinstance(node, exp.Boolean):
        return "true" if node.this else "false"
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return "-" + str(node.this.this)
    if isinstance(node, exp.Literal):
        text = str(node.this)
        return text if 0 < len(text) <= MAX_CONSTANT and "\x00" not in text else None
    return None


@dataclass(eq=False)
class _Scope:
    """What one query level can name: alias → base table, or None for a CTE or subquery."""

    sources: dict[str, TableName | None]
    parent: _Scope | None
    used: set[int] = field(default_factory=set)  # ids of column nodes already classified

    def source(self, column: exp.Column) -> tuple[_Scope | None, str] | None:
        """The scope and alias `column` belongs to; None when unqualified among several."""
        qualifier = _name(column.args.get("table"))
        scope: _Scope | None = self
        while scope is not None:
            if qualifier and qualifier in scope.sources:
                return scope, qualifier
            if not qualifier and scope.sources:
                return (scope, next(iter(scope.sources))) if len(scope.sources) == 1 else None
            scope = scope.parent
        return (None, qualifier) if qualifier else None  # `excluded.n`, a name it cannot see

    def resolve(self, column: exp.Column) -> tuple[bool, TableName | None]:
        """(placed, base table); placed is False when `source` cannot place the column."""
        found = self.source(column)
        if found is None:
            return False, None
        scope, alias = found
        return True, scope.sources[alias] if scope is not None else None


_ROLES = ("equality", "ranges", "joins", "group_by", "returned", "written", "expressions")


@dataclass
class _Usage:
    roles: dict[str, dict[str, None]] = field(default_factory=lambda: {r: {} for r in _ROLES})
    order_by: tuple[SortKey, ...] = ()
    returns_all: bool = False
    expression_keys: dict[tuple[str, str, str], None] = field(default_factory=dict)
    constants: dict[tuple[str, str, str | None], None] = field(default_factory=dict)
    jsonb: dict[tuple[str, str], None] = field(default_factory=dict)
    patterns: dict[str, None] = field(default_factory=dict)
    fulltext: dict[tuple[str, str], None] = field(default_factory=dict)

    def freeze(self, table: TableName) -> TableUse:
        def role(name: str) -> tuple[str, ...]:
            return tuple(self.roles[name])

        return TableUse(
            table=table,
            equality=role("equality"),
            ranges=role("ranges"),
            joins=role("joins"),
            order_by=self.order_by,
            group_by=role("group_by"),
            returned=role("returned"),
            returns_all=self.returns_all,
            written=role("written"),
            expression_predicates=role("expressions"),
            expression_keys=tuple(self.expression_keys),
            constants=tuple(self.constants),
            jsonb=tuple(self.jsonb),
            patterns=tuple(self.patterns),
            fulltext=tuple(self.fulltext),
        )
