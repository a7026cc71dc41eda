"""TPC-H for the benchmarks: load the data, run the 22 queries, and their normalized forms.

The data comes from `tpchgen-cli` (PyPI); the eight tables get their primary keys and
nothing else: no secondary indexes and no foreign keys, so that everything an index could
do for the queries is left for the tuner to find. The 22 queries (in `bench/tpch/queries/`)
follow the specification with its validation parameters; Q15's view is written as a CTE.

    python bench/tpch.py load --dsn "host=... dbname=tpch" --scale 1
    python bench/tpch.py run --dsn "..." [--repeat 3] [--timeout 120] [--json out.json]
    python bench/tpch.py normalized --dsn "..." [--check | --write]
    python bench/tpch.py sandbox --scale 0.1 [--repeat 1]      # throwaway server: load + run
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg

from tuner import db
from tuner.errors import Canceled, MissingPrivilege, TunerError

HERE = Path(__file__).resolve().parent / "tpch"
QUERY_DIR = HERE / "queries"
STATIC_NORMALIZED = HERE / "normalized.json"
QUERY_NUMBERS = tuple(range(1, 23))

# The specification's column types; keys are integers (enough up to scale factor ~300).
TABLES: dict[str, tuple[str, str]] = {
    "region": (
        "r_regionkey integer not null, r_name char(25) not null, r_comment varchar(152)",
        "r_regionkey",
    ),
    "nation": (
        "n_nationkey integer not null, n_name char(25) not null, n_regionkey integer not null,"
        " n_comment varchar(152)",
        "n_nationkey",
    ),
    "part": (
        "p_partkey integer not null, p_name varchar(55) not null, p_mfgr char(25) not null,"
        " p_brand char(10) not null, p_type varchar(25) not null, p_size integer not null,"
        " p_container char(10) not null, p_retailprice numeric(15,2) not null,"
        " p_comment varchar(23) not null",
        "p_partkey",
    ),
    "supplier": (
        "s_suppkey integer not null, s_name char(25) not null, s_address varchar(40) not null,"
        " s_nationkey integer not null, s_phone char(15) not null,"
        " s_acctbal numeric(15,2) not null, s_comment varchar(101) not null",
        "s_suppkey",
    ),
    "partsupp": (
        "ps_partkey integer not null, ps_suppkey integer not null,"
        " ps_availqty integer not null, ps_supplycost numeric(15,2) not null,"
        " ps_comment varchar(199) not null",
        "ps_partkey, ps_suppkey",
    ),
    "customer": (
        "c_custkey integer not null, c_name varchar(25) not null, c_address varchar(40) not null,"
        " c_nationkey integer not null, c_phone char(15) not null,"
        " c_acctbal numeric(15,2) not null, c_mktsegment char(10) not null,"
        " c_comment varchar(117) not null",
        "c_custkey",
    ),
    "orders": (
        "o_orderkey integer not null, o_custkey integer not null, o_orderstatus char(1) not null,"
        " o_totalprice numeric(15,2) not null, o_orderdate date not null,"
        " o_orderpriority char(15) not null, o_clerk char(15) not null,"
        " o_shippriority integer not null, o_comment varchar(79) not null",
        "o_orderkey",
    ),
    "lineitem": (
        "l_orderkey integer not null, l_partkey integer not null, l_suppkey integer not null,"
        " l_linenumber integer not null, l_quantity numeric(15,2) not null,"
        " l_extendedprice numeric(15,2) not null, l_discount numeric(15,2) not null,"
        " l_tax numeric(15,2) not null, l_returnflag char(1) not null,"
        " l_linestatus char(1) not null, l_shipdate date not null, l_commitdate date not null,"
        " l_receiptdate date not null, l_shipinstruct char(25) not null,"
        " l_shipmode char(10) not null, l_comment varchar(44) not null",
        "l_orderkey, l_linenumber",
    ),
}
# Two loaders on two cores: lineitem alone on one, the rest on the other.
LOAD_GROUPS = (
    ("lineitem",),
    ("orders", "partsupp", "part", "customer", "supplier", "nation", "region"),
)
COPY_CHUNK = 1 << 20


# --- the queries -------------------------------------------------------------------------


@cache
def query_text(number: int) -> str:
    """Query `number` (1-22) as plain SQL with its literals, without the leading comment."""
    lines = (QUERY_DIR / f"q{number:02d}.sql").read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.startswith("--")).strip()


def queries() -> dict[int, str]:
    """All 22 queries, by number, as plain SQL with literals (ready to run for real time)."""
    return {n: query_text(n) for n in QUERY_NUMBERS}


EXPLAIN_PREFIX = "EXPLAIN (VERBOSE, FORMAT JSON) "
_ENTRIES = (
    "SELECT s.queryid, s.query, s.toplevel, s.userid, s.dbid FROM pg_stat_statements s"
    " JOIN pg_database d ON d.oid = s.dbid AND d.datname = current_database()"
    " WHERE s.userid = current_user::regrole AND (s.queryid = %s OR s.query = %s)"
    " ORDER BY s.toplevel DESC"
)


def normalized_texts(dsn: str) -> dict[int, str]:
    """Each query as pg_stat_statements normalizes it (`date $1`, `interval $2 day`, ...).

    The server does the normalizing, so the text is exactly what the tuner will see. Each
    query is EXPLAINed, not run: EXPLAIN VERBOSE reports its query identifier, and with
    `pg_stat_statements.track = all` the explained statement is recorded normalized under
    that identifier as a nested (toplevel = false) entry whose text starts with the EXPLAIN
    options; they carry no constants, so cutting them off leaves the exact text a real run
    stores (checked against real runs: see `normalized --check`). Where a real run's
    (toplevel) entry exists, its text is taken as it is. The entries EXPLAIN created are
    removed again where no real run shares their identifier.
    """
    result: dict[int, str] = {}
    with db.connect(dsn) as conn:
        for number in QUERY_NUMBERS:
            explain = EXPLAIN_PREFIX + query_text(number)
            plan = db.fetch(conn, explain)[0]["QUERY PLAN"]
            queryid = int(plan[0]["Query Identifier"])
            rows = db.fetch(conn, _ENTRIES, (queryid, explain))
            texts = [str(r["query"]) for r in rows if r["query"] != explain]
            if not texts:
                raise RuntimeError(
                    f"Q{number}: no pg_stat_statements entry for {queryid}"
                    " (needs pg_stat_statements.track = all)"
                )
            result[number] = texts[0].removeprefix(EXPLAIN_PREFIX)
            if not any(r["toplevel"] for r in rows if r["query"] != explain):
                _forget(conn, rows[0]["userid"], rows[0]["dbid"], queryid)
            for row in rows:  # the EXPLAIN utility statement's own entry, with its literals
                if row["query"] == explain:
                    _forget(conn, row["userid"], row["dbid"], int(row["queryid"]))
    return result


def _forget(conn: db.Connection, userid: int, dbid: int, queryid: int) -> None:
    """Remove one pg_stat_statements entry; without the privilege, leave it."""
    try:
        db.execute(conn, "SELECT pg_stat_statements_reset(%s, %s, %s)", (userid, dbid, queryid))
    except MissingPrivilege:
        print(f"note: may not reset pg_stat_statements entry {queryid}", file=sys.stderr)


def static_normalized_texts() -> dict[int, str]:
    """The normalized forms recorded from PostgreSQL 15 (for tests without a server)."""
    data = json.loads(STATIC_NORMALIZED.read_text(encoding="utf-8"))
    return {int(k): str(v) for k, v in data.items()}


# --- loading -----------------------------------------------------------------------------


def generate(scale: float, outdir: Path, threads: int = 2) -> float:
    """Write the eight tables as CSV files into `outdir` with tpchgen-cli; seconds taken."""
    exe = shutil.which("tpchgen-cli") or str(Path(sys.executable).parent / "tpchgen-cli")
    started = time.perf_counter()
    subprocess.run(
        [exe, "csv", "-s", f"{scale:g}", "-o", str(outdir), "-n", str(threads), "-q",
         "--overwrite"],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def _copy_file(conn: psycopg.Connection[Any], table: str, path: Path) -> None:
    # Truncated and filled in one transaction, so COPY FREEZE writes the rows frozen and
    # all-visible: no hint-bit writes or VACUUM later, index-only scans work from the start.
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"TRUNCATE {table}")
        stmt = f"COPY {table} FROM STDIN (FORMAT csv, HEADER true, FREEZE true)"
        with cur.copy(stmt) as copy, path.open("rb") as src:
            while chunk := src.read(COPY_CHUNK):
                copy.write(chunk)


def _in_threads(dsn: str, groups: Iterable[Sequence[str]], work: Any) -> None:
    """Run `work(conn, table)` for each group's tables in order, one thread per group."""
    errors: list[BaseException] = []

    def worker(tables: Sequence[str]) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SET maintenance_work_mem = '1GB'")
                for table in tables:
                    work(conn, table)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(g,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@dataclass(frozen=True)
class LoadReport:
    """How long each phase of a load took, in seconds, and the resulting sizes."""

    scale: float
    generate_s: float
    copy_s: float
    primary_keys_s: float
    analyze_s: float
    total_s: float
    rows: dict[str, int]
    database_bytes: int


def load(dsn: str, scale: float = 1.0, workdir: Path | None = None) -> LoadReport:
    """Generate TPC-H at `scale` and load it into `dsn`: 8 tables, primary keys, ANALYZE.

    Existing TPC-H tables are dropped first. The CSV files go to a temporary directory
    under `workdir` (default: the system's) that is removed afterwards.
    """
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tpch-", dir=workdir))
    try:
        gen_s = generate(scale, tmp)
        with db.connect(dsn) as conn:
            for table, (columns, _pk) in TABLES.items():
                db.execute(conn, f"DROP TABLE IF EXISTS {table} CASCADE")
                db.execute(conn, f"CREATE TABLE {table} ({columns})")
        t0 = time.perf_counter()
        _in_threads(
            dsn, LOAD_GROUPS, lambda conn, table: _copy_file(conn, table, tmp / f"{table}.csv")
        )
        copy_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    _in_threads(
        dsn, LOAD_GROUPS,
        lambda conn, table: conn.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({TABLES[table][1]})"
        ),
    )  # fmt: skip
    pk_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _in_threads(dsn, LOAD_GROUPS, lambda conn, table: conn.execute(f"ANALYZE {table}"))
    analyze_s = time.perf_counter() - t0
    with db.connect(dsn) as conn:
        rows = {t: int(db.fetch(conn, f"SELECT count(*) AS n FROM {t}")[0]["n"]) for t in TABLES}
        size = int(db.fetch(conn, "SELECT pg_database_size(current_database()) AS b")[0]["b"])
    return LoadReport(
        scale=scale, generate_s=round(gen_s, 1), copy_s=round(copy_s, 1),
        primary_keys_s=round(pk_s, 1), analyze_s=round(analyze_s, 1),
        total_s=round(time.perf_counter() - started, 1), rows=rows, database_bytes=size,
    )  # fmt: skip


