"""What the executor may do and to what: tables, index specs, actions and their results.

The action lifecycle (DESIGN.md): proposed → approved → baselined → applying → applied →
verifying → kept, with exits rejected, failed and rolled_back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ActionKind(StrEnum):
    """The closed set of things the executor may do; nothing else is ever rendered."""

    CREATE_INDEX = "create_index"
    DROP_INDEX = "drop_index"
    ANALYZE = "analyze"
    VACUUM = "vacuum"
    REINDEX = "reindex"


class ActionState(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    BASELINED = "baselined"
    APPLYING = "applying"
    APPLIED = "applied"
    VERIFYING = "verifying"
    KEPT = "kept"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (ActionState.REJECTED, ActionState.KEPT, ActionState.ROLLED_BACK,
                        ActionState.FAILED)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TableRef:
    """A table as (schema, name), both exactly as stored in the catalog (no quoting)."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


INDEX_METHODS = ("btree", "hash", "brin", "gin")  # what the tuner builds
# a gin key's operator class other than the default; gin_trgm_ops:<schema> names pg_trgm's
GIN_OPCLASSES = ("jsonb_path_ops", "gin_trgm_ops")
# a gin key to_tsvector('config', c) ("tsvector:config"): the built-in configurations only
TS_CONFIGS = ("simple", "arabic", "armenian", "basque", "catalan", "danish", "dutch",
              "english", "finnish", "french", "german", "greek", "hindi", "hungarian",
              "indonesian", "irish", "italian", "lithuanian", "nepali", "norwegian",
              "portuguese", "romanian", "russian", "serbian", "spanish", "swedish", "tamil",
              "turkish", "yiddish")  # fmt: skip
# The closed set of key expressions (`IndexSpec.expressions`), each IMMUTABLE on the column
# types the advisor offers it for, rendered with pg_catalog-qualified names only:
# lower(c), upper(c), c::date (of a timestamp), date_trunc('unit', c) (of a timestamp),
# (c ->> 'key') (of a jsonb).
EXPRESSION_FORMS = ("lower", "upper", "date", "date_trunc", "field")
DATE_UNITS = ("microseconds", "milliseconds", "second", "minute", "hour", "day", "week",
              "month", "quarter", "year", "decade", "century", "millennium")  # fmt: skip
PREDICATE_OPS = ("=", "is null", "is not null")  # a partial index's WHERE: `c = 'v'`, ...
MAX_LITERAL = 200  # characters of a json key or a predicate's constant


def _literal_ok(value: str) -> bool:
    return 0 < len(value) <= MAX_LITERAL and "\x00" not in value


