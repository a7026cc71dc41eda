"""What the advisor may propose: index candidates for one query's use of a table, and the
maintenance findings (invalid, duplicate and unused indexes; tables to ANALYZE or VACUUM).

No I/O: plain values in, `IndexSpec`s and `Proposal`s out (DDL quoted by the driver's rules).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from tuner import findings
from tuner.findings import IndexLike, IndexProblem, TableLike
from tuner.models import (
    TS_CONFIGS,
    ActionKind,
    Confidence,
    IndexSpec,
    Proposal,
    ProposalKind,
)
from tuner.sqlinfo import TableUse
from tuner.statements import quote_ref
from tuner.units import format_size

if TYPE_CHECKING:  # annotations only: the facts are read by catalog, not here
    from tuner.catalog import ColumnFacts, TableFacts

MAX_EQUALITY = 4  # equality/join columns considered per table use


class TableInput(TableLike, Protocol):
    """What the advisor reads of a table's activity in the window (`models.TableActivity`)."""

    @property
    def seconds(self) -> float: ...
    @property
    def reltuples(self) -> float: ...
    @property
    def n_tup_ins(self) -> int: ...
    @property
    def n_tup_upd(self) -> int: ...
    @property
    def n_tup_del(self) -> int: ...


IndexInput = IndexLike  # an existing index, as the findings' rules read it


def leads(columns: Sequence[str], existing: Sequence[str | None]) -> bool:
    return len(columns) <= len(existing) and tuple(existing[: len(columns)]) == tuple(columns)


def covered_by(spec: IndexSpec, indexes: Iterable[IndexInput], include: bool = False) -> bool:
    """True when an existing valid, non-partial index answers `spec`'s lookups: a btree
    that `spec`'s key columns lead (with `include`: one that also carries `spec`'s INCLUDE
    columns, as key or INCLUDE), or for a hash `spec`, a hash on its column."""
    return any(
        i.table == spec.table and i.is_valid and i.predicate is None and _answers(i, spec)
        and (not include or set(spec.include) <= {*i.columns, *i.include})
        for i in indexes
    )  # fmt: skip


def _answers(wide: IndexInput | IndexSpec, narrow: IndexInput | IndexSpec) -> bool:
    """`wide`'s access method and key answer every lookup `narrow`'s does: an index of the
    same method that `narrow`'s key leads, or a btree so led for a hash `narrow`; a hash
    answers only a hash on the same column (it has no order: no range, sort or prefix).
    Key expressions must be the same ones (an index whose expressions are not known, an
    existing one, answers none); a partial `wide` answers only the same predicate."""
    partial = getattr(wide, "predicate", None) or None
    if partial is not None and partial != (getattr(narrow, "predicate", None) or None):
        return False
    if not leads(_forms(narrow), _forms(wide)):
        return False
    if narrow.method == "hash" and wide.method == "btree":
        return leads(narrow.columns, wide.columns)  # type: ignore[arg-type]
    if wide.method != narrow.method:
        return False
    if wide.method == "hash":
        return tuple(wide.columns) == tuple(narrow.columns)
    return leads(narrow.columns, wide.columns)  # type: ignore[arg-type]


def _forms(index: IndexInput | IndexSpec) -> tuple[str, ...]:
    """The key expressions of an index the tuner models ("" for a plain column)."""
    forms: tuple[str, ...] = getattr(index, "expressions", ()) or ()
    return forms or ("",) * len(index.columns)


def _serves(wide: IndexInput, narrow: IndexInput) -> bool:
    """`wide` answers every lookup `narrow` does, as cheaply in pages read: `_answers`, and
    `narrow`'s INCLUDE columns are among its columns (a covering index is not a duplicate
    of a plain one that lacks its INCLUDEs; the plain one is of it)."""
    return _answers(wide, narrow) and set(narrow.include) <= {*wide.columns, *wide.include}


