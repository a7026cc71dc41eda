"""`pg-tuner advise`: one-shot index advice from pg_stat_statements; changes nothing."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tuner import antipatterns, db, labels, queries, serverlog
from tuner.advisor import Advice, Advisor, statement_key
from tuner.antipatterns import Finding, Shape
from tuner.commands import connect, target_arg, terminal_width
from tuner.commands.explain import read_shapes
from tuner.config import PRESETS, Level, Limits, Policy, Timeouts
from tuner.errors import MissingExtension
from tuner.journal import Journal
from tuner.ledger import ActionStatus, replay
from tuner.models import ActionState, IndexSpec, Proposal, QueryWindow
from tuner.observe import observe
from tuner.sampler import fingerprint
from tuner.sqlfile import read_statements
from tuner.units import format_size, parse_size
from tuner.whatif import WorkloadQuery, read_schema

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_MISSING = 0, 1, 2, 3
_SERVED = 5  # statements listed under each proposal; --json has them all
_BUSIEST = 20  # statements read for anti-patterns when no proposal serves them


def run(args: argparse.Namespace) -> int:
    try:
        budget = parse_size(args.budget) if args.budget else None
    except ValueError as exc:  # e.g. --budget 5XB or --budget -1GB
        print(f"pg-tuner advise: --budget {args.budget!r}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.max_width is not None and not 1 <= args.max_width <= 8:
        print("pg-tuner advise: --max-width must be between 1 and 8", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.fail_on_missing and not args.queries:
        print("pg-tuner advise: --fail-on-missing needs --queries FILE", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.queries:
        try:
            given = read_statements(args.queries)
        except ValueError as exc:
            print(f"pg-tuner advise: --queries {args.queries}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return gate(args, budget, given)
    target = target_arg(args)
    policy = target.policy
    limits = policy.limits if policy else Limits()
    timeouts = policy.timeouts if policy else Timeouts()
    thresholds = policy.resolved if policy else PRESETS[Level.MODERATE]
    health = policy.health if policy else None
    with connect(target, timeouts) as conn:
        has_statements = db.fetch(
            conn, queries.MARK + " SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"
        )
        if not has_statements:
            raise MissingExtension(
                "pg_stat_statements is not installed in this database: add it to "
                "shared_preload_libraries and run CREATE EXTENSION pg_stat_statements"
            )
        long_query = policy.schedule.long_query if policy else timedelta(seconds=5)
        schema = read_schema(conn)
        observed = observe(conn, long_query)
        advisor = Advisor(
            conn,
            schema,
            budget=budget if budget is not None else limits.index_storage_budget,
            max_width=args.max_width or limits.max_index_width,
            per_table=thresholds.max_tuner_indexes_per_table,
            include_columns=limits.include_columns,
            hash_indexes=limits.hash_indexes,
            trusted_roles=policy.target.trusted_roles if policy else (),
            unused_after=thresholds.drop_unused_after or PRESETS[Level.MODERATE].drop_unused_after,  # type: ignore[arg-type]
            stale_ratio=health.stale_statistics_ratio if health else 0.2,
            dead_ratio=health.dead_tuple_ratio if health else 0.2,
        )
        running = running_now(conn, long_query, observed.queries)
        advice = advisor.advise(
            [*observed.queries, *running], observed.tables, observed.indexes,
            observed.stats_age, observed.seconds,
        )  # fmt: skip
        cancelled, unread = serverlog.cancelled_statements(conn, args.server_log, observed.queries)
        unhelped = cannot_help(observed.queries, advice, read_shapes(conn, schema))
    tried = rolled_back(policy)
    if args.json:
        document = advice_json(advice)
        for entry, p in zip(document["proposals"], advice.proposals, strict=True):
            if p.index is not None and (past := tried.get(p.index)):
                entry["rolled_back"] = {"action_id": past.action_id, "when": past.since,
                                        "reason": past.reason}  # fmt: skip
        document["cancelled"] = [
            {"label": labels.label(c.text), "query": c.text, "count": c.count,
             "reason": c.reason}
            for c in cancelled
        ]  # fmt: skip
        document["cancelled_unread"] = unread
        document["cannot_help"] = [
            {"queryid": str(q.queryid), "label": labels.label(q.query), "query": q.query,
             "findings": [{"rule": f.rule, "reason": f.reason, "fix": f.fix} for f in found]}
            for q, found in unhelped
        ]  # fmt: skip
        print(json.dumps(document, indent=2))
    else:
        budget_used = budget if budget is not None else limits.index_storage_budget
        print(format_advice(advice, terminal_width(), budget_used, tried))
        print(format_cannot_help(unhelped, terminal_width()))
        print(format_cancelled(cancelled, unread, terminal_width()))
    return EXIT_OK


def cannot_help(
    statements: Sequence[QueryWindow], advice: Advice, shapes: Mapping[str, Shape]
) -> list[tuple[QueryWindow, list[Finding]]]:
    """The busiest statements no proposal serves whose shape says why an index cannot help
    (`antipatterns`), busiest first."""
    served = {q.queryid for p in advice.indexes for q in p.queries}
    out = []
    for q in sorted(statements, key=lambda q: -q.total_ms)[:_BUSIEST]:
        if q.queryid not in served and (found := antipatterns.find(q.query, shapes)):
            out.append((q, found))
    return out


def format_cannot_help(found: list[tuple[QueryWindow, list[Finding]]], width: int) -> str:
    if not found:
        return ""
    lines = ["", "BUSY STATEMENTS NO INDEX CAN HELP AS THEY ARE WRITTEN"]
    for q, findings in found:
        lines.append(f"  {labels.describe(q.query, width - 2)}")
        for f in findings:
            lines += textwrap.wrap(f"{f.rule}: {f.reason}; fix: {f.fix}", width,
                                   initial_indent="    - ", subsequent_indent="      ")  # fmt: skip
    return "\n".join(lines)


def format_cancelled(found: list[serverlog.Cancelled], unread: str | None, width: int) -> str:
    """What advise could not see: statements cancelled before pg_stat_statements counted them."""
    if unread:
        return textwrap.fill(
            f"note: statements cancelled by a timeout never reach pg_stat_statements, and "
            f"{unread}; pass the log with --server-log FILE, run the daemon (it captures "
            "long-running statements as they run), or advise on them with --queries FILE.",
            width, subsequent_indent="  ",
        )  # fmt: skip
    if not found:
        return "No statement in the server's log was cancelled by a timeout."
    lines = [f"CANCELLED BY A TIMEOUT, NEVER COUNTED ({len(found)}): not in this advice; "
             "put them in a file and run advise --queries FILE"]  # fmt: skip
    for c in found:
        lines.append(f"  {labels.label(c.text)}  cancelled {c.count} time(s) by a {c.reason}")
        lines.append(f"    {labels.shorten(c.text, width - 4)}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Checked:
    """One statement of --queries and what the advice says of it."""

    text: str
    label: str
    cut: float | None  # the estimated cost cut with the advised indexes; None: not costed
    indexes: tuple[Proposal, ...]  # the advised indexes it would use
    missing: bool  # it would need an index above the policy's bar

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label, "query": self.text,
            "cost_reduction": round(self.cut, 4) if self.cut is not None else None,
            "indexes": [p.ddl for p in self.indexes], "missing": self.missing,
        }  # fmt: skip


def check_statements(given: Sequence[str], advice: Advice, bar: float) -> list[Checked]:
    """Each given statement with the advised indexes it would use and their cost cut; it
    needs one when the cut reaches the policy's `min_cost_reduction`."""
    out = []
    for n, text in enumerate(given):
        key = _given_key(n)
        used = tuple(p for p in advice.indexes if any(q.queryid == key for q in p.queries))
        rows = [q for p in used for q in p.queries if q.queryid == key]
        cut = None
        if rows and rows[0].cost_after is not None and rows[0].cost_before > 0:
            cut = 1 - rows[0].cost_after / rows[0].cost_before
        out.append(Checked(text, labels.label(text), cut, used, cut is not None and cut >= bar))
    return out


