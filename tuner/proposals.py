"""The words and figures of an index proposal: what it serves, what it costs, and why this
kind of index (`why_kind`). Pure: the advisor hands in the costs, the name and the DDL.
"""

from __future__ import annotations

import math
from dataclasses import replace

from tuner import labels
from tuner.catalog import TableFacts, estimate_size
from tuner.models import Confidence, IndexSpec, Proposal, ProposalKind, ProposalQuery, Trap
from tuner.refine import HASH_WRITE_SHARE
from tuner.units import format_size


def index_proposal(
    spec: IndexSpec,
    rows: tuple[ProposalQuery, ...],
    writes: float,
    hypo: bool,
    *,
    facts: TableFacts,
    name: str,
    ddl: str,
    raw: int | None,
) -> Proposal:
    """A create_index proposal for `spec` serving `rows`, with the figures and the words
    behind it; `writes` is the table's row writes per second, `raw` HypoPG's size."""
    size = estimate_size(spec, facts)
    before = sum(q.calls * q.cost_before for q in rows)
    after = sum(q.calls * (q.cost_after if q.cost_after is not None else q.cost_before)
                for q in rows)  # fmt: skip
    reduction = 1 - after / before if before and hypo else 0.0
    share = sum(q.share for q in rows)
    calls = sum(q.calls for q in rows)
    cols = (
        ", ".join(spec.keys)
        + (f" INCLUDE ({', '.join(spec.include)})" if spec.include else "")
        + (f" WHERE {spec.where}" if spec.predicate else "")
    )
    kind = why_kind(spec, facts)
    ids = "; ".join(labels.label(q.text) if q.text else str(q.queryid) for q in rows[:5]) + (
        " …" if len(rows) > 5 else ""
    )
    if hypo:
        gain = (f"the planner estimates their cost at {before:,.0f} before and {after:,.0f} "
                f"after (weighted by calls), {reduction:.0%} less")  # fmt: skip
    else:
        gain = ("HypoPG is not installed, so this is a heuristic: they scan the whole table "
                "and filter on these columns; the gain has not been costed")  # fmt: skip
    reason = (
        f"An index on {spec.table} ({cols}) serves {len(rows)} "
        f"quer{'y' if len(rows) == 1 else 'ies'} ({ids}) called {calls:,} times, "
        f"{share:.1%} of the workload's execution time; {gain}. It would take about "
        f"{format_size(size)}"
        + (f" (HypoPG's uncorrected estimate: {format_size(raw)})" if raw is not None else "")
        + f" and slow the table's {writes:,.1f} row writes per second slightly."
        + (
            f" A hash index, not a btree: every one of these queries looks {cols} up by "
            "`=` alone, and its values are nearly unique and in no order, where a hash "
            f"costs a write about {HASH_WRITE_SHARE:.0%} of what a btree does."
            if spec.method == "hash"
            else ""
        )
        + (f" Kind: {kind}." if kind else "")
    )
    return Proposal(
        kind=ProposalKind.CREATE_INDEX, table=spec.table, ddl=ddl, reason=reason,
        columns=spec.columns, include=spec.include, descending=spec.descending,
        method=spec.method, index_name=name, estimated_size_bytes=size,
        hypopg_size_bytes=raw, queries=rows, calls=calls, workload_share=share,
        cost_reduction=reduction, write_rate=writes,
        confidence=Confidence.HIGH if hypo else Confidence.LOW,
        expressions=spec.expressions, predicate=spec.predicate, why_kind=kind,
    )  # fmt: skip


