"""`pg-tuner advise`: one-shot index advice from pg_stat_statements; changes nothing."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from tuner import db, queries
from tuner.advisor import Advice, Advisor, statement_key
from tuner.commands import target_arg
from tuner.config import PRESETS, Level, Limits, Timeouts, format_size, parse_size
from tuner.errors import MissingExtension
from tuner.models import Proposal, QueryWindow
from tuner.observe import observe
from tuner.sampler import fingerprint
from tuner.whatif import WorkloadQuery, read_schema

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def run(args: argparse.Namespace) -> int:
    try:
        budget = parse_size(args.budget) if args.budget else None
    except ValueError as exc:  # e.g. --budget 5XB or --budget -1GB
        print(f"pg-tuner advise: --budget {args.budget!r}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.max_width is not None and not 1 <= args.max_width <= 8:
        print("pg-tuner advise: --max-width must be between 1 and 8", file=sys.stderr)
        return EXIT_BAD_INPUT
    target = target_arg(args)
    policy = target.policy
    limits = policy.limits if policy else Limits()
    timeouts = policy.timeouts if policy else Timeouts()
    thresholds = policy.resolved if policy else PRESETS[Level.MODERATE]
    health = policy.health if policy else None
    with db.connect(
        target.dsn,
        password=target.password,
        lock_timeout=timeouts.lock_timeout,
        statement_timeout=timeouts.query_timeout,
    ) as conn:
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
    if args.json:
        print(json.dumps(advice_json(advice), indent=2))
    else:
        print(format_advice(advice))
    return EXIT_OK


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
                "queryid": q.queryid,
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


def format_advice(advice: Advice) -> str:
    """A readable table of the proposals, then each one's statement and reason."""
    lines = [f"note: {n}" for n in advice.notes]
    skipped = ", ".join(f"{n} {r}" for r, n in sorted(advice.skipped.items()))
    lines.append(
        f"Costed {advice.costed_queries} statements with {advice.explains} EXPLAINs in "
        f"{advice.seconds:.1f} s; skipped {advice.skipped_queries}"
        + (f" ({skipped})" if skipped else "")
    )
    before, after = advice.workload_cost_before, advice.workload_cost_after
    if before:
        lines.append(f"Estimated workload cost: {before:,.0f} → {after:,.0f} "
                     f"({(after - before) / before:+.1%})")  # fmt: skip
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
        lines += textwrap.wrap(p.reason, 96, initial_indent="   ", subsequent_indent="   ")
    return "\n".join(lines)