def _given_key(n: int) -> int:
    return -(n + 1)  # pg_stat_statements' queryids are never this small; one key each


def gate(args: argparse.Namespace, budget: int | None, given: list[str]) -> int:
    """`advise --queries FILE`: advice for statements that may never have run, one verdict
    each; with --fail-on-missing, exit 3 when one needs an index above the policy's bar."""
    target = target_arg(args)
    policy = target.policy
    limits = policy.limits if policy else Limits()
    timeouts = policy.timeouts if policy else Timeouts()
    thresholds = policy.resolved if policy else PRESETS[Level.MODERATE]
    # Each statement weighs the same (none has run), and no table's writes count against an
    # index: the question is whether a statement wants one, not whether a workload pays.
    workload = [WorkloadQuery(_given_key(n), text, 1, 1.0) for n, text in enumerate(given)]
    with connect(target, timeouts) as conn:
        schema = read_schema(conn)
        advisor = Advisor(
            conn, schema, budget=budget if budget is not None else limits.index_storage_budget,
            max_width=args.max_width or limits.max_index_width,
            per_table=thresholds.max_tuner_indexes_per_table,
            include_columns=limits.include_columns, hash_indexes=limits.hash_indexes,
        )  # fmt: skip
        advice = advisor.advise(workload)
    bar = float(thresholds.min_cost_reduction)
    checked = check_statements(given, advice, bar)
    missing = [c for c in checked if c.missing]
    if args.json:
        document = advice_json(advice)
        document["statements"] = [c.to_json() for c in checked]
        document["missing"] = len(missing)
        document["bar"] = bar
        print(json.dumps(document, indent=2))
    else:
        print(format_gate(checked, advice, bar, terminal_width()))
    return EXIT_MISSING if args.fail_on_missing and missing else EXIT_OK