# --- running -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryTiming:
    """One query's runs: status 'ok', 'timeout' or 'error', wall seconds per run, rows."""

    number: int
    status: str
    seconds: list[float]
    rows: int
    error: str = ""

    @property
    def best(self) -> float | None:
        return min(self.seconds) if self.seconds else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


def run_query(
    conn: db.Connection, number: int, repeat: int = 1, timeout_s: float = 120.0
) -> QueryTiming:
    """Run query `number` `repeat` times for real; a timeout or error ends its runs."""
    db.execute(conn, f"SET statement_timeout = '{int(timeout_s * 1000)}ms'")
    seconds: list[float] = []
    rows = 0
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            rows = len(db.fetch(conn, query_text(number)))
            seconds.append(round(time.perf_counter() - t0, 3))
    except TunerError as exc:
        # db.fetch reports a statement timeout as Canceled.
        if isinstance(exc, Canceled) or isinstance(exc.__cause__, Canceled):
            return QueryTiming(number, "timeout", seconds, rows, f"over {timeout_s:g} s")
        return QueryTiming(number, "error", seconds, rows, str(exc).strip())
    finally:
        db.execute(conn, "RESET statement_timeout")
    return QueryTiming(number, "ok", seconds, rows)


def run(
    dsn: str,
    repeat: int = 1,
    timeout_s: float = 120.0,
    numbers: Sequence[int] = QUERY_NUMBERS,
    progress: bool = False,
) -> list[QueryTiming]:
    """Run the queries in order on one connection; each one `repeat` times."""
    timings = []
    with db.connect(dsn, application_name="tpch-bench") as conn:
        for number in numbers:
            timing = run_query(conn, number, repeat, timeout_s)
            if progress:
                print(f"  Q{number:02d} {timing.status} {timing.seconds}", file=sys.stderr)
            timings.append(timing)
    return timings


