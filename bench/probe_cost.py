"""What the untrusted-code probe (issue 15.1) adds to the what-if path, per statement.

    python bench/probe_cost.py [--statements 200]

On a throwaway PostgreSQL (the sandbox) with one table of 100,000 rows and 10 columns,
`--statements` distinct two-parameter lookups are made ready for costing
(`WhatIf.prepare`: PREPARE, the parameters' types, the probe, the first EXPLAIN), then
probed once more alone (`WhatIf.untrusted`: BEGIN, CREATE FUNCTION in pg_temp, the
dependency walk, ROLLBACK). Printed: milliseconds per statement for each. The probe runs
once per statement and advise cycle, against thousands of EXPLAINs for the costing.
"""

from __future__ import annotations

import argparse
import time

from tuner import db
from tuner.sandbox import Sandbox
from tuner.whatif import WhatIf, read_schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=200)
    n = parser.parse_args().statements
    with Sandbox() as sandbox, db.connect(sandbox.dsn()) as conn:
        db.execute(conn, "CREATE EXTENSION hypopg")
        columns = ", ".join(f"g % {7 + i * 13} AS c{i}" for i in range(10))
        db.execute(conn, f"CREATE TABLE t AS SELECT g AS id, {columns}"
                         " FROM generate_series(1, 100000) g")  # fmt: skip
        db.execute(conn, "ANALYZE t")
        texts = [f"SELECT id, c{i % 10} FROM t WHERE c{(i // 10) % 10} = $1 AND c{i % 7} < $2"
                 for i in range(n)]  # fmt: skip
        with WhatIf(conn, read_schema(conn)) as whatif:
            started = time.monotonic()
            for key, text in enumerate(texts):
                whatif.prepare(key, text, ())
            prepared = time.monotonic()
            for text in texts:
                whatif.untrusted(text, ["integer", "integer"])
            probed = time.monotonic()
    print(f"{n} statements: prepare (PREPARE, types, probe, first EXPLAIN) "
          f"{1000 * (prepared - started) / n:.2f} ms each; "
          f"the probe alone {1000 * (probed - prepared) / n:.2f} ms each")  # fmt: skip


if __name__ == "__main__":
    main()
