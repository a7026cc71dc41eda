"""Settling after a restart what the journal shows in flight.

`recover` runs once after a restart (replaying the journal with `ledger.replay`): every
action the journal shows in flight is settled from the catalog's view of its index, and the
outcome is journaled. It never touches the database: `recover` is handed a catalog lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

# replay and ActionStatus moved to tuner.ledger; importable from here as before
from tuner.ledger import IN_FLIGHT as IN_FLIGHT
from tuner.ledger import ActionStatus as ActionStatus
from tuner.ledger import Record
from tuner.ledger import replay as replay
from tuner.models import ActionState
from tuner.models.records import spec_of as spec_of

if TYPE_CHECKING:  # the journal imports this module for `recover`
    from tuner.journal import Journal

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
    typed = status.typed_action
    kind = typed.kind.value if typed else "None"
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
