"""Frozen models passed between layers. Each layer adds the models it produces here.

The action lifecycle (DESIGN.md): proposed → approved → baselined → applying → applied →
verifying → kept, with exits rejected, failed and rolled_back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ActionKind(StrEnum):
    """The closed set of things the executor may do; nothing else is ever rendered."""

    CREATE_INDEX = "create_index"
    DROP_INDEX = "drop_index"
    ANALYZE = "analyze"
    VACUUM = "vacuum"
    REINDEX = "reindex"


class ActionState(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    BASELINED = "baselined"
    APPLYING = "applying"
    APPLIED = "applied"
    VERIFYING = "verifying"
    KEPT = "kept"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (ActionState.REJECTED, ActionState.KEPT, ActionState.ROLLED_BACK,
                        ActionState.FAILED)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TableRef:
    """A table as (schema, name), both exactly as stored in the catalog (no quoting)."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """A btree index the tuner could build: key columns in order, optional INCLUDE columns."""

    table: TableRef
    columns: tuple[str, ...]
    include: tuple[str, ...] = ()
    descending: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("an index needs at least one column")
        if self.descending and len(self.descending) != len(self.columns):
            raise ValueError("descending flags must match the columns")

    @property
    def key(self) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        return (str(self.table), self.columns, self.include)


@dataclass(frozen=True, slots=True)
class Action:
    """One change the executor may make. `index_name` names the index created or affected."""

    id: str
    kind: ActionKind
    table: TableRef
    index: IndexSpec | None = None
    index_name: str | None = None
    index_definition: str | None = None  # pg_get_indexdef of an index to drop, for undo
    reason: str = ""
    figures: dict[str, float | int | str] = field(default_factory=dict, compare=False)
