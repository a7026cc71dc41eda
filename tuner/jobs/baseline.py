"""The baseline window of the action at the queue's head: opened at the first sample of the
database's current state still needed, measured over the table's queries and the load's
controls, journaled `baselined`, and the queries' plans taken before the change."""

from __future__ import annotations

from typing import Any

from tuner import log, verify, watch, whatif, workload
from tuner.errors import MissingPrivilege, QueryFailed, UntrustedCode
from tuner.flight import Flight, Measured, Phase, entries
from tuner.jobs.context import Context
from tuner.models import Action, ActionState

_log = log.get("jobs.baseline")


def start(ctx: Context, action: Action) -> Flight:
    """Open the baseline window at the first sample of the current state still needed.

    When the database has not changed for `baseline_window` (say, since the previous
    action was kept), the samples already taken are the baseline and nothing waits.
    """
    latest = ctx.sample()
    with ctx.lock:
        started, first = ctx.recent.state_since() or (ctx.now(), latest)
    flight = Flight(action, Phase.BASELINE, first, started, expected=ctx.expected(action.id))
    with ctx.lock:
        ctx.flight = flight
    due = flight.due(ctx.policy.resolved.baseline_window)
    since = "" if first is latest else f" (sampled since {ctx.when(started)})"
    ctx.emit(
        "transition",
        f"baseline of {ctx.describe(action)} until {ctx.when(due)}{since}",
        action_id=action.id,
        state="baselining",
    )
    return flight


def finish(ctx: Context, flight: Flight) -> Flight:
    """The baseline window's figures for the table's queries; journaled `baselined`."""
    snapshot = ctx.sample()
    assert flight.start is not None
    window = workload.diff(flight.start, snapshot)
    parsed = watch.parsed(window.valid_queries)
    texts = watch.table_queries(parsed, flight.action.table)
    flight.texts = texts
    controls = watch.controls(parsed, texts, flight.action.table, ctx.policy.schedule.min_calls)
    flight.baseline = Measured(
        entries(window.queries, texts.keys() | controls),
        window.stats_reset,
        window.seconds,
    )
    calls = sum(e.calls for e in flight.baseline.queries if e.queryid in texts)
    with ctx.lock:  # the samples the baseline spans, for its noise (verify's floors)
        taken = [s for _, s in ctx.recent.quiet if s.monotonic >= flight.start.monotonic]
    steps = zip([flight.start, *taken], [*taken, snapshot], strict=True)
    flight.samples = verify.baseline_samples(
        (workload.diff(a, b) for a, b in steps if a.monotonic < b.monotonic), texts
    )
    for group in ctx.captured(flight.started, (q.query for q in window.valid_queries)):
        ms = [1000.0 * d for d in group.durations]
        mean = sum(ms) / len(ms)
        flight.captured[group.fingerprint] = verify.Stats(
            len(ms), mean, sum((x - mean) ** 2 for x in ms)
        )
    ctx.transition(
        ActionState.BASELINED,
        flight.action,
        f"baseline over {window.seconds:.0f}s: {len(texts)} queries of "
        f"{flight.action.table}, {calls} calls",
        figures={"seconds": round(window.seconds, 3), "queries": len(texts), "calls": calls},
        data={
            "baseline": flight.baseline.to_data(),
            "texts": {str(k): v for k, v in texts.items()},
            "captured": {fp: [b.calls, b.mean, b.m2] for fp, b in flight.captured.items()},
        },
    )
    flight.plans_before = plans(ctx, texts)
    return flight


def plans(ctx: Context, texts: dict[int, str]) -> dict[int, Any]:
    """EXPLAIN (generic plan) of each query; those PostgreSQL cannot plan are left out."""
    found: dict[int, Any] = {}
    with (
        ctx.whatif_session() as conn,
        whatif.WhatIf(conn, whatif.read_schema(conn), ctx.policy.target.trusted_roles) as session,
    ):
        for queryid, text in texts.items():
            try:
                found[queryid] = session.plan(session.prepare(queryid, text, ()))
            except (QueryFailed, UntrustedCode, MissingPrivilege) as exc:  # never planned
                _log.debug("jobs.explain_skipped", queryid=queryid, error=str(exc).strip())
    return found
