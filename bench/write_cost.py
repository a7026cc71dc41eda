"""What each index on bookings costs the booking workload's writes, timed alone.

    python bench/write_cost.py [--scale 1] [--calls 1000] [--json FILE]

On a throwaway PostgreSQL 15 (the sandbox, its usual settings) loaded with the booking
data at `--scale`, bookings is copied to bookings_bare (primary key only, which it keeps);
the indexes the daemon kept on bookings in booking run D are added to bookings one at a
time. After each, every write template on bookings runs `--calls` times against each of
the two tables in one session, nothing else running, the two calls of each pair one
after the other with the same values — so the machine's drift, which moves single-session
medians by ±20 % between runs minutes apart here, falls on both alike. Twice: as the
daemon benchmark's serial timing sends statements (planned at each call) and as prepared
statements (planned once). Printed: the median on each table and their ratio.

Why: the daemon benchmark's first target asks that no statement ends more than 10 %
slower than before. A statement on a table pays for each of its indexes — the planner
looks at every one, the executor opens and locks every one, an INSERT adds an entry to
every one — so this prints what that target leaves room for, against what the reads need.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon import bare_copy, time_pairs  # bench/ is on sys.path when run as a script

from tuner import db
from tuner.demo import booking
from tuner.sandbox import Sandbox

# The secondary indexes on bookings after booking run D (bench/daemon_booking.json), in the
# order the reads need them most: latest_bookings, user_bookings, package_latest_bookings,
# package_availability, then the rest.
STEPS = (
    ("created_at", "(created_at)"),
    ("user_id shield", "(user_id, created_at) INCLUDE (amount, check_in, check_out, id,"
                       " package_id, status)"),
    ("package_id shield", "(package_id, created_at) INCLUDE (amount, check_in, id, status,"
                          " user_id)"),
    ("package_id, status", "(package_id, status, check_in) INCLUDE (check_out)"),
    ("check_out", "(check_out)"),
    ("user_id plain", "(user_id, created_at)"),
)  # fmt: skip
WRITES = ("create_booking", "confirm_booking", "cancel_booking")


def time_writes(conn: db.Connection, calls: int, prepare: bool) -> dict[str, dict[str, float]]:
    """Each write template on bookings `calls` times on bookings_bare and on bookings."""
    return {name: time_pairs(conn, name, calls, "write-cost", prepare) for name in WRITES}


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"args": vars(args), "steps": []}
    with Sandbox() as sandbox:
        dsn = sandbox.create_database("booking")
        started = time.monotonic()
        out["rows"] = booking.load(dsn, args.scale)
        print(f"loaded in {time.monotonic() - started:.0f}s: {out['rows']}", flush=True)
        with db.connect(dsn, application_name="write-cost") as conn:
            conn.prepare_threshold = None
            bare_copy(conn, "bookings")
            db.execute(conn, "VACUUM ANALYZE bookings")
            time_writes(conn, args.calls, prepare=False)  # warm-up: caches, and the updated
            # rows moved off the bulk-loaded full pages, as a running workload has them
            steps = [("primary key only", None), *STEPS]
            for number, (label, definition) in enumerate(steps):
                if definition is not None:
                    db.execute(conn, f"CREATE INDEX ON bookings {definition}")
                    db.execute(conn, "ANALYZE bookings")
                step: dict[str, Any] = {"indexes": number, "added": label}
                for mode, prepare in (("planned", False), ("prepared", True)):
                    step[mode] = time_writes(conn, args.calls, prepare=prepare)
                    print(_line(step, mode), flush=True)
                out["steps"].append(step)
    return out


def _line(step: dict[str, Any], mode: str) -> str:
    cells = [
        f"{name} {f['bare_ms']:.3f} → {f['indexed_ms']:.3f} ms x{f['ratio']:.2f}"
        for name, f in step[mode].items()
    ]
    return f"{step['indexes']} + {step['added']:<18} {mode:<8} " + "; ".join(cells)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="booking data scale (1)")
    parser.add_argument("--calls", type=int, default=1000, help="calls per write and step")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    out = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
