"""What-if costing: the planner's cost of a query with hypothetical indexes (HypoPG).

A normalized query (`$1` placeholders) is costed as a generic plan on every version: by
`PREPARE` once (which also refuses a text of several statements and types the parameters
for the untrusted-code probe), `plan_cache_mode = force_generic_plan` and
`EXPLAIN EXECUTE name(NULL, ...)`. HypoPG does not invalidate cached plans, so the
session runs `DISCARD PLANS` whenever the set of hypothetical indexes changes. A text
without placeholders (a statement captured with its literals) is EXPLAINed as it is.
Each (query, hypothetical indexes on its tables) cost is computed once; every hypothetical
index is removed again when the `WhatIf` is closed, whatever happened.

Sizes: HypoPG's `hypopg_relation_size` ignores btree deduplication (PostgreSQL 13+), so
it overestimates indexes whose keys repeat, and it overestimates even unique keys. The
budget uses `estimate_size` instead (formula in its docstring); the raw HypoPG figure is
kept next to it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from tuner import db, log, queries, templates, workload
from tuner.errors import (
    Canceled,
    DatabaseUnavailable,
    MissingExtension,
    MissingPrivilege,
    QueryFailed,
    UnresolvedType,
    UntrustedCode,
)
from tuner.models import IndexSpec, TableRef
from tuner.sqlinfo import TableName, rewrite_typed_placeholders, substitute_parameters

LOG = log.get("tuner.whatif")

MARK = queries.MARK  # leads every statement the what-if session sends
HYPOPG_BATCH = 500  # hypothetical indexes alive at once; HypoPG 1.3 has ~2,800 fake OIDs
_PARAM = re.compile(r"\$(\d+)")
_HYPO_NAME = re.compile(r"^<(\d+)>")
_ARITHMETIC = re.compile(r"\$(\d+)\s*[-+*/]\s*\$(\d+)")
_UNTYPED = re.compile(r"could not determine data type of parameter \$(\d+)")
_CASE_RESULT = re.compile(r"\b(?:then|else)\s+\$(\d+)", re.IGNORECASE)
_EXTRACT = re.compile(r"\bextract\s*\(\s*\$(\d+)\s+from\s+", re.IGNORECASE)


# --- the catalog the advisor reads ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnFacts:
    """One column: can btree (or hash) index it, can btree deduplicate it, and its planner
    statistics."""

    name: str
    type_name: str
    btree: bool
    equalimage: bool
    n_distinct: float | None  # as pg_stats: negative is a fraction of the rows
    avg_width: int | None
    typlen: int = -1
    typalign: str = "i"
    hash: bool = False  # has a default hash operator class
    correlation: float | None = None  # as pg_stats: heap order against the column's order
    null_frac: float = 0.0  # as pg_stats
    common: Mapping[str, float] = field(default_factory=dict, hash=False)  # MCV → frequency

    def share(self, op: str, value: str | None, rows: float) -> float:
        """The share of rows that meet `column op value` (a partial index's term), from
        pg_stats: the null fraction, a most common value's frequency, or an even share of
        what the common values leave to the other distinct values."""
        if op == "is null":
            return self.null_frac
        if op == "is not null":
            return 1.0 - self.null_frac
        if value is not None and value in self.common:
            return self.common[value]
        if self.type_name == "boolean" and value in ("true", "false"):
            other = {"true": "t", "false": "f"}[value]
            if other in self.common:
                return self.common[other]
        rest = max(self.distinct(rows) * (1 - self.null_frac) - len(self.common), 1.0)
        return max(0.0, 1.0 - self.null_frac - sum(self.common.values())) / rest

    def distinct(self, rows: float) -> float:
        """The estimated number of distinct values among `rows` rows (at least 1)."""
        if self.n_distinct is None or self.n_distinct == 0:
            return max(1.0, rows)  # unknown: assume unique, the conservative size
        if self.n_distinct < 0:
            return max(1.0, -self.n_distinct * rows)
        return max(1.0, min(self.n_distinct, rows))

    @property
    def width(self) -> int:
        """Bytes the value takes in an index tuple, aligned as PostgreSQL aligns it."""
        raw = self.avg_width if self.avg_width else (self.typlen if self.typlen > 0 else 16)
        align = {"c": 1, "s": 2, "i": 4, "d": 8}.get(self.typalign, 4)
        if self.typlen < 0 and raw < 127:
            return raw + 1  # a short varlena, not aligned; pg_stats truncates the average
        return -(-raw // align) * align


@dataclass(frozen=True, slots=True)
class TableFacts:
    """One user table: its planner row count and its columns by name."""

    table: TableRef
    rows: float
    columns: Mapping[str, ColumnFacts] = field(hash=False)
    pages: int = 0  # pg_class.relpages


@dataclass(frozen=True, slots=True)
class Schema:
    """The user tables, the search paths to resolve unqualified names, and the server.

    `search_path` is the one a session starts with when its role has none of its own (the
    database's, else the server's); `role_paths` each role's that differs, by userid.
    """

    tables: Mapping[TableRef, TableFacts] = field(hash=False)
    search_path: tuple[str, ...]
    version_num: int
    has_hypopg: bool
    trgm_schema: str | None = None  # where pg_trgm is installed (its gin_trgm_ops), if it is
    role_paths: Mapping[int, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def resolve(
        self, schema: str | None, name: str, search_path: Sequence[str] | None = None
    ) -> TableFacts | None:
        """The table a query means by `schema.name` (or `name` on `search_path`, by default
        the database's): `workload.resolve`, the one rule."""
        path = self.search_path if search_path is None else search_path
        ref = workload.resolve(TableName(schema, name), self.tables.keys(), path)
        return self.tables.get(ref) if ref is not None else None

    def path_of(self, role: int) -> tuple[str, ...]:
        """The search_path the sessions of role `role` (a userid) start with here."""
        return self.role_paths.get(role, self.search_path)


def read_role_paths(conn: db.Connection) -> tuple[tuple[str, ...], dict[int, tuple[str, ...]]]:
    """The database's default search_path and each role's that differs from it (`$user`
    is the role's name: with the default `"$user", public` a role's own schema comes first)."""
    rows = db.fetch(conn, queries.get("whatif_role_paths"))
    raw = next((r["path"] or "" for r in rows if r["role"] == 0), "")
    default = workload.parse_search_path(raw, None)
    paths: dict[int, tuple[str, ...]] = {}
    for row in rows:
        own = row["path"] if row["path"] is not None else raw
        path = workload.parse_search_path(own, row["name"])
        if row["role"] != 0 and path != default:
            paths[int(row["role"])] = path
    return default, paths


def read_schema(conn: db.Connection) -> Schema:
    """Read every user table's columns with btree facts and statistics, in two round trips."""
    head = db.fetch(conn, queries.get("whatif_search_path"))[0]
    columns: dict[TableRef, dict[str, ColumnFacts]] = {}
    rows: dict[TableRef, float] = {}
    pages: dict[TableRef, int] = {}
    for row in db.fetch(conn, queries.get("whatif_columns")):
        ref = TableRef(row["schema"], row["table_name"])
        rows[ref] = float(row["reltuples"])
        pages[ref] = int(row["relpages"])
        columns.setdefault(ref, {})[row["column_name"]] = ColumnFacts(
            name=row["column_name"],
            type_name=row["type_name"],
            btree=bool(row["btree"]),
            equalimage=bool(row["equalimage"]),
            n_distinct=row["n_distinct"],
            avg_width=row["avg_width"],
            typlen=int(row["typlen"]),
            typalign=str(row["typalign"]),
            hash=bool(row["hash"]),
            correlation=row["correlation"],
            null_frac=float(row["null_frac"] or 0.0),
            common=dict(zip(row["common_values"] or (), row["common_freqs"] or (), strict=False)),
        )
    tables = {ref: TableFacts(ref, rows[ref], cols, pages[ref]) for ref, cols in columns.items()}
    default, role_paths = read_role_paths(conn)
    return Schema(
        tables=tables,
        search_path=default,
        version_num=int(head["version_num"]),
        has_hypopg=bool(head["has_hypopg"]),
        trgm_schema=head.get("trgm_schema"),
        role_paths=role_paths,
    )


# --- statements that did not come from pg_stat_statements (captured, or handed in) ---------


@dataclass(frozen=True, slots=True)
class WorkloadQuery:
    """A statement with its calls and execution time in the window (cf. QueryWindow)."""

    queryid: int
    query: str
    calls: int
    total_ms: float
    roles: tuple[int, ...] = ()  # the userids that ran it, where known


@dataclass(frozen=True, slots=True)
class ExistingIndex:
    """An index of a user table (cf. IndexStat); `columns` holds None for an expression."""

    table: TableRef
    schema: str
    name: str
    definition: str
    method: str
    columns: tuple[str | None, ...]
    include: tuple[str | None, ...]
    predicate: str | None
    size_bytes: int
    idx_scan: int
    is_valid: bool
    is_unique: bool
    is_primary: bool
    backs_constraint: bool
    is_replica_identity: bool


# --- size ----------------------------------------------------------------------------------

PAGE = 8192
PAGE_USABLE = PAGE - 24 - 16  # page header and btree special space
LEAF_FILL = 0.90  # btree's default fillfactor for leaf pages
LINE_POINTER = 4
TUPLE_HEADER = 8
HEAP_TID = 6
MAX_POSTING_TIDS = 130  # CREATE INDEX caps a posting list at about 10 % of a page


def _maxalign(n: float) -> float:
    return math.ceil(n / 8) * 8


def estimate_size(spec: IndexSpec, table: TableFacts, unique: bool = False) -> int:
    """Bytes a btree `spec` would take once built, from the table's statistics.

    Without deduplication each row is one leaf tuple of MAXALIGN(8 + key width) bytes plus a
    4-byte line pointer. With it (PostgreSQL 13+; only when every key column's operator
    class has an equalimage function, with no INCLUDE columns, not unique) the rows of one
    key value share a posting-list tuple: per group of g = rows / distinct(key) rows,
    ceil(g / 130) tuples of MAXALIGN(8 + key width + 6 * tids) + 4 bytes, where distinct(key)
    is min(rows, product of the key columns' n_distinct). Leaves are filled to 90 %, and the
    inner levels and the meta page add about 1 %. The product of n_distinct assumes the key
    columns independent; correlated ones make the real index smaller, so the estimate is
    then an upper bound. Checked against built indexes in tests/test_whatif.py (one key
    column within 20 %; HypoPG's own figure is 3-6x off for repeated keys).
    """
    rows = max(table.rows, 1.0)
    if spec.method == "hash":
        return _hash_size(rows)
    if spec.method == "brin":
        return _brin_size(table)
    if spec.method == "gin":
        return _gin_size(spec, table)
    for column, op, value in spec.predicate:  # a partial index holds the rows that match
        if column in table.columns:
            rows = max(rows * table.columns[column].share(op, value, table.rows), 1.0)
    forms = spec.expressions or ("",) * len(spec.columns)
    widths = [_key_width(table.columns[c], f) for c, f in zip(spec.columns, forms, strict=True)
              if c in table.columns]  # fmt: skip
    cols = [table.columns[c] for c in spec.include if c in table.columns]
    width = sum(widths) + sum(c.width for c in cols) or 8
    keys = [table.columns[c] for c in spec.columns if c in table.columns]
    dedup = not unique and not spec.include and bool(keys) and all(c.equalimage for c in keys)
    distinct = min(rows, math.prod(c.distinct(rows) for c in keys)) if keys else rows
    group = rows / max(distinct, 1.0)
    if dedup and group >= 2:
        per_group = math.ceil(group / MAX_POSTING_TIDS)
        tids_per_tuple = group / per_group
        tuple_bytes = _maxalign(TUPLE_HEADER + width + HEAP_TID * tids_per_tuple) + LINE_POINTER
        leaf_bytes = distinct * per_group * tuple_bytes
    else:
        leaf_bytes = rows * (_maxalign(TUPLE_HEADER + width) + LINE_POINTER)
    leaves = math.ceil(leaf_bytes / (PAGE_USABLE * LEAF_FILL))
    return int((leaves + math.ceil(leaves * 0.01) + 1) * PAGE)


_FORM_WIDTHS = {"date": 4, "date_trunc": 8, "field": 16}  # field: a guess, no statistics


def _key_width(column: ColumnFacts, form: str) -> int:
    """Bytes one key takes: the column's, or its expression's (lower(c): the column's)."""
    return _FORM_WIDTHS.get(form.partition(":")[0], column.width)


BRIN_PAGES_PER_RANGE = 128  # brin's default
BRIN_TUPLE = 8 + 2 * 16 + LINE_POINTER  # header, a min and a max of up to 16 bytes
REVMAP_TIDS = (PAGE - 24) // 6  # TIDs per revmap page


def _brin_size(table: TableFacts) -> int:
    """Bytes of a minmax brin index: one summary tuple per range of 128 heap pages, the
    revmap pointing at each, the meta page."""
    ranges = math.ceil(max(table.pages, 1) / BRIN_PAGES_PER_RANGE)
    regular = math.ceil(ranges * BRIN_TUPLE / PAGE_USABLE)
    return int((1 + math.ceil(ranges / REVMAP_TIDS) + regular) * PAGE)


# Bytes per indexed key or value: between a compressed TID in a long posting list (1-2 bytes)
# and an entry tuple of its own for a value no other row has (about 28). Each fitted on one
# table only (tests/test_kinds.py: 100 k documents of two keys, one of them unique; 100 k
# e-mail addresses of ~25 bytes, whose trigrams repeat; 100 k notes of five words, one of
# them a unique number): treat them as an order of
# magnitude until more shapes are measured (bench/RESULTS.md: 4.3x high on other documents).
GIN_BYTES_PER_ENTRY = {"jsonb_path_ops": 16.0, "": 20.0, "gin_trgm_ops": 1.5, "tsvector": 12.0}
GIN_VALUE_BYTES = 12  # bytes of a jsonb document per key or value an entry indexes


def _gin_size(spec: IndexSpec, table: TableFacts) -> int:
    """Bytes of a gin index: a jsonb document of w bytes holds about w / 12 keys and values,
    each one entry of a few bytes in a posting list (jsonb_path_ops: one hash per path); a
    text of w bytes about w trigrams (gin_trgm_ops). A rough figure: no statistics say how
    many keys a document holds, nor how many of its values repeat."""
    column = table.columns[spec.columns[0]]
    opclass = spec.expressions[0].partition(":")[0] if spec.expressions else ""
    per_row = {"gin_trgm_ops": 1, "tsvector": 6}.get(opclass, GIN_VALUE_BYTES)  # a trigram a
    # character, a word of 6
    entries = max(table.rows, 1.0) * max((column.avg_width or 32) / per_row, 1.0)
    per_entry = GIN_BYTES_PER_ENTRY[opclass]
    return int((math.ceil(entries * per_entry / (PAGE_USABLE * LEAF_FILL)) + 2) * PAGE)


HASH_FILL = 0.75  # hash indexes' default fillfactor
HASH_TUPLE = 16 + LINE_POINTER  # 8-byte header and 4-byte hash code, MAXALIGNed


def _hash_size(rows: float) -> int:
    """Bytes of a hash index on `rows` rows: its build makes one page per bucket for the
    rows at the fill factor, the bucket count rounded up to a power of two, plus the meta
    and bitmap pages (2 M random uuids: 67 MB estimated, 71 MB built with 40 k rows more)."""
    per_page = (PAGE - 24 - 16) * HASH_FILL // HASH_TUPLE
    buckets = 2 ** math.ceil(math.log2(max(rows / per_page, 2.0)))
    return int((buckets + 2) * PAGE)


# --- costing -------------------------------------------------------------------------------


def timed_out(exc: BaseException) -> bool:
    """True when `exc` is (or was translated from) a statement_timeout cancellation."""
    return isinstance(exc, Canceled) or isinstance(exc.__cause__, Canceled)


def parameter_count(text: str) -> int:
    """The highest `$n` in `text` (0 when it has none): the arguments EXECUTE needs."""
    return max((int(n) for n in _PARAM.findall(text)), default=0)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A query ready to be costed: its key, the tables it reads, and how to EXPLAIN it."""

    key: int
    tables: frozenset[TableRef]
    statement: str | None  # the prepared statement's name (PostgreSQL 15 path)
    text: str
    search_path: tuple[str, ...] = ()  # between pg_catalog and pg_temp, as its role had it


@dataclass(frozen=True, slots=True)
class Costed:
    """The planner's total cost and the hypothetical indexes its plan uses."""

    cost: float
    used: frozenset[IndexSpec]


class WhatIf:
    """A what-if session on one connection: `with WhatIf(conn) as w: w.cost(q, {spec})`."""

    def __init__(
        self, conn: db.Connection, schema: Schema, trusted_roles: Iterable[str] = ()
    ) -> None:
        self.conn = conn
        self.schema = schema
        self.trusted_roles = tuple(trusted_roles)
        self._path: tuple[str, ...] | None = None  # the search_path SET last
        self.generic_plan = schema.version_num >= 160000
        self.explains = 0
        self.timeouts = 0
        self._cache: dict[tuple[int, frozenset[IndexSpec]], Costed] = {}
        self._active: dict[IndexSpec, int] = {}
        self._by_oid: dict[int, IndexSpec] = {}
        self._sizes: dict[IndexSpec, int] = {}
        self._prepared = 0
        self._statements: list[str] = []
        self._quieted: list[str] = []  # pg_stat_statements settings SET to leave us out
        self._prepare_threshold = conn.prepare_threshold

    def __enter__(self) -> WhatIf:
        # The driver prepares a text on the server after it ran 5 times; `EXPLAIN (GENERIC_PLAN)
        # ... $1` prepared that way is then bound with no parameters and fails (08P01).
        self.conn.prepare_threshold = None
        # On 16+ too: a text GENERIC_PLAN cannot type is planned from its PREPAREd form.
        db.execute(self.conn, MARK + " SET plan_cache_mode = force_generic_plan")
        # Thousands of EXPLAINs are not the workload: with pg_stat_statements.track = all the
        # query inside each EXPLAIN counts as a nested call of the client's statement (same
        # queryid, no time). Superuser-only unless granted (GRANT SET ON PARAMETER); without
        # it, the readers leave out nested entries and what starts with MARK. Not
        # track_utility = off: EXPLAIN's query would then count as a top-level call.
        for setting in ("track = 'top'",):
            try:
                db.execute(self.conn, f"{MARK} SET pg_stat_statements.{setting}")
                self._quieted.append(setting.split()[0])
            except (QueryFailed, MissingPrivilege) as exc:
                LOG.debug("whatif.statistics_not_quieted", error=str(exc).strip())
        return self

    def __exit__(
        self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hypothetical index and prepared statement this session made."""
        self.conn.prepare_threshold = self._prepare_threshold
        if self.conn.closed:
            return
        try:
            if self.schema.has_hypopg:
                db.execute(self.conn, MARK + " SELECT hypopg_reset()")
            for name in self._statements:  # only ours: the driver prepares its own
                db.execute(self.conn, db.SQL(MARK + " DEALLOCATE {}").format(db.Identifier(name)))
            self._statements.clear()
            db.execute(self.conn, MARK + " RESET plan_cache_mode")
            if self._path is not None:
                db.execute(self.conn, MARK + " RESET search_path")
                self._path = None
            for name in self._quieted:
                db.execute(self.conn, f"{MARK} RESET pg_stat_statements.{name}")
            self._quieted.clear()
        except QueryFailed as exc:  # the session is gone: its hypothetical indexes are too
            LOG.warning("whatif.cleanup_failed", error=str(exc).strip())
        self._active.clear()
        self._by_oid.clear()

    def prepare(
        self,
        key: int,
        text: str,
        tables: Iterable[TableRef],
        search_path: Sequence[str] | None = None,
    ) -> Prepared:
        """Make `text` ready for costing; raises QueryFailed when PostgreSQL cannot plan it, and
        UntrustedCode when planning it could call a function the tuner does not trust.

        The statement is parsed (PREPARE: parse analysis, no planning) with `search_path`
        between pg_catalog and pg_temp, as the role that ran it resolved its names; before
        anything plans it, the probe (`untrusted`) lists the code the plan could reach.
        """
        text = rewrite_typed_placeholders(text).strip().rstrip(";").strip()
        text = _EXTRACT.sub(r"date_part($\1::text, ", text)  # `extract($1 from x)`
        path = tuple(search_path if search_path is not None else self.schema.search_path)
        self._use_path(path)
        params = parameter_count(text)
        name = None
        if params:  # on 16+ too, for the parameters' types: the probe declares them
            self._prepared += 1
            name = f"pgtuner_whatif_{self._prepared}"
            types: dict[int, str] = {}
            while True:
                try:
                    db.execute_one(self.conn, _prepare_statement(name, text, params, types))
                    break
                except UnresolvedType as e:
                    # `0.06 - 0.01` normalized is `$4 - $5` (unknown - unknown), and
                    # `sum(case ... then 1 else 0 end)` sums `$3`/`$4` as text. Such
                    # parameters are numbers; declare them numeric, the rest inferred.
                    # A parameter nothing types (`jsonb_build_object($3, $4)`) is text.
                    numeric = {int(n) for pair in _ARITHMETIC.findall(text) for n in pair}
                    numeric |= {int(n) for n in _CASE_RESULT.findall(text)}
                    guess = dict.fromkeys(numeric - set(types), "numeric")
                    untyped = _UNTYPED.search(str(e))
                    if not guess and untyped and int(untyped.group(1)) not in types:
                        guess = {int(untyped.group(1)): "text"}
                    if not guess:
                        raise
                    types.update(guess)
            self._statements.append(name)
        declared = self._parameter_types(name) if name else []
        if found := self.untrusted(text, declared):
            raise UntrustedCode(
                "planning it could call "
                + ", ".join(f"{f} (owner {o})" for f, o in found[:3])
                + (f" and {len(found) - 3} more" if len(found) > 3 else "")
                + ", which neither PostgreSQL nor a trusted role provides"
            )
        # Every version plans a text with parameters from its PREPAREd form (EXPLAIN EXECUTE
        # with NULLs under force_generic_plan): the extended protocol the session sends texts
        # with (one statement, never several) cannot carry GENERIC_PLAN's unbound `$n`.
        prepared = Prepared(key, frozenset(tables), name, text, path)
        self._explain(prepared, params)  # fails here for texts that cannot be planned
        return prepared

    def untrusted(self, text: str, types: Sequence[str] = ()) -> list[tuple[str, str]]:
        """(function, owner) of each function that planning `text` could call and that no
        trusted role owns (queries/whatif_untrusted.sql says what counts). `text` becomes
        the body of a probe function in pg_temp (its parameters typed NULLs of `types`,
        as PREPARE inferred them), created and rolled back in one
        transaction: PostgreSQL parses it (resolving every name as the plan would, under
        the current search_path) and records what it depends on, and nothing is run."""
        nulls = {n: f"CAST(NULL AS {t})" for n, t in enumerate(types, 1)}  # a function
        body = substitute_parameters(text, nulls)  # takes at most 100 arguments
        statement = db.SQL(
            MARK + " CREATE FUNCTION pg_temp.pgtuner_probe() RETURNS void LANGUAGE sql"
            " BEGIN ATOMIC\n" + body + ";\nEND"
        )
        db.execute(self.conn, MARK + " BEGIN")  # not the driver's: its BEGIN has no MARK
        try:
            db.execute_one(self.conn, statement)
            rows = db.fetch(
                self.conn, queries.get("whatif_untrusted"),
                {"trusted": list(self.trusted_roles)},
            )  # fmt: skip
        finally:
            db.execute(self.conn, MARK + " ROLLBACK")
        return [(str(r["function"]), str(r["owner"])) for r in rows]

    def _parameter_types(self, name: str) -> list[str]:
        """The types PostgreSQL inferred for prepared statement `name`'s parameters."""
        rows = db.fetch(
            self.conn,
            MARK + " SELECT parameter_types::text[] AS types FROM pg_prepared_statements"
            " WHERE name = %s",
            (name,),
        )
        return [str(t) for t in rows[0]["types"]] if rows else []

    def _use_path(self, path: tuple[str, ...]) -> None:
        """SET search_path to pg_catalog, `path`, pg_temp unless it is that already."""
        if path == self._path:
            return
        schemas = [db.Identifier(s) for s in path if s not in ("pg_catalog", "pg_temp")]
        names = db.SQL(", ").join([db.Identifier("pg_catalog"), *schemas, db.Identifier("pg_temp")])
        db.execute(self.conn, db.SQL(MARK + " SET search_path = {}").format(names))
        self._path = path

    def _explain(self, query: Prepared, params: int | None = None) -> float:
        self.explains += 1
        if query.statement is None:  # planned from its text: its names resolve now
            self._use_path(query.search_path)
        if query.statement is not None:
            count = parameter_count(query.text) if params is None else params
            args = db.SQL(", ").join([db.SQL("NULL")] * count)
            statement = db.SQL(MARK + " EXPLAIN (FORMAT JSON) EXECUTE {}({})").format(
                db.Identifier(query.statement), args
            )
        elif self.generic_plan and parameter_count(query.text):
            statement = db.SQL(MARK + " EXPLAIN (FORMAT JSON, GENERIC_PLAN) ") + db.SQL(query.text)
        else:
            statement = db.SQL(MARK + " EXPLAIN (FORMAT JSON) ") + db.SQL(query.text)
        plan = db.fetch_plan(self.conn, statement)
        plan = json.loads(plan) if isinstance(plan, str) else plan
        self._last_plan: dict[str, Any] = plan[0]["Plan"]
        return float(self._last_plan["Total Cost"])

    def cost(self, query: Prepared, indexes: Iterable[IndexSpec] = ()) -> Costed:
        """The cost of `query` with `indexes` (hypothetical) in place; computed once per set."""
        wanted = frozenset(indexes)
        relevant = frozenset(i for i in wanted if i.table in query.tables)
        cached = self._cache.get((query.key, relevant))
        if cached is not None:
            return cached
        self._activate(wanted if len(wanted) <= HYPOPG_BATCH else relevant)
        try:
            total = self._explain(query)
        except DatabaseUnavailable as exc:
            if not timed_out(exc) or not relevant:
                raise
            self.timeouts += 1  # planning with these indexes took too long: no gain assumed
            return Costed(self.cost(query).cost, frozenset())
        costed = Costed(total, frozenset(self._used(self._last_plan)))
        self._cache[(query.key, relevant)] = costed
        return costed

    def known(self, query: Prepared, indexes: Iterable[IndexSpec] = ()) -> Costed | None:
        """The cost of `query` with `indexes` if already computed, else None (no EXPLAIN)."""
        relevant = frozenset(i for i in indexes if i.table in query.tables)
        return self._cache.get((query.key, relevant))

    def plan(self, query: Prepared) -> dict[str, Any]:
        """The plan of `query` with no hypothetical index (for the heuristic fallback)."""
        self._activate(frozenset())
        self._explain(query)
        return self._last_plan

    def size(self, spec: IndexSpec) -> int | None:
        """HypoPG's raw size estimate of `spec` in bytes (None without HypoPG)."""
        if not self.schema.has_hypopg:
            return None
        if spec not in self._sizes:
            keep = frozenset(self._active) if len(self._active) < HYPOPG_BATCH else frozenset()
            self._activate(keep | {spec})
            rows = db.fetch(
                self.conn, MARK + " SELECT hypopg_relation_size(%s) AS size", (self._active[spec],)
            )
            self._sizes[spec] = int(rows[0]["size"])
        return self._sizes[spec]

    @property
    def cached(self) -> int:
        return len(self._cache)

    def _activate(self, wanted: frozenset[IndexSpec]) -> None:
        """Make exactly `wanted` the live hypothetical indexes (fewest creates and drops)."""
        if wanted == frozenset(self._active):
            return
        if wanted and not self.schema.has_hypopg:
            raise MissingExtension("HypoPG is not installed in this database")
        if len(wanted) > HYPOPG_BATCH:
            raise ValueError(f"{len(wanted)} hypothetical indexes at once; the limit is "
                             f"{HYPOPG_BATCH}")  # fmt: skip
        dropped = [s for s in self._active if s not in wanted]
        created = [s for s in wanted if s not in self._active]
        parts: list[Any] = [
            db.SQL(MARK + " SELECT hypopg_drop_index({})").format(db.Literal(self._active[s]))
            for s in dropped
        ]
        parts += [
            db.SQL(MARK + " SELECT indexrelid FROM hypopg_create_index({})").format(
                db.Literal(create_index_text(self.conn, s))
            )
            for s in created
        ]
        if self._statements:
            parts.append(db.SQL(MARK + " DISCARD PLANS"))
        oids = []
        with db.translated(), self.conn.cursor() as cur:  # one round trip for all of it
            cur.execute(db.SQL("; ").join(parts))
            while True:
                rows = cur.fetchall() if cur.description else []
                if rows and "indexrelid" in rows[0]:
                    oids.append(int(rows[0]["indexrelid"]))
                if not cur.nextset():
                    break
        for spec in dropped:
            self._by_oid.pop(self._active.pop(spec), None)
        for spec, oid in zip(created, oids, strict=True):
            self._active[spec] = oid
            self._by_oid[oid] = spec

    def _used(self, node: Mapping[str, Any]) -> Iterable[IndexSpec]:
        name = node.get("Index Name")
        if isinstance(name, str) and (match := _HYPO_NAME.match(name)):
            spec = self._by_oid.get(int(match.group(1)))
            if spec is not None:
                yield spec
        for child in node.get("Plans", ()):
            yield from self._used(child)


def _prepare_statement(name: str, text: str, params: int, types: dict[int, str]) -> db.Composed:
    """PREPARE name (types) AS text; `unknown` lets PostgreSQL infer a parameter's type."""
    declared = ", ".join(types.get(n, "unknown") for n in range(1, params + 1))
    head = db.SQL(MARK + " PREPARE {} ").format(db.Identifier(name))
    return head + db.SQL(f"({declared}) AS " if types else "AS ") + db.SQL(text)


def create_index_statement(spec: IndexSpec, name: str | None, concurrently: bool) -> db.Composed:
    """CREATE INDEX [CONCURRENTLY] [name] ON schema.table USING btree|hash (...) [INCLUDE (...)]."""
    head = "CREATE INDEX CONCURRENTLY " if concurrently else "CREATE INDEX "
    named = db.SQL("{} ").format(db.Identifier(name)) if name else db.SQL("")
    return db.SQL(head) + named + templates.index_target(spec)


def create_index_text(conn: db.Connection | None, spec: IndexSpec) -> str:
    """The CREATE INDEX text HypoPG takes for `spec` (no name, not concurrent)."""
    return create_index_statement(spec, None, concurrently=False).as_string(conn)
