"""Housekeeping: propose dropping the tuner's own indexes unused for the level's
`drop_unused_after`, and journal the kept ones someone dropped outside the tuner."""

from __future__ import annotations

from tuner import queue
from tuner.config import Mode
from tuner.jobs.context import Context, name
from tuner.models import ActionKind, ActionState, Proposal, ProposalKind, Snapshot
from tuner.policy import decide, history_from
from tuner.statements import is_tuner_index
from tuner.units import format_duration


def run(ctx: Context) -> str:
    """Propose dropping the tuner's own indexes unused for the level's drop_unused_after."""
    policy, snapshot = ctx.policy, ctx.latest
    after = policy.resolved.drop_unused_after
    if not ctx.leader or policy.mode is Mode.OBSERVE or snapshot is None:
        return "OBSERVE: no housekeeping"
    gone = _kept_but_gone(ctx, snapshot)
    if after is None:
        return gone or f"IDLE: level {policy.level.value} keeps its indexes"
    statuses = ctx.statuses()
    kept = queue.kept_since(statuses)
    candidates = []
    for index in snapshot.indexes:
        if not is_tuner_index(index.comment) or index.idx_scan > 0 or index.name not in kept:
            continue
        unused = ctx.now() - kept[index.name]
        proposal = Proposal(
            ProposalKind.DROP_UNUSED_INDEX,
            index.table,
            f"DROP INDEX CONCURRENTLY {index.ref}",
            f"Index {index.ref} made by pg-tuner has not been scanned in "
            f"{format_duration(unused)} since it was kept.",
            index_name=index.name,
            estimated_size_bytes=index.size_bytes,
        )
        candidate = queue.Candidate(
            proposal, ActionKind.DROP_INDEX, index.name, index.definition, unused_for=unused
        )
        if not queue.known(candidate, statuses):
            candidates.append(candidate)
    history = history_from(ctx.records(), statuses.values())
    decisions = decide(candidates, policy, history, snapshot)
    queued = 0
    for decision in decisions:
        if not decision.rejected:
            ctx.transition(decision.state, decision.action, decision.action.reason)
            queued += 1
    if gone:
        return gone
    if queued:
        return f"HOUSEKEEPING: {queued} unused tuner index(es) to drop"
    return "IDLE: no unused tuner indexes"


def _kept_but_gone(ctx: Context, snapshot: Snapshot) -> str | None:
    """Journal the kept indexes someone dropped (or replaced) outside the tuner: `failed`,
    so that advice may propose them again; the verdict, or None when all are there."""
    gone: list[str] = []
    for status in list(ctx.statuses().values()):
        action = status.to_action()
        if status.state is not ActionState.KEPT or action is None or not action.index_name:
            continue
        if action.kind is not ActionKind.CREATE_INDEX or action.index is None:
            continue
        if any(i.name == action.index_name for i in snapshot.indexes_of(action.table)):
            continue
        if ctx.executor.own_index(action) is not None:  # the snapshot may lag the catalog
            continue
        reason = (
            f"index {name(action)}, kept since {status.since}, is no longer in "
            "the catalog as pg-tuner made it: dropped or replaced outside pg-tuner"
        )
        ctx.transition(ActionState.FAILED, action, reason, figures={"catalog": "missing"})
        gone.append(ctx.describe(action))
    if not gone:
        return None
    ctx.refresh_action_metrics()
    return f"FAILED: dropped outside pg-tuner: {'; '.join(gone)}"