def why_kind(spec: IndexSpec, facts: TableFacts) -> str:
    """What kind of index other than a plain btree this is, and why, for the audit:
    `partial: 0.5 % of rows match status = 'open'`."""
    parts = []
    form = spec.expressions[0].partition(":") if spec.expressions else ("", "", "")
    if spec.method == "gin" and form[0] == "tsvector":
        parts.append(f"gin (full text): the queries match to_tsvector('{form[2]}', "
                     f"{spec.columns[0]}) with @@, which an index on that expression "
                     "serves")  # fmt: skip
    elif spec.method == "gin" and form[0] == "gin_trgm_ops":
        parts.append(f"gin (gin_trgm_ops): the queries match {spec.columns[0]} with a "
                     "pattern no btree serves (a leading wildcard, a parameter, a regular "
                     "expression); pg_trgm's trigrams do")  # fmt: skip
    elif spec.method == "gin":
        opclass = spec.expressions[0] if spec.expressions else "jsonb_ops"
        why = ("`@>` is all they ask of it, which the smaller jsonb_path_ops answers"
               if spec.expressions else "they test keys (`?`, `?|`, `?&`) or paths, which "
               "only the default jsonb_ops answers")  # fmt: skip
        parts.append(f"gin ({opclass}): the queries filter {spec.columns[0]} with jsonb "
                     f"operators no btree serves; {why}")  # fmt: skip
    if spec.method == "brin":
        column = facts.columns[spec.columns[0]]
        btree = estimate_size(IndexSpec(spec.table, spec.columns), facts)
        own = format_size(estimate_size(spec, facts))
        parts.append(f"brin: the table's rows lie in {spec.columns[0]}'s order (correlation "
                     f"{column.correlation or 0.0:.2f}), so {own} "
                     f"of min/max per 128 pages serves its range scans, where a btree "
                     f"would take {format_size(btree)}")  # fmt: skip
    if spec.expressions:
        exprs = [k for k, f in zip(spec.keys, spec.expressions, strict=True) if f]
        parts.append(f"expression: the queries filter on {', '.join(exprs)}, which no "
                     "index on the bare column serves")  # fmt: skip
    if spec.predicate:
        share = math.prod(facts.columns[c].share(op, v, facts.rows)
                          for c, op, v in spec.predicate if c in facts.columns)  # fmt: skip
        parts.append(f"partial: {share:.1%} of rows match {spec.where}, which every query "
                     "it serves filters on; the full index would hold every row")  # fmt: skip
    return "; ".join(parts)


def shield_proposal(own: Proposal, query: str, trap: Trap) -> Proposal:
    """A shield (`Advisor.shields`) for the read `trap` names: it stands in for the index it
    lets back in, so its bar figures are that index's, never less than its own."""
    return replace(
        own,
        reason=(
            f"A shield for query {labels.label(query)}: verification rolled back "
            f"{trap.index_name}, which made other queries faster, because the "
            "planner walked it for this one and filtered, beyond the slowdown "
            "bound. With every column the query uses in this index, the planner "
            f"prefers an index-only scan of it; once it is kept, "
            f"{trap.index_name} is tried once more. " + own.reason
        ),
        shields=trap.index_name,
        workload_share=max(own.workload_share, trap.workload_share),
        cost_reduction=max(own.cost_reduction, trap.cost_reduction),
    )


def measured_only_proposal(own: Proposal, max_share: float) -> Proposal:
    """A gin proposal, which HypoPG cannot cost: confidence measured-only, and why."""
    return replace(own, confidence=Confidence.MEASURED_ONLY, reason=(
        "Measured-only: HypoPG cannot simulate a gin index, so the gain is estimated "
        "from the statements' measured time and the planner's estimate of the rows "
        f"their filter keeps (at most {max_share:.0%} of the table); it is "
        "verified once built like any index. " + own.reason))  # fmt: skip


def missing_trgm_note(spec: IndexSpec, statements: int, saved_ms: float) -> str:
    """What a trigram gin index would serve if pg_trgm were installed (the tuner never
    creates an extension)."""
    return (
        f"pg_trgm is not installed: with it (CREATE EXTENSION pg_trgm), a trigram "
        f"gin index on {spec.table} ({spec.columns[0]}) would serve "
        f"{statements} statement(s) matching patterns a btree cannot, about "
        f"{saved_ms:,.0f} ms of the window's measured time"
    )
