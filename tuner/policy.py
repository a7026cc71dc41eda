"""Proposals + level + limits + history → actions, or rejections with their reason (pure).

The recipe, for each proposal in the advisor's order (best first):
  1. `observe` mode decides nothing.
  2. Is the kind allowed at this level? (create_indexes; drops of own unused indexes after
     `drop_unused_after`, of own duplicates at once where the level drops its own indexes
     at all and the index that stays is valid, of foreign ones only with
     `allow_drop_foreign` at aggressive, never of one backing a constraint or the replica
     identity; analyze, vacuum, reindex flags.)
  3. Does it clear the bar? (estimated cost reduction, share of workload time.)
  4. Do the limits hold once it is added to what today's history and this batch already hold?
     (table size for an online build, tuner indexes on the table, storage budget, indexes a
     day, actions a day — the day in the policy's time zone.)
Accepted proposals become actions: `approved` in `apply` mode, `proposed` (awaiting
`pg-tuner approve`) in `recommend` mode or when the advisor's estimate is low confidence.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Protocol

from tuner.config import Level, Mode, Policy
from tuner.models import (
    Action,
    ActionData,
    ActionKind,
    ActionState,
    Decision,
    IndexSpec,
    IndexStat,
    Snapshot,
    TableRef,
)
from tuner.statements import is_tuner_index, recreate_problem
from tuner.units import format_duration, format_size

BUILDS = (ActionKind.CREATE_INDEX, ActionKind.REINDEX)  # kinds that build an index online


class ProposalLike(Protocol):
    """What the policy reads of an advisor proposal."""

    @property
    def kind(self) -> ActionKind: ...
    @property
    def table(self) -> TableRef: ...
    @property
    def index(self) -> IndexSpec | None: ...
    @property
    def index_name(self) -> str | None: ...
    @property
    def index_definition(self) -> str | None: ...
    @property
    def cost_reduction(self) -> float: ...  # estimated, 0..1, of the queries it serves
    @property
    def workload_share(self) -> float: ...  # share of workload time those queries take
    @property
    def size_bytes(self) -> int: ...  # estimated size of the index to build (0 otherwise)
    @property
    def low_confidence(self) -> bool: ...  # heuristic estimate (no HypoPG): only recommend
    @property
    def unused_for(self) -> timedelta | None: ...  # drops: how long the index went unscanned
    @property
    def duplicate_of(self) -> str | None: ...  # drops of duplicates: the index that stays
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PastAction:
    """An action from the journal that counts against the daily limits (approved or started)."""

    at: datetime  # aware
    kind: ActionKind


@dataclass(frozen=True, slots=True)
class History:
    """What the journal's replay tells the policy: recent actions and the live tuner indexes."""

    actions: tuple[PastAction, ...] = ()
    tuner_indexes: tuple[tuple[TableRef, str], ...] = ()  # (table, index name) made by us
    index_sizes: dict[str, int] = field(default_factory=dict, compare=False)  # name → bytes


_COUNTED = (ActionState.APPROVED, ActionState.APPLYING)  # the day an action counts on
_HOLDING = (  # a create_index in one of these states holds (or will hold) its index
    ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING, ActionState.APPLIED,
    ActionState.VERIFYING, ActionState.KEPT,
)  # fmt: skip
_DROPPED = (ActionState.APPLIED, ActionState.VERIFYING, ActionState.KEPT)


class JournalRecord(Protocol):
    """What the history reads of one journal record (`journal.Record`)."""

    @property
    def action_id(self) -> str | None: ...
    @property
    def action_state(self) -> ActionState | None: ...
    @property
    def typed_action(self) -> ActionData | None: ...
    @property
    def when(self) -> datetime: ...


class ReplayedAction(Protocol):
    """What the history reads of one action's replayed status (`recovery.ActionStatus`)."""

    @property
    def state(self) -> ActionState: ...
    @property
    def figures(self) -> dict[str, Any]: ...
    def to_action(self) -> Action | None: ...