def candidates_for(
    use: TableUse, table: TableFacts, max_width: int = 3, include: bool = True
) -> set[IndexSpec]:
    """The btree candidates for one query's use of one table (before the existing-index rule)."""
    ok = {c for c, f in table.columns.items() if f.btree}
    rows = table.rows

    def usable(names: Iterable[str]) -> list[str]:
        return [c for c in dict.fromkeys(names) if c in ok]

    equality = usable((*use.equality, *use.joins))
    equality.sort(key=lambda c: -table.columns[c].distinct(rows))
    equality = equality[:MAX_EQUALITY]
    # The filters alone: a join column leads only a nested loop's inner scan, so a range
    # also gets the prefix of the query's own `=`/IN columns (Q12: l_shipmode, l_receiptdate).
    filters = [c for c in equality if c in use.equality]
    ranges = [c for c in usable(use.ranges) if c not in equality][:3]
    sort_keys = [k for k in use.order_by if k.column in ok]
    sort = [k.column for k in sort_keys] if len(sort_keys) == len(use.order_by) else []
    flags = tuple(k.descending for k in sort_keys)
    mixed = len(set(flags)) > 1

    found: set[IndexSpec] = set()

    def add(columns: Sequence[str], desc: Sequence[bool] = (), extra: Sequence[str] = ()) -> None:
        columns = list(dict.fromkeys(columns))
        if columns and len(columns) <= max_width:
            keep = tuple(desc) if len(desc) == len(columns) and any(desc) else ()
            found.add(IndexSpec(table.table, tuple(columns), tuple(extra), keep))

    for width in range(1, min(len(equality), max_width) + 1):
        for combo in itertools.permutations(equality, width):
            add(combo)
    for prefix in range(0, min(len(equality), max_width - 1) + 1):
        for column in ranges:
            add([*equality[:prefix], column])
        if sort and prefix + len(sort) <= max_width and not set(sort) & set(equality[:prefix]):
            desc = [False] * prefix + list(flags) if mixed else []
            add([*equality[:prefix], *sort], desc)
    for width in range(1, min(len(filters), max_width - 1) + 1):
        for column in ranges:
            add([*filters[:width], column])
    for column in ranges:
        add([column])
    if len(ranges) >= 2:  # a second range checked in the index, not on the heap (Q6)
        add(ranges[:2])
        add([ranges[1], ranges[0]])
    if use.group_by and set(use.group_by) <= ok:
        add(list(use.group_by)[:max_width])
    if include and not use.returns_all:
        key = [*equality[: max_width - 1], *ranges[:1]][:max_width] or sort[:max_width]
        rest = [c for c in use.columns if c not in key and c in table.columns]
        if key and rest and len(rest) <= 4:
            add(key, extra=sorted(rest))
    return found


def form_fits(form: str, type_name: str) -> bool:
    """True when key expression `form` is IMMUTABLE on a column of `type_name` (what CREATE
    INDEX requires): lower/upper of text, ::date and date_trunc of a timestamp without time
    zone (of a timestamptz they depend on the TimeZone setting), ->> of json(b)."""
    kind = form.partition(":")[0]
    if kind in ("lower", "upper"):
        return type_name == "text" or type_name.startswith(("character varying", "character("))
    if kind in ("date", "date_trunc"):
        return type_name == "timestamp without time zone"
    return kind == "field" and type_name in ("json", "jsonb")


def expression_candidates(use: TableUse, table: TableFacts, max_width: int = 3) -> set[IndexSpec]:
    """Btree candidates keyed on the expressions a query filters on (`lower(email) = $1`):
    the expression alone, after one `=` column, before the sort or one range column."""
    keys = [(c, f, r) for c, f, r in use.expression_keys
            if c in table.columns and form_fits(f, table.columns[c].type_name)]  # fmt: skip
    if not keys:
        return set()
    ok = {c for c, f in table.columns.items() if f.btree}
    rows = table.rows
    equality = [c for c in dict.fromkeys(use.equality) if c in ok]
    equality.sort(key=lambda c: -table.columns[c].distinct(rows))
    ranges = [c for c in dict.fromkeys(use.ranges) if c in ok and c not in equality]
    sort_keys = [k for k in use.order_by if k.column in ok]
    sort = sort_keys if len(sort_keys) == len(use.order_by) else []
    found: set[IndexSpec] = set()

    def add(parts: Sequence[tuple[str, str, bool]]) -> None:
        if 0 < len(parts) <= max_width and len(set(parts)) == len(parts):
            desc = tuple(d for _, _, d in parts)
            found.add(IndexSpec(table.table, tuple(c for c, _, _ in parts),
                                descending=desc if any(desc) and len(set(desc)) > 1 else (),
                                expressions=tuple(f for _, f, _ in parts)))  # fmt: skip

    for column, form, role in keys:
        key = (column, form, False)
        add([key])
        if role == "equality":
            for other in equality[:2]:
                add([(other, "", False), key])
                add([key, (other, "", False)])
            for other in ranges[:1]:
                add([key, (other, "", False)])
            if sort:
                add([key, *((k.column, "", k.descending) for k in sort)])
        else:
            for other in equality[:2]:
                add([(other, "", False), key])
    return found


BRIN_MIN_CORRELATION = 0.95  # |pg_stats.correlation|: the heap is in the column's order
BRIN_MIN_PAGES = 1000  # heap pages: below this a btree is small anyway
_BRIN_TYPES = frozenset(
    ("smallint", "integer", "bigint", "numeric", "real", "double precision", "date",
     "timestamp without time zone", "timestamp with time zone")
)  # fmt: skip


