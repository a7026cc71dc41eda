"""Is a slowdown of untouched TPC-H queries the page cache or the machine?

    python bench/drift.py        (as root: it drops the kernel's page cache once)

Loads TPC-H SF1 into a sandbox, runs Q01, Q06 and Q13 three times each with the data hot,
drops the page cache, and runs them again. Compare with the serial BEFORE of a daemon run.
"""

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tuner import db
from tuner.sandbox import Sandbox

tpch = importlib.import_module("bench.tpch")
with Sandbox() as sb:
    dsn = sb.create_database("tpch")
    tpch.load(dsn, 1)
    texts = tpch.queries()

    def run(label: str) -> None:
        with db.connect(dsn) as conn:
            for q in (1, 6, 13):
                ts = []
                for _ in range(3):
                    t = time.monotonic()
                    db.fetch(conn, texts[q])
                    ts.append(time.monotonic() - t)
                print(label, f"Q{q:02d}", " ".join(f"{x:.2f}" for x in ts), flush=True)

    run("hot")
    Path("/proc/sys/vm/drop_caches").write_text("1\n")
    run("dropped")
