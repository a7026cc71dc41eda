"""Steps 4, 4b and 5 of the advisor's recipe (tuner.advisor): local passes over the set
the greedy chose, each one costed with the same what-if session.

`improve` swaps a chosen index for a better unchosen one that fits (or drops one that
saves less than its write cost), `sharpen` lets a chosen index give way to a wider one on
its key columns, `prefer_hash` turns an eligible btree into a hash, `prune` drops what no
final plan uses. What they share: the costed statements (`Item`) and the limits and prices
of a choice (`Limits`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tuner import log
from tuner.candidates import covered_by
from tuner.catalog import Schema, estimate_size
from tuner.costing import Item
from tuner.models import IndexSpec, TableRef
from tuner.whatif import WhatIf

LOG = log.get("tuner.advisor")

WRITE_MS_PER_ROW = 0.01  # ms per written row, per index (see tuner.advisor's doc)
# A hash index's write cost against a btree's on a nearly unique key in no order (a uuid):
# bench/hash_cost.py, 20-row inserts into 2 M rows: +0.12 ms (hash) against +0.22 ms (btree).
HASH_WRITE_SHARE = 0.55
# A brin's write cost against a btree's on an append-only time column: 300 k-row appends in
# time order, +2.8 us a row with a brin on it against +5.4 us with a btree (2 runs each,
# noisy shared machine; see bench/RESULTS.md, index kinds).
BRIN_WRITE_SHARE = 0.5
PARTIAL_WRITE_FLOOR = 0.05  # a partial index's write cost, however few rows match
HASH_MIN_DISTINCT = 0.5  # share of the rows: a hash's buckets stay short on such keys
HASH_MAX_CORRELATION = 0.5  # |pg_stats.correlation|: new keys land all over a btree
MIN_GAIN = 0.05  # a query's cost must fall by 5 % for its gain to count (planner noise)
SWAP_TRIES = 5  # unchosen candidates tried in place of each chosen index (local pass)
SWAP_MARGIN = 1.02  # a swap must save 2 % more than the index it replaces (planner noise)
# A chosen index gives way to a wider one on its columns (step 4b) when its queries'
# estimated cost with the wider one is at most this share of their cost with it: cheaper
# beyond the planner's noise (MIN_GAIN).
SHARPEN_RATIO = 1 - MIN_GAIN


@dataclass(frozen=True)
class Limits:
    """What a choice must fit in and what its writes cost: the advisor's settings."""

    schema: Schema
    budget: int
    per_table: int = 5
    min_gain: float = MIN_GAIN
    write_cost_per_row: float = WRITE_MS_PER_ROW
    hash_indexes: bool = True

    def size(self, spec: IndexSpec) -> int:
        return estimate_size(spec, self.schema.tables[spec.table])

    def write_share(self, spec: IndexSpec) -> float:
        """A row write's cost for `spec` against a full btree's: a brin's, on rows appended
        in its column's order, only widens the last range's summary; a partial index takes
        only the rows that match its predicate (the test itself costs PARTIAL_WRITE_FLOOR)."""
        if spec.method == "brin":
            return BRIN_WRITE_SHARE
        facts = self.schema.tables[spec.table]
        share = math.prod(facts.columns[c].share(op, v, facts.rows)
                          for c, op, v in spec.predicate if c in facts.columns)  # fmt: skip
        return max(share, PARTIAL_WRITE_FLOOR)


def by_key(spec: IndexSpec) -> tuple[str, tuple[str, ...], tuple[str, ...], str]:
    """A stable order of candidates, so that ties break the same way every run."""
    return spec.key


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


def as_existing(chosen: Iterable[IndexSpec]) -> list[Any]:
    """Chosen indexes as covered_by's existing ones; a partial one covers nothing."""
    return [_Chosen(c.table, c.columns, method=c.method, expressions=c.expressions)
            for c in chosen if not c.predicate]  # fmt: skip


