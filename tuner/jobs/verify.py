"""Verify: when the verification window has run, keep the action, roll it back (DROP or
re-create), or extend the window. Operator rollback requests (`pg-tuner rollback ID`) are
carried out here too, and a rollback that has to wait is tried again at each run."""

from __future__ import annotations

from typing import Any

from tuner import verify, workload
from tuner.flight import Flight, Measured, Phase, applied_result, entries
from tuner.jobs.act import verifying_text
from tuner.jobs.context import Context, change_of, name
from tuner.models import ActionKind, ActionState, Outcome
from tuner.windows import Calendar


def run(ctx: Context) -> str:
    if not ctx.leader:
        return "OBSERVE: not the leader; not verifying"
    requested = _rollback_requests(ctx)
    if requested:
        return requested
    with ctx.lock:
        flight = ctx.flight
    if flight is None or flight.phase is not Phase.VERIFY:
        return "IDLE: nothing to verify"
    if flight.undo_pending is not None:
        return roll_back(ctx, flight, *flight.undo_pending)
    window = ctx.policy.resolved.verification_window
    looks = ctx.policy.schedule.verification_looks
    look: int | None = None
    if ctx.now() < flight.due(window):
        # An interim look (the first window only): decided at once when the evidence is
        # overwhelming either way, else the window runs on (`verify.verify`, step 7).
        look = int((ctx.now() - flight.started) / (window / looks))
        if flight.extensions or not flight.looks < look < looks:
            return verifying_text(ctx, flight)
    snapshot = ctx.sample()
    assert flight.start is not None and flight.watch is not None
    after_window = workload.diff(flight.start, snapshot)
    bounds = {
        q.queryid: flight.captured[fp]
        for q in after_window.valid_queries
        if (fp := workload.fingerprint(q.query)) in flight.captured
    }
    ids = verify.watched_queries(flight.watch) | bounds.keys()
    after = Measured(entries(after_window.queries, ids), after_window.stats_reset,
                     after_window.seconds)  # fmt: skip
    baseline = flight.baseline or Measured(())
    # A drop has no gain to prove; nor has a shield, whose gain is the index it lets
    # back in (verified on its own when it is tried again): both only must not slow. A
    # change that adds no index adds no work: its queries are judged beyond the load.
    shield = (
        flight.action.kind is ActionKind.CREATE_INDEX
        and ctx.data_of(flight.action.id).shields is not None
    )
    verdict = verify.verify(
        baseline, after, flight.watch, ctx.policy, flight.extensions, bounds=bounds,
        gain_needed=flight.action.kind is ActionKind.CREATE_INDEX and not shield,
        samples=flight.samples, look=look, previous=flight.looks,
        by_load=flight.action.kind is not ActionKind.CREATE_INDEX,
    )  # fmt: skip
    if look is not None:
        flight.looks = look
        if verdict.outcome is Outcome.UNDECIDED:
            return f"{verifying_text(ctx, flight)}; {verdict.reason}"
    ctx.metrics.verifications.labels(verdict.outcome.value).inc()
    if verdict.outcome is not Outcome.UNDECIDED and flight.started is not None:
        taken = (ctx.now() - flight.started).total_seconds()
        ctx.metrics.verdict_seconds.labels(verdict.outcome.value).observe(taken)
    figures = verdict.figures()
    action = flight.action
    if verdict.outcome is Outcome.UNDECIDED:
        if verdict.discarded:
            flight.start, flight.started = snapshot, ctx.now()
        else:
            flight.extensions += 1
        ctx.emit("transition", verdict.reason, action_id=action.id, state="verifying",
                 figures=figures)  # fmt: skip
        return f"VERIFYING: {ctx.describe(action)}: {verdict.reason}"
    if verdict.outcome is Outcome.KEEP:
        ctx.transition(ActionState.KEPT, action, verdict.reason, figures=figures)
        with ctx.lock:
            ctx.flight = None
        ctx.refresh_action_metrics()
        return f"KEPT: {ctx.describe(action)}: {verdict.reason}"
    return roll_back(ctx, flight, verdict.reason, figures)


