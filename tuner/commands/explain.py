"""`pg-tuner explain "SQL"` (or `--file F`): one statement read as a DBA would.

The plan now, the plan with the indexes the advisor would add (HypoPG: hypothetical, built
nowhere), those indexes with their DDL, and the statement's anti-patterns with a reason and
a fix each. Read-only: EXPLAIN without ANALYZE never runs the statement.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from tuner import antipatterns, db, labels, queries, sqlinfo
from tuner.advisor import Advisor
from tuner.commands import connect, target_arg, terminal_width
from tuner.config import PRESETS, Level, Limits, Timeouts
from tuner.errors import OperationFailed, QueryFailed
from tuner.models import Proposal
from tuner.sqlfile import read_statements, split_statements
from tuner.units import format_size
from tuner.whatif import Schema, WhatIf, WorkloadQuery, parameter_count, read_schema

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
_KEY = -1  # the statement's key in the what-if session (it has no queryid)
_NODE_DETAILS = ("Index Cond", "Recheck Cond", "Hash Cond", "Merge Cond", "Join Filter",
                 "Filter", "Sort Key", "Group Key")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if bool(args.sql) == bool(args.file):
        print('pg-tuner explain: give one statement, as "SQL" or --file FILE', file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        texts = read_statements(args.file) if args.file else split_statements(args.sql)
    except ValueError as exc:
        print(f"pg-tuner explain: --file {args.file}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if len(texts) != 1:
        print(f"pg-tuner explain: {len(texts)} statements given; explain takes one "
              "(advise --queries FILE reads many)", file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    text = texts[0]
    info = sqlinfo.analyze(text)
    if isinstance(info, sqlinfo.Unparsed):
        print(f"pg-tuner explain: cannot explain this statement: {info.detail}", file=sys.stderr)
        return EXIT_BAD_INPUT
    target = target_arg(args)
    policy = target.policy
    limits = policy.limits if policy else Limits()
    timeouts = policy.timeouts if policy else Timeouts()
    thresholds = policy.resolved if policy else PRESETS[Level.MODERATE]
    with connect(target, timeouts) as conn:
        schema = read_schema(conn)
        shapes = read_shapes(conn, schema)
        advisor = Advisor(
            conn, schema, budget=limits.index_storage_budget, max_width=limits.max_index_width,
            per_table=thresholds.max_tuner_indexes_per_table,
            include_columns=limits.include_columns, hash_indexes=limits.hash_indexes,
        )  # fmt: skip
        try:
            content = explain(conn, schema, advisor, text)
        except QueryFailed as exc:
            if isinstance(exc, OperationFailed):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.name
            print(f"pg-tuner explain: PostgreSQL cannot plan it: {first}", file=sys.stderr)
            return EXIT_BAD_INPUT
    content["findings"] = [
        {"rule": f.rule, "where": f.where, "reason": f.reason, "fix": f.fix}
        for f in antipatterns.find(text, shapes)
    ]
    if args.json:
        print(json.dumps(content, indent=2, default=str))
    else:
        print(render(content, terminal_width()))
    return EXIT_OK


def read_shapes(conn: db.Connection, schema: Schema) -> dict[str, antipatterns.Shape]:
    """Each user table's columns and index keys, by name (the search path's first wins)."""
    order = {name: n for n, name in enumerate(schema.search_path)}
    rows = sorted(db.fetch(conn, queries.get("explain_shapes")),
                  key=lambda r: order.get(r["schema"], len(order)))  # fmt: skip
    shapes: dict[str, antipatterns.Shape] = {}
    for row in rows:
        columns = {name: antipatterns.Column(type_name, bool(not_null))
                   for name, type_name, not_null in row["columns"]}  # fmt: skip
        keys = tuple(tuple(c for c in key if c) for key in row["indexes"] if key)
        shapes.setdefault(row["table_name"], antipatterns.Shape(columns, keys))
    return shapes


def explain(conn: db.Connection, schema: Schema, advisor: Advisor, text: str) -> dict[str, Any]:
    """The plans before and after the advised indexes, and those indexes, as plain values."""
    advice = advisor.advise([WorkloadQuery(_KEY, text, 1, 1.0)])
    indexes = [p for p in advice.indexes if any(q.queryid == _KEY for q in p.queries)]
    specs = [spec for p in indexes if (spec := p.index) is not None]
    with WhatIf(conn, schema) as session:
        prepared = session.prepare(_KEY, text, {s.table for s in specs})
        before = session.plan(prepared)
        after = None
        if specs:
            session.cost(prepared, specs)
            after = session._last_plan  # the plan cost() just read, with the indexes in place
            names = {f"<{oid}>": p.index_name for oid, spec in session._by_oid.items()
                     for p in indexes if p.index == spec}  # fmt: skip
            after = _renamed(after, names)
    return {
        "label": labels.label(text),
        "query": text,
        "generic_plan": parameter_count(text) > 0,
        "hypopg": schema.has_hypopg,
        "plan_now": before,
        "cost_now": before.get("Total Cost"),
        "plan_with_indexes": after,
        "cost_with_indexes": after.get("Total Cost") if after else None,
        "indexes": [_index(p) for p in indexes],
        "notes": list(advice.notes),
    }


def _renamed(node: Mapping[str, Any], names: Mapping[str, str | None]) -> dict[str, Any]:
    """The plan with HypoPG's `<oid>btree_…` index names replaced by the advised names."""
    out = dict(node)
    index = out.get("Index Name")
    if isinstance(index, str) and index.startswith("<"):
        name = names.get(index[: index.find(">") + 1])
        out["Index Name"] = f"{name} (hypothetical)" if name else f"{index} (hypothetical)"
    if "Plans" in out:
        out["Plans"] = [_renamed(child, names) for child in out["Plans"]]
    return out


