"""The sampler's cost on a large catalog: round trips, wall time per sample, memory.

Builds, in a throwaway server, 1,000 tables with 3,000 indexes and 5,000 distinct statements
in pg_stat_statements, then samples it as a role with only pg_monitor:

    python bench/sampler.py [--tables 1000] [--samples 20] [--no-record]

Round trips are counted on the server (the calls pg_stat_statements records for the
sampling role, which runs nothing else), not taken from the sampler's own word. The figures
are printed and written to the "Sampler" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import resource
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from tuner import db
from tuner.sampler import Sampler
from tuner.sandbox import Sandbox

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ROLE = "bench_monitor"

BUILD = """
DO $$
BEGIN
  FOR i IN 1..%(tables)s LOOP
    EXECUTE format('CREATE TABLE t%%s (id int PRIMARY KEY, a int, b int, c text, d date)', i);
    EXECUTE format('CREATE INDEX ON t%%s (a)', i);
    EXECUTE format('CREATE INDEX ON t%%s (b, c)', i);
    EXECUTE format('INSERT INTO t%%s SELECT g, g %%%% 7, g %%%% 11, g::text, DATE ''2026-01-01'' + g
                    FROM generate_series(1, 20) g', i);
  END LOOP;
END $$
"""
# Five statement shapes per table: each (shape, table) pair is its own pg_stat_statements entry.
WORKLOAD = """
DO $$
DECLARE n int;
BEGIN
  FOR i IN 1..%(tables)s LOOP
    EXECUTE format('SELECT count(*) FROM t%%s WHERE a = 1', i) INTO n;
    EXECUTE format('SELECT count(*) FROM t%%s WHERE b = 2 AND c = ''x''', i) INTO n;
    EXECUTE format('SELECT count(id) FROM t%%s WHERE d > DATE ''2026-01-05''', i) INTO n;
    EXECUTE format('SELECT count(*) FROM t%%s WHERE id IN (1, 2, 3)', i) INTO n;
    EXECUTE format('UPDATE t%%s SET b = b + 1 WHERE id = 4', i);
  END LOOP;
END $$
"""


def role_calls(admin: db.Connection) -> tuple[int, float]:
    """Statements the sampling role has run and their server time (ms), as pg_stat_statements
    counts them."""
    rows = db.fetch(
        admin,
        "SELECT coalesce(sum(calls), 0)::int AS calls, coalesce(sum(total_exec_time), 0) AS ms "
        "FROM pg_stat_statements "
        "WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = %s) AND toplevel",
        (ROLE,),
    )
    return int(rows[0]["calls"]), float(rows[0]["ms"])


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()

    with Sandbox(require_hypopg=False) as sandbox:
        dsn = sandbox.create_database("bench_sampler")
        started = time.perf_counter()
        with db.connect(dsn) as conn:
            db.execute(conn, BUILD % {"tables": args.tables})
            db.execute(conn, "ANALYZE")
            db.execute(conn, "SELECT pg_stat_statements_reset()")
            db.execute(conn, WORKLOAD % {"tables": args.tables})
            db.execute(conn, f"CREATE ROLE {ROLE} LOGIN")
            db.execute(conn, f"GRANT pg_monitor TO {ROLE}")
        setup_s = time.perf_counter() - started

        gc.collect()
        rss_before = rss_kib()
        admin = db.connect(dsn)
        load_before = os.getloadavg()[0]
        with Sampler.from_dsn(sandbox.dsn("bench_sampler", user=ROLE)) as sampler:
            begin = time.perf_counter()
            first = sampler.sample()  # cold: reads every text and index definition
            first_ms = (time.perf_counter() - begin) * 1000
            sampler.sample()  # reads the texts of the first sample's own statements
            calls_before, server_before = role_calls(admin)
            cpu_before = time.process_time()
            times: list[float] = []
            for _ in range(args.samples):
                begin = time.perf_counter()
                shot = sampler.sample()
                times.append((time.perf_counter() - begin) * 1000)
            cpu_ms = (time.process_time() - cpu_before) * 1000 / args.samples
            calls_after, server_after = role_calls(admin)
            round_trips = (calls_after - calls_before) / args.samples
            server_ms = (server_after - server_before) / args.samples
            tracemalloc.start()
            sampler.sample()
            _, traced_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        load_after = os.getloadavg()[0]
        admin.close()
        rss_after = rss_kib()
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    figures = {
        "first_ms": first_ms,
        "first_round_trips": first.round_trips,
        "load": (load_before + load_after) / 2,
        "tables": len(shot.tables),
        "indexes": len(shot.indexes),
        "statements": len(shot.queries),
        "round_trips": round_trips,
        "server_ms": server_ms,
        "cpu_ms": cpu_ms,
        "median_ms": statistics.median(times),
        "p95_ms": percentile(times, 0.95),
        "max_ms": max(times),
        "peak_rss_mib": peak_rss / 1024,
        "rss_growth_mib": (rss_after - rss_before) / 1024,
        "traced_peak_mib": traced_peak / 2**20,
        "setup_s": setup_s,
    }
    text = report(figures, args.samples)
    print(text)
    if not args.no_record:
        record(text)
    ok = round_trips <= 5 and figures["median_ms"] < 200
    print("target (≤ 5 round trips, < 200 ms per sample):", "met" if ok else "NOT met")
    return 0 if ok else 1


def report(f: dict[str, float], samples: int) -> str:
    machine = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    return "\n".join([
        "## Sampler",
        "",
        f"`python bench/sampler.py` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}, "
        "sandbox PostgreSQL 15 on the same (shared, 2-core) machine, sampled as a role with "
        f"only pg_monitor; 1-minute load average during the run {f['load']:.1f}.",
        "",
        f"Catalog: {f['tables']:.0f} tables, {f['indexes']:.0f} indexes, "
        f"{f['statements']:.0f} distinct statements in pg_stat_statements "
        f"(built in {f['setup_s']:.1f} s).",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| round trips per sample (counted by the server) | {f['round_trips']:.2f} | ≤ 5 |",
        f"| first (cold) sample: round trips / wall time | {f['first_round_trips']:.0f} / "
        f"{f['first_ms']:.0f} ms | ≤ 5 |",
        f"| wall time per sample, median of {samples} | {f['median_ms']:.0f} ms | < 200 ms |",
        f"| wall time per sample, p95 / max | {f['p95_ms']:.0f} / {f['max_ms']:.0f} ms | |",
        f"| of which server execution (pg_stat_statements), mean | {f['server_ms']:.0f} ms | |",
        f"| of which tuner process CPU (decode + models), mean | {f['cpu_ms']:.0f} ms | |",
        f"| process peak RSS (ru_maxrss, Python + libpq) | {f['peak_rss_mib']:.0f} MiB | |",
        f"| RSS growth over all samples | {f['rss_growth_mib']:.1f} MiB | |",
        f"| Python allocations at the peak of one sample (tracemalloc) | "
        f"{f['traced_peak_mib']:.1f} MiB | |",
        "",
    ])  # fmt: skip


def record(section: str) -> None:
    """Replace the Sampler section of RESULTS.md (or append it); other sections stay as they are."""
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(r"(?ms)^## Sampler\n.*?(?=^## |\Z)")
    if pattern.search(current):
        updated = pattern.sub(lambda _: section + "\n", current)
    else:
        updated = current.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
