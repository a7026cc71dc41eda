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
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError


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


# --- typed placeholders -------------------------------------------------------------

_SKIPPED = re.compile(  # strings, quoted identifiers, dollar quotes, comments
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(\$(?:[A-Za-z_]\w*)?\$)[\s\S]*?\1|--[^\n]*|/\*[\s\S]*?\*/"
)
_TYPES = (
    r"timestamp\s+with(?:out)?\s+time\s+zone|time\s+with(?:out)?\s+time\s+zone|"
    r"double\s+precision|timestamptz|timestamp|timetz|time|date|numeric|decimal|bigint|"
    r"smallint|integer|int|real|boolean|bool|text|varchar|uuid|jsonb|json|inet|cidr|bytea"
)
_UNIT = r"year|month|day|hour|minute|second"
_TYPED_INTERVAL = re.compile(
    rf"\binterval\s+(\$\d+)(\s+(?:{_UNIT})(?:\s+to\s+(?:{_UNIT}))?\b)?", re.IGNORECASE
)
_TYPED_OTHER = re.compile(rf"(?<![\w.\"])({_TYPES})\s+(\$\d+)", re.IGNORECASE)


def _rewrite_code(code: str) -> str:
    def interval(match: re.Match[str]) -> str:
        param, fields = match.group(1), (match.group(2) or "").strip().lower()
        if fields and " " not in fields:  # `interval $2 day`: $2 counts days
            return f"({param} || ' {fields}')::interval"
        return f"{param}::interval"  # a `day to second` restriction only truncates

    code = _TYPED_INTERVAL.sub(interval, code)
    return _TYPED_OTHER.sub(lambda m: f"{m.group(2)}::{' '.join(m.group(1).split())}", code)


_PLACEHOLDER = re.compile(r"\$(\d+)")


def substitute_parameters(text: str, values: dict[int, str]) -> str:
    """`text` with each `$n` outside strings, quoted identifiers and comments replaced by
    `values[n]` (left as it is when `values` has none)."""

    def one(match: re.Match[str]) -> str:
        return values.get(int(match.group(1)), match.group(0))

    parts: list[str] = []
    done = 0
    for match in _SKIPPED.finditer(text):
        parts += [_PLACEHOLDER.sub(one, text[done : match.start()]), match.group(0)]
        done = match.end()
    parts.append(_PLACEHOLDER.sub(one, text[done:]))
    return "".join(parts)


def rewrite_typed_placeholders(text: str) -> str:
    """Turn pg_stat_statements' typed placeholders (`date $1`, `interval $2 day`) into casts.

    PostgreSQL accepts a type name before a string literal but not before a parameter,
    so the normalized text cannot be parsed or PREPAREd as stored. Strings, quoted
    identifiers and comments are left alone.
    """
    parts: list[str] = []
    done = 0
    for match in _SKIPPED.finditer(text):
        parts += [_rewrite_code(text[done : match.start()]), match.group(0)]
        done = match.end()
    parts.append(_rewrite_code(text[done:]))
    return "".join(parts)


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


def count_skipped(results: Iterable[QueryInfo | Unparsed]) -> Counter[SkipReason]:
    """How many of `results` were skipped, by reason."""
    return Counter(r.reason for r in results if isinstance(r, Unparsed))


def describe_skipped(counts: Counter[SkipReason]) -> str:
    """One line such as `skipped 12 queries: 7 utility statements, 5 unparsable`."""
    total = sum(counts.values())
    parts = ", ".join(f"{n} {_SKIP_LABELS[r][n > 1]}" for r, n in counts.most_common())
    return f"skipped {total} queries: {parts}" if total else "skipped 0 queries"


# --- collecting -----------------------------------------------------------------------

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


