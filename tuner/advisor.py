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

Where the steps live: statements are read and prepared by tuner.costing (step 1), candidates
come from tuner.candidates (2), the greedy is here (3), the local passes are tuner.refine's
(4, 4b, 5), and each proposal's words and figures tuner.proposals'.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from tuner import db, log, statements, templates
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
from tuner.catalog import PAGE, Schema, TableFacts
from tuner.costing import Item, QueryInput, StatementReader

# moved: the output model to tuner.models, the captured statements' helpers to tuner.workload
from tuner.models import Advice as Advice
from tuner.models import (
    IndexSpec,
    Proposal,
    ProposalQuery,
    TableRef,
    Trap,
)
from tuner.proposals import (
    index_proposal,
    measured_only_proposal,
    missing_trgm_note,
    shield_proposal,
)
from tuner.refine import (
    MIN_GAIN,
    WRITE_MS_PER_ROW,
    Limits,
    as_existing,
    by_key,
    improve,
    prefer_hash,
    prune,
    sharpen,
)
from tuner.sqlinfo import QueryInfo, TableUse, Unparsed
from tuner.whatif import HYPOPG_BATCH, WhatIf, scan_rows, seq_scanned
from tuner.workload import captured_queries as captured_queries
from tuner.workload import statement_key as statement_key

LOG = log.get("tuner.advisor")

GIN_MAX_SHARE = 0.2  # a gin index is proposed for scans that keep at most this share of rows
HEURISTIC_MIN_ROWS = 1000  # without HypoPG, tables smaller than this are left alone


