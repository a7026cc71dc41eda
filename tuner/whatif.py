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
budget uses `catalog.estimate_size` instead (formula in its docstring); the raw HypoPG
figure is kept next to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from tuner import db, log, queries, templates

# Schema facts and sizes moved to tuner.catalog, WorkloadQuery to tuner.models; importable
# from here as before.
from tuner.catalog import PAGE as PAGE
from tuner.catalog import ColumnFacts as ColumnFacts
from tuner.catalog import ExistingIndex as ExistingIndex
from tuner.catalog import Schema as Schema
from tuner.catalog import TableFacts as TableFacts
from tuner.catalog import estimate_size as estimate_size
from tuner.catalog import read_role_paths as read_role_paths
from tuner.catalog import read_schema as read_schema
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
from tuner.models import WorkloadQuery as WorkloadQuery
from tuner.sqlinfo import rewrite_typed_placeholders, substitute_parameters

LOG = log.get("tuner.whatif")

MARK = queries.MARK  # leads every statement the what-if session sends
HYPOPG_BATCH = 500  # hypothetical indexes alive at once; HypoPG 1.3 has ~2,800 fake OIDs
_PARAM = re.compile(r"\$(\d+)")
_HYPO_NAME = re.compile(r"^<(\d+)>")
_ARITHMETIC = re.compile(r"\$(\d+)\s*[-+*/]\s*\$(\d+)")
_UNTYPED = re.compile(r"could not determine data type of parameter \$(\d+)")
_CASE_RESULT = re.compile(r"\b(?:then|else)\s+\$(\d+)", re.IGNORECASE)
_EXTRACT = re.compile(r"\bextract\s*\(\s*\$(\d+)\s+from\s+", re.IGNORECASE)


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
        # The driver would prepare a text on the server after it ran 5 times: the session's
        # statements stay plain texts (its own PREPAREs are the only prepared statements).
        self.conn.prepare_threshold = None
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
        if params:  # PREPAREd also for the parameters' types: the probe declares them
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
        # A text with parameters is planned from its PREPAREd form (EXPLAIN EXECUTE with
        # NULLs under force_generic_plan), on every version.
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
            statement = db.SQL(MARK + " EXPLAIN (FORMAT JSON) ") + db.SQL(query.text)
        else:
            count = parameter_count(query.text) if params is None else params
            args = db.SQL(", ").join([db.SQL("NULL")] * count)
            statement = db.SQL(MARK + " EXPLAIN (FORMAT JSON) EXECUTE {}({})").format(
                db.Identifier(query.statement), args
            )
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


# --- reading plans ---------------------------------------------------------------------------


def scan_rows(node: dict[str, Any], table: str, workers: int = 0) -> float | None:
    """The planner's estimate of the rows a sequential scan of `table` keeps (a parallel
    scan's per-process figure times the processes), or None when the plan has none."""
    if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") == table:
        parallel = node.get("Parallel Aware") and workers
        return float(node.get("Plan Rows", 0.0)) * ((workers + 1) if parallel else 1)
    workers = int(node.get("Workers Planned", workers))
    for child in node.get("Plans", ()):
        found = scan_rows(child, table, workers)
        if found is not None:
            return found
    return None


def seq_scanned(node: dict[str, Any]) -> Iterable[str]:
    """The tables a plan reads with a sequential scan."""
    if node.get("Node Type") == "Seq Scan" and "Relation Name" in node:
        yield str(node["Relation Name"])
    for child in node.get("Plans", ()):
        yield from seq_scanned(child)


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
