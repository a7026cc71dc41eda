"""What the advisor proposes, with the figures behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tuner.models.action import IndexSpec, TableRef

# --- advisor ---------------------------------------------------------------------------------
# What `Advisor.advise()` produces: proposals of every kind, each with the figures behind it.


class ProposalKind(StrEnum):
    CREATE_INDEX = "create_index"
    DROP_UNUSED_INDEX = "drop_unused_index"
    DROP_DUPLICATE_INDEX = "drop_duplicate_index"
    DROP_INVALID_INDEX = "drop_invalid_index"
    ANALYZE = "analyze"
    VACUUM = "vacuum"


class Confidence(StrEnum):
    HIGH = "high"  # costed by the planner with hypothetical indexes (HypoPG)
    LOW = "low"  # a heuristic: HypoPG missing, or a catalog rule of thumb
    # a kind HypoPG cannot simulate (gin): the gain estimated from the statements' measured
    # time and the planner's row estimates; applied alone only where the policy allows
    MEASURED_ONLY = "measured-only"


@dataclass(frozen=True, slots=True)
class ProposalQuery:
    """One query a proposal serves: planner cost per call before and after, calls, share.

    `cost_after` is None when it could not be costed (no HypoPG). `share` is the query's
    part of the workload's execution time in the window.
    """

    queryid: int
    cost_before: float
    cost_after: float | None
    calls: int
    share: float = 0.0
    text: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Proposal:
    """One thing the advisor recommends, with everything an operator needs to judge it.

    For create_index: `columns`/`include`/`descending` the new index, `ddl` the statement,
    sizes the corrected estimate and HypoPG's raw one. For drops: `index_name` the existing
    index and `ddl` the DROP. For analyze/vacuum: the table and its statement.
    `write_rate` is rows written per second to the table (what an index slows down).
    """

    kind: ProposalKind
    table: TableRef
    ddl: str
    reason: str
    columns: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    descending: tuple[bool, ...] = ()
    method: str = "btree"
    index_name: str | None = None
    estimated_size_bytes: int = 0
    hypopg_size_bytes: int | None = None
    queries: tuple[ProposalQuery, ...] = ()
    calls: int = 0
    workload_share: float = 0.0
    cost_reduction: float = 0.0  # 1 - Σ calls·after / Σ calls·before over `queries`
    write_rate: float = 0.0
    confidence: Confidence = Confidence.HIGH
    shields: str | None = None  # a shield (`Advisor.shields`): the index it lets back in
    duplicate_of: str | None = None  # drop_duplicate_index: the index that stays
    expressions: tuple[str, ...] = ()  # create_index: as IndexSpec.expressions
    predicate: tuple[tuple[str, str, str | None], ...] = ()  # create_index: a partial's WHERE
    why_kind: str = ""  # create_index other than a plain btree: why this kind ("partial: ...")

    @property
    def index(self) -> IndexSpec | None:
        """The index to create, for create_index proposals."""
        if self.kind is not ProposalKind.CREATE_INDEX or not self.columns:
            return None
        return IndexSpec(self.table, self.columns, self.include, self.descending, self.method,
                         self.expressions, self.predicate)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Trap:
    """A read that an index, rolled back since, slowed beyond the bound while it made other
    reads faster: the planner walked that index for it. `workload_share` and
    `cost_reduction` are the rolled-back index's own figures, what shielding the read is
    worth."""

    queryid: int
    table: TableRef
    index_name: str
    workload_share: float = 0.0
    cost_reduction: float = 0.0


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
