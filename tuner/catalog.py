"""Schema facts for costing: each user table's rows, pages and columns with their planner
statistics, the search paths that resolve unqualified names, the existing indexes, and the
estimated size of an index (`estimate_size`: HypoPG's own figure ignores deduplication).

`read_schema` reads them in two round trips; everything else here is pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tuner import db, queries, workload
from tuner.models import IndexSpec, TableRef
from tuner.sqlinfo import TableName


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
