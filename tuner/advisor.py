"""Choose the indexes that pay for themselves for the workload as a whole.

The recipe (`Advisor.advise`):
1. Read each statement with sqlinfo; skip (and count) what cannot be used.
2. Candidates per table a statement reads: equality and join columns first (most selective
   first), then one range column, then the sort columns; up to `max_width` columns; an
   INCLUDE variant for index-only scans. Never on a type without a btree default operator
   class, never one whose columns lead an existing valid index.
3. Cost every statement as it is (generic plan), then greedily: the move with the best net
   gain per byte is taken, where a move adds a candidate or extends a chosen index to a
   candidate it prefixes (an extension costs only the extra bytes, so it wins over a
   second index when it serves as well). Every gain is computed with the indexes chosen so
   far in place, so indexes that serve the same queries do not both get in (lazy greedy: a
   move's last gain bounds its next, so only the top of the queue is costed again).
4. Stop when nothing gains, the storage budget is spent, or a table has its limit; then a
   local pass tries to swap each chosen index for a better unchosen one that fits.
4b. Gain per byte favours the narrow index: `(distance_m)` walked for `WHERE week_start =
   $1 AND kind = $2 ORDER BY distance_m DESC LIMIT 50` saves nearly as much estimated time
   as `(week_start, kind, distance_m)` and is smaller, yet the planner itself costs the walk
   at twice the full index (and the walk is where its estimates fail: the rows it hopes to
   meet early may all sit at the far end). So each chosen index gives way to the cheapest
   candidate on its table that holds all its key columns, when that one serves every query
   the chosen index served at most SHARPEN_RATIO of their cost, slows none, and fits.
   Same number of indexes, so the same write cost; only the bytes grow.
5. A chosen one-column btree on a written table whose key is nearly unique and in no order
   becomes a hash index when that saves more write time than it loses read time: the
   queries it serves look the key up by `=` (the planner costs them with the hash), and
   each write then adds a 4-byte hash code to a bucket page instead of the key to a random
   leaf of a sorted tree (HASH_WRITE_SHARE of the btree's write cost, measured).

The objective is milliseconds of measured time saved in the window. Planner cost units of
different statements are not comparable (a correlated subquery estimated in the billions
may run in seconds), so the planner only says by how much a statement gets cheaper: a
statement's gain from a move is its measured time (pg_stat_statements total_ms in the
window) times the fraction of its original estimated cost the move removes,
`total_ms * (cost_now - cost_after) / cost_before`. A statement with no measured time
counts FLOOR_MS_PER_CALL per call.

Write cost, in the same unit: each index on a table costs WRITE_MS_PER_ROW milliseconds per
row inserted, updated or deleted in the window: the time to descend one more btree, find
and dirty its leaf page and WAL-log the change, about 10 microseconds with the page cached
(the order of what a single-row insert into a narrow indexed table spends per index).
Without HypoPG the advisor ranks one composite candidate per sequentially scanned table by
the time of the queries that scan it, and marks the advice low confidence.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

import sqlglot
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify_columns import qualify_columns
from sqlglot.schema import MappingSchema

from tuner import db, labels, log, statements, templates
from tuner.candidates import (
    MISSING_TRGM,
    IndexInput,
    TableInput,
    brin_candidates,
    candidates_for,
    covered_by,
    expression_candidates,
    gin_candidates,
    leads,
    maintenance_proposals,
    partial_variants,
    shield_for,
)
from tuner.errors import DatabaseUnavailable, MissingPrivilege, QueryFailed, UntrustedCode
from tuner.models import (
    Confidence,
    IndexSpec,
    LongRunningGroup,
    Proposal,
    ProposalKind,
    ProposalQuery,
    TableRef,
    Trap,
)
from tuner.sqlinfo import QueryInfo, TableUse, Unparsed, analyze, rewrite_typed_placeholders
from tuner.units import format_size
from tuner.whatif import (
    HYPOPG_BATCH,
    PAGE,
    Prepared,
    Schema,
    TableFacts,
    WhatIf,
    WorkloadQuery,
    estimate_size,
    timed_out,
)

LOG = log.get("tuner.advisor")

WRITE_MS_PER_ROW = 0.01  # ms per written row, per index (see module doc)
# A hash index's write cost against a btree's on a nearly unique key in no order (a uuid):
# bench/hash_cost.py, 20-row inserts into 2 M rows: +0.12 ms (hash) against +0.22 ms (btree).
HASH_WRITE_SHARE = 0.55
# A brin's write cost against a btree's on an append-only time column: 300 k-row appends in
# time order, +2.8 us a row with a brin on it against +5.4 us with a btree (2 runs each,
# noisy shared machine; see bench/RESULTS.md, index kinds).
BRIN_WRITE_SHARE = 0.5
GIN_MAX_SHARE = 0.2  # a gin index is proposed for scans that keep at most this share of rows
PARTIAL_WRITE_FLOOR = 0.05  # a partial index's write cost, however few rows match
HASH_MIN_DISTINCT = 0.5  # share of the rows: a hash's buckets stay short on such keys
HASH_MAX_CORRELATION = 0.5  # |pg_stats.correlation|: new keys land all over a btree
FLOOR_MS_PER_CALL = 0.01  # the measured time assumed per call when none was measured
MIN_GAIN = 0.05  # a query's cost must fall by 5 % for its gain to count (planner noise)
SWAP_TRIES = 5  # unchosen candidates tried in place of each chosen index (local pass)
SWAP_MARGIN = 1.02  # a swap must save 2 % more than the index it replaces (planner noise)
# A chosen index gives way to a wider one on its columns (step 4b) when its queries'
# estimated cost with the wider one is at most this share of their cost with it: cheaper
# beyond the planner's noise (MIN_GAIN).
SHARPEN_RATIO = 1 - MIN_GAIN
HEURISTIC_MIN_ROWS = 1000  # without HypoPG, tables smaller than this are left alone


# --- input: what the sampler's models (QueryWindow, TableWindow, TableStat, IndexStat) give --


class QueryInput(Protocol):
    @property
    def queryid(self) -> int: ...
    @property
    def query(self) -> str: ...
    @property
    def calls(self) -> int: ...
    @property
    def total_ms(self) -> float: ...


def statement_key(text: str) -> int:
    """A stable key for a statement captured with literals (it has no queryid)."""
    return -int(zlib.crc32(text.encode()))


def captured_queries(groups: Iterable[LongRunningGroup]) -> list[WorkloadQuery]:
    """Long statements the samples caught, as the advisor reads a workload: their literal
    text, executions seen, and the time they were seen running (a lower bound)."""
    return [
        WorkloadQuery(statement_key(g.example), g.example, g.count, 1000.0 * sum(g.durations))
        for g in groups
    ]


# --- output ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Advice:
    """Proposals of every kind and the workload's estimated cost before and after."""

    proposals: tuple[Proposal, ...]
    workload_cost_before: float
    workload_cost_after: float
    skipped: dict[str, int] = field(hash=False)
    costed_queries: int
    explains: int
    seconds: float
    hypopg: bool
    notes: tuple[str, ...] = ()

    @property
    def skipped_queries(self) -> int:
        return sum(self.skipped.values())

    @property
    def indexes(self) -> tuple[Proposal, ...]:
        return tuple(p for p in self.proposals if p.kind is ProposalKind.CREATE_INDEX)