def brin_candidates(use: TableUse, table: TableFacts) -> set[IndexSpec]:
    """A brin index on each range column of a large table whose rows lie in the column's
    order (an append-only log's time or id): a few pages of min/max per 128 heap pages."""
    if table.pages < BRIN_MIN_PAGES:
        return set()
    found = set()
    for column in dict.fromkeys(use.ranges):
        facts = table.columns.get(column)
        if (facts is not None and facts.type_name.split("(")[0] in _BRIN_TYPES
                and abs(facts.correlation or 0.0) >= BRIN_MIN_CORRELATION):  # fmt: skip
            found.add(IndexSpec(table.table, (column,), method="brin"))
    return found


MISSING_TRGM = "-"  # gin_candidates' schema for gin_trgm_ops when pg_trgm is not installed


def gin_candidates(
    use: TableUse, table: TableFacts, trgm_schema: str | None = None
) -> set[IndexSpec]:
    """A gin index on each jsonb column the query filters with `@>`, `?`, `?|`, `?&` or
    `@?`: jsonb_path_ops (smaller, faster) where `@>` is all it is used for, else the
    default jsonb_ops (which alone answers the key-existence operators). A trigram one
    (pg_trgm's gin_trgm_ops, in `trgm_schema`; MISSING_TRGM when it is not installed) on
    each text column matched by a pattern a btree cannot serve."""
    found = {
        IndexSpec(table.table, (c,), method="gin",
                  expressions=(f"gin_trgm_ops:{trgm_schema or MISSING_TRGM}",))
        for c in use.patterns if c in table.columns
        and form_fits("lower", table.columns[c].type_name)  # text, varchar, char(n)
    } | {
        IndexSpec(table.table, (c,), method="gin", expressions=(f"tsvector:{config}",))
        for c, config in use.fulltext if c in table.columns and config in TS_CONFIGS
        and form_fits("lower", table.columns[c].type_name)
    }  # fmt: skip
    ops: dict[str, set[str]] = {}
    for column, op in use.jsonb:
        facts = table.columns.get(column)
        if facts is not None and facts.type_name == "jsonb":
            ops.setdefault(column, set()).add(op)
    return found | {
        IndexSpec(table.table, (c,), method="gin",
                  expressions=("jsonb_path_ops",) if used == {"@>"} else ())
        for c, used in ops.items()
    }  # fmt: skip


PARTIAL_MAX_SHARE = 0.5  # a partial index is a candidate when at most this share of rows match
# `c = constant` is a state (status, kind, a flag) only on a column of few distinct values;
# on any other (`agent = 42` as a captured statement spells it) the constant is the value of
# one call, a lookup key, not a filter every call shares.
STATE_MAX_DISTINCT = 32


def _a_state(column: ColumnFacts, rows: float) -> bool:
    return column.type_name == "boolean" or column.distinct(rows) <= STATE_MAX_DISTINCT


def partial_variants(
    specs: Iterable[IndexSpec], use: TableUse, table: TableFacts
) -> set[IndexSpec]:
    """Each btree candidate again as a partial index whose WHERE is the query's constant
    filters (`status = 'open'`, `deleted_at IS NULL`), when pg_stats says at most
    PARTIAL_MAX_SHARE of the rows meet them; a key column pinned to one value by the WHERE
    leaves the key. Never a filter with a parameter (sqlinfo records constants only), nor
    `c = constant` on a column of more than STATE_MAX_DISTINCT values."""
    terms = tuple(sorted((c, op, v) for c, op, v in use.constants if c in table.columns
                         and (op != "=" or _a_state(table.columns[c], table.rows))))  # fmt: skip
    if not terms:
        return set()
    share = math.prod(table.columns[c].share(op, v, table.rows) for c, op, v in terms)
    if share > PARTIAL_MAX_SHARE:
        return set()
    pinned = {c for c, _, _ in terms}
    found: set[IndexSpec] = set()
    for spec in specs:
        if spec.method != "btree" or spec.predicate:
            continue
        forms = spec.expressions or ("",) * len(spec.columns)
        desc = spec.descending or (False,) * len(spec.columns)
        keep = [i for i, (c, f) in enumerate(zip(spec.columns, forms, strict=True))
                if f or c not in pinned]  # fmt: skip
        if not keep:
            continue
        flags = tuple(desc[i] for i in keep)
        found.add(IndexSpec(spec.table, tuple(spec.columns[i] for i in keep), spec.include,
                            flags if any(flags) else (), "btree",
                            tuple(forms[i] for i in keep), terms))  # fmt: skip
    return found


MAX_SHIELD_INCLUDE = 8  # columns a shield may carry beside its key


