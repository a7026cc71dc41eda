"""The baseline window of the action at the queue's head: opened at the first sample still
needed (within one window, after the last change that moved all of its table's queries),
measured over the table's queries and the load's controls, journaled `baselined`, and the
queries' plans taken before the change.

A query the tuner's last change may have moved (its table's writes, the reads whose plan
it altered or that could use it: `watch.moves`) is measured again from the first sample
after that change, for at least `REMEASURE` of the window and until it ran as many times
as in the whole window, up to `min_calls`, or for a whole window at most:
the next action on a table need not wait a whole window for the reads the last one left
alone."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tuner import log, verify, watch, whatif, workload
from tuner.errors import MissingPrivilege, QueryFailed, UntrustedCode
from tuner.flight import Change, Flight, Measured, Phase, entries
from tuner.jobs.context import Context
from tuner.models import Action, ActionState, Snapshot, Workload

_log = log.get("jobs.baseline")

REMEASURE = 0.25  # of the baseline window: the least a query the last change moved is measured


def start(ctx: Context, action: Action) -> Flight:
    """Open the baseline window at the first sample still needed.

    When no table that shares a query with the action's changed for `baseline_window`
    (say, the previous action was kept, or it was built on a table none of these queries
    reads), the samples already taken are the baseline and nothing waits.
    """
    latest = ctx.sample()
    statements = watch.parsed(workload.window(None, q) for q in latest.queries if q.calls)
    moved = watch.moves(statements, action.table)
    with ctx.lock:
        started, first = ctx.recent.state_since(lambda c: moved(c) is None) or (ctx.now(), latest)
        spans = ctx.recent.spanned(started)
        restarts = ctx.recent.restarts(moved, started)
    flight = Flight(action, Phase.BASELINE, first, started, expected=ctx.expected(action.id))
    again = ""
    if restarts:
        window = ctx.policy.resolved.baseline_window
        last = max(s[0] if s is not None else ctx.now() for s in restarts.values())
        flight.ready = max(started + window, last + window * REMEASURE)
        again = (f"; {len(restarts)} queries measured again after "
                 f"{_moving(spans, moved, restarts.keys())}")  # fmt: skip
    with ctx.lock:
        ctx.flight = flight
    due = flight.due(ctx.policy.resolved.baseline_window)
    unlinked = [c for c in spans if moved(c) == frozenset()]
    since = (
        ""
        if first is latest
        else f" (sampled since {ctx.when(started)}{spanning(unlinked, action)}{again})"
    )
    ctx.emit(
        "transition",
        f"baseline of {ctx.describe(action)} until {ctx.when(due)}{since}",
        action_id=action.id,
        state="baselining",
    )
    return flight


def finish(ctx: Context, flight: Flight) -> bool:
    """The baseline window's figures for the table's queries; journaled `baselined`.
    False (and `flight.ready` moved on) while a query the last change moved has not yet run
    `min_calls` times since it, short of a whole window."""
    snapshot = ctx.sample()
    assert flight.start is not None
    window = workload.diff(flight.start, snapshot)
    parsed = watch.parsed(window.valid_queries)
    action = flight.action
    texts = watch.table_queries(parsed, action.table)
    moved = watch.moves(parsed, action.table)
    with ctx.lock:
        spans = ctx.recent.spanned(flight.started)
        restarts = {q: s for q, s in ctx.recent.restarts(moved, flight.started).items()
                    if q in texts}  # fmt: skip
    parts = _remeasured(restarts, snapshot)
    if (ready := _ready(ctx, parts, window)) is not None:
        flight.ready = ready
        return False
    remeasured = {q: part for q, part in parts.items() if part is not None}
    flight.texts = texts
    controls = watch.controls(parsed, texts, action.table, ctx.policy.schedule.min_calls,
                              changed={c.table for c in spans})  # fmt: skip
    flight.baseline = Measured(
        entries(window.queries, (texts.keys() | controls) - remeasured.keys())
        + tuple(e for q, part in remeasured.items() for e in entries(part.window.queries, {q})),
        window.stats_reset or any(part.window.stats_reset for part in remeasured.values()),
        window.seconds,
    )
    calls = sum(e.calls for e in flight.baseline.queries if e.queryid in texts)
    unlinked = [c for c in spans if moved(c) == frozenset()]
    with ctx.lock:  # the samples the baseline spans, for its noise (verify's floors)
        taken = [s for _, s in ctx.recent.samples if s.monotonic >= flight.start.monotonic]
    steps = [(a, b) for a, b in zip([flight.start, *taken], [*taken, snapshot], strict=True)
             if a.monotonic < b.monotonic]  # fmt: skip
    samples = verify.baseline_samples((workload.diff(a, b) for a, b in steps), texts)
    flight.samples = tuple(  # a query measured again: only its samples since the change
        {q: stats for q, stats in sample.items()
         if q not in remeasured or a.monotonic >= remeasured[q].start.monotonic}
        for (a, _), sample in zip(steps, samples, strict=False)
    )  # fmt: skip
    for group in ctx.captured(flight.started, (q.query for q in window.valid_queries)):
        ms = [1000.0 * d for d in group.durations]
        mean = sum(ms) / len(ms)
        flight.captured[group.fingerprint] = verify.Stats(
            len(ms), mean, sum((x - mean) ** 2 for x in ms)
        )
    shortest = min((part.window.seconds for part in remeasured.values()), default=None)
    again = (
        f"; {len(remeasured)} of them measured again over the last {shortest:.0f}s, "
        f"after {_moving(spans, moved, remeasured.keys())}"
        if shortest is not None
        else ""
    )
    figures: dict[str, Any] = {
        "seconds": round(window.seconds, 3), "queries": len(texts), "calls": calls
    }  # fmt: skip
    if unlinked:
        figures["spans"] = ", ".join(sorted({str(c.table) for c in unlinked}))
    if shortest is not None:
        figures |= {"remeasured": len(remeasured), "remeasured_seconds": round(shortest, 3)}
    ctx.transition(
        ActionState.BASELINED,
        action,
        f"baseline over {window.seconds:.0f}s{spanning(unlinked, action)}: "
        f"{len(texts)} queries of {action.table}, {calls} calls{again}",
        figures=figures,
        data={
            "baseline": flight.baseline.to_data(),
            "texts": {str(k): v for k, v in texts.items()},
            "captured": {fp: [b.calls, b.mean, b.m2] for fp, b in flight.captured.items()},
        },
    )
    flight.plans_before = plans(ctx, texts)
    return True


@dataclass(frozen=True, slots=True)
class _Part:
    """A moved query's window: from the first sample after the change (`since`, our clock)."""

    since: datetime
    start: Snapshot
    window: Workload


