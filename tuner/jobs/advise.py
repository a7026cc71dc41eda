"""Advise: the workload since the last advice → Advisor → policy.decide → the journal:
`proposed` (recommend mode, awaiting `pg-tuner approve`) or `approved` (queued to apply)."""

from __future__ import annotations

from datetime import timedelta

from tuner import db, queue, whatif, workload
from tuner.advisor import Advisor, captured_queries
from tuner.config import Mode
from tuner.flight import shield_history
from tuner.jobs.context import Context
from tuner.models import ActionState
from tuner.policy import decide, history_from


def run(ctx: Context) -> str:
    policy = ctx.policy
    if policy.mode is Mode.OBSERVE or not ctx.leader:
        why = "observe mode" if policy.mode is Mode.OBSERVE else "not the leader"
        return f"OBSERVE: no advice ({why})"
    base, latest = ctx.advise_base, ctx.latest
    if base is None or latest is None or latest is base:
        return "OBSERVE: no workload window yet"
    records, statuses = ctx.records(), ctx.statuses()
    queued = queue.queued(statuses)
    if queued:
        # Advice does not know what the queue will build; it waits for it (and its
        # window grows), or it proposes what the queued indexes will already do.
        return f"OBSERVE: advice waits for {queued} queued action(s)"
    window = workload.diff(base, latest)
    since = ctx.now() - timedelta(seconds=window.seconds)
    captured = captured_queries(ctx.captured(since, (q.query for q in window.valid_queries)))
    if not window.valid_queries and not captured:  # a statement that never finishes
        return f"OBSERVE: no queries ran in the last {window.seconds:.0f}s"  # is one
    with ctx.lock:
        ctx.advise_base = latest
    traps, shielded = shield_history(records, statuses)
    activity = workload.table_activity(latest, window)
    with ctx.whatif_session() as conn:
        advisor = _advisor(ctx, conn)
        advice = advisor.advise(
            [*workload.merged(window.valid_queries), *captured],
            activity,
            latest.indexes,
            stats_age=0.0,
            window=window.seconds,
            excluded=queue.rolled_back(statuses, shielded),
        )
        shields = advisor.shields(window.valid_queries, traps, activity, latest.indexes)
    named = {p.index_name for p in shields}
    proposals = [*shields, *(p for p in advice.proposals if p.index_name not in named)]
    # An index that trapped a read is not tried again while the shield that lets it
    # back in is only proposed: the retry would trap the read once more.
    awaiting = {p.shields for p in shields}
    for proposal in proposals:
        ctx.metrics.proposals.labels(proposal.kind.value).inc()
    in_flight = ctx.flight.action.index_name if ctx.flight is not None else None
    candidates = queue.by_benefit(
        c
        for c in queue.candidates(proposals, latest)
        if not queue.known(c, statuses, shielded) and not queue.being_built(c, latest, in_flight)
        and c.index_name not in awaiting
    )  # fmt: skip
    decisions = decide(candidates, policy, history_from(records, statuses.values()), latest)
    proposed: list[str] = []
    approved: list[str] = []
    for decision, candidate in zip(decisions, candidates, strict=True):
        action = decision.action
        if decision.rejected:
            if ctx.rejections.first(candidate, action, decision.rule):
                ctx.transition(ActionState.REJECTED, action, decision.reason,
                               figures={"rule": decision.rule})  # fmt: skip
            continue
        expected = [q.queryid for q in candidate.proposal.queries]
        shielding = candidate.proposal.shields
        ctx.transition(
            decision.state,
            action,
            action.reason,
            figures=dict(action.figures),
            data={"ddl": candidate.proposal.ddl, "expected": expected}
            | ({"shields": shielding} if shielding else {}),
        )
        (approved if decision.state is ActionState.APPROVED else proposed).append(
            ctx.describe(action)
        )
    ctx.refresh_action_metrics()
    if approved:
        return f"QUEUED: {len(approved)} ({'; '.join(approved)})"
    if proposed:
        return f"PROPOSED: {len(proposed)} (awaiting approval): {'; '.join(proposed)}"
    return f"OBSERVE: {len(window.valid_queries)} queries advised on, nothing new to propose"


def _advisor(ctx: Context, conn: db.Connection) -> Advisor:
    policy = ctx.policy
    t, limits = policy.resolved, policy.limits
    return Advisor(
        conn,
        whatif.read_schema(conn),
        budget=limits.index_storage_budget,
        max_width=limits.max_index_width,
        per_table=t.max_tuner_indexes_per_table,
        include_columns=limits.include_columns,
        hash_indexes=limits.hash_indexes,
        trusted_roles=policy.target.trusted_roles,
        stale_ratio=policy.health.stale_statistics_ratio,
        dead_ratio=policy.health.dead_tuple_ratio,
    )
