"""The health verdict and the findings `pg-tuner status` prints."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tuner.models.action import ActionKind, TableRef

# --- health ----------------------------------------------------------------------------------
# `health.classify` and the findings `pg-tuner status` prints, from a Snapshot (and Workload).


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The verdict and every reason behind it, worst first."""

    status: HealthStatus
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TableFinding:
    """A table that needs ANALYZE (stale statistics) or VACUUM (dead tuples)."""

    table: TableRef
    action: ActionKind  # ANALYZE or VACUUM
    detail: str
    ratio: float  # modified (or dead) rows per live row


@dataclass(frozen=True, slots=True)
class IndexFinding:
    """An index worth a DBA's look: unused, duplicate (of `other`) or invalid."""

    table: TableRef
    index: str  # schema.name
    kind: str  # "unused" | "duplicate" | "invalid"
    detail: str
    size_bytes: int
    other: str | None = None  # for a duplicate: the index that makes it redundant
    droppable: bool = False  # backs no constraint and is not the replica identity