def _remeasured(
    restarts: Mapping[int, tuple[datetime, Snapshot] | None], snapshot: Snapshot
) -> dict[int, _Part | None]:
    """Each moved query's window since its change (None: no sample after it yet)."""
    parts: dict[float, _Part] = {}
    found: dict[int, _Part | None] = {}
    for queryid, since in restarts.items():
        if since is None or since[1].monotonic >= snapshot.monotonic:
            found[queryid] = None
            continue
        key = since[1].monotonic
        if key not in parts:
            parts[key] = _Part(since[0], since[1], workload.diff(since[1], snapshot))
        found[queryid] = parts[key]
    return found


def _ready(ctx: Context, parts: Mapping[int, _Part | None], whole: Workload) -> datetime | None:
    """None when every moved query was measured again long enough: for `REMEASURE` of the
    window and as many calls as the whole window (`whole`) gave it, up to `min_calls` (a
    rare query's mean from fewer calls may roll back a gain: bench run P), or for a whole
    window; else when to look again."""
    window, now = ctx.policy.resolved.baseline_window, ctx.now()
    min_calls = ctx.policy.schedule.min_calls
    waits = []
    for queryid, part in parts.items():
        if part is None:
            waits.append(now + window)
            continue
        needed = min(min_calls, sum(e.calls for e in entries(whole.queries, {queryid})))
        calls = sum(e.calls for e in entries(part.window.queries, {queryid}))
        if now < part.since + window * REMEASURE or (now < part.since + window and calls < needed):
            waits.append(part.since + window)
    return min(max(waits), now + window / 8) if waits else None


def _moving(
    changes: Sequence[Change],
    moved: Callable[[Change], frozenset[int] | None],
    queries: Collection[int],
) -> str:
    """The changes that moved `queries`, in words: "the build of public.t_k"."""
    whats = [c.what for c in changes
             if (m := moved(c)) is None or not m.isdisjoint(queries)]  # fmt: skip
    return ", ".join(dict.fromkeys(whats)) or "a change of its tables"


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