def format_gate(checked: Sequence[Checked], advice: Advice, bar: float, width: int) -> str:
    """One line per statement (label, verdict), its text, then the indexes to create."""
    lines = [f"note: {n}" for n in advice.notes]
    skipped = ", ".join(f"{n} {r}" for r, n in sorted(advice.skipped.items()))
    lines.append(
        f"{len(checked)} statement(s) from the file; costed {advice.costed_queries} with "
        f"{advice.explains} EXPLAINs (generic-plan estimates); skipped "
        f"{advice.skipped_queries}" + (f" ({skipped})" if skipped else "")
    )
    lines.append(f"The bar: an index that cuts a statement's estimated cost by {bar:.0%} or more.")
    lines.append("")
    for c in checked:
        if c.missing:
            verdict = f"NEEDS AN INDEX (cost -{c.cut:.0%})"
        elif c.cut is not None:
            verdict = f"below the bar (an index would cut {c.cut:.0%})"
        else:
            verdict = "ok: no index would help, or it could not be costed"
        lines.append(f"{c.label}: {verdict}")
        lines.append(f"    {labels.shorten(c.text, width - 4)}")
        lines += [f"    {p.ddl};" for p in c.indexes if c.missing]
    count = sum(c.missing for c in checked)
    lines += [
        "",
        f"{count} statement(s) need an index." if count else "No statement needs an index.",
    ]
    return "\n".join(lines)


def running_now(
    conn: db.Connection, long_query: timedelta, counted: Iterable[QueryWindow]
) -> list[WorkloadQuery]:
    """Statements running longer than `long_query` now whose texts pg_stat_statements has
    not counted (a statement_timeout cancels them first), each with its time so far."""
    known = {fingerprint(q.query) for q in counted}
    found: dict[str, WorkloadQuery] = {}
    rows = db.fetch(conn, queries.get("advisor_long_running"),
                    {"long_query": long_query.total_seconds()})  # fmt: skip
    for row in rows:
        text, ms = row["query"], 1000.0 * float(row["seconds"])
        key = fingerprint(text)
        if key in known:
            continue
        seen = found.get(key)
        calls, total = (seen.calls, seen.total_ms) if seen else (0, 0.0)
        roles = tuple(sorted({*(seen.roles if seen else ()), int(row["role"] or 0)}))
        found[key] = WorkloadQuery(statement_key(text), text, calls + 1, total + ms, roles)
    return list(found.values())


def proposal_json(p: Proposal) -> dict[str, Any]:
    return {
        "kind": p.kind.value,
        "table": str(p.table),
        "columns": list(p.columns),
        "include": list(p.include),
        "method": p.method,
        "ddl": p.ddl,
        "index_name": p.index_name,
        "estimated_size_bytes": p.estimated_size_bytes,
        "hypopg_size_bytes": p.hypopg_size_bytes,
        "queries": [
            {
                "queryid": str(q.queryid),  # int8: above 2^53 a JSON number loses digits
                "label": labels.label(q.text) if q.text else None,
                "query": q.text,
                "cost_before": q.cost_before,
                "cost_after": q.cost_after,
                "calls": q.calls,
                "share": q.share,
            }
            for q in p.queries
        ],
        "calls": p.calls,
        "workload_share": p.workload_share,
        "cost_reduction": p.cost_reduction,
        "write_rate": p.write_rate,
        "confidence": p.confidence.value,
        "reason": p.reason,
    }