# --- the advisor ---------------------------------------------------------------------------


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
    _reader: StatementReader = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._reader = StatementReader(self.schema)

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
                found[spec] = shield_proposal(own, query.query, trap)
        return list(found.values())

    # 1. statements

    def _prepare(
        self, whatif: WhatIf, queries: Sequence[QueryInput], skipped: Counter[str]
    ) -> list[Item]:
        return self._reader.prepare(whatif, queries, skipped)

    def _analyze(self, text: str) -> QueryInfo | Unparsed:
        return self._reader.analyze(text)

    # 2. candidates

    def _candidates(self, items: Sequence[Item], indexes: Sequence[IndexInput]) -> set[IndexSpec]:
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

    @property
    def limits(self) -> Limits:
        return Limits(self.schema, self.budget, self.per_table, self.min_gain,
                      self.write_cost_per_row, self.hash_indexes)  # fmt: skip

    def _size(self, spec: IndexSpec) -> int:
        return self.limits.size(spec)

    # 3. selection

    def _select(
        self,
        whatif: WhatIf,
        items: Sequence[Item],
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
        heap = [_Move(-float("inf"), next(counter), c) for c in sorted(pool, key=by_key)]
        heapq.heapify(heap)
        reading: dict[TableRef, list[Item]] = {}
        for item in items:
            for table in item.prepared.tables:
                reading.setdefault(table, []).append(item)
        memo: dict[IndexSpec, tuple[list[Item], frozenset[TableRef]]] = {}

        def scope(spec: IndexSpec) -> tuple[list[Item], frozenset[TableRef]]:
            """The items `spec` may serve (its leading column used) and the tables they read."""
            if spec not in memo:
                found = [i for i in reading.get(spec.table, ())
                         if spec.columns[0] in i.columns.get(spec.table, ())]  # fmt: skip
                memo[spec] = found, frozenset(t for i in found for t in i.prepared.tables)
            return memo[spec]

        def touched(spec: IndexSpec) -> list[Item]:
            return scope(spec)[0]

        def stamp(spec: IndexSpec) -> int:
            """Changes exactly when a choice is made on a table `spec`'s items read: a move
            evaluated at the current stamp needs no new evaluation."""
            return sum(version[t] for t in scope(spec)[1])

        def near(item: Item) -> set[IndexSpec]:
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
                move.add.table, 0.0) * self.limits.write_share(move.add)  # fmt: skip
            if gain - penalty <= 0:
                return 0.0, size
            return (gain - penalty) / max(size, PAGE), size

        pool_by_table: dict[TableRef, list[IndexSpec]] = {}
        for spec in sorted(pool, key=by_key):
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
            if move.add in here or covered_by(move.add, as_existing(others)):
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
        # 4. local passes (tuner.refine)
        limits = self.limits
        if budget_bound:
            chosen = improve(limits, whatif, items, chosen, scores, writes, touched, None)
        elif options := {o: scores[o] for o in limited if scores.get(o, 0.0) > 0}:
            tables = {o.table for o in options}
            chosen = improve(limits, whatif, items, chosen, options, writes, touched, tables)
        chosen = sharpen(limits, whatif, items, chosen, pool_by_table)
        return prefer_hash(limits, whatif, items, prune(whatif, items, chosen), writes)

    def _warm(
        self, whatif: WhatIf, pool: set[IndexSpec], touched: Callable[[IndexSpec], list[Item]]
    ) -> None:
        """Cost single-table queries with each candidate alone, one candidate per table at a
        time: a plan sees only its tables' indexes, so one set of hypothetical indexes
        serves a candidate of every table at once (fewer HypoPG round trips)."""
        by_table: dict[TableRef, list[IndexSpec]] = {}
        for spec in sorted(pool, key=by_key):
            by_table.setdefault(spec.table, []).append(spec)
        for wave in itertools.zip_longest(*by_table.values()):
            specs = [s for s in wave if s is not None]
            for start in range(0, len(specs), HYPOPG_BATCH):
                chunk = frozenset(specs[start : start + HYPOPG_BATCH])
                for spec in chunk:
                    for item in touched(spec):
                        if len(item.prepared.tables) == 1:
                            whatif.cost(item.prepared, chunk)

    def _heuristic(
        self, whatif: WhatIf, items: Sequence[Item], indexes: Sequence[IndexInput]
    ) -> list[IndexSpec]:
        """Without HypoPG: one composite per sequentially scanned large table, by time."""
        score: dict[IndexSpec, float] = {}
        for item in items:
            scanned = set(seq_scanned(whatif.plan(item.prepared)))
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
        for spec in sorted(score, key=lambda s: (-score[s], by_key(s))):
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
        items: Sequence[Item],
        chosen: Sequence[IndexSpec],
        rates: dict[TableRef, float],
        total_ms: float,
        hypo: bool,
    ) -> tuple[list[Proposal], float]:
        final = frozenset(chosen)
        after: dict[int, float] = {}
        served: dict[IndexSpec, list[Item]] = {spec: [] for spec in chosen}
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
        name = statements.index_name(spec)
        return index_proposal(
            spec, rows, writes, hypo, facts=self.schema.tables[spec.table], name=name,
            ddl=db.render(self.conn, templates.create_sql(spec, name)),
            raw=whatif.size(spec) if hypo and spec.method != "gin" else None,
        )  # fmt: skip

    def _measured_only(
        self,
        whatif: WhatIf,
        items: Sequence[Item],
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
        users: dict[IndexSpec, list[Item]] = {}
        for item in items:
            for use in item.info.tables:
                facts = self.schema.resolve(use.table.schema, use.table.name)
                trgm = self.schema.trgm_schema
                for spec in gin_candidates(use, facts, trgm) if facts is not None else ():
                    if not covered_by(spec, indexes):
                        users.setdefault(spec, []).append(item)
        found = []
        for spec in sorted(users, key=by_key):
            facts = self.schema.tables[spec.table]
            rows, saved = [], 0.0
            for item in users[spec]:
                kept = scan_rows(whatif.plan(item.prepared), spec.table.name)
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
                notes.append(missing_trgm_note(spec, len(rows), saved))  # never created here
                continue
            room -= self._size(spec)
            own = self._proposal(whatif, spec, tuple(rows), rates.get(spec.table, 0.0), True)
            found.append(measured_only_proposal(own, GIN_MAX_SHARE))
        return found


# --- helpers -----------------------------------------------------------------------------


def _writes(table: TableInput, window: float | None) -> float:
    """Rows written (inserted + updated + deleted), scaled to the queries' window."""
    count = float(table.n_tup_ins + table.n_tup_upd + table.n_tup_del)
    if window is None or table.seconds <= 0:
        return count
    return count * window / table.seconds


def _extends(wide: IndexSpec, narrow: IndexSpec) -> bool:
    """`wide` keeps `narrow`'s keys in front, has its method and predicate, and adds keys
    or INCLUDEs."""
    return (
        leads(narrow.keys, wide.keys)
        and wide.predicate == narrow.predicate
        and wide.method == narrow.method
        and (len(wide.columns) > len(narrow.columns) or set(narrow.include) < set(wide.include))
    )


def _best_heuristic(use: TableUse, table: TableFacts, max_width: int) -> IndexSpec | None:
    """Equality columns by selectivity, then one range column: the usual composite."""
    ok = {c for c, f in table.columns.items() if f.btree}
    equality = [c for c in dict.fromkeys((*use.equality, *use.joins)) if c in ok]
    equality.sort(key=lambda c: -table.columns[c].distinct(table.rows))
    ranges = [c for c in use.ranges if c in ok and c not in equality]
    columns = (equality[: max_width - 1] + ranges[:1]) if ranges else equality[:max_width]
    return IndexSpec(table.table, tuple(columns)) if columns else None