def history_from(records: Sequence[JournalRecord], statuses: Iterable[ReplayedAction]) -> History:
    """The policy's view of the journal: actions by the day they were approved (or started),
    and the tuner's indexes that exist or are about to (approved, building, kept) and were
    not dropped since, with their estimated sizes as the fallback for the snapshot's.
    `statuses` is the caller's `recovery.replay(records)`: the policy reads no journal."""
    counted: dict[str, PastAction] = {}
    for record in records:
        state, typed = record.action_state, record.typed_action
        if record.action_id and state in _COUNTED and record.action_id not in counted:
            if typed is None:
                continue
            counted[record.action_id] = PastAction(record.when, typed.kind)
    holding: dict[str, tuple[TableRef, str]] = {}
    dropped: set[tuple[TableRef, str]] = set()
    sizes: dict[str, int] = {}
    for status in statuses:
        action = status.to_action()
        if action is None or action.index_name is None:
            continue
        key = (action.table, action.index_name)
        if action.kind is ActionKind.CREATE_INDEX and status.state in _HOLDING:
            holding[action.id] = key
            size = status.figures.get("size_bytes")
            if isinstance(size, int):
                sizes[action.index_name] = size
        elif action.kind is ActionKind.DROP_INDEX and status.state in _DROPPED:
            dropped.add(key)
    return History(
        actions=tuple(counted.values()),
        tuner_indexes=tuple(k for k in holding.values() if k not in dropped),
        index_sizes=sizes,
    )


@dataclass
class _Tally:
    """Today's counts, growing as this batch accepts proposals."""

    actions: int
    indexes: int
    per_table: Counter[TableRef]
    storage: int

    def add(self, proposal: ProposalLike) -> None:
        self.actions += 1
        if proposal.kind is ActionKind.CREATE_INDEX:
            self.indexes += 1
            self.per_table[proposal.table] += 1
            self.storage += proposal.size_bytes


def day_start(now: datetime, policy: Policy) -> datetime:
    """Midnight of `now`'s day in the policy's time zone (aware)."""
    local = now.astimezone(policy.tz)
    return datetime.combine(local.date(), time(), tzinfo=policy.tz)


def _tally(history: History, policy: Policy, now: datetime, snapshot: Snapshot) -> _Tally:
    start = day_start(now, policy)
    end = start + timedelta(days=1)
    today = [a for a in history.actions if start <= a.at.astimezone(policy.tz) < end]
    sizes = {i.name: i.size_bytes for i in snapshot.indexes}
    storage = sum(
        sizes.get(name, history.index_sizes.get(name, 0)) for _, name in history.tuner_indexes
    )
    return _Tally(
        actions=len(today),
        indexes=sum(1 for a in today if a.kind is ActionKind.CREATE_INDEX),
        per_table=Counter(table for table, _ in history.tuner_indexes),
        storage=storage,
    )


def _pct(value: float) -> str:
    return f"{value * 100:.3g}%"


def _kind_refusal(p: ProposalLike, policy: Policy, snapshot: Snapshot) -> tuple[str, str] | None:
    """(rule, reason) when the level does not allow this kind of action at all."""
    t = policy.resolved
    if p.kind is ActionKind.CREATE_INDEX and not t.create_indexes:
        return "create_disabled", "the policy does not create indexes (create_indexes: false)"
    if p.kind is ActionKind.ANALYZE and not t.analyze:
        return "kind_disabled", f"ANALYZE is not allowed at level {policy.level.value}"
    if p.kind is ActionKind.VACUUM and not t.vacuum:
        return "kind_disabled", f"VACUUM is not allowed at level {policy.level.value}"
    if p.kind is ActionKind.REINDEX and not t.reindex:
        return "kind_disabled", f"REINDEX is not allowed at level {policy.level.value}"
    if p.kind is ActionKind.DROP_INDEX:
        return _drop_refusal(p, policy, snapshot)
    return None


