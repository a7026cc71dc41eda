"""Act: the oldest approved action, if the guards allow it now. Samples over
`baseline_window` (journal `baselined`, with the figures), EXPLAIN the table's queries, run
it (`applying` → `applied`/`failed`), EXPLAIN again, and open the verification window
(`verifying`, with the watched queries). One action is in flight at a time."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tuner import log, queue, verify
from tuner.config import Mode
from tuner.errors import QueryFailed
from tuner.flight import Flight, Phase
from tuner.guards import may_start
from tuner.jobs import baseline
from tuner.jobs.context import Context, change_of
from tuner.jobs.context import name as qualified
from tuner.jobs.resume import recover
from tuner.models import Action, ActionKind, ActionState, GuardReason
from tuner.units import format_size
from tuner.watch import unmoved, watch_data
from tuner.windows import Calendar

_log = log.get("jobs.act")


def run(ctx: Context) -> str:
    if not ctx.leader:
        return "OBSERVE: another pg-tuner leads this database; not acting"
    if ctx.policy.mode is Mode.OBSERVE:
        return "OBSERVE: observe mode, not acting"
    with ctx.lock:
        flight = ctx.flight
    if flight is not None and flight.phase is Phase.VERIFY:
        return verifying_text(ctx, flight)
    if flight is not None and flight.phase is Phase.APPLYING:
        return f"APPLYING: {ctx.describe(flight.action)}"
    if flight is None and (stuck := _stuck(ctx)):
        return stuck
    if flight is None:
        status = queue.next_action(ctx.statuses())
        action = status.to_action() if status is not None else None
        if action is None:
            return "IDLE: no approved action"
        action = replace(action, figures={**action.figures})
        covered = _covered(ctx, action)
        if covered is not None:
            return covered
        held = _held(ctx, action)
        if held is not None:
            return held
        if action.kind not in queue.VERIFIED_KINDS:
            return _apply(ctx, Flight(action, Phase.APPLYING, None, ctx.now()))
        flight = baseline.start(ctx, action)
    due = flight.due(ctx.policy.resolved.baseline_window)
    if ctx.now() < due:
        return f"BASELINE: {ctx.describe(flight.action)}; applying after {ctx.when(due)}"
    held = _held(ctx, flight.action)
    if held is not None:
        return held
    if not baseline.finish(ctx, flight):
        due = flight.due(ctx.policy.resolved.baseline_window)
        return (
            f"BASELINE: {ctx.describe(flight.action)}; queries the last change moved are "
            f"measured again, applying after {ctx.when(due)} at the latest"
        )
    return _apply(ctx, flight)


def verifying_text(ctx: Context, flight: Flight) -> str:
    due = flight.due(ctx.policy.resolved.verification_window)
    return f"VERIFYING: {ctx.describe(flight.action)} until {ctx.when(due)}"


def _stuck(ctx: Context) -> str | None:
    """An action the journal shows `applying` while nothing runs it (its apply ended in an
    error, or its record of the outcome could not be written): settle it from the catalog
    as a restart would, and say so; None when there is none."""
    stuck = queue.applying(ctx.statuses())
    if not stuck:
        return None
    settled = recover(ctx)
    ctx.refresh_action_metrics()
    left = queue.applying(ctx.statuses())
    if left:
        return f"STUCK: {', '.join(left)} still applying; recovery could not settle it"
    return "RECOVERED: " + "; ".join(settled or [f"{stuck[0]} settled"])


def _covered(ctx: Context, action: Action) -> str | None:
    """Reject a queued index that an index built since it was queued already covers."""
    snapshot = ctx.latest
    twin = queue.covering_twin(action, snapshot) if snapshot is not None else None
    if twin is None:
        return None
    reason = f"index {twin.schema}.{twin.name} built since leads with the same columns"
    ctx.transition(ActionState.REJECTED, action, reason, figures={"rule": "covered"})
    ctx.refresh_action_metrics()
    return f"SKIPPED: {ctx.describe(action)}: {reason}"


def _held(ctx: Context, action: Action) -> str | None:
    """The verdict when a guard holds `action` back now, else None."""
    snapshot = ctx.latest
    if snapshot is None:
        return "HELD: no snapshot yet"
    calendar = Calendar.from_policy(ctx.policy)
    now = ctx.now()
    verdict = may_start(action, snapshot, ctx.policy, calendar, now)
    ctx.metrics.frozen.set(1 if calendar.frozen_until(now) is not None else 0)
    if verdict.ok:
        return None
    assert verdict.reason is not None
    ctx.metrics.guard_rejections.labels(verdict.reason.value).inc()
    _log.info("action.held", action=action.id, reason=verdict.reason.value, detail=verdict.detail)
    if verdict.reason in (GuardReason.FROZEN, GuardReason.OUTSIDE_MAINTENANCE):
        return f"{calendar.verdict(now)}; holding {ctx.describe(action)}"
    return f"HELD: {ctx.describe(action)}: {verdict}"


def _apply(ctx: Context, flight: Flight) -> str:
    action = flight.action
    if action.kind is ActionKind.CREATE_INDEX:
        # The name is journaled with `applying`: another index may hold the first one.
        try:
            name = ctx.executor.free_name(action)
        except QueryFailed:  # the build itself chooses again, and says why if it cannot
            name = None
        if name is not None and name != action.index_name:
            action = flight.action = replace(action, index_name=name)
    flight.phase = Phase.APPLYING
    with ctx.lock:
        ctx.flight = flight
    ctx.transition(ActionState.APPLYING, action, f"running {ctx.describe(action)}")
    ctx.refresh_action_metrics()
    ctx.metrics.builds_in_progress.inc()

    def before_drop(definition: str) -> None:
        ctx.transition(ActionState.APPLYING, action, "definition captured before the drop",
                       data={"index_definition": definition})  # fmt: skip

    try:
        result = ctx.executor.apply(action, before_drop=before_drop)
    except Exception:
        with ctx.lock:  # the journal says `applying`: recovery settles it (see `run`)
            ctx.flight = None
        raise
    finally:
        ctx.metrics.builds_in_progress.dec()
        ctx.changed(action.table, change_of(action), index=qualified(action))
    ctx.metrics.build_seconds.labels(action.kind.value, result.state.value).observe(result.seconds)
    figures: dict[str, Any] = {"seconds": round(result.seconds, 3)}
    if result.size_bytes is not None:
        figures["size_bytes"] = result.size_bytes
    if result.estimated_size_bytes is not None:
        figures["estimated_size_bytes"] = result.estimated_size_bytes
    if result.state is not ActionState.APPLIED:
        rejected = result.state is ActionState.REJECTED
        state = ActionState.REJECTED if rejected else ActionState.FAILED
        if result.cleaned_up:
            figures["cleaned_up"] = ", ".join(result.cleaned_up)
        ctx.transition(state, action, result.reason or "failed", figures=figures)
        with ctx.lock:
            ctx.flight = None
        ctx.refresh_action_metrics()
        return f"{state.value.upper()}: {ctx.describe(action)}: {result.reason}"
    action = replace(
        action,
        index_name=result.index_name or action.index_name,
        index_definition=result.index_definition or action.index_definition,
    )
    flight.action, flight.result = action, result
    ctx.transition(ActionState.APPLIED, action, result.statement, figures=figures)
    if action.kind is ActionKind.CREATE_INDEX and result.size_bytes:
        ctx.metrics.index_bytes_created.inc(result.size_bytes)
    if action.kind not in queue.VERIFIED_KINDS:
        ctx.transition(ActionState.KEPT, action, f"{action.kind.value} needs no verification")
        with ctx.lock:
            ctx.flight = None
        ctx.refresh_action_metrics()
        return f"APPLIED: {ctx.describe(action)} in {result.seconds:.1f}s"
    plans_after = baseline.plans(ctx, flight.texts)
    leading = (
        action.index.columns[0] if action.index and action.kind is ActionKind.CREATE_INDEX else None
    )
    controls = (e.queryid for e in flight.baseline.queries) if flight.baseline else ()
    flight.watch = verify.watch(
        flight.plans_before, plans_after, flight.texts, action.table, flight.expected, leading,
        controls, removes=action.kind is ActionKind.DROP_INDEX,
    )  # fmt: skip
    flight.unmoved = unmoved(flight.plans_before, plans_after, flight.texts, action.table,
                             flight.watch)  # fmt: skip
    ctx.watching(action.table, flight.watch.reads | flight.watch.writes, flight.unmoved)
    flight.start, flight.started, flight.phase = ctx.sample(), ctx.now(), Phase.VERIFY
    due = flight.due(ctx.policy.resolved.verification_window)
    ctx.transition(
        ActionState.VERIFYING,
        action,
        f"watching {len(flight.watch.reads)} read and {len(flight.watch.writes)} write "
        f"queries until {ctx.when(due)}",
        figures={"reads": len(flight.watch.reads), "writes": len(flight.watch.writes)},
        data={"watch": watch_data(flight.watch)},
    )
    ctx.refresh_action_metrics()
    size = f"{format_size(result.size_bytes)}, " if result.size_bytes else ""
    return (
        f"APPLIED: {ctx.describe(action)} ({size}{result.seconds:.1f}s); "
        f"verifying until {ctx.when(due)}"
    )
