"""What the tuner does next (pure: takes the journal's replayed statuses and models, no I/O).

Advice turns proposals into `Candidate`s, drops those the journal already knows (`known`)
or that would drop an index still being built (`being_built`), and orders the rest by
expected benefit (`by_benefit`); `policy.decide` then approves or rejects each, and a
rejection is journaled once per index and rule (`Rejections`). The queue runs the oldest
approved action (`next_action`), one at a time, unless an index built since it was queued
already covers it (`covering_twin`). `history` is the policy's view of past actions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tuner.candidates import covered_by
from tuner.flight import may_retry
from tuner.models import (
    Action,
    ActionKind,
    ActionState,
    Confidence,
    IndexSpec,
    IndexStat,
    Proposal,
    ProposalKind,
    Snapshot,
    TableRef,
)
from tuner.statements import index_name

if TYPE_CHECKING:
    from tuner.ledger import ActionStatus

Statuses = dict[str, "ActionStatus"]

VERIFIED_KINDS = (ActionKind.CREATE_INDEX, ActionKind.DROP_INDEX)
KINDS = {
    ProposalKind.CREATE_INDEX: ActionKind.CREATE_INDEX,
    ProposalKind.DROP_UNUSED_INDEX: ActionKind.DROP_INDEX,
    ProposalKind.DROP_DUPLICATE_INDEX: ActionKind.DROP_INDEX,
    ProposalKind.DROP_INVALID_INDEX: ActionKind.DROP_INDEX,
    ProposalKind.ANALYZE: ActionKind.ANALYZE,
    ProposalKind.VACUUM: ActionKind.VACUUM,
}
# the states of an action that has started (or is about to): policy.decide counts them
_STARTED = (ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING,
            ActionState.APPLIED, ActionState.VERIFYING, ActionState.KEPT,
            ActionState.ROLLED_BACK)  # fmt: skip
_LIVE = (ActionState.APPLYING, ActionState.APPLIED, ActionState.VERIFYING, ActionState.KEPT)
# the states that keep the journal in its file (a reloaded path waits for them to settle)
_UNSETTLED = (ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING,
              ActionState.APPLIED, ActionState.VERIFYING)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Candidate:
    """An advisor Proposal as policy.decide reads it (its ProposalLike)."""

    proposal: Proposal
    kind: ActionKind
    index_name: str | None
    index_definition: str | None
    unused_for: timedelta | None = None

    @property
    def duplicate_of(self) -> str | None:
        return self.proposal.duplicate_of

    @property
    def table(self) -> TableRef:
        return self.proposal.table

    @property
    def index(self) -> IndexSpec | None:
        return self.proposal.index

    @property
    def cost_reduction(self) -> float:
        return self.proposal.cost_reduction

    @property
    def workload_share(self) -> float:
        return self.proposal.workload_share

    @property
    def size_bytes(self) -> int:
        return self.proposal.estimated_size_bytes

    @property
    def low_confidence(self) -> bool:
        return self.proposal.confidence is Confidence.LOW

    @property
    def measured_only(self) -> bool:
        return self.proposal.confidence is Confidence.MEASURED_ONLY

    @property
    def reason(self) -> str:
        return self.proposal.reason


def candidates(proposals: Iterable[Proposal], snapshot: Snapshot) -> list[Candidate]:
    """The proposals as candidates: an index named as the executor will build it, a drop
    with the definition the catalog shows (what a rollback re-creates)."""
    found = []
    for p in proposals:
        kind = KINDS[p.kind]
        name = index_name(p.index) if p.index is not None else p.index_name
        definition = None
        if kind is ActionKind.DROP_INDEX:
            stat = next((i for i in snapshot.indexes_of(p.table) if i.name == p.index_name), None)
            definition = stat.definition if stat else None
        found.append(Candidate(p, kind, name, definition))
    return found


def by_benefit(found: Iterable[Candidate]) -> list[Candidate]:
    """The queue runs one action at a time in journal order: most expected benefit first."""
    return sorted(found, key=lambda c: c.workload_share * c.cost_reduction, reverse=True)


def known(c: Candidate, statuses: Statuses, shielded: Counter[str] | None = None) -> bool:
    """Already journaled: pending, in flight, kept, or rolled back (see `flight.may_retry`;
    `shielded`: the shields kept for each index). Failed and rejected ones may come again,
    and so may maintenance (ANALYZE, VACUUM) once done."""
    for status in statuses.values():
        typed = status.typed_action
        if typed is None or typed.kind is not c.kind:
            continue
        if typed.table != c.table or typed.index_name != c.index_name:
            continue
        if status.state in (ActionState.FAILED, ActionState.REJECTED):
            continue
        if c.kind in (ActionKind.ANALYZE, ActionKind.VACUUM) and status.state.final:
            continue
        shields = shielded[c.index_name] if shielded and c.index_name else 0
        if status.state is ActionState.ROLLED_BACK and may_retry(status, statuses, shields):
            continue
        return True
    return False


def being_built(c: Candidate, snapshot: Snapshot, in_flight: str | None) -> bool:
    """A drop proposed for an index that a build is still making (it looks INVALID), or as
    a duplicate of one still being built or verified (`in_flight`: the index of the action
    in flight; it may yet be rolled back)."""
    if c.kind is not ActionKind.DROP_INDEX or c.index_name is None:
        return False
    names = {c.index_name, c.duplicate_of} - {None}
    if in_flight is not None and in_flight in names:
        return True
    building = {b.index for b in snapshot.server.index_builds}
    return any(f"{c.table.schema}.{name}" in building for name in names)


def covering_twin(action: Action, snapshot: Snapshot) -> IndexStat | None:
    """An index built since `action` was queued that leads with its columns and carries its
    INCLUDEs (advice ran while an earlier, wider one was still queued): building `action`
    would only cost writes. None when there is none."""
    spec = action.index
    if action.kind is not ActionKind.CREATE_INDEX or spec is None:
        return None
    same = [i for i in snapshot.indexes_of(action.table) if i.name != action.index_name]
    return next((i for i in same if covered_by(spec, [i], include=True)), None)


def next_action(statuses: Statuses) -> ActionStatus | None:
    """The oldest action approved (or baselined before a restart): the queue's head."""
    ready = (ActionState.APPROVED, ActionState.BASELINED)
    return next((s for s in statuses.values() if s.state in ready), None)


