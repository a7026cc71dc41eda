"""Verification end to end on a real server, without the daemon: both ways.

Each test samples pg_stat_statements with the Sampler around a baseline workload, builds
indexes, runs the workload again, takes plans before and after with EXPLAIN, and asks
`verify` for a verdict from the two windows `workload.diff` computes.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

from tests import trap
from tuner import db
from tuner.config import Level, Mode, Policy, Target
from tuner.models import Outcome, TableRef, Verdict, Workload
from tuner.sampler import Sampler
from tuner.verify import baseline_samples, verify, watch
from tuner.workload import diff

MODERATE = Policy(
    target=Target(dsn="host=localhost dbname=app"), level=Level.MODERATE, mode=Mode.APPLY
)


def window(sampler: Sampler, run: Callable[[], None]) -> Workload:
    """The workload `run` produces, as one window between two snapshots."""
    before = sampler.sample()
    run()
    return diff(before, sampler.sample())


def plan(conn: db.Connection, query: str, params: tuple[Any, ...]) -> Any:
    rows = db.fetch(conn, "EXPLAIN (FORMAT JSON) " + query, params)
    return rows[0]["QUERY PLAN"]


def queryid_of(workload: Workload, fragment: str) -> int:
    """The id pg_stat_statements gave the statement whose normalized text holds `fragment`."""
    found = {q.queryid for q in workload.queries if fragment in q.query}
    assert len(found) == 1, (fragment, [q.query for q in workload.queries])
    (queryid,) = found
    return queryid


def head(query: str) -> str:
    """The start of a statement, before any constant pg_stat_statements would normalize."""
    return re.split(r" WHERE | ORDER BY | LIMIT ", query)[0]


def verdict_for(
    conn: db.Connection,
    dsn: str,
    table: TableRef,
    change: Callable[[], None],
    workload: Callable[[], None],
    reads: dict[str, tuple[Any, ...]],
    policy: Policy = MODERATE,
    leading: str | None = None,
) -> Verdict:
    """Baseline, change, verification window, verdict — the daemon's steps, in a row.

    `reads` maps each read statement of the workload to example parameters for EXPLAIN;
    `leading` is the new index's leading column, as the daemon passes it.
    """
    with Sampler.from_dsn(dsn) as sampler:
        baseline = window(sampler, workload)
        plans_before = {queryid_of(baseline, head(q)): plan(conn, q, p)
                        for q, p in reads.items()}  # fmt: skip
        change()
        after = window(sampler, workload)
        plans_after = {queryid_of(after, head(q)): plan(conn, q, p)
                       for q, p in reads.items()}  # fmt: skip
    texts = {q.queryid: q.query for q in (*baseline.queries, *after.queries)}
    watched = watch(plans_before, plans_after, texts, table, leading=leading)
    return verify(baseline, after, watched, policy)


def test_invariant_6_live_an_index_that_speeds_reads_is_kept(conn: db.Connection, dsn: str) -> None:
    db.execute(conn, "CREATE TABLE readings (id bigint PRIMARY KEY, sensor int, value float8)")
    db.execute(conn, "INSERT INTO readings SELECT g, g % 5000, random() "
                     "FROM generate_series(1, 200000) g")  # fmt: skip
    db.execute(conn, "ANALYZE readings")
    lookup = "SELECT count(*), avg(value) FROM readings WHERE sensor = %s"
    rng = random.Random(7)

    def reads() -> None:
        for _ in range(60):
            db.fetch(conn, lookup, (rng.randrange(5000),))

    def build() -> None:
        db.execute(conn, "CREATE INDEX readings_sensor ON readings (sensor)")

    v = verdict_for(conn, dsn, TableRef("public", "readings"), build, reads, {lookup: (42,)})
    assert v.outcome is Outcome.KEEP, v.reason
    (q,) = v.queries  # the lookup's plan changed from a scan of the table to the index
    assert q.calls_before == 60 and q.calls_after == 60
    assert q.change is not None and q.change < -0.5 and q.significant
    assert v.writes is None  # nothing wrote to the table
    assert v.net_change is not None and v.net_change <= -MODERATE.resolved.min_net_gain


def test_invariant_6_live_indexes_that_slow_a_write_heavy_table_are_rolled_back(
    conn: db.Connection, dsn: str
) -> None:
    columns = [f"c{i}" for i in range(8)]
    db.execute(conn, "CREATE TABLE events (id bigserial PRIMARY KEY, "
                     + ", ".join(f"{c} text" for c in columns) + ")")  # fmt: skip
    md5s = ", ".join(f"md5(random()::text) || md5(g::text || '{c}')" for c in columns)
    db.execute(conn, f"INSERT INTO events ({', '.join(columns)}) "
                     f"SELECT {md5s} FROM generate_series(1, 20000) g")  # fmt: skip
    db.execute(conn, "ANALYZE events")
    insert = (f"INSERT INTO events ({', '.join(columns)}) "
              f"VALUES ({', '.join(['%s'] * len(columns))})")  # fmt: skip
    lookup = "SELECT id FROM events WHERE c3 = %s"
    rng = random.Random(11)

    def text() -> str:
        return "".join(rng.choices(string.hexdigits.lower(), k=64))

    def writes() -> None:
        for i in range(1500):
            db.execute(conn, insert, tuple(text() for _ in columns))
            if i % 500 == 0:  # a rare read the new indexes serve: 3 calls, too few to judge
                db.fetch(conn, lookup, (text(),))

    def build() -> None:
        for c in columns:
            db.execute(conn, f"CREATE INDEX events_{c} ON events ({c})")

    # Eight indexes add ~0.1 ms to each insert here: with the floor at 0 (the default, set
    # here explicitly) the bound itself rolls them back; under a 0.25 ms floor only the net
    # change would weigh them (test_verify).
    strict = MODERATE.model_copy(
        update={"thresholds": MODERATE.thresholds.model_copy(
            update={"write_regression_floor_ms": 0.0})}
    )  # fmt: skip
    v = verdict_for(
        conn, dsn, TableRef("public", "events"), build, writes, {lookup: ("x",)}, strict
    )
    assert v.writes is not None and v.writes.calls_before == v.writes.calls_after == 1500
    if not v.writes.significant:
        # Eight indexes' cost per insert is a fraction of a millisecond; on some runs of a
        # loaded machine the inserts' own noise hides it. Nothing to roll back for then.
        pytest.skip(f"the indexes did not measurably slow the inserts this run: {v.reason}")
    assert v.outcome is Outcome.ROLLBACK, v.reason
    assert v.writes.significant and v.writes.change is not None
    assert v.writes.change > MODERATE.resolved.max_query_regression
    assert v.reason.startswith("slowed beyond the 10% bound: writes: ")
    (read,) = v.queries  # watched (its plan changed), but too rare to weigh anything
    assert read.calls_after == 3 and not read.measured
    assert v.net_change is not None and v.net_change > 0  # only the slower writes count
    assert v.trapped == () and "trapped" not in v.figures()  # no read got faster: no trap


def test_invariant_6_live_a_guard_rolls_back_the_index_that_traps_it_despite_a_net_gain(
    conn: db.Connection, dsn: str
) -> None:
    # The planner's trap (tests/trap.py): for customer 1 an index on placed_at alone makes
    # the planner walk it backwards through half the table, several times slower than its own.
    trap.make_orders(conn, "customer")

    def build() -> None:
        db.execute(conn, "CREATE INDEX orders_placed_at ON orders (placed_at)")

    # EXPLAIN with an ordinary customer: its plan keeps the customer index, so the daemon
    # watches the statement only because it may use an index led by placed_at — a guard.
    v = verdict_for(
        conn, dsn, TableRef("public", "orders"), build, lambda: trap.run(dsn),
        {trap.LATEST: (trap.ORDINARY,), trap.REPORT: ()}, leading="placed_at",
    )  # fmt: skip
    slowed = [f for f in v.queries if f.change is not None and f.change > 0.1 and f.significant]
    if not slowed:
        # The trap is the planner's choice and a matter of timing: on some runs (a loaded
        # machine, a warm cache) the flagship's read is no slower with the index. Then
        # there is nothing for the guard to catch; what it must do is tested in test_verify.
        pytest.skip(f"the planner's trap did not slow the flagship's read this run: {v.reason}")
    assert v.outcome is Outcome.ROLLBACK, v.reason
    (trapped,) = [f for f in v.queries if f.change is not None and f.change > 0.1]
    (faster,) = [f for f in v.queries if f.change is not None and f.change < -0.5]
    assert trapped.significant and faster.significant and len(v.queries) == 2
    assert v.reason.startswith("slowed beyond the 10% bound: ")
    assert f"query {trapped.queryid}" in v.reason and f"query {faster.queryid}" not in v.reason
    # The guard stays out of the net change: the report's gain alone makes it.
    assert v.net_change is not None and v.net_change < -0.5
    # Slowed while another read got faster: the planner's choice, a read to shield.
    assert v.trapped == (trapped.queryid,)
    assert v.figures()["trapped"] == str(trapped.queryid)


def sampled_window(
    sampler: Sampler, run: Callable[[], None], samples: int
) -> tuple[Workload, list[Workload]]:
    """`run` `samples` times, sampled after each: the whole window and its sample steps."""
    snapshots = [sampler.sample()]
    for _ in range(samples):
        run()
        snapshots.append(sampler.sample())
    steps = [diff(a, b) for a, b in pairwise(snapshots)]
    return diff(snapshots[0], snapshots[-1]), steps


@pytest.mark.hypopg
def test_invariant_6_live_a_a_dropping_an_identical_twin_is_not_rolled_back(
    conn: db.Connection, dsn: str
) -> None:
    # A/A: of two identical indexes the planner reads the one made last; dropping it moves
    # eight reads to its twin — plans name another index, nothing else changed. Watched
    # all eight at once (Holm) with floors measured in the baseline: kept, not a slowdown.
    # Windows a second apart, the machine's speed moves all eight by up to ±30 % together
    # (CI rolled one back, +26.9 %, p = 0.0025): two lookups on `ledger`, which the drop
    # cannot touch, measure that load, and a drop's queries are judged beyond it.
    db.execute(conn, "CREATE TABLE accounts (id int PRIMARY KEY, region int NOT NULL, "
                     "note text)")  # fmt: skip
    db.execute(conn, "INSERT INTO accounts SELECT g, g % 500, md5(g::text) "
                     "FROM generate_series(1, 50000) g")  # fmt: skip
    db.execute(conn, "CREATE INDEX accounts_region_a ON accounts (region)")
    db.execute(conn, "CREATE INDEX accounts_region_b ON accounts (region)")
    db.execute(conn, "CREATE TABLE ledger (id int PRIMARY KEY, account int NOT NULL, "
                     "amount int)")  # fmt: skip
    db.execute(conn, "INSERT INTO ledger SELECT g, g % 700, g FROM generate_series(1, 50000) g")
    db.execute(conn, "CREATE INDEX ledger_account ON ledger (account)")
    db.execute(conn, "VACUUM ANALYZE accounts, ledger")
    columns = ["id", "note", "region", "id, note", "id, region", "note, region", "*",
               "count(*)"]  # fmt: skip
    reads = [f"SELECT {c} FROM accounts WHERE region = %s" for c in columns]
    others = ["SELECT sum(amount) FROM ledger WHERE account = %s",
              "SELECT * FROM ledger WHERE account = %s"]  # fmt: skip
    rng = random.Random(17)

    def workload() -> None:
        for _ in range(8):
            for read in reads:
                db.fetch(conn, read, (rng.randrange(500),))
            for other in others:
                db.fetch(conn, other, (rng.randrange(700),))

    def plans(workload: Workload) -> dict[int, Any]:
        return {queryid_of(workload, f"SELECT {c} FROM accounts"): plan(conn, r, (7,))
                for c, r in zip(columns, reads, strict=True)}  # fmt: skip

    with Sampler.from_dsn(dsn) as sampler:
        baseline, steps = sampled_window(sampler, workload, 5)
        plans_before = plans(baseline)
        db.execute(conn, "DROP INDEX accounts_region_b")
        after, _ = sampled_window(sampler, workload, 5)
        plans_after = plans(after)
    texts = {
        q.queryid: q.query for q in (*baseline.queries, *after.queries) if "accounts" in q.query
    }  # the table's statements, as the daemon reads them
    controls = {queryid_of(baseline, head(other)) for other in others}
    watched = watch(plans_before, plans_after, texts, TableRef("public", "accounts"),
                    controls=controls)  # fmt: skip
    assert len(watched.reads) == 8, "every read moved to the twin"
    samples = baseline_samples(steps, watched.reads)
    v = verify(baseline, after, watched, MODERATE, gain_needed=False, samples=samples,
               by_load=True)  # fmt: skip
    assert v.outcome is Outcome.KEEP, (v.reason, v.load_change)
    assert v.load_change is not None, "the ledger's lookups measured the load"
    assert v.method is not None and v.method.test == "Welch t, Holm over 8 tests"
    assert v.method.floor_source == "measured" and v.method.read_floor_ms is not None
    assert v.method.load_scales == "every query"


def trap_plans(conn: db.Connection, workload: Workload) -> dict[int, Any]:
    """The plans of the trap's two reads, the latest orders for the flagship customer."""
    return {queryid_of(workload, head(trap.LATEST)): plan(conn, trap.LATEST, (trap.FLAGSHIP,)),
            queryid_of(workload, head(trap.REPORT)): plan(conn, trap.REPORT, ())}  # fmt: skip