def _index(p: Proposal) -> dict[str, Any]:
    return {"name": p.index_name, "ddl": p.ddl, "size_bytes": p.estimated_size_bytes,
            "reason": p.reason}  # fmt: skip


def plan_lines(node: Mapping[str, Any], width: int, depth: int = 0) -> list[str]:
    """A plan as indented lines: node, relation or index, cost and rows; then its conditions."""
    pad = "  " * depth + ("-> " if depth > 1 else "")
    what = str(node.get("Node Type", "?"))
    if (node.get("Join Type") and "Join" in what) or what == "Nested Loop":
        what = f"{node.get('Join Type')} {what}".replace("Inner ", "")
    index = node.get("Index Name")
    if isinstance(index, str):
        what += f" using {index}"
    if node.get("Relation Name"):
        relation = f"{node.get('Schema', '')}.{node['Relation Name']}".lstrip(".")
        alias = node.get("Alias")
        what += f" on {relation}" + (
            f" {alias}" if alias and alias != node["Relation Name"] else ""
        )
    cost = f"cost {node.get('Startup Cost', 0):,.2f}..{node.get('Total Cost', 0):,.2f}"
    out = [_fit(pad, f"{what}  ({cost}, rows {node.get('Plan Rows', '?')})", width)]
    indent = " " * (len(pad) + 4)
    for key in _NODE_DETAILS:
        value = node.get(key)
        if value:
            shown = ", ".join(value) if isinstance(value, list) else str(value)
            out.append(_fit(indent, f"{key}: {shown}", width))
    for child in node.get("Plans", ()):
        out += plan_lines(child, width, depth + 1)
    return out


def _fit(pad: str, text: str, width: int) -> str:
    """`pad` then `text` on one line within `width` (the text shortened, escaped)."""
    return pad + labels.shorten(text, max(width - len(pad), 24))


def render(content: Mapping[str, Any], width: int = 100) -> str:
    """What `explain` prints: the statement, the plans, the indexes, the findings."""
    kind = ("generic plan (parameters unknown, as for a prepared statement)"
            if content["generic_plan"] else "plan for these literal values")  # fmt: skip
    out = [
        f"{content['label']}",
        f"  {labels.shorten(content['query'], width - 2)}",
        "",
        f"Costs are the planner's estimates in its own units, not milliseconds: {kind}.",
        *(f"note: {n}" for n in content["notes"]),
        "",
        f"PLAN NOW (cost {content['cost_now']:,.2f})",
        *plan_lines(content["plan_now"], width, 1),
    ]
    if content["plan_with_indexes"] is not None:
        now, then = content["cost_now"], content["cost_with_indexes"]
        cut = f", {1 - then / now:.0%} less" if now else ""
        out += ["", f"PLAN WITH THE ADVISED INDEXES (hypothetical; cost {then:,.2f}{cut})",
                *plan_lines(content["plan_with_indexes"], width, 1)]  # fmt: skip
    out += ["", "ADVISED INDEXES"]
    if content["indexes"]:
        for index in content["indexes"]:
            out.append(f"  {index['ddl']};")
            out.append(f"    about {format_size(index['size_bytes'])}")
    elif not content["hypopg"]:
        out.append("  (none costed: HypoPG is not installed; CREATE EXTENSION hypopg)")
    else:
        out.append("  (none: no index would make this statement cheaper enough to pay)")
    out += ["", "FINDINGS"]
    if not content["findings"]:
        out.append("  (none of the anti-pattern rules applies)")
    for f in content["findings"]:
        out.append(f"  {f['rule']}: {labels.shorten(f['where'], width - len(f['rule']) - 4)}")
        out += _wrapped("why", f["reason"], width)
        out += _wrapped("fix", f["fix"], width)
    return "\n".join(out)


def _wrapped(head: str, text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, initial_indent=f"    {head}: ",
                         subsequent_indent=" " * 9, break_on_hyphens=False)  # fmt: skip