def format_table(timings: Sequence[QueryTiming]) -> str:
    """A plain-text table of per-query times (best and median of the runs) and the total."""
    lines = [f"{'query':>5}  {'status':<7}  {'best s':>9}  {'median s':>9}  {'rows':>5}"]
    for t in timings:
        best = f"{t.best:9.3f}" if t.best is not None else f"{'-':>9}"
        med = f"{t.median:9.3f}" if t.median is not None else f"{'-':>9}"
        lines.append(f"  Q{t.number:02d}  {t.status:<7}  {best}  {med}  {t.rows:>5}  {t.error}")
    done = [t.best for t in timings if t.status == "ok" and t.best is not None]
    lines.append(f"total of best times over {len(done)} completed queries: {sum(done):.1f} s")
    return "\n".join(lines)


def timings_json(timings: Sequence[QueryTiming]) -> list[dict[str, Any]]:
    """The timings as JSON-ready dicts (with best and median)."""
    return [{**asdict(t), "best": t.best, "median": t.median} for t in timings]


# --- command line ------------------------------------------------------------------------


def _print_load(report: LoadReport) -> None:
    print(
        f"TPC-H SF {report.scale:g}: generate {report.generate_s} s, copy {report.copy_s} s,"
        f" primary keys {report.primary_keys_s} s, analyze {report.analyze_s} s,"
        f" total {report.total_s} s; database {report.database_bytes / 2**20:.0f} MiB"
    )
    print("rows: " + ", ".join(f"{t} {n}" for t, n in report.rows.items()))