# --- candidates (pure) -------------------------------------------------------------------------


# --- the advisor ---------------------------------------------------------------------------


@dataclass
class _Item:
    """One costed statement."""

    query: QueryInput
    info: QueryInfo
    prepared: Prepared
    columns: dict[TableRef, frozenset[str]]
    base: float
    path: tuple[str, ...] = ()  # the search_path its unqualified names resolve on

    @property
    def ms(self) -> float:
        """Measured time in the window (the floor per call when nothing was measured)."""
        if self.query.total_ms > 0:
            return float(self.query.total_ms)
        return max(self.query.calls, 1) * FLOOR_MS_PER_CALL

    def saved(self, current: float, after: float) -> float:
        """Milliseconds saved when the estimated cost goes from `current` to `after`."""
        return self.ms * (current - after) / self.base if self.base > 0 else 0.0


@dataclass(order=True)
class _Move:
    priority: float
    seq: int
    add: IndexSpec = field(compare=False)
    replaces: IndexSpec | None = field(default=None, compare=False)
    round: int = field(default=-1, compare=False)


@dataclass
class Advisor:
    """Advise on one database: `Advisor(conn, schema, budget=...).advise(queries, ...)`."""

    conn: db.Connection
    schema: Schema
    budget: int
    max_width: int = 3
    per_table: int = 5
    include_columns: bool = True
    hash_indexes: bool = True
    index_kinds: bool = True  # expression, partial and brin candidates beside plain btree ones
    write_cost_per_row: float = WRITE_MS_PER_ROW
    min_gain: float = MIN_GAIN
    unused_after: timedelta = timedelta(days=30)
    stale_ratio: float = 0.20
    dead_ratio: float = 0.20
    trusted_roles: tuple[str, ...] = ()  # whose functions planning may call (whatif.untrusted)
    _mapping: MappingSchema | None = field(default=None, init=False, repr=False)

    def advise(
        self,
        queries: Sequence[QueryInput],
        tables: Sequence[TableInput] = (),
        indexes: Sequence[IndexInput] = (),
        stats_age: float = 0.0,
        window: float | None = None,
        excluded: Iterable[IndexSpec] = (),
    ) -> Advice:
        """Proposals for this workload; the database is left exactly as it was.

        `window` is the seconds the queries' calls cover; the tables' writes (counted over
        their own `seconds`) are scaled to it. None: the same span as the tables'.
        `excluded`: indexes never to propose (verification rolled them back), so the
        queries they were meant to serve get the next-best index instead of nothing.
        """
        started = time.monotonic()
        skipped: Counter[str] = Counter()
        notes: list[str] = []
        total_ms = sum(q.total_ms for q in queries) or 1.0
        hypo = self.schema.has_hypopg
        if not hypo:
            notes.append("HypoPG is not installed: heuristic advice, low confidence "
                         "(CREATE EXTENSION hypopg for costed advice)")  # fmt: skip
        with WhatIf(self.conn, self.schema, self.trusted_roles) as whatif:
            items = self._prepare(whatif, queries, skipped)
            writes = {t.table: _writes(t, window) for t in tables}
            rates = {t.table: _writes(t, 1.0) for t in tables}
            if hypo:
                chosen = self._select(whatif, items, indexes, writes, frozenset(excluded))
            else:
                chosen = self._heuristic(whatif, items, indexes)
            proposals, after = self._describe(whatif, items, chosen, rates, total_ms, hypo)
            if self.index_kinds and hypo:
                chosen_bytes = sum(self._size(c) for c in chosen)
                proposals += self._measured_only(
                    whatif,
                    items,
                    indexes,
                    writes,
                    rates,
                    total_ms,
                    self.budget - chosen_bytes,
                    notes,
                )
            explains = whatif.explains
        before = sum(i.query.calls * i.base for i in items)
        proposals += maintenance_proposals(
            tables, indexes, stats_age, self.unused_after, self.stale_ratio, self.dead_ratio
        )
        seconds = time.monotonic() - started
        LOG.info(
            "advisor.done", proposals=len(proposals), costed=len(items),
            skipped=sum(skipped.values()), explains=explains, seconds=round(seconds, 2),
        )  # fmt: skip
        return Advice(
            proposals=tuple(proposals),
            workload_cost_before=before,
            workload_cost_after=after if hypo else before,
            skipped=dict(skipped),
            costed_queries=len(items),
            explains=explains,
            seconds=seconds,
            hypopg=hypo,
            notes=tuple(notes),
        )

    def shields(
        self,
        queries: Sequence[QueryInput],
        traps: Iterable[Trap],
        tables: Sequence[TableInput] = (),
        indexes: Sequence[IndexInput] = (),
    ) -> list[Proposal]:
        """Covering indexes (`shield_for`) for reads that a rolled-back index trapped, so
        that index may be tried again with them shielded. Only with HypoPG, and only where
        the planner would use the shield for the read; a trap whose read did not run in
        `queries`, or that an index already covers, gets none.

        A shield stands in for the index it lets back in: its bar figures
        (`workload_share`, `cost_reduction`) are that index's, never less than its own.
        """
        traps = list(traps)
        if not traps or not self.schema.has_hypopg:
            return []
        by_id = {q.queryid: q for q in queries}
        total_ms = sum(q.total_ms for q in queries) or 1.0
        rates = {t.table: _writes(t, 1.0) for t in tables}
        found: dict[IndexSpec, Proposal] = {}
        with WhatIf(self.conn, self.schema, self.trusted_roles) as whatif:
            for trap in traps:
                query = by_id.get(trap.queryid)
                facts = self.schema.tables.get(trap.table)
                if query is None or facts is None:
                    continue
                items = self._prepare(whatif, [query], Counter())
                if not items or not items[0].info.has_limit:
                    continue
                item = items[0]
                uses = [u for u in item.info.tables
                        if self.schema.resolve(u.table.schema, u.table.name, item.path)
                        is facts]  # fmt: skip
                spec = shield_for(uses[0], facts, self.max_width) if len(uses) == 1 else None
                if spec is None or spec in found or covered_by(spec, indexes, include=True):
                    continue
                costed = whatif.cost(item.prepared, (spec,))
                if spec not in costed.used:
                    continue
                row = ProposalQuery(
                    queryid=query.queryid, cost_before=item.base, cost_after=costed.cost,
                    calls=query.calls, share=query.total_ms / total_ms, text=query.query,
                )  # fmt: skip
                own = self._proposal(whatif, spec, (row,), rates.get(spec.table, 0.0), True)
                found[spec] = replace(
                    own,
                    reason=(
                        f"A shield for query {labels.label(query.query)}: verification rolled back "
                        f"{trap.index_name}, which made other queries faster, because the "
                        "planner walked it for this one and filtered, beyond the slowdown "
                        "bound. With every column the query uses in this index, the planner "
                        f"prefers an index-only scan of it; once it is kept, "
                        f"{trap.index_name} is tried once more. " + own.reason
                    ),
                    shields=trap.index_name,
                    workload_share=max(own.workload_share, trap.workload_share),
                    cost_reduction=max(own.cost_reduction, trap.cost_reduction),
                )
        return list(found.values())

    # 1. statements

    def _prepare(
        self, whatif: WhatIf, queries: Sequence[QueryInput], skipped: Counter[str]
    ) -> list[_Item]:
        items: list[_Item] = []
        for query in queries:
            info = self._analyze(query.query)
            if isinstance(info, Unparsed):
                skipped[info.reason.value] += 1
                continue
            path = self._search_path(query, info)
            if path is None:
                skipped["ambiguous search_path"] += 1
                continue
            columns: dict[TableRef, frozenset[str]] = {}
            for use in info.tables:
                facts = self.schema.resolve(use.table.schema, use.table.name, path)
                if facts is not None:
                    sort = {k.column for k in use.order_by}
                    columns[facts.table] = use.columns | sort | frozenset(use.written)
            for name in (*info.reads, *info.writes):
                facts = self.schema.resolve(name.schema, name.name, path)
                if facts is not None:
                    columns.setdefault(facts.table, frozenset())
            if not columns:
                skipped["no user table"] += 1
                continue
            try:
                prepared = whatif.prepare(query.queryid, query.query, columns, path)
                base = whatif.cost(prepared).cost
            except DatabaseUnavailable as exc:
                if not timed_out(exc):
                    raise
                skipped["timeout"] += 1
                continue
            except UntrustedCode as exc:  # never planned: the planner could have run it
                skipped["untrusted function"] += 1
                LOG.warning("advisor.untrusted", queryid=query.queryid, reason=str(exc)[:300])
                continue
            except MissingPrivilege as exc:  # e.g. no USAGE on its schema: skip this one
                skipped["no privilege"] += 1
                LOG.info("advisor.skipped", queryid=query.queryid, error=str(exc)[:200])
                continue
            except QueryFailed as exc:
                if timed_out(exc):
                    skipped["timeout"] += 1
                    continue
                skipped["cannot prepare"] += 1
                LOG.info("advisor.skipped", queryid=query.queryid,
                         error=str(exc).strip().splitlines()[0][:200])  # fmt: skip
                continue
            items.append(_Item(query, info, prepared, columns, base, path))
        return items

    def _search_path(self, query: QueryInput, info: QueryInfo) -> tuple[str, ...] | None:
        """The search_path the statement's roles ran it with; None when they ran it with
        paths on which its unqualified table names mean different tables (no guess)."""
        roles = getattr(query, "roles", ())
        paths = sorted({self.schema.path_of(r) for r in roles} or {self.schema.search_path})
        names = {n.name for n in (*info.reads, *info.writes) if n.schema is None}
        names |= {u.table.name for u in info.tables if u.table.schema is None}
        meant = {
            tuple(self.schema.resolve(None, name, path) for name in sorted(names)) for path in paths
        }
        return paths[0] if len(meant) == 1 else None

    def _analyze(self, text: str) -> QueryInfo | Unparsed:
        """sqlinfo's reading; where it could not place unqualified columns (`FROM a, b WHERE
        x = y`), read again after qualifying them with the catalog's column names."""
        info = analyze(text)
        if isinstance(info, Unparsed) or not info.unattributed:
            return info
        if self._mapping is None:
            tables: dict[str, object] = {}
            for schema in reversed(self.schema.search_path):  # the first schema wins
                for ref, facts in self.schema.tables.items():
                    if ref.schema == schema:
                        tables[ref.name] = {c: "int" for c in facts.columns}
            self._mapping = MappingSchema(tables, dialect="postgres")
        try:
            tree = sqlglot.parse_one(rewrite_typed_placeholders(text), dialect="postgres")
            qualified = qualify_columns(tree, self._mapping, expand_alias_refs=False,
                                        expand_stars=False, allow_partial_qualification=True,
                                        dialect="postgres")  # fmt: skip
            again = analyze(qualified.sql("postgres"))
        except (SqlglotError, RecursionError, ValueError, KeyError):
            return info
        return again if isinstance(again, QueryInfo) else info

    # 2. candidates

    def _candidates(self, items: Sequence[_Item], indexes: Sequence[IndexInput]) -> set[IndexSpec]:
        found: set[IndexSpec] = set()
        wanted: set[IndexSpec] = set()  # full candidates of a statement with no partial variant
        for item in items:
            for use in item.info.tables:
                facts = self.schema.resolve(use.table.schema, use.table.name, item.path)
                if facts is not None and facts.rows > 0:
                    plain = candidates_for(use, facts, self.max_width, self.include_columns)
                    if not self.index_kinds:
                        found |= plain
                        wanted |= plain
                        continue
                    plain |= expression_candidates(use, facts, self.max_width)
                    partial = partial_variants(plain, use, facts)
                    found |= plain | partial | brin_candidates(use, facts)
                    if not partial:
                        wanted |= plain
        # A statement whose constant filters match few rows gets the partial index, not the
        # full one it comes from (the planner may cost the full one a hair lower, and with
        # nothing else to spend the budget on, the greedy would take it).
        with_partial = {c.table for c in found if c.predicate}
        found -= {c for c in found
                  if c.table in with_partial and not c.predicate and c not in wanted}  # fmt: skip
        return {c for c in found if not covered_by(c, indexes)}

    def _size(self, spec: IndexSpec) -> int:
        return estimate_size(spec, self.schema.tables[spec.table])

    def _write_share(self, spec: IndexSpec) -> float:
        """A row write's cost for `spec` against a full btree's: a brin's, on rows appended
        in its column's order, only widens the last range's summary; a partial index takes
        only the rows that match its predicate (the test itself costs PARTIAL_WRITE_FLOOR)."""
        if spec.method == "brin":
            return BRIN_WRITE_SHARE
        facts = self.schema.tables[spec.table]
        share = math.prod(facts.columns[c].share(op, v, facts.rows)
                          for c, op, v in spec.predicate if c in facts.columns)  # fmt: skip
        return max(share, PARTIAL_WRITE_FLOOR)

    # 3. selection

    def _select(
        self,
        whatif: WhatIf,
        items: Sequence[_Item],
        indexes: Sequence[IndexInput],
        writes: dict[TableRef, float],
        excluded: frozenset[IndexSpec] = frozenset(),
    ) -> list[IndexSpec]:
        pool = self._candidates(items, indexes) - excluded
        chosen: set[IndexSpec] = set()
        by_table: dict[TableRef, set[IndexSpec]] = {}  # chosen, per table
        version: Counter[TableRef] = Counter()  # choices made on each table so far
        spent = 0.0
        counter = itertools.count()
        heap = [_Move(-float("inf"), next(counter), c) for c in sorted(pool, key=_order)]
        heapq.heapify(heap)
        reading: dict[TableRef, list[_Item]] = {}
        for item in items:
            for table in item.prepared.tables:
                reading.setdefault(table, []).append(item)
        memo: dict[IndexSpec, tuple[list[_Item], frozenset[TableRef]]] = {}

        def scope(spec: IndexSpec) -> tuple[list[_Item], frozenset[TableRef]]:
            """The items `spec` may serve (its leading column used) and the tables they read."""
            if spec not in memo:
                found = [i for i in reading.get(spec.table, ())
                         if spec.columns[0] in i.columns.get(spec.table, ())]  # fmt: skip
                memo[spec] = found, frozenset(t for i in found for t in i.prepared.tables)
            return memo[spec]

        def touched(spec: IndexSpec) -> list[_Item]:
            return scope(spec)[0]

        def stamp(spec: IndexSpec) -> int:
            """Changes exactly when a choice is made on a table `spec`'s items read: a move
            evaluated at the current stamp needs no new evaluation."""
            return sum(version[t] for t in scope(spec)[1])

        def near(item: _Item) -> set[IndexSpec]:
            """The chosen indexes on the tables `item` reads (the only ones its plan sees)."""
            return set().union(*(by_table.get(t, ()) for t in item.prepared.tables))

        def evaluate(move: _Move) -> tuple[float, int]:
            gain = 0.0
            for item in touched(move.add):
                seen = near(item)
                current = whatif.cost(item.prepared, seen).cost
                if move.replaces is None and len(item.prepared.tables) == 1:
                    # A one-table plan takes the cheaper of its index paths: what the
                    # candidate alone (costed in the warm-up) does not beat, it cannot cut
                    # (a BitmapAnd of two could; that rare gain is given up for not
                    # EXPLAINing every candidate again after each choice on its table).
                    alone = whatif.known(item.prepared, (move.add,))
                    if alone is not None and current - alone.cost < self.min_gain * current:
                        continue
                if move.replaces is not None:
                    seen.discard(move.replaces)
                cost = whatif.cost(item.prepared, seen | {move.add}).cost
                # Smaller cuts are planner noise; a loss (an extension can make a plan
                # worse) always counts.
                if current - cost >= self.min_gain * current or cost > current:
                    gain += item.saved(current, cost)
            size = self._size(move.add) - (self._size(move.replaces) if move.replaces else 0)
            penalty = 0.0 if move.replaces else self.write_cost_per_row * writes.get(
                move.add.table, 0.0) * self._write_share(move.add)  # fmt: skip
            if gain - penalty <= 0:
                return 0.0, size
            return (gain - penalty) / max(size, PAGE), size

        pool_by_table: dict[TableRef, list[IndexSpec]] = {}
        for spec in sorted(pool, key=_order):
            pool_by_table.setdefault(spec.table, []).append(spec)
        scores: dict[IndexSpec, float] = {}  # each add move's last net gain per byte
        budget_bound = False  # a gaining candidate did not fit the budget
        limited: set[IndexSpec] = set()  # candidates a table's limit kept out
        self._warm(whatif, pool, touched)
        while heap:
            move = heapq.heappop(heap)
            table = move.add.table
            here = by_table.setdefault(table, set())
            if move.replaces is not None and move.replaces not in here:
                continue
            others = here - {move.replaces} if move.replaces else here
            if move.add in here or covered_by(move.add, _as_inputs(others)):
                continue
            if move.replaces is None and len(here) >= self.per_table:
                limited.add(move.add)
                continue
            now = stamp(move.add)
            if move.round != now:
                priority, size = evaluate(move)
                if move.replaces is None:
                    scores[move.add] = priority
                if priority > 0 and spent + size > self.budget and move.replaces is None:
                    budget_bound = True
                if priority <= 0 or spent + size > self.budget:
                    continue
                move.priority, move.round = -priority, now
                heapq.heappush(heap, move)
                continue
            size = self._size(move.add) - (self._size(move.replaces) if move.replaces else 0)
            if spent + size > self.budget:  # fresh, but the budget was spent elsewhere since
                budget_bound = budget_bound or move.replaces is None
                continue
            spent += size
            if move.replaces is not None:
                chosen.discard(move.replaces)
                here.discard(move.replaces)
            chosen.add(move.add)
            here.add(move.add)
            version[table] += 1
            LOG.debug("advisor.chose", index=str(move.add.columns), table=str(table),
                      replaces=move.replaces is not None, spent=spent)  # fmt: skip
            for other in pool_by_table[table]:
                if other != move.add and _extends(other, move.add):
                    heapq.heappush(heap, _Move(-float("inf"), next(counter), other, move.add))
        # Else every candidate with a gain got in or lost it to the chosen ones.
        if budget_bound:
            chosen = self._improve(whatif, items, chosen, scores, writes, touched, None)
        elif options := {o: scores[o] for o in limited if scores.get(o, 0.0) > 0}:
            tables = {o.table for o in options}
            chosen = self._improve(whatif, items, chosen, options, writes, touched, tables)
        chosen = self._sharpen(whatif, items, chosen, pool_by_table)
        return self._prefer_hash(whatif, items, self._prune(whatif, items, chosen), writes)

    def _sharpen(
        self,
        whatif: WhatIf,
        items: Sequence[_Item],
        chosen: set[IndexSpec],
        pool: dict[TableRef, list[IndexSpec]],
    ) -> set[IndexSpec]:
        """Step 4b of the recipe: a chosen index gives way to a wider candidate that holds
        its key columns and serves its queries materially cheaper (the full equality-then-
        sort index over the sort column alone)."""
        spent = sum(self._size(c) for c in chosen)
        for spec in sorted(chosen, key=_order):
            rest = chosen - {spec}
            users = [i for i in items if spec.table in i.prepared.tables
                     and spec in whatif.cost(i.prepared, chosen).used]  # fmt: skip
            if not users:
                continue
            now = [whatif.cost(i.prepared, chosen).cost for i in users]
            weighted = sum(i.ms * c / i.base for i, c in zip(users, now, strict=True) if i.base)
            best: IndexSpec | None = None
            bar = weighted * SHARPEN_RATIO
            for other in pool.get(spec.table, ()):
                if (other in chosen or not set(spec.keys) < set(other.keys)
                        or other.method != spec.method or other.predicate != spec.predicate
                        or spent - self._size(spec) + self._size(other) > self.budget
                        or covered_by(other, _as_inputs(rest))):  # fmt: skip
                    continue
                after = [whatif.cost(i.prepared, rest | {other}).cost for i in users]
                if any(a > c * (1 + self.min_gain) for a, c in zip(after, now, strict=True)):
                    continue
                total = sum(i.ms * a / i.base for i, a in zip(users, after, strict=True) if i.base)
                if total < bar:
                    best, bar = other, total
            if best is not None:
                LOG.debug("advisor.sharpen", dropped=str(spec.columns), added=str(best.columns),
                          table=str(spec.table))  # fmt: skip
                chosen = rest | {best}
                spent += self._size(best) - self._size(spec)
        return chosen

    def _prefer_hash(
        self,
        whatif: WhatIf,
        items: Sequence[_Item],
        chosen: list[IndexSpec],
        writes: dict[TableRef, float],
    ) -> list[IndexSpec]:
        """Step 5 of the recipe: each eligible btree becomes a hash where the write time it
        saves exceeds the read time it loses (both in ms of the window, as the greedy's
        objective), every query it served uses the hash, and the budget still holds."""
        final = set(chosen)
        spent = sum(self._size(c) for c in final)
        for spec in chosen if self.hash_indexes else ():
            facts = self.schema.tables.get(spec.table)
            column = facts.columns.get(spec.columns[0]) if facts else None
            written = writes.get(spec.table, 0.0)
            if (facts is None or column is None or not column.hash or written <= 0
                    or spec.method != "btree" or spec.expressions or spec.predicate
                    or len(spec.columns) != 1 or spec.include or spec.descending
                    or column.distinct(facts.rows) < HASH_MIN_DISTINCT * facts.rows
                    or abs(column.correlation or 0.0) > HASH_MAX_CORRELATION):  # fmt: skip
                continue
            hashed = replace(spec, method="hash")
            grown = self._size(hashed) - self._size(spec)
            swapped = (final - {spec}) | {hashed}
            users = [i for i in items if spec.table in i.prepared.tables
                     and spec in whatif.cost(i.prepared, final).used]  # fmt: skip
            if not users or spent + grown > self.budget:
                continue
            after = [whatif.cost(i.prepared, swapped) for i in users]
            if any(hashed not in c.used for c in after):
                continue
            read = sum(i.saved(whatif.cost(i.prepared, final).cost, c.cost)
                       for i, c in zip(users, after, strict=True))  # fmt: skip
            if read + self.write_cost_per_row * (1 - HASH_WRITE_SHARE) * written > 0:
                final, spent = swapped, spent + grown
        return sorted(final, key=_order)

    def _improve(
        self,
        whatif: WhatIf,
        items: Sequence[_Item],
        chosen: set[IndexSpec],
        options: dict[IndexSpec, float],
        writes: dict[TableRef, float],
        touched: Callable[[IndexSpec], list[_Item]],
        tables: set[TableRef] | None,
    ) -> set[IndexSpec]:
        """One local pass over the greedy set: each chosen index in turn is dropped, and
        replaced by the option (of the SWAP_TRIES best scored that fit in its place) that
        saves more than it did; an index that saves less than its write cost goes.

        `tables` None (the budget bound): every chosen index, any option. Else (only a
        table limit bound): the chosen indexes of those tables, options on the same table.
        """

        def penalty(spec: IndexSpec) -> float:
            return self.write_cost_per_row * writes.get(spec.table, 0.0) * self._write_share(spec)

        def saved(group: Iterable[_Item], indexes: set[IndexSpec]) -> float:
            return sum(i.saved(i.base, whatif.cost(i.prepared, indexes).cost) for i in group)

        reading: dict[TableRef, list[_Item]] = {}
        for item in items:
            for table in item.prepared.tables:
                reading.setdefault(table, []).append(item)
        ranked = sorted((o for o in options if options[o] > 0),
                        key=lambda o: (-options[o], _order(o)))  # fmt: skip
        spent = sum(self._size(c) for c in chosen)
        for spec in sorted(chosen, key=_order):
            if tables is not None and spec.table not in tables:
                continue
            rest = chosen - {spec}
            users = [i for i in reading.get(spec.table, ())
                     if spec in whatif.cost(i.prepared, chosen).used]  # fmt: skip
            worth = saved(users, chosen) - saved(users, rest) - penalty(spec)  # exact: only
            room = self.budget - spent + self._size(spec)  # its users' plans change
            tries: list[IndexSpec] = []
            for other in ranked:
                if len(tries) == SWAP_TRIES:
                    break
                if other in chosen or (tables is not None and other.table != spec.table):
                    continue
                same = [c for c in rest if c.table == other.table]
                if (self._size(other) <= room and len(same) < self.per_table
                        and not covered_by(other, _as_inputs(same))):  # fmt: skip
                    tries.append(other)
            best: IndexSpec | None = None
            best_worth = max(worth, 0.0) * SWAP_MARGIN
            for other in tries:
                group = touched(other)
                gain = saved(group, rest | {other}) - saved(group, rest) - penalty(other)
                if gain > best_worth:
                    best, best_worth = other, gain
            if best is not None or worth < 0:
                LOG.debug("advisor.swap", dropped=str(spec.columns), table=str(spec.table),
                          added=str(best.columns) if best else None)  # fmt: skip
                chosen = rest | ({best} if best else set())
                spent += (self._size(best) if best else 0) - self._size(spec)
        return chosen

    def _warm(
        self, whatif: WhatIf, pool: set[IndexSpec], touched: Callable[[IndexSpec], list[_Item]]
    ) -> None:
        """Cost single-table queries with each candidate alone, one candidate per table at a
        time: a plan sees only its tables' indexes, so one set of hypothetical indexes
        serves a candidate of every table at once (fewer HypoPG round trips)."""
        by_table: dict[TableRef, list[IndexSpec]] = {}
        for spec in sorted(pool, key=_order):
            by_table.setdefault(spec.table, []).append(spec)
        for wave in itertools.zip_longest(*by_table.values()):
            specs = [s for s in wave if s is not None]
            for start in range(0, len(specs), HYPOPG_BATCH):
                chunk = frozenset(specs[start : start + HYPOPG_BATCH])
                for spec in chunk:
                    for item in touched(spec):
                        if len(item.prepared.tables) == 1:
                            whatif.cost(item.prepared, chunk)

    def _prune(
        self, whatif: WhatIf, items: Sequence[_Item], chosen: set[IndexSpec]
    ) -> list[IndexSpec]:
        """Drop chosen indexes that no final plan uses."""
        used: set[IndexSpec] = set()
        for item in items:
            used |= whatif.cost(item.prepared, chosen).used
        return sorted(chosen & used, key=_order)

    def _heuristic(
        self, whatif: WhatIf, items: Sequence[_Item], indexes: Sequence[IndexInput]
    ) -> list[IndexSpec]:
        """Without HypoPG: one composite per sequentially scanned large table, by time."""
        score: dict[IndexSpec, float] = {}
        for item in items:
            scanned = set(_seq_scanned(whatif.plan(item.prepared)))
            for use in item.info.tables:
                facts = self.schema.resolve(use.table.schema, use.table.name, item.path)
                if (
                    facts is None
                    or facts.rows < HEURISTIC_MIN_ROWS
                    or facts.table.name not in scanned
                ):
                    continue
                best = _best_heuristic(use, facts, self.max_width)
                if best is not None and not covered_by(best, indexes):
                    score[best] = score.get(best, 0.0) + item.query.total_ms
        chosen: list[IndexSpec] = []
        spent = 0.0
        for spec in sorted(score, key=lambda s: (-score[s], _order(s))):
            size = self._size(spec)
            per_table = sum(1 for c in chosen if c.table == spec.table)
            if spent + size <= self.budget and per_table < self.per_table:
                chosen.append(spec)
                spent += size
        return chosen

    # 4. proposals

    def _describe(
        self,
        whatif: WhatIf,
        items: Sequence[_Item],
        chosen: Sequence[IndexSpec],
        rates: dict[TableRef, float],
        total_ms: float,
        hypo: bool,
    ) -> tuple[list[Proposal], float]:
        final = frozenset(chosen)
        after: dict[int, float] = {}
        served: dict[IndexSpec, list[_Item]] = {spec: [] for spec in chosen}
        for item in items:
            costed = whatif.cost(item.prepared, final) if hypo else None
            after[item.prepared.key] = costed.cost if costed else item.base
            for spec in costed.used if costed else ():
                served[spec].append(item)
        if not hypo:  # served: the queries that scan the table on the index's leading column
            for spec in chosen:
                served[spec] = [
                    i for i in items if spec.columns[0] in i.columns.get(spec.table, ())
                ]
        proposals = []
        for spec in chosen:
            rows = tuple(
                ProposalQuery(
                    queryid=i.query.queryid,
                    cost_before=i.base,
                    cost_after=after[i.prepared.key] if hypo else None,
                    calls=i.query.calls,
                    share=i.query.total_ms / total_ms,
                    text=i.query.query,
                )
                for i in served[spec]
            )
            proposals.append(self._proposal(whatif, spec, rows, rates.get(spec.table, 0.0), hypo))
        workload_after = sum(i.query.calls * after[i.prepared.key] for i in items)
        return proposals, workload_after

    def _proposal(
        self, whatif: WhatIf, spec: IndexSpec, rows: tuple[ProposalQuery, ...], writes: float,
        hypo: bool,
    ) -> Proposal:  # fmt: skip
        size = self._size(spec)
        before = sum(q.calls * q.cost_before for q in rows)
        after = sum(q.calls * (q.cost_after if q.cost_after is not None else q.cost_before)
                    for q in rows)  # fmt: skip
        reduction = 1 - after / before if before and hypo else 0.0
        share = sum(q.share for q in rows)
        calls = sum(q.calls for q in rows)
        name = statements.index_name(spec)
        ddl = db.render(self.conn, templates.create_sql(spec, name))
        raw = whatif.size(spec) if hypo and spec.method != "gin" else None
        cols = (
            ", ".join(spec.keys)
            + (f" INCLUDE ({', '.join(spec.include)})" if spec.include else "")
            + (f" WHERE {spec.where}" if spec.predicate else "")
        )
        why_kind = self._why_kind(spec)
        ids = "; ".join(labels.label(q.text) if q.text else str(q.queryid) for q in rows[:5]) + (
            " …" if len(rows) > 5 else ""
        )
        if hypo:
            gain = (f"the planner estimates their cost at {before:,.0f} before and {after:,.0f} "
                    f"after (weighted by calls), {reduction:.0%} less")  # fmt: skip
        else:
            gain = ("HypoPG is not installed, so this is a heuristic: they scan the whole table "
                    "and filter on these columns; the gain has not been costed")  # fmt: skip
        reason = (
            f"An index on {spec.table} ({cols}) serves {len(rows)} "
            f"quer{'y' if len(rows) == 1 else 'ies'} ({ids}) called {calls:,} times, "
            f"{share:.1%} of the workload's execution time; {gain}. It would take about "
            f"{format_size(size)}"
            + (f" (HypoPG's uncorrected estimate: {format_size(raw)})" if raw is not None else "")
            + f" and slow the table's {writes:,.1f} row writes per second slightly."
            + (
                f" A hash index, not a btree: every one of these queries looks {cols} up by "
                "`=` alone, and its values are nearly unique and in no order, where a hash "
                f"costs a write about {HASH_WRITE_SHARE:.0%} of what a btree does."
                if spec.method == "hash"
                else ""
            )
            + (f" Kind: {why_kind}." if why_kind else "")
        )
        return Proposal(
            kind=ProposalKind.CREATE_INDEX, table=spec.table, ddl=ddl, reason=reason,
            columns=spec.columns, include=spec.include, descending=spec.descending,
            method=spec.method, index_name=name, estimated_size_bytes=size,
            hypopg_size_bytes=raw, queries=rows, calls=calls, workload_share=share,
            cost_reduction=reduction, write_rate=writes,
            confidence=Confidence.HIGH if hypo else Confidence.LOW,
            expressions=spec.expressions, predicate=spec.predicate, why_kind=why_kind,
        )  # fmt: skip

    def _measured_only(
        self,
        whatif: WhatIf,
        items: Sequence[_Item],
        indexes: Sequence[IndexInput],
        writes: dict[TableRef, float],
        rates: dict[TableRef, float],
        total_ms: float,
        room: int,
        notes: list[str],
    ) -> list[Proposal]:
        """Gin indexes, which HypoPG cannot simulate: for each statement that scans the
        whole table for a jsonb filter, the planner's estimate of the rows it keeps gives
        the share of its measured time an index would leave (the rest is saved); proposed
        when at most GIN_MAX_SHARE of the rows match and the saving beats the write cost,
        with confidence measured-only (verification decides, as for any index)."""
        users: dict[IndexSpec, list[_Item]] = {}
        for item in items:
            for use in item.info.tables:
                facts = self.schema.resolve(use.table.schema, use.table.name)
                trgm = self.schema.trgm_schema
                for spec in gin_candidates(use, facts, trgm) if facts is not None else ():
                    if not covered_by(spec, indexes):
                        users.setdefault(spec, []).append(item)
        found = []
        for spec in sorted(users, key=_order):
            facts = self.schema.tables[spec.table]
            rows, saved = [], 0.0
            for item in users[spec]:
                kept = _scan_rows(whatif.plan(item.prepared), spec.table.name)
                share = kept / max(facts.rows, 1.0) if kept is not None else 1.0
                if share > GIN_MAX_SHARE:
                    continue
                saved += item.ms * (1 - share)
                rows.append(ProposalQuery(
                    queryid=item.query.queryid, cost_before=item.base,
                    cost_after=item.base * share, calls=item.query.calls,
                    share=item.query.total_ms / total_ms, text=item.query.query,
                ))  # fmt: skip
            penalty = self.write_cost_per_row * writes.get(spec.table, 0.0)
            if not rows or saved <= penalty or self._size(spec) > room:
                continue
            if spec.expressions and spec.expressions[0].endswith(":" + MISSING_TRGM):
                notes.append(  # the tuner never creates an extension
                    f"pg_trgm is not installed: with it (CREATE EXTENSION pg_trgm), a trigram "
                    f"gin index on {spec.table} ({spec.columns[0]}) would serve "
                    f"{len(rows)} statement(s) matching patterns a btree cannot, about "
                    f"{saved:,.0f} ms of the window's measured time"
                )
                continue
            room -= self._size(spec)
            own = self._proposal(whatif, spec, tuple(rows), rates.get(spec.table, 0.0), True)
            found.append(replace(own, confidence=Confidence.MEASURED_ONLY, reason=(
                "Measured-only: HypoPG cannot simulate a gin index, so the gain is estimated "
                "from the statements' measured time and the planner's estimate of the rows "
                f"their filter keeps (at most {GIN_MAX_SHARE:.0%} of the table); it is "
                "verified once built like any index. " + own.reason)))  # fmt: skip
        return found

    def _why_kind(self, spec: IndexSpec) -> str:
        """What kind of index other than a plain btree this is, and why, for the audit:
        `partial: 0.5 % of rows match status = 'open'`."""
        facts = self.schema.tables[spec.table]
        parts = []
        form = spec.expressions[0].partition(":") if spec.expressions else ("", "", "")
        if spec.method == "gin" and form[0] == "tsvector":
            parts.append(f"gin (full text): the queries match to_tsvector('{form[2]}', "
                         f"{spec.columns[0]}) with @@, which an index on that expression "
                         "serves")  # fmt: skip
        elif spec.method == "gin" and form[0] == "gin_trgm_ops":
            parts.append(f"gin (gin_trgm_ops): the queries match {spec.columns[0]} with a "
                         "pattern no btree serves (a leading wildcard, a parameter, a regular "
                         "expression); pg_trgm's trigrams do")  # fmt: skip
        elif spec.method == "gin":
            opclass = spec.expressions[0] if spec.expressions else "jsonb_ops"
            why = ("`@>` is all they ask of it, which the smaller jsonb_path_ops answers"
                   if spec.expressions else "they test keys (`?`, `?|`, `?&`) or paths, which "
                   "only the default jsonb_ops answers")  # fmt: skip
            parts.append(f"gin ({opclass}): the queries filter {spec.columns[0]} with jsonb "
                         f"operators no btree serves; {why}")  # fmt: skip
        if spec.method == "brin":
            column = facts.columns[spec.columns[0]]
            btree = estimate_size(IndexSpec(spec.table, spec.columns), facts)
            parts.append(f"brin: the table's rows lie in {spec.columns[0]}'s order (correlation "
                         f"{column.correlation or 0.0:.2f}), so {format_size(self._size(spec))} "
                         f"of min/max per 128 pages serves its range scans, where a btree "
                         f"would take {format_size(btree)}")  # fmt: skip
        if spec.expressions:
            exprs = [k for k, f in zip(spec.keys, spec.expressions, strict=True) if f]
            parts.append(f"expression: the queries filter on {', '.join(exprs)}, which no "
                         "index on the bare column serves")  # fmt: skip
        if spec.predicate:
            share = math.prod(facts.columns[c].share(op, v, facts.rows)
                              for c, op, v in spec.predicate if c in facts.columns)  # fmt: skip
            parts.append(f"partial: {share:.1%} of rows match {spec.where}, which every query "
                         "it serves filters on; the full index would hold every row")  # fmt: skip
        return "; ".join(parts)


