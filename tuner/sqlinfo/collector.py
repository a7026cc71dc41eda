"""The walk over one statement that fills `QueryInfo`: each query level's sources, joins,
conditions, groupings and sorts, attributed to base tables."""

from __future__ import annotations

from sqlglot import exp

from tuner.sqlinfo.info import QueryInfo, SortKey, StatementKind, TableName
from tuner.sqlinfo.nodes import (
    _COMPARISONS,
    _JSONB_OPERATORS,
    _LOOKS_THROUGH,
    _constant_text,
    _is_value,
    _key_form,
    _local_columns,
    _name,
    _nested_queries,
    _Node,
    _operands,
    _plain_column,
    _role,
    _Scope,
    _Usage,
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
