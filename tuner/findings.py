"""Invalid, duplicate and unused indexes; tables with stale statistics or dead rows (pure).

One rule set: `pg-tuner status` (through `health`) lists these findings and the advisor
(through `candidates.maintenance_proposals`) proposes the actions that fix them, so the two
never disagree on the same catalog. Each consumer words them its own way.

  - invalid: a failed or interrupted build left it INVALID (one being built now is not);
  - duplicate: another valid index on the table answers every lookup it does: the same
    definition, a btree its key leads (carrying its INCLUDE columns), or for a hash, a btree
    its column leads. Keepers are those backing constraints, then unique ones, then the most
    scanned, then the oldest;
  - unused: valid, never scanned since the statistics were reset, neither unique nor backing
    a constraint or the replica identity, and not already a duplicate;
  - stale (ANALYZE): never analyzed, or more rows changed since the last ANALYZE than the
    policy's ratio of its live rows;
  - dead (VACUUM): at least MIN_DEAD dead rows, more than the policy's ratio of all rows.
Tables of fewer than MIN_ROWS rows (live + dead) are not judged: they cost nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from tuner.models import ActionKind, TableRef
from tuner.statements import quote_ref

MIN_ROWS = 1000  # live + dead tuples a table needs before its statistics are judged
MIN_DEAD = 1000  # dead tuples worth a VACUUM at all


class IndexLike(Protocol):
    """What the rules read of an index (`models.IndexStat`, `whatif.ExistingIndex`)."""

    @property
    def table(self) -> TableRef: ...
    @property
    def schema(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def definition(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def columns(self) -> tuple[str | None, ...]: ...
    @property
    def include(self) -> tuple[str | None, ...]: ...
    @property
    def predicate(self) -> str | None: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def idx_scan(self) -> int: ...
    @property
    def is_valid(self) -> bool: ...
    @property
    def is_unique(self) -> bool: ...
    @property
    def is_primary(self) -> bool: ...
    @property
    def backs_constraint(self) -> bool: ...
    @property
    def is_replica_identity(self) -> bool: ...


class TableLike(Protocol):
    """What the rules read of a table (`models.TableStat`, `models.TableActivity`)."""

    @property
    def table(self) -> TableRef: ...
    @property
    def n_live_tup(self) -> int: ...
    @property
    def n_dead_tup(self) -> int: ...
    @property
    def n_mod_since_analyze(self) -> int: ...
    @property
    def last_analyzed(self) -> datetime | None: ...


class IndexProblem(StrEnum):
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    UNUSED = "unused"


class Overlap(StrEnum):
    """How a duplicate's keeper answers its lookups."""

    SAME = "same"  # the same definition
    PREFIX = "prefix"  # its key leads the keeper's
    MORE_INCLUDE = "more_include"  # the same key, and the keeper carries more INCLUDEs
    NONE = ""


@dataclass(frozen=True, slots=True)
class IndexFinding:
    """One index with a problem; for a duplicate, the index that makes it redundant."""

    index: IndexLike
    problem: IndexProblem
    keeper: IndexLike | None = None
    overlap: Overlap = Overlap.NONE

    @property
    def droppable(self) -> bool:
        """Backs no constraint and is not the replica identity: the tuner may propose DROP."""
        return droppable(self.index)


@dataclass(frozen=True, slots=True)
class TableFinding:
    """A table that needs ANALYZE (stale statistics) or VACUUM (dead rows)."""

    table: TableLike
    action: ActionKind  # ANALYZE or VACUUM
    ratio: float  # rows changed since the last ANALYZE per live row, or dead per all rows
    never_analyzed: bool = False


def droppable(index: IndexLike) -> bool:
    return not (index.backs_constraint or index.is_replica_identity or index.is_primary)


def index_findings(
    indexes: Sequence[IndexLike], building: Collection[str] = ()
) -> tuple[IndexFinding, ...]:
    """Invalid indexes (not in `building`, the schema.name of builds running now), then
    duplicates, then unused indexes, each index at most once."""
    found = [
        IndexFinding(i, IndexProblem.INVALID)
        for i in indexes
        if not i.is_valid and f"{i.schema}.{i.name}" not in building
        and quote_ref(i.schema, i.name, only_if_needed=True) not in building
    ]  # fmt: skip
    found += duplicates(indexes)
    redundant = {(f.index.schema, f.index.name) for f in found}
    found += [
        IndexFinding(i, IndexProblem.UNUSED)
        for i in indexes
        if i.idx_scan == 0 and i.is_valid and droppable(i) and not i.is_unique
        and (i.schema, i.name) not in redundant
    ]  # fmt: skip
    return tuple(found)


