"""The baseline window of the action at the queue's head: opened at the first sample still
needed (within one window, after the last change of a table that shares a query with the
action's), measured over the table's queries and the load's controls, journaled
`baselined`, and the queries' plans taken before the change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuner import log, verify, watch, whatif, workload
from tuner.errors import MissingPrivilege, QueryFailed, UntrustedCode
from tuner.flight import Change, Flight, Measured, Phase, entries
from tuner.jobs.context import Context
from tuner.models import Action, ActionState

_log = log.get("jobs.baseline")


def start(ctx: Context, action: Action) -> Flight:
    """Open the baseline window at the first sample still needed.

    When no table that shares a query with the action's changed for `baseline_window`
    (say, the previous action was kept, or it was built on a table none of these queries
    reads), the samples already taken are the baseline and nothing waits.
    """
    latest = ctx.sample()
    statements = watch.parsed(workload.window(None, q) for q in latest.queries if q.calls)
    linked = watch.linked(statements, action.table)
    with ctx.lock:
        started, first = ctx.recent.state_since(linked) or (ctx.now(), latest)
        spans = ctx.recent.spanned(started)
    flight = Flight(action, Phase.BASELINE, first, started, expected=ctx.expected(action.id))
    with ctx.lock:
        ctx.flight = flight
    due = flight.due(ctx.policy.resolved.baseline_window)
    since = (
        "" if first is latest else f" (sampled since {ctx.when(started)}{spanning(spans, action)})"
    )
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
    with ctx.lock:
        spans = ctx.recent.spanned(flight.started)
    controls = watch.controls(parsed, texts, flight.action.table, ctx.policy.schedule.min_calls,
                              changed={c.table for c in spans})  # fmt: skip
    flight.baseline = Measured(
        entries(window.queries, texts.keys() | controls),
        window.stats_reset,
        window.seconds,
    )
    calls = sum(e.calls for e in flight.baseline.queries if e.queryid in texts)
    # Changes of its own tables within the window (an operator's) are not "unshared".
    linked = watch.linked(parsed, flight.action.table)
    unlinked = [c for c in spans if not linked(c)]
    with ctx.lock:  # the samples the baseline spans, for its noise (verify's floors)
        taken = [s for _, s in ctx.recent.samples if s.monotonic >= flight.start.monotonic]
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
        f"baseline over {window.seconds:.0f}s{spanning(unlinked, flight.action)}: "
        f"{len(texts)} queries of {flight.action.table}, {calls} calls",
        figures={"seconds": round(window.seconds, 3), "queries": len(texts), "calls": calls}
        | ({"spans": ", ".join(sorted({str(c.table) for c in unlinked}))} if unlinked else {}),
        data={
            "baseline": flight.baseline.to_data(),
            "texts": {str(k): v for k, v in texts.items()},
            "captured": {fp: [b.calls, b.mean, b.m2] for fp, b in flight.captured.items()},
        },
    )
    flight.plans_before = plans(ctx, texts)
    return flight


def spanning(changes: Sequence[Change], action: Action) -> str:
    """ " (spans the build of public.t_k on public.t, which shares no query with public.u)",
    or "" when the window spans no change: a DBA must see a baseline that overlaps another
    action's. Per table, the tuner's own changes, or else what the samples saw."""
    if not changes:
        return ""
    tables = list(dict.fromkeys(c.table for c in changes))
    parts = []
    for table in tables:
        ours = [c.what for c in changes if c.table == table and c.ours]
        whats = ours or [c.what for c in changes if c.table == table]
        parts.append(f"{', '.join(dict.fromkeys(whats))} on {table}")
    share = "shares" if len(tables) == 1 else "share"
    return f" (spans {'; '.join(parts)}, which {share} no query with {action.table})"


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