@pytest.mark.hypopg
def test_invariant_6_live_a_trap_is_rolled_back_at_the_first_look(
    conn: db.Connection, dsn: str
) -> None:
    # The trap (tests/trap.py): the flagship's latest orders, 0.05 ms on the application's
    # (customer, placed_at), take 10-25 ms once an index on placed_at exists. A quarter of
    # the baseline's calls is overwhelming evidence: no need to wait for the window's end.
    trap.make_orders(conn, "customer, placed_at")
    with Sampler.from_dsn(dsn) as sampler:
        baseline, steps = sampled_window(sampler, lambda: trap.run(dsn, 40, 32), 4)
        plans_before = trap_plans(conn, baseline)
        db.execute(conn, "CREATE INDEX orders_placed_at ON orders (placed_at)")
        after = window(sampler, lambda: trap.run(dsn, 40, 32))  # a quarter of the calls
        plans_after = trap_plans(conn, after)
    texts = {q.queryid: q.query for q in (*baseline.queries, *after.queries)}
    watched = watch(plans_before, plans_after, texts, TableRef("public", "orders"),
                    leading="placed_at")  # fmt: skip
    samples = baseline_samples(steps, watched.reads)
    v = verify(baseline, after, watched, MODERATE, samples=samples, look=1)
    assert v.outcome is Outcome.ROLLBACK, (v.reason, [f.describe() for f in v.queries])
    assert v.reason.startswith("slowed beyond the 10% bound: ")
    assert v.method is not None and (v.method.look, v.method.looks) == (1, 8)
    assert v.method.threshold is not None and v.method.threshold < 1e-4