@dataclass(frozen=True, slots=True)
class DropTarget:
    """What the drop-safety rule reads of an index, from a snapshot or the live catalog."""

    ref: str  # schema.name
    table_name: str  # the table it is on
    own: bool  # carries the tuner's marker (`statements.is_tuner_index`)
    backs_constraint: bool
    replica_identity: bool
    unique: bool
    partitioned: bool = False
    recreate_problem: str | None = None  # why rollback could not recreate it, if it could not

    @classmethod
    def of(cls, index: IndexStat) -> DropTarget:
        return cls(
            ref=index.ref, table_name=index.table.name, own=is_tuner_index(index.comment),
            backs_constraint=index.backs_constraint, replica_identity=index.is_replica_identity,
            unique=index.is_unique,
            recreate_problem=recreate_problem(index.definition, index.schema),
        )  # fmt: skip


def drop_refusal(target: DropTarget, table: TableRef, policy: Policy) -> tuple[str, str] | None:
    """(rule, reason) when this index may never be dropped under this policy, else None.

    The one drop-safety rule: the policy applies it to the snapshot, and the executor again
    to the live catalog just before DROP INDEX."""
    t = policy.resolved
    if target.table_name != table.name:
        return (
            "index_missing",
            f"index {target.ref} belongs to table {target.table_name}, not {table.name}",
        )
    if target.backs_constraint:
        return "drop_constraint", f"index {target.ref} backs a constraint; it is never dropped"
    if target.replica_identity:
        return "drop_replica_identity", f"index {target.ref} is the table's replica identity"
    if target.unique:
        return "drop_unique", f"index {target.ref} is unique: dropping it would drop a guarantee"
    if target.partitioned:
        return "drop_partitioned", f"index {target.ref} belongs to a partitioned table"
    if not target.own and not (policy.level is Level.AGGRESSIVE and t.allow_drop_foreign):
        return (
            "drop_foreign",
            f"index {target.ref} was not made by pg-tuner; dropping it needs level aggressive "
            "and allow_drop_foreign: true",
        )
    if target.recreate_problem is not None:
        return (
            "drop_unrecreatable",
            f"index {target.ref} could not be recreated by rollback ({target.recreate_problem})",
        )
    return None


def _drop_refusal(p: ProposalLike, policy: Policy, snapshot: Snapshot) -> tuple[str, str] | None:
    """The drop-safety rule, then when the tuner's own indexes may go (disuse, duplicates)."""
    t = policy.resolved
    index = next((i for i in snapshot.indexes_of(p.table) if i.name == p.index_name), None)
    if index is None:
        return "index_missing", f"index {p.index_name} is not in the catalog of {p.table}"
    target = DropTarget.of(index)
    if refusal := drop_refusal(target, p.table, policy):
        return refusal
    if not target.own:
        return None  # a foreign index the policy allows to drop: no wait for disuse
    if t.drop_unused_after is None:
        return "drop_disabled", f"level {policy.level.value} never drops the tuner's indexes"
    twin = next((i for i in snapshot.indexes_of(p.table) if i.name == p.duplicate_of), None)
    if twin is not None and twin.is_valid:
        return None  # the index that serves the same lookups stays: no wait for disuse
    unused = p.unused_for or timedelta(0)
    if unused < t.drop_unused_after:
        return (
            "drop_too_soon",
            f"index {index.ref} has been unused for {format_duration(unused)}; level "
            f"{policy.level.value} drops after {format_duration(t.drop_unused_after)}",
        )
    return None


def _bar_refusal(p: ProposalLike, policy: Policy) -> tuple[str, str] | None:
    if p.kind is not ActionKind.CREATE_INDEX:
        return None
    t = policy.resolved
    if p.cost_reduction < t.min_cost_reduction:
        return (
            "below_bar",
            f"estimated cost reduction {_pct(p.cost_reduction)} is below the "
            f"{_pct(t.min_cost_reduction)} bar",
        )
    if p.workload_share < t.min_workload_share:
        return (
            "below_bar",
            f"the queries it serves take {_pct(p.workload_share)} of workload time, below the "
            f"{_pct(t.min_workload_share)} bar",
        )
    return None