# --- maintenance findings (pure) -----------------------------------------------------------


# --- helpers -----------------------------------------------------------------------------


def _writes(table: TableInput, window: float | None) -> float:
    """Rows written (inserted + updated + deleted), scaled to the queries' window."""
    count = float(table.n_tup_ins + table.n_tup_upd + table.n_tup_del)
    if window is None or table.seconds <= 0:
        return count
    return count * window / table.seconds


def _order(spec: IndexSpec) -> tuple[str, tuple[str, ...], tuple[str, ...], str]:
    return spec.key


def _extends(wide: IndexSpec, narrow: IndexSpec) -> bool:
    """`wide` keeps `narrow`'s keys in front, has its method and predicate, and adds keys
    or INCLUDEs."""
    return (
        leads(narrow.keys, wide.keys)
        and wide.predicate == narrow.predicate
        and wide.method == narrow.method
        and (len(wide.columns) > len(narrow.columns) or set(narrow.include) < set(wide.include))
    )


@dataclass(frozen=True)
class _Chosen:
    table: TableRef
    columns: tuple[str, ...]
    is_valid: bool = True
    method: str = "btree"
    expressions: tuple[str, ...] = ()
    partial: tuple[tuple[str, str, str | None], ...] = ()

    @property
    def predicate(self) -> None:  # covered_by's rule for existing indexes: full ones only
        return None