def roll_back(ctx: Context, flight: Flight, reason: str, figures: dict[str, Any]) -> str:
    """Undo the action in flight (or an operator's pick); a rollback that must wait stays
    in flight, decided, and is tried again at each run."""
    action = flight.action
    result = flight.result or applied_result(action)
    undone = ctx.executor.undo(action, result)
    watched = flight.watch.reads | flight.watch.writes if flight.watch is not None else None
    what = change_of(action, undone=True)
    ctx.changed(action.table, what, watched, flight.unmoved, name(action))
    waits = undone.state is ActionState.REJECTED or (
        undone.state is ActionState.FAILED and undone.transient
    )
    if waits and flight.undo_pending is None and "outcome" in figures:
        # A verdict decided: on record now (with how it was decided), not decided anew
        # at each retry — the undo may wait long (a twin that makes it refuse, a lock).
        ctx.transition(ActionState.VERIFYING, action,
                       f"rollback decided; it waits: {undone.reason}. {reason}",
                       figures=figures)  # fmt: skip
        flight.undo_pending = (reason, figures)
    if undone.state is ActionState.REJECTED:  # not the leader, or busy: try again later
        return f"VERIFYING: rollback of {ctx.describe(action)} waits: {undone.reason}"
    if undone.state is ActionState.FAILED and undone.transient:
        # DROP INDEX CONCURRENTLY waits for every transaction that may use the index;
        # behind long queries that can outlast concurrent_lock_timeout. The index must
        # still go: the action stays in flight and the rollback is tried at each verify.
        flight.phase, flight.undo_pending = Phase.VERIFY, (reason, figures)
        with ctx.lock:
            ctx.flight = flight
        ctx.emit("transition", f"rollback waits: {undone.reason}", action_id=action.id,
                 state="verifying", figures=figures)  # fmt: skip
        return f"VERIFYING: rollback of {ctx.describe(action)} waits: {undone.reason}"
    with ctx.lock:
        ctx.flight = None
    if undone.state is ActionState.ROLLED_BACK:
        ctx.metrics.rollbacks.inc()
        ctx.transition(ActionState.ROLLED_BACK, action, reason,
                       figures={**figures, "undo": undone.statement or undone.reason})  # fmt: skip
        ctx.refresh_action_metrics()
        return f"ROLLED BACK: {ctx.describe(action)}: {reason}"
    ctx.transition(ActionState.FAILED, action, f"rollback failed: {undone.reason}",
                   figures=figures)  # fmt: skip
    ctx.refresh_action_metrics()
    return f"FAILED: rollback of {ctx.describe(action)}: {undone.reason}"


def _rollback_requests(ctx: Context) -> str | None:
    """Carry out an operator's `pg-tuner rollback ID` on an applied or kept action."""
    undoable = (ActionState.APPLIED, ActionState.VERIFYING, ActionState.KEPT)
    for status in ctx.statuses().values():
        if status.rollback_requested is None or status.state not in undoable:
            continue
        action = status.to_action()
        if action is None:
            continue
        # The CLI tells the operator a frozen rollback waits for the window: so it does.
        calendar, now = Calendar.from_policy(ctx.policy), ctx.now()
        may, _ = calendar.allowed(now)
        if not may:
            ctx.metrics.frozen.set(1 if calendar.frozen_until(now) else 0)
            return f"{calendar.verdict(now)}; holding rollback of {ctx.describe(action)}"
        with ctx.lock:
            flight = ctx.flight
        if flight is None or flight.action.id != action.id:
            flight = Flight(action, Phase.VERIFY, None, ctx.now())
        who = status.rollback_requested.actor
        return roll_back(ctx, flight, f"rollback requested by {who}", {"requested_by": who})
    return None