def _limit_refusal(
    p: ProposalLike, policy: Policy, tally: _Tally, snapshot: Snapshot
) -> tuple[str, str] | None:
    t, limits = policy.resolved, policy.limits
    if p.kind in BUILDS:
        table = snapshot.table_map().get(p.table)
        if table is not None and table.size_bytes > limits.max_table_size:
            return (
                "table_too_large",
                f"table {p.table} is {format_size(table.size_bytes)}, larger than the "
                f"{format_size(limits.max_table_size)} allowed for an online build",
            )
    if p.kind is ActionKind.CREATE_INDEX:
        if tally.per_table[p.table] >= t.max_tuner_indexes_per_table:
            return (
                "table_index_limit",
                f"table {p.table} already has {tally.per_table[p.table]} tuner indexes "
                f"(limit {t.max_tuner_indexes_per_table})",
            )
        if tally.storage + p.size_bytes > limits.index_storage_budget:
            return (
                "budget_spent",
                f"tuner indexes use {format_size(tally.storage)}; this one "
                f"({format_size(p.size_bytes)}) would pass the "
                f"{format_size(limits.index_storage_budget)} budget",
            )
        if tally.indexes >= t.max_indexes_per_day:
            return (
                "daily_limit",
                f"{tally.indexes} indexes already today (limit {t.max_indexes_per_day} a day)",
            )
    if tally.actions >= limits.max_actions_per_day:
        return (
            "daily_limit",
            f"{tally.actions} actions already today (limit {limits.max_actions_per_day} a day)",
        )
    return None


def _action(p: ProposalLike, new_id: Callable[[], str]) -> Action:
    figures: dict[str, float | int | str] = {}
    if p.kind is ActionKind.CREATE_INDEX:
        figures = {
            "cost_reduction": round(p.cost_reduction, 6),
            "workload_share": round(p.workload_share, 6),
            "size_bytes": p.size_bytes,
        }
    return Action(
        id=new_id(),
        kind=p.kind,
        table=p.table,
        index=p.index,
        index_name=p.index_name,
        index_definition=p.index_definition,
        reason=p.reason,
        figures=figures,
    )


def new_action_id() -> str:
    return uuid.uuid4().hex[:12]


def decide(
    proposals: Iterable[ProposalLike],
    policy: Policy,
    history: History,
    snapshot: Snapshot,
    *,
    new_id: Callable[[], str] = new_action_id,
) -> list[Decision]:
    """Each proposal as an action (proposed or approved) or a rejection with its reason.

    The day's limits count the history's actions of today (policy time zone, the snapshot's
    clock) and the proposals accepted earlier in this same batch.
    """
    if policy.mode is Mode.OBSERVE:
        return []
    tally = _tally(history, policy, snapshot.taken_at, snapshot)
    decisions: list[Decision] = []
    for p in proposals:
        refusal = (
            _kind_refusal(p, policy, snapshot)
            or _bar_refusal(p, policy)
            or _limit_refusal(p, policy, tally, snapshot)
        )
        action = _action(p, new_id)
        if refusal is not None:
            decisions.append(Decision(action, ActionState.REJECTED, *refusal))
            continue
        tally.add(p)
        measured = getattr(p, "measured_only", False) and not policy.resolved.apply_measured_only
        if policy.mode is Mode.APPLY and not p.low_confidence and not measured:
            decisions.append(Decision(action, ActionState.APPROVED, "accepted", "within policy"))
        else:
            why = "low-confidence estimate" if p.low_confidence else "recommend mode"
            if measured and not p.low_confidence and policy.mode is Mode.APPLY:
                why = "measured-only estimate (HypoPG cannot cost it; apply_measured_only off)"
            decisions.append(
                Decision(action, ActionState.PROPOSED, "awaiting_approval", f"{why}: approve it")
            )
    return decisions


def rules() -> Sequence[str]:
    """Every rejection rule `decide` can give, for metrics labels and documentation."""
    return (
        "create_disabled", "kind_disabled", "index_missing", "drop_constraint",
        "drop_replica_identity", "drop_unique", "drop_partitioned", "drop_foreign",
        "drop_unrecreatable", "drop_disabled", "drop_too_soon", "below_bar",
        "table_too_large", "table_index_limit", "budget_spent", "daily_limit",
    )  # fmt: skip
