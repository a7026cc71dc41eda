"""Which of two identical indexes to drop: the one the planner reads, or the other?

    python bench/twin_drop.py [--seconds 30]

The verification benchmark's A/A database (bench/verification.py: `accounts` with two
identical indexes on region, 2 clients, 10 % updates, the reads of AA_READS) on a throwaway
PostgreSQL 15, without the daemon: the clients run `--seconds` with both indexes, then one
is dropped (DROP INDEX CONCURRENTLY) and they run `--seconds` more. Twice, on fresh
databases: dropping the twin the planner reads (the reads move to the other), and dropping
the one no read uses. Prints the reads' mean time per 5 s and the ratio of the after
window's mean to the before window's.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.verification import AA_READS, load_aa
from tuner.sandbox import Sandbox


def client(dsn: str, stop: threading.Event, times: list[tuple[float, float]]) -> None:
    rnd = random.Random()
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        while not stop.is_set():
            if rnd.random() < 0.1:
                conn.execute("UPDATE accounts SET score = score + 1 WHERE id = %s",
                             (rnd.randint(1, 200000),))  # fmt: skip
            else:
                start = time.perf_counter()
                conn.execute(rnd.choice(AA_READS), (rnd.randrange(2000),)).fetchall()
                times.append((time.monotonic(), (time.perf_counter() - start) * 1000))


def run(sandbox: Sandbox, name: str, drop: str, seconds: float) -> float:
    dsn = sandbox.create_database(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        load_aa(conn)
        plan = conn.execute("EXPLAIN SELECT * FROM accounts WHERE region = 5").fetchall()
    read = "accounts_region_b" if any("accounts_region_b" in r[0] for r in plan) else "a"
    times: list[tuple[float, float]] = []
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(dsn, stop, times)) for _ in range(2)]
    begin = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP INDEX CONCURRENTLY {drop}")
    dropped = time.monotonic()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    print(f"{name}: the planner reads {read}; dropped {drop} at {dropped - begin:.1f} s, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    for s in range(0, int(2 * seconds), 5):
        window = [ms for at, ms in times if begin + s <= at < begin + s + 5]
        side = "after " if begin + s >= dropped else "before"
        print(
            f"  {s:3d}-{s + 5:3d} s {side} {len(window):6d} reads,"
            f" mean {statistics.fmean(window):.3f} ms"
        )
    before = statistics.fmean(ms for at, ms in times if at < dropped)
    after = statistics.fmean(ms for at, ms in times if at >= dropped)
    print(f"  mean before {before:.3f} ms, after {after:.3f} ms, ratio {after / before:.2f}")
    return after / before


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    with Sandbox() as sandbox:
        read = run(sandbox, "drop_the_read_twin", "accounts_region_b", args.seconds)
        unused = run(sandbox, "drop_the_unused_twin", "accounts_region_a", args.seconds)
    print(
        f"ratio_after_dropping_the_read_twin={read:.2f}"
        f" ratio_after_dropping_the_unused_twin={unused:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