def advice_json(advice: Advice) -> dict[str, Any]:
    """The JSON document `advise --json` prints (the issue's keys, and a few more)."""
    return {
        "proposals": [proposal_json(p) for p in advice.proposals],
        "workload_cost_before": advice.workload_cost_before,
        "workload_cost_after": advice.workload_cost_after,
        "skipped_queries": advice.skipped_queries,
        "skipped_reasons": advice.skipped,
        "costed_queries": advice.costed_queries,
        "hypopg": advice.hypopg,
        "explains": advice.explains,
        "seconds": round(advice.seconds, 3),
        "notes": list(advice.notes),
    }


def rolled_back(policy: Policy | None) -> dict[IndexSpec, ActionStatus]:
    """Indexes the daemon (the policy's journal) built, measured and rolled back."""
    if policy is None or not policy.journal.path.exists():
        return {}
    found: dict[IndexSpec, ActionStatus] = {}
    for status in replay(Journal(policy.journal.path).read()).values():
        action = status.to_action()
        if status.state is ActionState.ROLLED_BACK and action and action.index is not None:
            found[action.index] = status
    return found


def format_advice(
    advice: Advice,
    width: int = 96,
    budget: int | None = None,
    tried: Mapping[IndexSpec, ActionStatus] | None = None,
) -> str:
    """A readable table of the proposals, then each one's statement, reason and the
    statements it serves (label and text)."""
    lines = [f"note: {n}" for n in advice.notes]
    skipped = ", ".join(f"{n} {r}" for r, n in sorted(advice.skipped.items()))
    lines.append(
        f"Costed {advice.costed_queries} statements with {advice.explains} EXPLAINs in "
        f"{advice.seconds:.1f} s; skipped {advice.skipped_queries}"
        + (f" ({skipped})" if skipped else "")
    )
    before, after = advice.workload_cost_before, advice.workload_cost_after
    if before:
        lines.append(f"Estimated workload cost (the planner's generic-plan estimates, in its "
                     f"units): {before:,.0f} → {after:,.0f} "
                     f"({(after - before) / before:+.1%})")  # fmt: skip
    if budget is not None and advice.indexes:
        taken = sum(p.estimated_size_bytes for p in advice.indexes)
        lines.append(
            f"Index storage: {format_size(taken)} of the {format_size(budget)} budget"
            + ("; the budget was not the limit: no other index would pay for itself"
               if taken < 0.9 * budget else "; the budget was the limit")
        )  # fmt: skip
    if not advice.proposals:
        lines.append("No proposals: nothing would pay for itself.")
        return "\n".join(lines)
    header = ("#", "KIND", "TABLE", "COLUMNS", "SIZE", "QUERIES", "COST CUT", "CONFIDENCE")
    rows = [header]
    for n, p in enumerate(advice.proposals, 1):
        columns = ", ".join(p.columns) + (f" INCLUDE ({', '.join(p.include)})" if p.include else "")
        columns += " (hash)" if p.method == "hash" else ""
        rows.append((
            str(n), p.kind.value, str(p.table), columns or "-",
            format_size(p.estimated_size_bytes) if p.estimated_size_bytes else "-",
            str(len(p.queries)) if p.queries else "-",
            f"{p.cost_reduction:.0%}" if p.queries and p.cost_reduction else "-",
            p.confidence.value,
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines.append("")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for n, p in enumerate(advice.proposals, 1):
        lines += ["", f"{n}. {p.ddl};"]
        lines += textwrap.wrap(p.reason, width, initial_indent="   ", subsequent_indent="   ")
        if p.index is not None and (past := (tried or {}).get(p.index)):
            lines += textwrap.wrap(
                f"NOTE: the daemon built this index (action {past.action_id}), measured it and "
                f"rolled it back at {past.since[:19]}: {past.reason}. Advised again only on "
                "the planner's estimate; see pg-tuner audit --action " + past.action_id,
                width, initial_indent="   ", subsequent_indent="   ",
            )  # fmt: skip
        served = [q for q in p.queries if q.text]
        if served:
            lines.append("   serves:")
            lines += [f"     {labels.describe(q.text, width - 5)}" for q in served[:_SERVED]]
            if len(served) > _SERVED:
                lines.append(f"     … and {len(served) - _SERVED} more (see --json)")
    return "\n".join(lines)