def _as_inputs(chosen: Iterable[IndexSpec]) -> list[Any]:
    """Chosen indexes as covered_by's existing ones; a partial one covers nothing."""
    return [_Chosen(c.table, c.columns, method=c.method, expressions=c.expressions)
            for c in chosen if not c.predicate]  # fmt: skip


def _scan_rows(node: dict[str, Any], table: str, workers: int = 0) -> float | None:
    """The planner's estimate of the rows a sequential scan of `table` keeps (a parallel
    scan's per-process figure times the processes), or None when the plan has none."""
    if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") == table:
        parallel = node.get("Parallel Aware") and workers
        return float(node.get("Plan Rows", 0.0)) * ((workers + 1) if parallel else 1)
    workers = int(node.get("Workers Planned", workers))
    for child in node.get("Plans", ()):
        found = _scan_rows(child, table, workers)
        if found is not None:
            return found
    return None


def _seq_scanned(node: dict[str, Any]) -> Iterable[str]:
    if node.get("Node Type") == "Seq Scan" and "Relation Name" in node:
        yield str(node["Relation Name"])
    for child in node.get("Plans", ()):
        yield from _seq_scanned(child)


def _best_heuristic(use: TableUse, table: TableFacts, max_width: int) -> IndexSpec | None:
    """Equality columns by selectivity, then one range column: the usual composite."""
    ok = {c for c, f in table.columns.items() if f.btree}
    equality = [c for c in dict.fromkeys((*use.equality, *use.joins)) if c in ok]
    equality.sort(key=lambda c: -table.columns[c].distinct(table.rows))
    ranges = [c for c in use.ranges if c in ok and c not in equality]
    columns = (equality[: max_width - 1] + ranges[:1]) if ranges else equality[:max_width]
    return IndexSpec(table.table, tuple(columns)) if columns else None
