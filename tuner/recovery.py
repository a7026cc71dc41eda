"""Reading the journal back: each action's latest state, and settling after a restart.

`replay` folds the records into one ActionStatus per action (the journal checks `expect`
with it, the commands and the daemon read it). `recover` runs once after a restart: every
action the journal shows in flight is settled from the catalog's view of its index, and the
outcome is journaled. Neither touches the database; `recover` is handed a catalog lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from tuner.models import Action, ActionKind, ActionState, IndexSpec, TableRef

if TYPE_CHECKING:  # the journal imports this module: it replays under its write lock
    from tuner.journal import Journal, Record

IN_FLIGHT = (ActionState.BASELINED, ActionState.APPLYING, ActionState.APPLIED,
             ActionState.VERIFYING)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ActionStatus:
    """An action as the journal last left it."""

    action_id: str
    state: ActionState
    action: dict[str, Any] | None
    reason: str
    figures: dict[str, Any]
    undo: str | None
    since: str
    seq: int
    history: tuple[ActionState, ...]
    rollback_requested: Record | None = None  # an operator's request not yet carried out

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT

    @property
    def index_name(self) -> str | None:
        name = (self.action or {}).get("index_name")
        return name if isinstance(name, str) else None

    def to_action(self) -> Action | None:
        """The typed Action back from its journaled data; None if the record had none."""
        data = self.action
        if not data:
            return None
        table = TableRef(data["table"]["schema"], data["table"]["name"])
        index = None
        if data.get("columns"):
            index = spec_of(table, data)
        figures = {k: v for k, v in self.figures.items() if isinstance(v, int | float | str)}
        return Action(
            id=self.action_id, kind=ActionKind(data["kind"]), table=table, index=index,
            index_name=data.get("index_name"), index_definition=data.get("index_definition"),
            reason=self.reason, figures=figures,
        )  # fmt: skip


def spec_of(table: TableRef, data: dict[str, Any]) -> IndexSpec:
    """The IndexSpec of a journaled action's data (`journal.action_data`); records written
    before hash indexes existed have no method and were btree, before expression and
    partial indexes no expressions and no predicate."""
    predicate = tuple((c, op, v) for c, op, v in data.get("predicate", ()))
    return IndexSpec(table, tuple(data["columns"]), tuple(data.get("include", ())),
                     tuple(data.get("descending", ())), data.get("method", "btree"),
                     tuple(data.get("expressions", ())), predicate)  # fmt: skip


def replay(records: list[Record]) -> dict[str, ActionStatus]:
    """Each action's latest state and data, in the order actions first appeared."""
    statuses: dict[str, ActionStatus] = {}
    for record in records:
        if record.action_id is None:
            continue
        current = statuses.get(record.action_id)
        state = record.action_state
        if state is None:
            if record.is_rollback_request and current is not None:
                statuses[record.action_id] = replace(current, rollback_requested=record)
            continue
        if current is None:
            statuses[record.action_id] = ActionStatus(
                record.action_id, state, record.action, record.reason, record.figures,
                record.undo, record.time, record.seq, (state,),
            )  # fmt: skip
            continue
        pending = None if state in (ActionState.ROLLED_BACK, ActionState.FAILED) else (
            current.rollback_requested
        )  # fmt: skip
        statuses[record.action_id] = ActionStatus(
            record.action_id, state, record.action or current.action,
            record.reason or current.reason, record.figures or current.figures,
            record.undo or current.undo, record.time, record.seq, (*current.history, state),
            pending,
        )  # fmt: skip
    return statuses


IndexHealth = Literal["valid", "invalid", "missing"]


@dataclass(frozen=True, slots=True)
class Recovery:
    """What `recover` found for one in-flight action and what it journaled (if anything)."""

    action_id: str
    was: ActionState
    outcome: Literal["applied", "failed", "resume_verification", "rebaseline", "needs_cleanup"]
    detail: str
    record: Record | None = None


def recover(
    journal: Journal,
    catalog_lookup: Callable[[str], IndexHealth],
    drop_invalid: Callable[[ActionStatus], None] | None = None,
) -> list[Recovery]:
    """After a restart: settle every action the journal shows in flight.

    `applying` + create_index: valid index → `applied` (then verify); INVALID → dropped with
    `drop_invalid` → `failed` (without `drop_invalid`: `needs_cleanup`, nothing journaled);
    missing → `failed`. `applying` + drop_index: missing → `applied`; valid → `failed` (the
    index is intact); INVALID (an interrupted DROP CONCURRENTLY) → dropped → `applied`. Other
    kinds in `applying` → `failed` (not retried on their own). `applied`/`verifying` →
    `resume_verification`; `baselined` (nothing ran yet) → `rebaseline`.
    """
    results: list[Recovery] = []
    for status in replay(journal.read()).values():
        if status.state in (ActionState.APPLIED, ActionState.VERIFYING):
            results.append(Recovery(status.action_id, status.state, "resume_verification",
                                    "verification resumes its window"))  # fmt: skip
        elif status.state is ActionState.BASELINED:
            detail = "the build never started; the baseline is taken again"
            results.append(Recovery(status.action_id, status.state, "rebaseline", detail))
        elif status.state is ActionState.APPLYING:
            results.append(_recover_applying(journal, status, catalog_lookup, drop_invalid))
    return results


# (kind, catalog) → (state to journal, drop the INVALID index first?, why)
_SETTLE: dict[tuple[str, IndexHealth], tuple[ActionState, bool, str]] = {
    ("create_index", "valid"): (
        ActionState.APPLIED, False, "after a restart the index {name} was found valid"),
    ("create_index", "invalid"): (
        ActionState.FAILED, True, "the build was interrupted and left {name} INVALID; dropped"),
    ("create_index", "missing"): (
        ActionState.FAILED, False, "the build was interrupted before {name} existed"),
    ("drop_index", "missing"): (
        ActionState.APPLIED, False, "after a restart the index {name} was found dropped"),
    ("drop_index", "invalid"): (
        ActionState.APPLIED, True, "the drop of {name} was interrupted, left INVALID; finished"),
    ("drop_index", "valid"): (
        ActionState.FAILED, False, "the drop was interrupted; the index {name} is intact"),
}  # fmt: skip


def _recover_applying(
    journal: Journal,
    status: ActionStatus,
    lookup: Callable[[str], IndexHealth],
    drop_invalid: Callable[[ActionStatus], None] | None,
) -> Recovery:
    kind = str((status.action or {}).get("kind"))
    name = status.index_name
    if name and kind in ("create_index", "drop_index"):
        health = lookup(name)
        state, drop, why = _SETTLE[(kind, health)]
        detail = why.format(name=name)
        if drop:
            if drop_invalid is None:
                return Recovery(status.action_id, status.state, "needs_cleanup", detail)
            drop_invalid(status)
    else:
        health, state = "missing", ActionState.FAILED
        detail = f"the {kind} was interrupted by a restart; not retried on its own"
    record = journal.append(state, action_id=status.action_id, reason=detail,
                            figures={"catalog": health})  # fmt: skip
    outcome: Any = "applied" if state is ActionState.APPLIED else "failed"
    return Recovery(status.action_id, status.state, outcome, detail, record)