def expression_label(column: str, expression: str) -> str:
    """How an index key reads in advice: `email`, `lower(email)`, `(payload ->> 'kind')`."""
    form, _, arg = expression.partition(":")
    if not form:
        return column
    if form == "date":
        return f"{column}::date"
    if form == "date_trunc":
        return f"date_trunc('{arg}', {column})"
    if form == "field":
        return f"({column} ->> '{arg}')"
    if form == "tsvector":
        return f"to_tsvector('{arg}', {column})"
    if form in GIN_OPCLASSES:
        return f"{column} {form}"  # the schema of gin_trgm_ops left out
    return f"{form}({column})"


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """An index the tuner could build: key columns in order, optional INCLUDE columns.

    `method` btree (the default), hash or brin: a hash index answers only `=` on its one
    column, carries no INCLUDE columns and no order, and costs a write less than a btree
    on a wide random key (see `refine.HASH_WRITE_SHARE`); a brin index has one plain
    column whose values follow the heap's order.
    `expressions`, one per key column ("" for the column itself): `form[:arg]` of
    EXPRESSION_FORMS, e.g. `lower` or `date_trunc:day` or `field:kind`.
    `predicate`: a partial index's WHERE, (column, op, constant) terms of PREDICATE_OPS
    joined by AND; the constant is None for IS [NOT] NULL. Never a parameter.
    """

    table: TableRef
    columns: tuple[str, ...]
    include: tuple[str, ...] = ()
    descending: tuple[bool, ...] = ()
    method: str = "btree"
    expressions: tuple[str, ...] = ()
    predicate: tuple[tuple[str, str, str | None], ...] = ()

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("an index needs at least one column")
        if self.descending and len(self.descending) != len(self.columns):
            raise ValueError("descending flags must match the columns")
        if self.method not in INDEX_METHODS:
            raise ValueError(f"index method {self.method!r} is not one of {INDEX_METHODS}")
        hashed = self.method == "hash"
        if hashed and (len(self.columns) > 1 or self.include or any(self.descending)
                       or any(self.expressions) or self.predicate):  # fmt: skip
            raise ValueError("a hash index has one plain key column, no INCLUDE, no order "
                             "and no WHERE")  # fmt: skip
        plain_one = len(self.columns) == 1 and not any(self.expressions)
        if self.method == "brin" and (not plain_one or self.include or self.predicate
                                      or any(self.descending)):  # fmt: skip
            raise ValueError("a brin index has one plain key column, no INCLUDE, no order "
                             "and no WHERE")  # fmt: skip
        if self.expressions and not any(self.expressions):  # all plain: one spelling
            object.__setattr__(self, "expressions", ())
        if self.method == "gin":
            opclass, _, schema = (self.expressions or ("",))[0].partition(":")
            if (len(self.columns) > 1 or self.include or any(self.descending) or self.predicate
                    or (opclass and opclass not in (*GIN_OPCLASSES, "tsvector"))
                    or (opclass == "tsvector" and schema not in TS_CONFIGS)
                    or (opclass in ("gin_trgm_ops", "tsvector")) != bool(schema)
                    or len(schema.encode()) > 63 or "\x00" in schema):  # fmt: skip
                raise ValueError(f"a gin index has one column, with the default operator "
                                 f"class or one of {GIN_OPCLASSES} (gin_trgm_ops with the "
                                 "schema pg_trgm is installed in), or to_tsvector of it with "
                                 "a built-in configuration")  # fmt: skip
        elif self.expressions:
            if len(self.expressions) != len(self.columns):
                raise ValueError("expressions must match the columns")
            for expression in self.expressions:
                form, colon, arg = expression.partition(":")
                if form and form not in EXPRESSION_FORMS:
                    raise ValueError(f"key expression {form!r} is not one of {EXPRESSION_FORMS}")
                if form == "date_trunc" and arg not in DATE_UNITS:
                    raise ValueError(f"date_trunc unit {arg!r} is not one of {DATE_UNITS}")
                if form == "field" and not _literal_ok(arg):
                    raise ValueError("a json key must be 1-200 characters without NUL")
                if form in ("lower", "upper", "date") and colon:
                    raise ValueError(f"{form} takes no argument")
        for column, op, value in self.predicate:
            if op not in PREDICATE_OPS:
                raise ValueError(f"predicate operator {op!r} is not one of {PREDICATE_OPS}")
            if (op == "=") != (value is not None) or (value is not None and not _literal_ok(value)):
                raise ValueError(f"predicate {column} {op} needs a constant of 1-200 characters "
                                 "exactly when it is `=`")  # fmt: skip

    @property
    def keys(self) -> tuple[str, ...]:
        """Each key as advice shows it: the column, or its expression (`lower(email)`)."""
        forms = self.expressions or ("",) * len(self.columns)
        return tuple(expression_label(c, e) for c, e in zip(self.columns, forms, strict=True))

    @property
    def where(self) -> str:
        """The partial index's predicate as advice shows it ("" for a full index)."""
        return " AND ".join(
            f"{c} {op}" + (f" '{v}'" if v is not None else "") for c, op, v in self.predicate
        )

    @property
    def key(self) -> tuple[str, tuple[str, ...], tuple[str, ...], str]:
        tail = f"{self.method} WHERE {self.where}" if self.predicate else self.method
        return (str(self.table), self.keys if any(self.expressions) else self.columns,
                self.include, tail)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Action:
    """One change the executor may make. `index_name` names the index created or affected."""

    id: str
    kind: ActionKind
    table: TableRef
    index: IndexSpec | None = None
    index_name: str | None = None
    index_definition: str | None = None  # pg_get_indexdef of an index to drop, for undo
    reason: str = ""
    figures: dict[str, float | int | str] = field(default_factory=dict, compare=False)


# --- executor ------------------------------------------------------------------------------
# What `Executor.apply`/`undo`/`recover` return: the statement that ran, the state it left the
# action in, and what a later undo needs (the definition of a dropped index, captured first).


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The result of running one action (or its undo): APPLIED, ROLLED_BACK, FAILED or REJECTED.

    `index_definition` is pg_get_indexdef of the index, read before a drop (so that undo can
    recreate it) or after a build. `cleaned_up` names the INVALID leftovers that were dropped.
    `transient` marks a failure that trying again later may cure: a lock or statement timeout
    (not a cancellation by the tuner itself).
    """

    action_id: str
    kind: ActionKind
    state: ActionState
    statement: str = ""
    reason: str = ""
    index_name: str | None = None
    index_definition: str | None = None
    tuner_made: bool = False
    size_bytes: int | None = None
    estimated_size_bytes: int | None = None
    seconds: float = 0.0
    cleaned_up: tuple[str, ...] = ()
    transient: bool = False

    @property
    def ok(self) -> bool:
        return self.state in (ActionState.APPLIED, ActionState.ROLLED_BACK)