def _print_run(timings: Sequence[QueryTiming], json_path: str | None) -> None:
    print(format_table(timings))
    text = json.dumps(timings_json(timings), indent=1)
    if json_path:
        Path(json_path).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)


def _normalized_command(dsn: str, check: bool, write: bool) -> int:
    live = normalized_texts(dsn)
    if write:
        STATIC_NORMALIZED.write_text(
            json.dumps({str(k): v for k, v in live.items()}, indent=1) + "\n", encoding="utf-8"
        )
    if check:
        static = static_normalized_texts()
        differ = [n for n in QUERY_NUMBERS if static.get(n) != live[n]]
        print("static copy matches the server" if not differ else f"differ: {differ}")
        return 1 if differ else 0
    for number, text in live.items():
        print(f"-- Q{number}\n{text};\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    p_load = sub.add_parser("load", help="generate and load TPC-H")
    p_load.add_argument("--dsn", required=True)
    p_load.add_argument("--scale", type=float, default=1.0)
    p_load.add_argument("--workdir", type=Path, default=None)
    p_run = sub.add_parser("run", help="run the 22 queries and time them")
    p_run.add_argument("--dsn", required=True)
    p_norm = sub.add_parser("normalized", help="print the pg_stat_statements forms")
    p_norm.add_argument("--dsn", required=True)
    p_norm.add_argument("--check", action="store_true", help="compare with the static copy")
    p_norm.add_argument("--write", action="store_true", help="rewrite the static copy")
    p_box = sub.add_parser("sandbox", help="load and run in a throwaway server")
    p_box.add_argument("--scale", type=float, default=0.1)
    p_box.add_argument("--workdir", type=Path, default=None)
    for p in (p_run, p_box):
        p.add_argument("--repeat", type=int, default=1)
        p.add_argument("--timeout", type=float, default=120.0, help="seconds per query")
        p.add_argument("--queries", default="", help="comma-separated numbers (default all)")
        p.add_argument("--json", default=None, help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)

    if args.command == "load":
        _print_load(load(args.dsn, args.scale, args.workdir))
        return 0
    if args.command == "normalized":
        return _normalized_command(args.dsn, args.check, args.write)
    numbers = [int(n) for n in args.queries.split(",") if n] or list(QUERY_NUMBERS)
    if args.command == "run":
        _print_run(run(args.dsn, args.repeat, args.timeout, numbers, progress=True), args.json)
        return 0
    from tuner.sandbox import Sandbox

    with Sandbox() as sandbox:
        dsn = sandbox.create_database("tpch")
        _print_load(load(dsn, args.scale, args.workdir))
        _print_run(run(dsn, args.repeat, args.timeout, numbers, progress=True), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
