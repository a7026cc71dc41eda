"""Benchmarks of the index advisor: TPC-H (with two baselines), the booking app, and scale.

    python bench/advisor.py tpch --dsn "...dbname=tpch"  [--budgets 250MB,500MB,1GB,2GB]
                                 [--real 1GB] [--repeat 3] [--timeout 120] [--json out.json]
    python bench/advisor.py tpch-flow --dsn "...dbname=tpch" [--budget 1GB] [--compare DIR]
    python bench/advisor.py booking --dsn "...dbname=booking" [--seconds 60]
    python bench/advisor.py scale --dsn "...dbname=postgres" [--statements 1000 --tables 200]
    python bench/advisor.py kinds --dsn "...dbname=kinds" [--scale 1] [--repeat 7]

TPC-H (loaded by `bench/tpch.py load`, primary keys only): the workload is the 22 queries
as pg_stat_statements normalizes them, one call each. Costs are the planner's generic-plan
estimates, with the advised indexes made hypothetical (HypoPG), relative to the primary
keys alone: the sum over the 20 queries other than Q17 and Q20, and the geometric mean of
the 22 per-query ratios. Baselines, on the same data and the same costing:
- single-column (Supabase index_advisor's approach): per query, a hypothetical index on
  every column it filters, joins or sorts on; keep those its plan uses;
- Dexter-style: per query, single columns and then two-column permutations of those
  columns; keep the indexes of the cheaper plan when it cuts the query's cost by 50 %.
A baseline's set that exceeds the budget is cut to it, largest cost cut first.
`--real 1GB` builds that budget's advised set and runs the 22 queries for real before
and after (the machine is shared, so run times carry noise).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import kinds, tpch
from tuner import db
from tuner.advisor import Advice, Advisor
from tuner.models import IndexSpec, TableRef
from tuner.observe import observe
from tuner.sqlinfo import QueryInfo
from tuner.units import format_size, parse_size
from tuner.whatif import (
    Prepared,
    Schema,
    WhatIf,
    WorkloadQuery,
    estimate_size,
    read_schema,
)

WIDE_OPEN = 10**15  # "no budget"


# --- TPC-H ---------------------------------------------------------------------------------


PK_ONLY_TIMES = Path(__file__).resolve().parent / "tpch" / "baseline_sf1_pk_only.json"


def pk_only_ms() -> dict[int, float]:
    """Each query's measured time with primary keys only (SF1, one run, 120 s timeout).

    Q17 and Q20 timed out: their time is the timeout, a lower bound."""
    found = json.loads(PK_ONLY_TIMES.read_text())
    timeout_s = 120.0
    return {
        int(q["number"]): 1000.0 * (q["best"] if q["status"] == "ok" else timeout_s)
        for q in found["queries"]
    }


def tpch_workload(dsn: str) -> list[WorkloadQuery]:
    """The 22 normalized texts, one call each, with their measured primary-keys-only time."""
    texts = tpch.static_normalized_texts()
    ms = pk_only_ms()
    return [WorkloadQuery(n, texts[n], 1, ms[n]) for n in tpch.QUERY_NUMBERS]


def _prepared(w: WhatIf, schema: Schema, workload: Sequence[WorkloadQuery]) -> dict[int, Prepared]:
    found = {}
    for q in workload:
        info = Advisor(w.conn, schema, budget=0)._analyze(q.query)
        assert isinstance(info, QueryInfo), (q.queryid, info)
        tables = {
            t.table
            for name in info.reads
            if (t := schema.resolve(name.schema, name.name)) is not None
        }
        found[q.queryid] = w.prepare(q.queryid, q.query, tables)
    return found


def measure(
    conn: db.Connection,
    schema: Schema,
    workload: Sequence[WorkloadQuery],
    indexes: Iterable[IndexSpec],
) -> dict[int, tuple[float, float]]:
    """Per query: (cost with primary keys only, cost with `indexes` hypothetical)."""
    chosen = frozenset(indexes)
    with WhatIf(conn, schema) as w:
        prepared = _prepared(w, schema, workload)
        return {n: (w.cost(p).cost, w.cost(p, chosen).cost) for n, p in prepared.items()}


def summary(costs: dict[int, tuple[float, float]]) -> dict[str, float]:
    twenty = [n for n in costs if n not in (17, 20)]
    before = sum(costs[n][0] for n in twenty)
    after = sum(costs[n][1] for n in twenty)
    ratios = [costs[n][1] / costs[n][0] for n in costs]
    return {
        "sum20_ratio": after / before,
        "geomean_ratio": math.exp(sum(math.log(r) for r in ratios) / len(ratios)),
        "sum22_ratio": sum(a for _, a in costs.values()) / sum(b for b, _ in costs.values()),
    }


def _columns(info: QueryInfo, schema: Schema) -> dict[Any, list[str]]:
    """Per table: the columns a query filters, joins, sorts or groups on (btree-able)."""
    found: dict[Any, list[str]] = {}
    for use in info.tables:
        facts = schema.resolve(use.table.schema, use.table.name)
        if facts is None:
            continue
        names = (*use.equality, *use.ranges, *use.joins, *(k.column for k in use.order_by),
                 *use.group_by)  # fmt: skip
        cols = [c for c in dict.fromkeys(names) if c in facts.columns and facts.columns[c].btree]
        if cols:
            found[facts.table] = cols
    return found


def baseline(
    conn: db.Connection, schema: Schema, workload: Sequence[WorkloadQuery], two_column: bool
) -> list[tuple[IndexSpec, float]]:
    """Per-query advice as the simple tools give it: (index, its query's cost cut)."""
    picked: dict[IndexSpec, float] = {}
    with WhatIf(conn, schema) as w:
        prepared = _prepared(w, schema, workload)
        reader = Advisor(conn, schema, budget=0)  # the same reading of the texts
        for q in workload:
            info = reader._analyze(q.query)
            assert isinstance(info, QueryInfo)
            cols = _columns(info, schema)
            singles = {IndexSpec(t, (c,)) for t, cs in cols.items() for c in cs}
            p = prepared[q.queryid]
            base = w.cost(p).cost
            best = w.cost(p, singles)
            if two_column:
                pairs = {IndexSpec(t, pair) for t, cs in cols.items()
                         for pair in itertools.permutations(cs, 2)}  # fmt: skip
                both = w.cost(p, singles | pairs) if len(singles | pairs) <= 400 else best
                if both.cost < best.cost:
                    best = both
                if base - best.cost < 0.5 * base:  # Dexter's default: at least 50 % cheaper
                    continue
            for spec in best.used:
                picked[spec] = max(picked.get(spec, 0.0), q.calls * (base - best.cost))
    return sorted(picked.items(), key=lambda kv: (-kv[1], kv[0].key))  # ties: by name


def fit(ranked: Sequence[tuple[IndexSpec, float]], schema: Schema, budget: int) -> list[IndexSpec]:
    chosen, spent = [], 0
    for spec, _ in ranked:
        size = estimate_size(spec, schema.tables[spec.table])
        if spent + size <= budget:
            chosen.append(spec)
            spent += size
    return chosen


def set_size(specs: Iterable[IndexSpec], schema: Schema) -> int:
    return sum(estimate_size(s, schema.tables[s.table]) for s in specs)


def bench_tpch(args: argparse.Namespace) -> dict[str, Any]:
    workload = tpch_workload(args.dsn)
    results: dict[str, Any] = {"budgets": {}, "baselines": {}}
    with db.connect(args.dsn) as conn:
        schema = read_schema(conn)
        pk = measure(conn, schema, workload, ())
        results["pk_only_costs"] = {n: c[0] for n, c in pk.items()}
        for label, two in (("single_column", False), ("dexter_two_column", True)):
            t0 = time.perf_counter()
            ranked = baseline(conn, schema, workload, two)
            full = [s for s, _ in ranked]
            unbounded = summary(measure(conn, schema, workload, full))
            entry: dict[str, Any] = {
                "seconds": round(time.perf_counter() - t0, 1),
                "indexes": [_spec(s) for s in full],
                "size_bytes": set_size(full, schema),
                "unbounded": unbounded,
            }
            for budget in args.budgets:
                cut = fit(ranked, schema, parse_size(budget))
                costs = measure(conn, schema, workload, cut)
                entry[budget] = summary(costs)
                entry[budget]["indexes"] = len(cut)
                entry[budget]["per_query"] = {n: round(a / b, 4) for n, (b, a) in costs.items()}
            results["baselines"][label] = entry
            print(f"{label}: {json.dumps(entry, default=str)}", file=sys.stderr)
        for budget in args.budgets:
            t0 = time.perf_counter()
            advice = Advisor(conn, schema, budget=parse_size(budget), per_table=args.per_table,
                             max_width=args.max_width).advise(workload)  # fmt: skip
            wall = time.perf_counter() - t0
            chosen = [p.index for p in advice.indexes if p.index is not None]
            costs = measure(conn, schema, workload, chosen)
            entry = {
                **summary(costs),
                "seconds": round(wall, 1),
                "explains": advice.explains,
                "indexes": [_spec(s) for s in chosen],
                "estimated_bytes": sum(p.estimated_size_bytes for p in advice.indexes),
                "hypopg_bytes": sum(p.hypopg_size_bytes or 0 for p in advice.indexes),
                "per_query": {n: round(a / b, 4) for n, (b, a) in costs.items()},
                "skipped": advice.skipped,
            }
            results["budgets"][budget] = entry
            print(f"advisor {budget}: {json.dumps(entry, default=str)}", file=sys.stderr)
        if args.real:
            results["real"] = real_run(args, conn, schema, workload, results)
    return results


def bench_tpch_flow(args: argparse.Namespace) -> dict[str, Any]:
    """TPC-H as a user meets it: the data loaded (no statistics reset after the load), the
    22 queries run once (a timeout cancels Q17 and Q20, so pg_stat_statements never sees
    them), then `pg-tuner advise --json` as its own process. Its proposals are costed like
    the `tpch` command's sets: generic-plan cost relative to primary keys only."""
    if not args.skip_run:
        with db.connect(args.dsn) as conn:
            db.execute(conn, "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
                             " WHERE datname = current_database()), 0)")  # fmt: skip
        timings = tpch.run(args.dsn, timeout_s=args.timeout, progress=True)
        print(tpch.format_table(timings), file=sys.stderr)
        with db.connect(args.dsn) as conn:
            db.execute(conn, "SELECT pg_stat_force_next_flush()")
    results: dict[str, Any] = {}
    for label, root in (("advise", None), *((f"advise@{r}", r) for r in args.compare)):
        t0 = time.perf_counter()
        advice = advise_process(args.dsn, args.budget, root)
        wall = time.perf_counter() - t0
        chosen = [
            IndexSpec(TableRef(*p["table"].split(".", 1)), tuple(p["columns"]),
                      tuple(p["include"]), method=p["method"] or "btree")
            for p in advice["proposals"] if p["kind"] == "create_index"
        ]  # fmt: skip
        with db.connect(args.dsn) as conn:
            costs = measure(conn, read_schema(conn), tpch_workload(args.dsn), chosen)
        entry = {
            **summary(costs),
            "seconds": round(wall, 1),
            "indexes": [_spec(s) for s in chosen],
            "estimated_bytes": sum(p["estimated_size_bytes"] or 0 for p in advice["proposals"]),
            "skipped": advice["skipped_reasons"],
            "costed": advice["costed_queries"],
            "per_query": {n: round(a / b, 4) for n, (b, a) in costs.items()},
        }
        results[label] = entry
        print(f"{label}: {json.dumps(entry, default=str)}", file=sys.stderr)
    return results


def _spec(spec: IndexSpec) -> str:
    cols = ", ".join(spec.columns)
    return f"{spec.table.name}({cols})" + (
        f" INCLUDE ({', '.join(spec.include)})" if spec.include else ""
    )


def real_run(
    args: argparse.Namespace, conn: db.Connection, schema: Schema,
    workload: Sequence[WorkloadQuery], results: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Run the 22 for real, build the advised set for `--real`, run them again, drop it."""
    advice = Advisor(conn, schema, budget=parse_size(args.real), per_table=args.per_table,
                     max_width=args.max_width).advise(workload)  # fmt: skip
    before = tpch.run(args.dsn, repeat=args.repeat, timeout_s=args.timeout, progress=True)
    built: list[dict[str, Any]] = []
    db.execute(conn, "SET maintenance_work_mem = '512MB'")
    for p in advice.indexes:
        t0 = time.perf_counter()
        ddl = p.ddl.replace("CREATE INDEX CONCURRENTLY", "CREATE INDEX")
        db.execute(conn, db.SQL(ddl))
        size = db.fetch(conn, "SELECT pg_relation_size(%s::regclass) AS s", (p.index_name,))
        built.append({"index": p.index_name, "seconds": round(time.perf_counter() - t0, 1),
                      "real_bytes": size[0]["s"], "estimated_bytes": p.estimated_size_bytes,
                      "hypopg_bytes": p.hypopg_size_bytes})  # fmt: skip
    db.execute(conn, "ANALYZE")
    after = tpch.run(args.dsn, repeat=args.repeat, timeout_s=args.timeout, progress=True)
    literal_after = {n: _literal_cost(conn, n) for n in tpch.QUERY_NUMBERS}
    for p in advice.indexes:
        db.execute(
            conn, db.SQL("DROP INDEX IF EXISTS {}").format(db.Identifier(p.index_name or ""))
        )
    literal_before = {n: _literal_cost(conn, n) for n in tpch.QUERY_NUMBERS}
    rows = []
    for b, a in zip(before, after, strict=True):
        rows.append({"query": b.number, "before_s": b.best, "after_s": a.best,
                     "before_median_s": b.median, "after_median_s": a.median,
                     "before_runs": b.seconds, "after_runs": a.seconds,
                     "before_status": b.status, "after_status": a.status,
                     "literal_cost_before": literal_before[b.number],
                     "literal_cost_after": literal_after[b.number]})  # fmt: skip
    return {"budget": args.real, "built": built, "queries": rows}


def _literal_cost(conn: db.Connection, number: int) -> float:
    plan = db.fetch(conn, db.SQL("EXPLAIN (FORMAT JSON) " + tpch.query_text(number)))
    return float(plan[0]["QUERY PLAN"][0]["Plan"]["Total Cost"])


# --- booking -------------------------------------------------------------------------------


def bench_booking(args: argparse.Namespace) -> dict[str, Any]:
    """The flow a user runs: the data loaded (its writes stay in the table counters), the
    statements' window started afresh, the driver's statements, then `pg-tuner advise` as
    its own process. No table statistics reset: a bulk load before the window must not
    read as writes inside it."""
    from tuner.demo import booking

    with db.connect(args.dsn) as conn:
        rows = db.fetch(conn, "SELECT to_regclass('bookings') IS NOT NULL AS loaded")
        if not rows[0]["loaded"]:
            t0 = time.perf_counter()
            booking.load(conn, args.scale)
            print(f"loaded booking in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        db.execute(conn, "ANALYZE")
        db.execute(conn, "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
                         " WHERE datname = current_database()), 0)")  # fmt: skip
    report = booking.Driver(args.dsn, threads=2, seed=1).run(duration_s=args.seconds)
    with db.connect(args.dsn) as conn:
        db.execute(conn, "SELECT pg_stat_force_next_flush()")
    time.sleep(1.5)
    t0 = time.perf_counter()
    advice = advise_process(args.dsn, args.budget)
    wall = time.perf_counter() - t0
    result: dict[str, Any] = {
        "driver_seconds": args.seconds,
        **_cli_figures(advice, wall),
        "latency_before": _latency(report),
    }
    for root in args.compare:  # another checkout's advise on the very same statistics
        t0 = time.perf_counter()
        other = advise_process(args.dsn, args.budget, root)
        result[f"advise@{root}"] = _cli_figures(other, time.perf_counter() - t0)
    if args.real:
        result["real"] = _booking_real(args, advice, report)
    return result


def advise_process(dsn: str, budget: str, root: str | None = None) -> dict[str, Any]:
    """`pg-tuner advise --json` run as its own process, as a user runs it (`root`: the
    checkout whose `tuner` package runs, e.g. an older commit's worktree to compare)."""
    command = [sys.executable, "-m", "tuner", "advise", "--dsn", dsn, "--budget", budget, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"pg-tuner advise failed ({done.returncode}): {done.stderr.strip()}")
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def _cli_figures(advice: dict[str, Any], wall: float) -> dict[str, Any]:
    return {
        "seconds": round(wall, 2),
        "explains": advice["explains"],
        "costed": advice["costed_queries"],
        "skipped": advice["skipped_reasons"],
        "workload_cost_before": round(advice["workload_cost_before"]),
        "workload_cost_after": round(advice["workload_cost_after"]),
        "proposals": [
            {
                "kind": p["kind"], "table": p["table"], "columns": p["columns"],
                "include": p["include"], "method": p["method"],
                "size": format_size(p["estimated_size_bytes"] or 0),
                "queries": len(p["queries"]), "cost_reduction": round(p["cost_reduction"], 3),
                "write_rate": round(p["write_rate"], 1),
            }
            for p in advice["proposals"]
        ],
    }  # fmt: skip


def _latency(report: Any) -> dict[str, dict[str, float]]:
    return {
        name: {"calls": s.calls, "errors": s.errors, "mean_ms": round(s.mean_ms, 2),
               "p95_ms": round(s.p95_ms, 2)}
        for name, s in report.stats().items()
    }  # fmt: skip


def _booking_real(args: argparse.Namespace, advice: dict[str, Any], before: Any) -> dict[str, Any]:
    """Build the advised indexes with the DDL `advise` printed, run the same driver again,
    compare, drop them again."""
    from tuner.demo import booking

    built = []
    indexes = [p for p in advice["proposals"] if p["kind"] == "create_index"]
    with db.connect(args.dsn) as conn:
        db.execute(conn, "SET maintenance_work_mem = '256MB'")
        for p in indexes:
            t0 = time.perf_counter()
            db.execute(conn, p["ddl"])
            size = db.fetch(conn, "SELECT pg_relation_size(%s::regclass) AS s", (p["index_name"],))
            built.append({"index": p["index_name"], "seconds": round(time.perf_counter() - t0, 1),
                          "real_bytes": size[0]["s"],
                          "estimated_bytes": p["estimated_size_bytes"]})  # fmt: skip
        db.execute(conn, "ANALYZE")
    after = booking.Driver(args.dsn, threads=2, seed=1).run(duration_s=args.seconds)
    with db.connect(args.dsn) as conn:
        for p in indexes:
            db.execute(
                conn, db.SQL("DROP INDEX IF EXISTS {}").format(db.Identifier(p["index_name"]))
            )
    b, a = before.stats(), after.stats()
    slower = sorted(n for n in b if n in a and a[n].calls and b[n].calls
                    and a[n].mean_ms > b[n].mean_ms)  # fmt: skip
    return {"built": built, "latency_after": _latency(after), "slower": slower,
            "calls_before": before.calls, "calls_after": after.calls,
            "table": booking.compare_table(b, a)}  # fmt: skip


def _advice_figures(advice: Advice, wall: float) -> dict[str, Any]:
    return {
        "seconds": round(wall, 2),
        "explains": advice.explains,
        "costed": advice.costed_queries,
        "skipped": advice.skipped,
        "workload_cost_before": round(advice.workload_cost_before),
        "workload_cost_after": round(advice.workload_cost_after),
        "proposals": [
            {
                "kind": p.kind.value,
                "table": str(p.table),
                "columns": p.columns,
                "include": p.include,
                "size": format_size(p.estimated_size_bytes),
                "queries": len(p.queries),
                "cost_reduction": round(p.cost_reduction, 3),
                "write_rate": round(p.write_rate, 1),
            }
            for p in advice.proposals
        ],
    }


# --- scale -----------------------------------------------------------------------------------


def bench_scale(args: argparse.Namespace) -> dict[str, Any]:
    """`tables` tables of 2,000-20,000 rows and `statements` distinct statements over them."""
    rng = random.Random(7)
    dbname = "advisor_scale"
    with db.connect(args.dsn) as conn:
        db.execute(
            conn, db.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db.Identifier(dbname))
        )
        db.execute(conn, db.SQL("CREATE DATABASE {}").format(db.Identifier(dbname)))
    dsn = db.make_conninfo(args.dsn, dbname=dbname)
    with db.connect(dsn) as conn:
        db.execute(conn, "CREATE EXTENSION IF NOT EXISTS hypopg")
        for t in range(args.tables):
            rows = rng.randint(2000, 20000)
            db.execute(conn, db.SQL(
                f"CREATE TABLE s{t} AS SELECT g AS id, g % {rng.randint(5, 2000)} AS a, "
                f"g % {rng.randint(50, 5000)} AS b, (g * 7) % 1000 AS c, "
                "now() - g * interval '1 min' AS ts, "
                f"md5(g::text) AS note FROM generate_series(1, {rows}) g"))  # fmt: skip
            db.execute(conn, db.SQL(f"ALTER TABLE s{t} ADD PRIMARY KEY (id)"))
        db.execute(conn, "ANALYZE")
        shapes = [
            "SELECT note FROM s{t} WHERE a = $1",
            "SELECT id, c FROM s{t} WHERE b = $1 AND c > $2",
            "SELECT * FROM s{t} WHERE a = $1 AND b = $2 ORDER BY ts DESC LIMIT $3",
            "SELECT count(*) FROM s{t} WHERE ts > $1 AND ts < $2",
            "SELECT x.note FROM s{t} x JOIN s{u} y ON y.id = x.a WHERE y.b = $1",
            "UPDATE s{t} SET note = $1 WHERE b = $2",
            "SELECT a, count(*) FROM s{t} WHERE c BETWEEN $1 AND $2 GROUP BY a",
            "SELECT note FROM s{t} WHERE b IN ($1, $2, $3) AND a = $4",
        ]
        seen: set[str] = set()
        workload: list[WorkloadQuery] = []
        while len(workload) < args.statements:
            t, u = rng.randrange(args.tables), rng.randrange(args.tables)
            text = rng.choice(shapes).format(t=t, u=u)
            if text not in seen:
                seen.add(text)
                calls = rng.randint(1, 500)
                workload.append(WorkloadQuery(len(workload) + 1, text, calls, calls * 2.0))
        schema = read_schema(conn)
        t0 = time.perf_counter()
        advice = Advisor(conn, schema, budget=parse_size(args.budget)).advise(workload)
        wall = time.perf_counter() - t0
    with db.connect(args.dsn) as conn:
        db.execute(
            conn, db.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db.Identifier(dbname))
        )
    figures = _advice_figures(advice, wall)
    figures["proposals"] = len(advice.indexes)
    return {"statements": len(workload), "tables": args.tables, **figures}


# --- index kinds: a help desk (bench/kinds.py) -------------------------------------------


def _time_statements(conn: db.Connection, repeat: int) -> dict[str, float]:
    """Median ms of each statement of bench/kinds.py over `repeat` runs (after one warm-up)."""
    found = {}
    for name, text in kinds.STATEMENTS.items():
        db.fetch(conn, text)
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            db.fetch(conn, text)
            runs.append(1000 * (time.perf_counter() - t0))
        found[name] = round(sorted(runs)[len(runs) // 2], 3)
    return found


def _built_set(conn: db.Connection, advice: Advice, repeat: int) -> dict[str, Any]:
    """Build `advice`'s indexes, time the statements, drop them again."""
    built = []
    for p in advice.indexes:
        db.execute(conn, db.SQL(p.ddl.replace("CREATE INDEX CONCURRENTLY", "CREATE INDEX")))
        size = db.fetch(conn, "SELECT pg_relation_size(%s::regclass) AS s", (p.index_name,))
        built.append({"ddl": p.ddl, "kind": p.why_kind.split(":")[0] or p.method,
                      "real_bytes": size[0]["s"],
                      "estimated_bytes": p.estimated_size_bytes})  # fmt: skip
    db.execute(conn, "ANALYZE contacts, tickets, events")
    times = _time_statements(conn, repeat)
    for p in advice.indexes:
        db.execute(conn, db.SQL("DROP INDEX {}").format(db.Identifier(p.index_name or "")))
    return {"indexes": built, "bytes": sum(b["real_bytes"] for b in built), "ms": times,
            "total_ms": round(sum(times.values()), 3)}  # fmt: skip


def bench_kinds(args: argparse.Namespace) -> dict[str, Any]:
    """The help desk: plain btree advice against advice with every kind, built and timed.

    The statements are handed to the advisor with their literals (as the sampler captures
    long-running ones) and the time measured before; the log's appends in the same window
    are its writes."""
    rows = kinds.load(args.dsn, args.scale)
    with db.connect(args.dsn) as conn:
        db.execute(conn, "SELECT pg_stat_reset()")  # the window starts after the load
        db.execute(conn, "SELECT pg_stat_statements_reset()")
        before = _time_statements(conn, args.repeat)
        for n in range(args.appends):
            db.execute(conn, kinds.APPEND.format(start=10_000_000 + n * 10_000, rows=10_000))
        db.execute(conn, "SELECT pg_stat_force_next_flush()")
    with db.connect(args.dsn) as conn:
        tables = observe(conn).tables
        window = max(t.seconds for t in tables)
        calls = {name: kinds.CALLS.get(name, args.calls) for name in kinds.STATEMENTS}
        workload = [WorkloadQuery(n + 1, text, calls[name], calls[name] * before[name])
                    for n, (name, text) in enumerate(kinds.STATEMENTS.items())]  # fmt: skip
        result: dict[str, Any] = {"rows": rows, "appended": 10_000 * args.appends,
                                  "before_ms": before,
                                  "before_total_ms": sum(before.values())}  # fmt: skip
        for label, on in (("plain_btree", False), ("all_kinds", True)):
            advice = Advisor(conn, read_schema(conn), budget=parse_size(args.budget),
                             index_kinds=on).advise(workload, tables, window=window)  # fmt: skip
            result[label] = _built_set(conn, advice, args.repeat)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("tpch")
    p.add_argument("--dsn", required=True)
    p.add_argument("--budgets", default="250MB,500MB,1GB,2GB")
    p.add_argument("--real", help="build this budget's set and time the 22 queries, e.g. 1GB")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each query before and after (best and median kept)",
    )
    p.add_argument("--per-table", type=int, default=10)
    p.add_argument("--max-width", type=int, default=3)
    p.add_argument("--json")
    p = sub.add_parser("tpch-flow", help="the user's flow: run the 22, then pg-tuner advise")
    p.add_argument("--dsn", required=True)
    p.add_argument("--budget", default="1GB")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--skip-run", action="store_true", help="the 22 queries already ran")
    p.add_argument("--compare", action="append", default=[],
                   help="also run this checkout's pg-tuner advise (a directory), e.g. the "
                        "previous release's worktree")  # fmt: skip
    p.add_argument("--json")
    p = sub.add_parser("booking")
    p.add_argument("--dsn", required=True)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--budget", default="1GB")
    p.add_argument("--real", action="store_true", help="build the advice and run again")
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        help="also run this checkout's pg-tuner advise on the same statistics",
    )
    p.add_argument("--json")
    p = sub.add_parser("kinds", help="a help desk needing expression, partial, brin indexes")
    p.add_argument("--dsn", required=True)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--calls", type=int, default=100, help="calls of each read in the window")
    p.add_argument("--appends", type=int, default=30, help="10,000-row appends to the log")
    p.add_argument("--budget", default="1GB")
    p.add_argument("--json")
    p = sub.add_parser("scale")
    p.add_argument("--dsn", required=True)
    p.add_argument("--statements", type=int, default=1000)
    p.add_argument("--tables", type=int, default=200)
    p.add_argument("--budget", default="10GB")
    p.add_argument("--json")
    args = parser.parse_args(argv)
    if args.what == "tpch":
        args.budgets = args.budgets.split(",")
        result = bench_tpch(args)
    elif args.what == "tpch-flow":
        result = bench_tpch_flow(args)
    elif args.what == "booking":
        result = bench_booking(args)
    elif args.what == "kinds":
        result = bench_kinds(args)
    else:
        result = bench_scale(args)
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
