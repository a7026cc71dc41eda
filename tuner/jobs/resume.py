"""The first job, and the one after the database came back: sample, take the lead if it is
free, settle what the journal shows in flight (`recover`), resume a verification window."""

from __future__ import annotations

from tuner import journal, log, queries, verify
from tuner.db import fetch
from tuner.flight import Flight, Measured, Phase, applied_result
from tuner.jobs.context import Context, name
from tuner.models import ActionKind, ActionState
from tuner.queue import next_action
from tuner.recovery import ActionStatus
from tuner.watch import watch_data, watch_from_data

_log = log.get("jobs.resume")


def run(ctx: Context) -> str:
    """Sample, take the lead if free, settle the journal's in-flight actions."""
    ctx.sample()
    lead(ctx)
    with ctx.lock:
        if ctx.flight is not None and ctx.flight.phase is Phase.APPLYING:
            ctx.flight = None  # interrupted with the connection; the journal settles it
    if not ctx.leader:
        return "OBSERVE: another pg-tuner leads this database; observing only"
    settled = recover(ctx)
    ctx.refresh_action_metrics()
    queued = next_action(ctx.statuses())
    parts = [f"{ctx.policy.mode.value} mode, level {ctx.policy.level.value}"]
    if ctx.chain_problems:
        parts.append(ctx.chain_text())
    if settled:
        parts.append("; ".join(settled))
    if ctx.flight is not None:
        parts.append(f"verifying {name(ctx.flight.action)}")
    elif queued is not None:
        parts.append(f"next: {ctx.describe(queued.to_action())}")
    return "STARTED: " + "; ".join(parts)


def lead(ctx: Context) -> bool:
    """Take the advisory lock if free; True when this call made this tuner the leader."""
    was = ctx.leader
    ctx.leader = ctx.executor.leadership.acquire()
    ctx.metrics.leader.set(1 if ctx.leader else 0)
    if ctx.leader and not was:
        ctx.emit("leader", "LEADER: holding the advisory lock")
    return ctx.leader and not was


def recover(ctx: Context) -> list[str]:
    """journal.recover with the catalog, then resume a verification window; what it did."""
    ctx.chain_problems = ctx.journal.standing_problems()
    for problem in ctx.chain_problems:
        _log.warning("journal.chain_broken", path=str(ctx.journal.path), problem=problem)
    statuses = ctx.statuses()

    def lookup(name: str) -> journal.IndexHealth:
        status = next(s for s in statuses.values() if s.index_name == name)
        action = status.to_action()
        if action is not None and action.kind is ActionKind.CREATE_INDEX and action.index:
            # its table, definition and marker: another index of that name is not ours
            own = ctx.executor.own_index(action)
            return "missing" if own is None else ("valid" if own.valid else "invalid")
        typed = status.typed_action
        schema = typed.table.schema if typed is not None else "public"
        rows = fetch(ctx.connection(), queries.get("exec_index_info"),
                     {"schema": schema, "name": name})  # fmt: skip
        if not rows:
            return "missing"
        return "valid" if rows[0]["valid"] else "invalid"

    def drop_invalid(status: ActionStatus) -> None:
        action = status.to_action()
        if action is not None:
            ctx.executor.recover(action)

    done: list[str] = []
    found_any = False
    for found in journal.recover(ctx.journal, lookup, drop_invalid):
        found_any = True
        _log.info("journal.recovered", action=found.action_id, was=found.was.value,
                  outcome=found.outcome, detail=found.detail)  # fmt: skip
        ctx.emit("transition", found.detail, action_id=found.action_id, state=found.outcome)
        if found.outcome in ("applied", "failed"):
            done.append(f"{found.action_id} {found.outcome} after restart")
    if found_any:
        ctx.fresh()  # recovery wrote its own records
    cleaned = ctx.executor.cleanup_invalid()
    if cleaned:
        done.append(f"dropped INVALID leftovers {', '.join(cleaned)}")
    with ctx.lock:
        if ctx.flight is None:
            for status in ctx.statuses().values():
                if status.state in (ActionState.APPLIED, ActionState.VERIFYING):
                    ctx.flight = resumed_flight(ctx, status)
                    if ctx.flight is not None:
                        done.append(f"verification of {status.action_id} resumes")
                        break
    return done


def resumed_flight(ctx: Context, status: ActionStatus) -> Flight | None:
    """The verification window of an applied action, rebuilt from its journaled data."""
    action = status.to_action()
    if action is None:
        return None
    journaled = ctx.data_of(status.action_id)
    baseline = Measured.from_data(journaled.baseline) if journaled.baseline is not None else None
    texts = dict(journaled.texts)
    captured = {fp: verify.Stats(*figures) for fp, figures in journaled.captured.items()}
    ids = [e.queryid for e in baseline.queries] if baseline is not None else None
    watch = watch_from_data(journaled, action.table, ids, texts)
    result = applied_result(action)
    if status.state is ActionState.APPLIED:
        ctx.transition(ActionState.VERIFYING, action, "verification resumes after a restart",
                       data={"watch": watch_data(watch)} if watch else None)  # fmt: skip
    return Flight(
        action,
        Phase.VERIFY,
        ctx.latest,
        ctx.now(),
        texts,
        baseline,
        watch=watch,
        result=result,
        captured=captured,
        expected=ctx.expected(action.id),
    )
