"""What a btree and a hash index on booking_events (trace_id) cost the log inserts.

    python bench/hash_cost.py [--rows 2000000] [--calls 1000] [--json FILE]

On a throwaway PostgreSQL 15 (the sandbox, its usual settings) loaded with the booking
data at scale 0.25, booking_events is grown to `--rows` rows (booking run I ended near
2 M) and copied to booking_events_bare (primary key only). Then, in turn, a btree, a hash
and a btree again on booking_events (trace_id): after each, the workload's `log_events`
(20 rows a statement, random uuids) runs `--calls` times on each table in pairs, the two
calls of a pair one right after the other with the same values (bench/daemon.py's
`time_pairs`), and the rare `event_by_trace` lookup runs 200 times for trace ids that
exist. The btree is measured twice, before and after the hash, so that the machine's
drift between the steps shows. Printed: medians, each index's ratio to the bare copy, and
its size.

Why: an index on a random key makes every insert write into a random page of it. A btree
stores the 16-byte uuid in a sorted leaf; a hash stores a 4-byte hash code in a bucket
page. `tuner/advisor.py` (HASH_WRITE_SHARE) prices a hash's write cost from this.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon import bare_copy, time_pairs  # bench/ is on sys.path when run as a script

from tuner import db
from tuner.demo import booking
from tuner.sandbox import Sandbox

STEPS = ("btree", "hash", "btree")
LOOKUP = booking.TEMPLATES["event_by_trace"].sql


def lookups(conn: db.Connection, calls: int = 200) -> float:
    """Median ms of `event_by_trace` for `calls` trace ids drawn from the table."""
    ids = [r["trace_id"] for r in db.fetch(
        conn, "SELECT trace_id FROM booking_events TABLESAMPLE SYSTEM (1) LIMIT %s", (calls,)
    )]  # fmt: skip
    random.Random(3).shuffle(ids)
    times = []
    for trace_id in ids:
        started = time.monotonic()
        conn.execute(LOOKUP, (trace_id,)).fetchall()
        times.append((time.monotonic() - started) * 1000.0)
    return statistics.median(times)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"args": vars(args), "steps": []}
    with Sandbox() as sandbox:
        dsn = sandbox.create_database("booking")
        out["rows"] = booking.load(dsn, 0.25)
        with db.connect(dsn, application_name="hash-cost") as conn:
            conn.prepare_threshold = None
            more = max(0, args.rows - out["rows"]["booking_events"])
            db.execute(conn, "INSERT INTO booking_events (booking_id, kind, payload)"
                             " SELECT 1 + (random() * 500000)::int, 'viewed', '{}'::jsonb"
                             " FROM generate_series(1, %s)", (more,))  # fmt: skip
            bare_copy(conn, "booking_events")
            db.execute(conn, "VACUUM ANALYZE booking_events")
            time_pairs(conn, "log_events", args.calls, "warm-up")  # caches, both tables
            for number, method in enumerate(STEPS):
                db.execute(conn, f"CREATE INDEX by_trace ON booking_events USING {method}"
                                 " (trace_id)")  # fmt: skip
                db.execute(conn, "VACUUM ANALYZE booking_events")
                step: dict[str, Any] = {"step": number, "method": method}
                step["bytes"] = int(db.fetch(
                    conn, "SELECT pg_relation_size('by_trace') AS b")[0]["b"])  # fmt: skip
                step["lookup_ms"] = lookups(conn)
                step["log_events"] = time_pairs(conn, "log_events", args.calls, f"hash-{number}")
                db.execute(conn, "DROP INDEX by_trace")
                f = step["log_events"]
                print(f"{method:<6} {step['bytes'] / 2**20:6.1f} MiB  log_events "
                      f"{f['bare_ms']:.3f} → {f['indexed_ms']:.3f} ms x{f['ratio']:.2f} "
                      f"(+{f['indexed_ms'] - f['bare_ms']:.3f} ms)  event_by_trace "
                      f"{step['lookup_ms']:.3f} ms", flush=True)  # fmt: skip
                out["steps"].append(step)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="booking_events rows")
    parser.add_argument("--calls", type=int, default=1000, help="log_events pairs per step")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    out = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