class _Collector:
    """Walks one statement query level by query level, filling a `_Usage` per base table."""

    def __init__(self) -> None:
        self.usage: dict[TableName, _Usage] = {}
        self.reads: dict[TableName, None] = {}
        self.writes: dict[TableName, None] = {}
        self.unattributed: dict[str, None] = {}

    def collect(self, statement: _Node) -> QueryInfo:
        if isinstance(statement, exp.Insert):
            kind = StatementKind.INSERT
            self._insert(statement)
        elif isinstance(statement, exp.Merge):
            kind = StatementKind.OTHER
            self._merge(statement)
        elif isinstance(statement, exp.Update | exp.Delete):
            is_update = isinstance(statement, exp.Update)
            kind = StatementKind.UPDATE if is_update else StatementKind.DELETE
            self._update_or_delete(statement)
        else:
            kind = StatementKind.SELECT
            self._query(statement, None, frozenset())
        return QueryInfo(
            kind=kind,
            reads=tuple(self.reads),
            writes=tuple(self.writes),
            tables=tuple(usage.freeze(table) for table, usage in self.usage.items()),
            has_limit=statement.args.get("limit") is not None,
            unattributed=tuple(self.unattributed),
        )

    # statements

    def _insert(self, node: exp.Insert) -> None:
        target = node.this
        table_node = target.this if isinstance(target, exp.Schema) else target
        table = self._table(table_node)
        self.writes[table] = None
        self._usage(table)
        for identifier in target.expressions if isinstance(target, exp.Schema) else []:
            self._add(table, "written", _name(identifier))
        ctes = self._ctes(node, None, frozenset())
        if isinstance(node.expression, exp.Query):
            self._query(node.expression, None, ctes)
        alias = _name(table_node.args["alias"].this) if table_node.args.get("alias") else ""
        scope = _Scope({alias or table.name: table}, None)  # `excluded.col` stays unplaced
        conflict = node.args.get("conflict")
        for assignment in conflict.expressions if conflict is not None else []:
            self._assigned(assignment, scope, table)
        for part in (conflict, node.args.get("returning")):
            if part is not None:
                self._level(part, scope, ctes)

    def _update_or_delete(self, node: exp.Update | exp.Delete) -> None:
        target = self._table(node.this)
        self.writes[target] = None
        ctes = self._ctes(node, None, frozenset())
        scope = _Scope({}, None)
        self._add_source(node.this, scope, ctes)
        for source in [*(node.args.get("using") or []), node.args.get("from_")]:
            if source is not None:
                self._add_source(
                    source.this if isinstance(source, exp.From) else source, scope, ctes
                )
        for assignment in node.expressions if isinstance(node, exp.Update) else []:
            self._assigned(assignment, scope, target)
        if (where := node.args.get("where")) is not None:
            self._conditions(where.this, scope)
        self._level(node, scope, ctes)

    def _merge(self, node: exp.Merge) -> None:
        """MERGE: only which tables it writes and reads; its columns are not classified."""
        target = self._table(node.this)
        self.writes[target] = None
        ctes = self._ctes(node, None, frozenset())
        for table in node.find_all(exp.Table):
            name = self._table(table)
            if name != target and not (name.schema is None and name.name in ctes):
                self.reads[name] = None
        self._usage(target)

    def _assigned(self, assignment: _Node, scope: _Scope, table: TableName) -> None:
        """`SET col = ...`: the column is written, whatever the right side reads is read."""
        if (column := _plain_column(assignment.this)) is not None:
            scope.used.add(id(column))
            self._add(table, "written", _name(column.this))

    # query levels

    def _query(self, node: _Node, parent: _Scope | None, ctes: frozenset[str]) -> None:
        """Visit a SELECT, a set operation (UNION ...) or a parenthesized query."""
        if isinstance(node, exp.Subquery):
            self._query(node.this, parent, ctes)
            return
        ctes = self._ctes(node, parent, ctes)
        if isinstance(node, exp.SetOperation):
            self._query(node.left, parent, ctes)
            self._query(node.right, parent, ctes)
        elif isinstance(node, exp.Select):
            self._select(node, parent, ctes)

    def _ctes(self, node: _Node, parent: _Scope | None, ctes: frozenset[str]) -> frozenset[str]:
        """Visit the WITH list of `node`; return the CTE names its body can name."""
        with_ = node.args.get("with_")
        for cte in with_.expressions if with_ is not None else []:
            ctes = ctes | {_name(cte.args["alias"].this)}
            self._query(cte.this, parent, ctes)  # a recursive CTE sees its own name
        return ctes

    def _select(self, node: exp.Select, parent: _Scope | None, ctes: frozenset[str]) -> None:
        scope = _Scope({}, parent)
        if (from_ := node.args.get("from_")) is not None:
            self._add_source(from_.this, scope, ctes)
        for join in node.args.get("joins") or []:
            self._join(join, scope, ctes)
        for clause in ("where", "having"):
            if (condition := node.args.get(clause)) is not None:
                self._conditions(condition.this, scope)
        if not isinstance(node.parent, exp.Exists):  # `EXISTS (SELECT * ...)` reads no column
            for item in node.expressions:
                if isinstance(item, exp.Star):
                    self._all(scope, "")
        self._group_by(node, scope)
        self._order_by(node, scope)
        self._level(node, scope, ctes)

    def _add_source(self, node: _Node, scope: _Scope, ctes: frozenset[str]) -> None:
        alias = _name(node.args["alias"].this) if node.args.get("alias") else ""
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            table = self._table(node)
            is_cte = table.schema is None and table.name in ctes
            scope.sources[alias or table.name] = None if is_cte else table
            if not is_cte:
                self.reads[table] = None
                self._usage(table)
        elif isinstance(node, exp.Subquery):
            self._query(node, scope.parent, ctes)
            scope.sources[alias] = None
        else:  # LATERAL or a function in FROM: sees the sources listed before it
            for query in _nested_queries(node):
                self._query(query, scope, ctes)
            scope.sources[alias] = None
        for join in node.args.get("joins") or []:
            self._join(join, scope, ctes)

    def _join(self, join: exp.Join, scope: _Scope, ctes: frozenset[str]) -> None:
        before = list(scope.sources.values())
        self._add_source(join.this, scope, ctes)
        joined = list(scope.sources.values())[-1]
        sides = [joined, before[0]] if len(before) == 1 else [joined]  # else: which one?
        for identifier in join.args.get("using") or []:
            for table in sides:
                if table is not None:
                    self._add(table, "joins", _name(identifier))
        if (on := join.args.get("on")) is not None:
            self._conditions(on, scope)

    def _level(self, node: _Node, scope: _Scope, ctes: frozenset[str]) -> None:
        """Record the columns not classified yet as read, then visit the nested queries."""
        for column in _local_columns(node):
            if isinstance(column.this, exp.Star):
                self._all(scope, _name(column.args.get("table")))
            elif id(column) not in scope.used:
                self._column(scope, column, "returned")
        for query in _nested_queries(node):
            if not isinstance(query.parent, _LOOKS_THROUGH):
                self._query(query, scope, ctes)

    # clauses

    def _key(self, key: _Node, node: exp.Select, scope: _Scope) -> exp.Column | None:
        """A GROUP BY / ORDER BY key as a plain column, seen through output names and positions."""
        outputs = node.expressions
        if isinstance(key, exp.Literal) and key.is_int and 0 < int(key.this) <= len(outputs):
            return _plain_column(outputs[int(key.this) - 1].unalias())
        column = _plain_column(key)
        if column is not None and not column.table:
            for output in outputs:
                if isinstance(output, exp.Alias) and _name(output.args["alias"]) == _name(
                    column.this
                ):
                    scope.used.add(id(column))
                    return _plain_column(output.this)
        return column

    def _group_by(self, node: exp.Select, scope: _Scope) -> None:
        group = node.args.get("group")
        for key in group.expressions if group is not None else []:
            if (column := self._key(key, node, scope)) is not None:
                self._column(scope, column, "group_by")

    def _order_by(self, node: exp.Select, scope: _Scope) -> None:
        """Record the sort when every key is a plain column of one base table."""
        order = node.args.get("order")
        keys = [self._key(o.this, node, scope) for o in order.expressions] if order else []
        columns = [c for c in keys if c is not None]
        owners = {scope.source(c) for c in columns}
        if order is None or len(columns) != len(keys) or len(owners) != 1 or None in owners:
            return
        table = scope.resolve(columns[0])[1]
        if table is None:
            return
        usage = self._usage(table)
        if not usage.order_by:
            usage.order_by = tuple(
                SortKey(_name(c.this), bool(o.args.get("desc")), bool(o.args.get("nulls_first")))
                for o, c in zip(order.expressions, columns, strict=True)
            )
        scope.used.update(id(c) for c in columns)

    def _conditions(self, node: _Node, scope: _Scope) -> None:
        """Classify each predicate under AND / OR; what is left is recorded as read.
        A loop, not recursion: a chain of a thousand ORs is a tree a thousand deep. Each
        predicate goes with `top`: a conjunct every row read meets (no OR above it)."""
        stack: list[tuple[_Node, bool]] = [(node, True)]
        while stack:
            item, top = stack.pop()
            item = item.unnest()
            if isinstance(item, exp.And | exp.Or):
                top = top and isinstance(item, exp.And)
                stack += [(item.right, top), (item.left, top)]  # left first, as written
            else:
                self._predicate(item, scope, top)

    def _predicate(self, node: _Node, scope: _Scope, top: bool) -> None:
        if isinstance(node, exp.Escape):
            node = node.this
        if top:
            self._constant(node, scope)
        if isinstance(node, exp.Column):  # `WHERE active`
            self._column(scope, node, "equality")
            return
        if isinstance(node, tuple(_JSONB_OPERATORS)):  # `payload @> $1`
            column = _plain_column(node.this)
            placed, table = scope.resolve(column) if column is not None else (False, None)
            if column is not None and table is not None and _is_value(node.expression):
                self._usage(table).jsonb[(_name(column.this), _JSONB_OPERATORS[type(node)])] = None
            return
        if isinstance(node, exp.MatchAgainst):  # `to_tsvector('english', c) @@ q`
            self._fulltext(node, scope)
            return
        if node.args.get("negate") or not isinstance(node, exp.Predicate):
            return
        if isinstance(node, exp.Like | exp.ILike | exp.RegexpLike | exp.RegexpILike):
            self._pattern(node, scope)
        left, operands = node.this, _operands(node)
        flippable = isinstance(node, (exp.EQ, *_COMPARISONS)) and not _plain_column(left)
        if flippable and _plain_column(node.expression):  # `$1 < col` reads as `col > $1`
            left, operands = node.expression, [node.this]
        column = _plain_column(left)
        other = _plain_column(operands[0]) if len(operands) == 1 else None
        if column is not None and isinstance(node, exp.EQ) and other is not None:
            if scope.source(column) != scope.source(other):
                self._column(scope, column, "joins")
                self._column(scope, other, "joins")
            return
        if column is not None and isinstance(node, exp.In) and node.args.get("query"):
            self._column(scope, column, "joins")  # a semi-join
            return
        role = _role(node, operands)
        if role is None or not all(_is_value(o) for o in operands):
            return
        if column is not None:
            self._column(scope, column, role)
        elif isinstance(left, exp.Expr) and not left.find(exp.AggFunc):
            inner = next(_local_columns(left), None)  # `lower(email) = $1`
            placed, table = scope.resolve(inner) if inner else (False, None)
            if placed and table is not None and inner is not None:
                self._add(table, "expressions", node.sql("postgres"))
                form = _key_form(left)
                if form is not None and role in ("equality", "ranges"):
                    key = (_name(inner.this), form, role)
                    self._usage(table).expression_keys[key] = None

    def _fulltext(self, node: exp.MatchAgainst, scope: _Scope) -> None:
        for side in (node.this, *node.expressions):
            args = side.expressions if isinstance(side, exp.Anonymous) else []
            if str(side.this).lower() != "to_tsvector" or len(args) != 2:
                continue
            config, column = args[0], _plain_column(args[1])
            if not (isinstance(config, exp.Literal) and config.is_string) or column is None:
                continue
            placed, table = scope.resolve(column)
            if placed and table is not None:
                self._usage(table).fulltext[(_name(column.this), str(config.this))] = None

    def _pattern(self, node: _Node, scope: _Scope) -> None:
        """`c ILIKE '%x%'`, `c LIKE $1`, `c ~ 'x'`: a column a trigram index could serve."""
        column, pattern = _plain_column(node.this), node.args.get("expression")
        if column is None or not isinstance(pattern, exp.Expr) or not _is_value(pattern):
            return
        literal = pattern.unnest()
        anchored = (isinstance(node, exp.Like) and isinstance(literal, exp.Literal)
                    and literal.is_string
                    and str(literal.this)[:1] not in ("%", "_", ""))  # fmt: skip
        placed, table = scope.resolve(column)
        if placed and table is not None and not anchored:
            self._usage(table).patterns[_name(column.this)] = None

    def _constant(self, node: _Node, scope: _Scope) -> None:
        """Record `c = constant`, `c IS [NOT] NULL`, `c`, `NOT c` as a constant filter."""
        term: tuple[exp.Column | None, str, str | None] = (None, "", None)
        if isinstance(node, exp.Column):
            term = (_plain_column(node), "=", "true")
        elif isinstance(node, exp.Not):
            term = (_plain_column(node.this), "=", "false")
        elif isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            op = "is not null" if node.args.get("negate") else "is null"
            term = (_plain_column(node.this), op, None)
        elif isinstance(node, exp.EQ) and not node.args.get("negate"):
            column, value = _plain_column(node.this), node.expression
            if column is None:
                column, value = _plain_column(node.expression), node.this
            term = (column, "=", _constant_text(value))
        column, op, value = term
        if column is None or not op or (op == "=" and value is None):
            return
        placed, table = scope.resolve(column)
        if placed and table is not None:
            self._usage(table).constants[(_name(column.this), op, value)] = None

    # bookkeeping

    def _table(self, node: _Node) -> TableName:
        return TableName(_name(node.args.get("db")) or None, _name(node.this))

    def _usage(self, table: TableName) -> _Usage:
        return self.usage.setdefault(table, _Usage())

    def _column(self, scope: _Scope, column: exp.Column, role: str) -> None:
        scope.used.add(id(column))
        placed, table = scope.resolve(column)
        if not placed:
            self.unattributed[_name(column.this)] = None
        elif table is not None:
            self._add(table, role, _name(column.this))

    def _add(self, table: TableName, role: str, column: str) -> None:
        self._usage(table).roles[role][column] = None

    def _all(self, scope: _Scope, qualifier: str) -> None:
        for alias, table in scope.sources.items():
            if table is not None and qualifier in ("", alias):
                self._usage(table).returns_all = True