def improve(
    limits: Limits,
    whatif: WhatIf,
    items: Sequence[Item],
    chosen: set[IndexSpec],
    options: dict[IndexSpec, float],
    writes: dict[TableRef, float],
    touched: Callable[[IndexSpec], list[Item]],
    tables: set[TableRef] | None,
) -> set[IndexSpec]:
    """One local pass over the greedy set: each chosen index in turn is dropped, and
    replaced by the option (of the SWAP_TRIES best scored that fit in its place) that
    saves more than it did; an index that saves less than its write cost goes.

    `tables` None (the budget bound): every chosen index, any option. Else (only a
    table limit bound): the chosen indexes of those tables, options on the same table.
    """

    def penalty(spec: IndexSpec) -> float:
        return limits.write_cost_per_row * writes.get(spec.table, 0.0) * limits.write_share(spec)

    def saved(group: Iterable[Item], indexes: set[IndexSpec]) -> float:
        return sum(i.saved(i.base, whatif.cost(i.prepared, indexes).cost) for i in group)

    reading: dict[TableRef, list[Item]] = {}
    for item in items:
        for table in item.prepared.tables:
            reading.setdefault(table, []).append(item)
    ranked = sorted((o for o in options if options[o] > 0),
                    key=lambda o: (-options[o], by_key(o)))  # fmt: skip
    spent = sum(limits.size(c) for c in chosen)
    for spec in sorted(chosen, key=by_key):
        if tables is not None and spec.table not in tables:
            continue
        rest = chosen - {spec}
        users = [i for i in reading.get(spec.table, ())
                 if spec in whatif.cost(i.prepared, chosen).used]  # fmt: skip
        worth = saved(users, chosen) - saved(users, rest) - penalty(spec)  # exact: only
        room = limits.budget - spent + limits.size(spec)  # its users' plans change
        tries: list[IndexSpec] = []
        for other in ranked:
            if len(tries) == SWAP_TRIES:
                break
            if other in chosen or (tables is not None and other.table != spec.table):
                continue
            same = [c for c in rest if c.table == other.table]
            if (limits.size(other) <= room and len(same) < limits.per_table
                    and not covered_by(other, as_existing(same))):  # fmt: skip
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
            spent += (limits.size(best) if best else 0) - limits.size(spec)
    return chosen


def sharpen(
    limits: Limits,
    whatif: WhatIf,
    items: Sequence[Item],
    chosen: set[IndexSpec],
    pool: dict[TableRef, list[IndexSpec]],
) -> set[IndexSpec]:
    """Step 4b of the recipe: a chosen index gives way to a wider candidate that holds
    its key columns and serves its queries materially cheaper (the full equality-then-
    sort index over the sort column alone)."""
    spent = sum(limits.size(c) for c in chosen)
    for spec in sorted(chosen, key=by_key):
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
                    or spent - limits.size(spec) + limits.size(other) > limits.budget
                    or covered_by(other, as_existing(rest))):  # fmt: skip
                continue
            after = [whatif.cost(i.prepared, rest | {other}).cost for i in users]
            if any(a > c * (1 + limits.min_gain) for a, c in zip(after, now, strict=True)):
                continue
            total = sum(i.ms * a / i.base for i, a in zip(users, after, strict=True) if i.base)
            if total < bar:
                best, bar = other, total
        if best is not None:
            LOG.debug("advisor.sharpen", dropped=str(spec.columns), added=str(best.columns),
                      table=str(spec.table))  # fmt: skip
            chosen = rest | {best}
            spent += limits.size(best) - limits.size(spec)
    return chosen


def prefer_hash(
    limits: Limits,
    whatif: WhatIf,
    items: Sequence[Item],
    chosen: list[IndexSpec],
    writes: dict[TableRef, float],
) -> list[IndexSpec]:
    """Step 5 of the recipe: each eligible btree becomes a hash where the write time it
    saves exceeds the read time it loses (both in ms of the window, as the greedy's
    objective), every query it served uses the hash, and the budget still holds."""
    final = set(chosen)
    spent = sum(limits.size(c) for c in final)
    for spec in chosen if limits.hash_indexes else ():
        facts = limits.schema.tables.get(spec.table)
        column = facts.columns.get(spec.columns[0]) if facts else None
        written = writes.get(spec.table, 0.0)
        if (facts is None or column is None or not column.hash or written <= 0
                or spec.method != "btree" or spec.expressions or spec.predicate
                or len(spec.columns) != 1 or spec.include or spec.descending
                or column.distinct(facts.rows) < HASH_MIN_DISTINCT * facts.rows
                or abs(column.correlation or 0.0) > HASH_MAX_CORRELATION):  # fmt: skip
            continue
        hashed = replace(spec, method="hash")
        grown = limits.size(hashed) - limits.size(spec)
        swapped = (final - {spec}) | {hashed}
        users = [i for i in items if spec.table in i.prepared.tables
                 and spec in whatif.cost(i.prepared, final).used]  # fmt: skip
        if not users or spent + grown > limits.budget:
            continue
        after = [whatif.cost(i.prepared, swapped) for i in users]
        if any(hashed not in c.used for c in after):
            continue
        read = sum(i.saved(whatif.cost(i.prepared, final).cost, c.cost)
                   for i, c in zip(users, after, strict=True))  # fmt: skip
        if read + limits.write_cost_per_row * (1 - HASH_WRITE_SHARE) * written > 0:
            final, spent = swapped, spent + grown
    return sorted(final, key=by_key)


def prune(whatif: WhatIf, items: Sequence[Item], chosen: set[IndexSpec]) -> list[IndexSpec]:
    """Drop chosen indexes that no final plan uses."""
    used: set[IndexSpec] = set()
    for item in items:
        used |= whatif.cost(item.prepared, chosen).used
    return sorted(chosen & used, key=by_key)