def shield_for(use: TableUse, table: TableFacts, max_width: int = 3) -> IndexSpec | None:
    """A covering index for a `WHERE a = $1 ORDER BY b LIMIT n` read that another index
    trapped, or None when the read has no such shape.

    Key: the read's equality columns, then its sort columns; INCLUDE: every other column it
    uses. The planner costs an index-only scan of it at a few pages, below any walk of
    an index on the sort column alone that it hopes to cut short, so that index can be
    built without trapping this read (bookings: 1.5 against 40 for the walk of created_at).
    """
    ok = {c for c, f in table.columns.items() if f.btree}
    rows = table.rows
    equality = [c for c in dict.fromkeys(use.equality) if c in ok]
    equality.sort(key=lambda c: -table.columns[c].distinct(rows))
    sort = [k.column for k in use.order_by]
    if not equality or not sort or not set(sort) <= ok or set(sort) & set(equality):
        return None
    key = [*equality, *sort]
    if len(key) > max_width:
        return None
    flags = [k.descending for k in use.order_by]
    descending = (False,) * len(equality) + tuple(flags) if len(set(flags)) > 1 else ()
    used = table.columns if use.returns_all else use.columns
    include = sorted(c for c in used if c not in key and c in table.columns)
    if len(include) > MAX_SHIELD_INCLUDE:
        return None
    return IndexSpec(table.table, tuple(key), tuple(include), descending)


def maintenance_proposals(
    tables: Sequence[TableLike],
    indexes: Sequence[IndexLike],
    stats_age: float,
    unused_after: timedelta,
    stale_ratio: float,
    dead_ratio: float,
) -> list[Proposal]:
    """Drops of invalid, duplicate and unused indexes and tables to ANALYZE or VACUUM: what
    fixes `findings` (the rules `status` lists by). An index is proposed unused only once
    the statistics cover `unused_after`; one backing a constraint is never proposed."""
    found: list[Proposal] = []
    for f in findings.index_findings(indexes):
        index = f.index
        if not f.droppable or (
            f.problem is IndexProblem.UNUSED and stats_age < unused_after.total_seconds()
        ):
            continue
        ref = f"{index.schema}.{index.name}"
        if f.keeper is not None:
            include = ", ".join(map(str, index.include))
            carries = f" INCLUDE ({include})" if include else ""
            also = " and carries the same columns" if include else ""
            kind = ProposalKind.DROP_DUPLICATE_INDEX
            reason = (f"Index {ref} ({', '.join(map(str, index.columns))}){carries} duplicates "
                      f"the leading columns of {f.keeper.schema}.{f.keeper.name}, which serves "
                      f"the same lookups{also}; it takes {format_size(index.size_bytes)} and "
                      "slows every write.")  # fmt: skip
        elif f.problem is IndexProblem.INVALID:
            kind = ProposalKind.DROP_INVALID_INDEX
            reason = (f"Index {ref} is INVALID (a failed or interrupted CREATE INDEX "
                      "CONCURRENTLY left it): queries never use it, yet every write to the "
                      "table still maintains it.")  # fmt: skip
        else:
            kind = ProposalKind.DROP_UNUSED_INDEX
            reason = (f"Index {ref} has not been scanned once in the {stats_age / 86400:.0f} "
                      f"days the statistics cover; it takes {format_size(index.size_bytes)} "
                      f"and slows every write to {index.table}.")  # fmt: skip
        found.append(Proposal(kind, index.table,
                              f"DROP INDEX CONCURRENTLY {quote_ref(index.schema, index.name)}",
                              reason, index_name=index.name,
                              columns=tuple(c or "(expression)" for c in index.columns),
                              estimated_size_bytes=index.size_bytes, confidence=Confidence.HIGH,
                              duplicate_of=f.keeper.name if f.keeper else None))  # fmt: skip
    for t in findings.table_findings(tables, stale_ratio, dead_ratio):
        table = t.table
        ref = quote_ref(table.table.schema, table.table.name)
        if t.action is ActionKind.ANALYZE:
            why = ("has never been analyzed" if t.never_analyzed else
                   f"had {table.n_mod_since_analyze:,} rows changed since its last ANALYZE "
                   f"({t.ratio:.0%} of {max(table.n_live_tup, 1):,})")  # fmt: skip
            found.append(Proposal(ProposalKind.ANALYZE, table.table, f"ANALYZE {ref}",
                                  f"Table {table.table} {why}; the planner's estimates (and "
                                  "this advice) rest on its statistics.",
                                  confidence=Confidence.HIGH))  # fmt: skip
        else:
            found.append(Proposal(ProposalKind.VACUUM, table.table, f"VACUUM {ref}",
                                  f"Table {table.table} holds {table.n_dead_tup:,} dead rows "
                                  f"({t.ratio:.0%} of its rows): scans read them for nothing "
                                  "until VACUUM frees the space.",
                                  confidence=Confidence.HIGH))  # fmt: skip
    return found