def queued(statuses: Statuses) -> int:
    """Approved actions not started yet, and the one in flight."""
    return sum(1 for s in statuses.values() if s.state is ActionState.APPROVED or s.in_flight)


def unsettled(statuses: Statuses) -> bool:
    """Any action approved or in flight: its records stay in the journal that holds them."""
    return any(s.state in _UNSETTLED for s in statuses.values())


def applying(statuses: Statuses) -> list[str]:
    """The actions the journal shows `applying`: stuck, when nothing runs them."""
    return [s.action_id for s in statuses.values() if s.state is ActionState.APPLYING]


def kept_since(statuses: Statuses) -> dict[str, datetime]:
    """The kept indexes, by name: since when (housekeeping's measure of unused)."""
    return {
        s.index_name: datetime.fromisoformat(s.since)
        for s in statuses.values()
        if s.state is ActionState.KEPT and s.index_name
    }


def rolled_back(statuses: Statuses, shielded: Counter[str]) -> list[IndexSpec]:
    """The indexes verification rolled back that may not be tried again (`may_retry`): the
    advisor proposes the next-best index for their queries instead. Not one that trapped a
    read: its shield lets it back in (`Advisor.shields`), and an index like it would trap
    the read again."""
    found = []
    for status in statuses.values():
        typed, name = status.typed_action, status.index_name
        if (status.state is not ActionState.ROLLED_BACK or typed is None or typed.index is None
                or str(status.figures.get("trapped", "")).strip()
                or typed.kind is not ActionKind.CREATE_INDEX
                or may_retry(status, statuses, shielded[name] if name else 0)):  # fmt: skip
            continue
        found.append(typed.index)
    return found


class Rejections:
    """The rejections journaled since the start: one record per index (or action) and rule,
    not one at each advice that proposes it again. Not thread-safe: advice runs alone."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def first(self, c: Candidate, action: Action, rule: str) -> bool:
        """True the first time this candidate is rejected by `rule` (then journal it)."""
        key = (c.index_name or f"{action.kind}:{action.table}", rule)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True
