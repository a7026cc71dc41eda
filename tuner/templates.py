"""What the executor may say: the closed set of statement templates (pure composition).

`render` turns an action into its one statement, identifiers through `psycopg.sql.Identifier`
(via `db`); `statements.check` parses the rendered text again before it runs.
"""

from __future__ import annotations

from tuner import db
from tuner.errors import RefusedStatement
from tuner.models import Action, ActionKind, IndexSpec
from tuner.statements import MAX_NAME_BYTES, index_names


def _ident(value: str) -> db.Identifier:
    if not value or "\x00" in value or len(value.encode()) > MAX_NAME_BYTES:
        raise RefusedStatement(
            f"identifier {value!r} is empty, holds a NUL or exceeds {MAX_NAME_BYTES} bytes "
            "(PostgreSQL would silently truncate it)"
        )
    return db.Identifier(value)


def _qualified(schema: str, name: str) -> db.Composed:
    return db.SQL("{}.{}").format(_ident(schema), _ident(name))


def create_sql(spec: IndexSpec, name: str) -> db.Composed:
    """CREATE INDEX CONCURRENTLY `name` for `spec`: a build, or the undo of a drop."""
    return db.SQL("CREATE INDEX CONCURRENTLY {} ").format(_ident(name)) + index_target(spec)


def index_target(spec: IndexSpec) -> db.Composed:
    """`ON s.t USING btree|hash|brin (key [DESC], ...) [INCLUDE (c, ...)] [WHERE ...]`: what
    every CREATE INDEX the tuner renders says after its name (the build here, HypoPG's and
    the advice's in `whatif.create_index_statement`). A key is a quoted column or one of
    the closed set of expressions (`key_sql`); a WHERE is `c = 'constant'`, `c IS NULL` or
    `c IS NOT NULL` terms joined by AND."""
    desc = spec.descending or (False,) * len(spec.columns)
    forms = spec.expressions or ("",) * len(spec.columns)
    keys = db.SQL(", ").join(
        db.SQL("{} DESC" if d else "{}").format(key_sql(c, e))
        for c, e, d in zip(spec.columns, forms, desc, strict=True)
    )
    include = (
        db.SQL(" INCLUDE ({})").format(db.SQL(", ").join(_ident(c) for c in spec.include))
        if spec.include
        else db.SQL("")
    )
    using = db.SQL(f" USING {spec.method} (")  # one of models.INDEX_METHODS
    where = db.SQL("") + db.SQL("")
    if spec.predicate:
        where = db.SQL(" WHERE ") + db.SQL(" AND ").join(
            db.SQL("{} = {}").format(_ident(c), db.Literal(v)) if op == "=" else
            db.SQL("{} IS NULL" if op == "is null" else "{} IS NOT NULL").format(_ident(c))
            for c, op, v in spec.predicate
        )  # fmt: skip
    return db.SQL("ON {}{}{}){}{}").format(
        _qualified(spec.table.schema, spec.table.name), using, keys, include, where
    )


_EXPRESSION_SQL = {  # form → template; the column through {}, names pg_catalog-qualified
    "lower": "(pg_catalog.lower({}))",
    "upper": "(pg_catalog.upper({}))",
    "date": "(CAST({} AS pg_catalog.date))",
    "date_trunc": "(pg_catalog.date_trunc({arg}, {col}))",
    "field": "({col} OPERATOR(pg_catalog.->>) {arg})",
    "jsonb_path_ops": "{} pg_catalog.jsonb_path_ops",  # a gin key's operator class
    "gin_trgm_ops": "{col} {schema}.gin_trgm_ops",  # pg_trgm's, in the schema it is in
    "tsvector": "(pg_catalog.to_tsvector({arg}, {col}))",  # a gin key: full text
}


def key_sql(column: str, expression: str = "") -> db.Composed:
    """One index key: the quoted column, or its expression from the closed set."""
    form, _, arg = expression.partition(":")
    if not form:
        return db.Composed([_ident(column)])
    template = _EXPRESSION_SQL[form]  # IndexSpec admits no other form
    if "{schema}" in template:
        return db.SQL(template).format(col=_ident(column), schema=_ident(arg))
    if "{arg}" in template:
        return db.SQL(template).format(col=_ident(column), arg=db.Literal(arg))
    return db.SQL(template).format(_ident(column))


def drop_sql(schema: str, name: str) -> db.Composed:
    """DROP INDEX CONCURRENTLY IF EXISTS: a drop, the undo of a build, or a cleanup."""
    return db.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(_qualified(schema, name))


def comment_sql(schema: str, name: str, marker: str) -> db.Composed:
    """COMMENT ON INDEX ... IS `marker`: the tag that makes an index the tuner's own."""
    return db.SQL("COMMENT ON INDEX {} IS {}").format(_qualified(schema, name), db.Literal(marker))


def render(action: Action) -> db.Composed:
    """The one statement of `action`, from the whitelist's templates; nothing else is possible."""
    table = action.table
    if action.kind is ActionKind.CREATE_INDEX:
        if action.index is None:
            raise RefusedStatement(f"action {action.id}: create_index without an index spec")
        names = index_names(action.index)
        if action.index_name not in (None, *names):
            raise RefusedStatement(
                f"action {action.id}: index name {action.index_name!r} is not one of the "
                f"deterministic names of its spec ({names[0]!r} ...)"
            )
        return create_sql(action.index, action.index_name or names[0])
    if action.kind in (ActionKind.DROP_INDEX, ActionKind.REINDEX) and not action.index_name:
        raise RefusedStatement(f"action {action.id}: {action.kind} needs an index name")
    if action.kind is ActionKind.DROP_INDEX:
        return drop_sql(table.schema, action.index_name or "")
    if action.kind is ActionKind.REINDEX:
        return db.SQL("REINDEX INDEX CONCURRENTLY {}").format(
            _qualified(table.schema, action.index_name or "")
        )
    if action.kind is ActionKind.ANALYZE:
        return db.SQL("ANALYZE {}").format(_qualified(table.schema, table.name))
    if action.kind is ActionKind.VACUUM:
        return db.SQL("VACUUM (ANALYZE) {}").format(_qualified(table.schema, table.name))
    raise RefusedStatement(f"action {action.id}: kind {action.kind!r} is not whitelisted")