def duplicates(indexes: Iterable[IndexLike]) -> tuple[IndexFinding, ...]:
    """Indexes made redundant by another on the same table: identical, or a btree prefix."""
    by_table: dict[TableRef, list[IndexLike]] = defaultdict(list)
    for index in indexes:
        if index.is_valid:
            by_table[index.table].append(index)
    found: list[IndexFinding] = []
    for group in by_table.values():
        # Keepers first: those backing constraints, unique ones, then the one the planner
        # reads (dropping the other changes no plan, and its pages are the cached ones),
        # then the oldest.
        group.sort(key=lambda i: (not i.backs_constraint, not i.is_unique, -i.idx_scan, _age(i)))
        reported: set[int] = set()
        for pos, index in enumerate(group):
            shape = _shape(index)
            for at, keeper in enumerate(group):
                if at == pos or at in reported:
                    continue
                other = _shape(keeper)
                if shape == other and at < pos:
                    found.append(IndexFinding(index, IndexProblem.DUPLICATE, keeper, Overlap.SAME))
                    reported.add(pos)
                    break
                if _is_prefix(index, keeper):
                    how = Overlap.MORE_INCLUDE if len(shape[1]) == len(other[1]) else Overlap.PREFIX
                    found.append(IndexFinding(index, IndexProblem.DUPLICATE, keeper, how))
                    reported.add(pos)
                    break
    return tuple(found)


def table_findings(
    tables: Iterable[TableLike], stale_ratio: float, dead_ratio: float
) -> tuple[TableFinding, ...]:
    """Tables that need ANALYZE or VACUUM, in the order given (ANALYZE first for a table)."""
    found: list[TableFinding] = []
    for t in tables:
        rows = t.n_live_tup + t.n_dead_tup
        if rows < MIN_ROWS:
            continue
        changed = t.n_mod_since_analyze / max(t.n_live_tup, 1)
        never = t.last_analyzed is None
        if (never and t.n_live_tup > 0) or changed > stale_ratio:
            found.append(TableFinding(t, ActionKind.ANALYZE, changed, never and t.n_live_tup > 0))
        dead = t.n_dead_tup / rows
        if t.n_dead_tup >= MIN_DEAD and dead > dead_ratio:
            found.append(TableFinding(t, ActionKind.VACUUM, dead))
    return tuple(found)


def _age(index: IndexLike) -> int:
    """The index's oid where the caller knows it (older first); else the order given."""
    oid = getattr(index, "indexrelid", 0)
    return oid if isinstance(oid, int) else 0


def _is_prefix(index: IndexLike, keeper: IndexLike) -> bool:
    """`keeper` answers every lookup `index` does: `index`'s key leads it, and `index`'s
    INCLUDE columns are among its columns; with the same key, it carries more INCLUDEs
    (a plain index beside the covering one that extends it, as a shield does). A hash is
    answered by a btree its column leads."""
    if keeper.method != "btree" or index.is_unique or index.method not in ("btree", "hash"):
        return False
    mine, theirs = _shape(index), _shape(keeper)
    if index.method == "hash":  # `=` on its one column: a btree that column leads answers it
        return index.predicate == keeper.predicate and theirs[1][:1] == mine[1]
    carried = set(index.include) <= {*keeper.columns, *keeper.include}
    wider = len(mine[1]) < len(theirs[1]) or (
        len(mine[1]) == len(theirs[1]) and set(index.include) < set(keeper.include)
    )
    return (
        carried and wider and index.predicate == keeper.predicate
        and theirs[1][: len(mine[1])] == mine[1]
    )  # fmt: skip


def _shape(index: IndexLike) -> tuple[str, tuple[str, ...], str]:
    """(method, key elements as written, the rest) from pg_get_indexdef, without the name;
    from the columns, INCLUDE and predicate where the definition is not known."""
    definition = index.definition
    marker = f" USING {index.method} ("
    start = definition.find(marker)
    if start < 0:
        keys = tuple(c or "(expression)" for c in index.columns)
        return (index.method, keys, f"INCLUDE {index.include} WHERE {index.predicate}")
    depth, pos = 0, start + len(marker)
    elements: list[str] = []
    current: list[str] = []
    quoted = False
    while pos < len(definition):
        char = definition[pos]
        pos += 1
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            if depth == 0:
                break
            depth -= 1
        elif not quoted and char == "," and depth == 0:
            elements.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    elements.append("".join(current).strip())
    return (index.method, tuple(elements), definition[pos:].strip())
