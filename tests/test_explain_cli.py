"""`pg-tuner explain`: one statement's plans, advised indexes and anti-patterns, for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_advisor import ORDERS, load
from tuner import db
from tuner.cli import main
from tuner.labels import label

pytestmark = pytest.mark.hypopg  # advice is costed with HypoPG

SLOW = "SELECT id, total FROM orders WHERE customer_id = $1"


def test_explain_shows_both_plans_the_ddl_and_the_findings(
    dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    load(dsn, *ORDERS)
    assert main(["explain", "--dsn", dsn, SLOW]) == 0
    out = capsys.readouterr().out
    assert out.startswith(label(SLOW))
    assert "generic plan (parameters unknown" in out and "not milliseconds" in out
    now = out.split("PLAN NOW")[1].split("PLAN WITH")[0]
    assert "  Seq Scan on orders (cost 0.00.." in now and "      Filter: (customer_id = $1)" in now
    advised = out.split("PLAN WITH THE ADVISED INDEXES")[1].split("ADVISED INDEXES")[0]
    assert "(hypothetical)" in advised and "Index Cond: (customer_id = $1)" in advised
    ddl = out.split("\nADVISED INDEXES")[1].split("FINDINGS")[0]
    assert "CREATE INDEX CONCURRENTLY" in ddl and '("customer_id"' in ddl
    assert "(none of the anti-pattern rules applies)" in out
    [count] = db.fetch(db.connect(dsn), "SELECT count(*) AS n FROM pg_indexes "
                       "WHERE tablename = 'orders'")  # fmt: skip
    assert count["n"] == 1, "nothing was built: only the primary key"


def test_explain_names_anti_patterns_with_a_reason_and_a_fix(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(dsn, *ORDERS, "CREATE INDEX ON orders (status)")
    path = tmp_path / "q.sql"
    path.write_text("-- a report\nSELECT * FROM orders WHERE lower(status) = 'paid' "
                    "ORDER BY id OFFSET 20000;\n")  # fmt: skip
    assert main(["explain", "--dsn", dsn, "--file", str(path), "--json"]) == 0
    content = json.loads(capsys.readouterr().out)
    rules = {f["rule"]: f for f in content["findings"]}
    assert {"function-on-indexed-column", "large-offset"} <= set(rules)
    assert "expression index on orders" in rules["function-on-indexed-column"]["fix"]
    assert "paginate by key" in rules["large-offset"]["fix"]
    assert content["generic_plan"] is False, "literals: the plan for these values"
    assert content["plan_now"]["Node Type"] and content["cost_now"] > 0


def test_explain_refuses_what_it_cannot_explain(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # tried: nothing, both SQL and --file, two statements, a utility statement, a table
    # that does not exist, an empty file
    load(dsn, *ORDERS)
    empty = tmp_path / "e.sql"
    empty.write_text("")
    cases = [
        ([], "give one statement"),
        ([SLOW, "--file", str(empty)], "give one statement"),
        (["SELECT 1 FROM orders; DROP TABLE orders"], "2 statements given"),
        (["VACUUM orders"], "cannot explain this statement"),
        (["SELECT * FROM nowhere"], 'PostgreSQL cannot plan it: relation "nowhere" does not exist'),
        (["--file", str(empty)], "no statements in it"),
    ]
    for argv, why in cases:
        assert main(["explain", "--dsn", dsn, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err, (argv, err)
    [count] = db.fetch(db.connect(dsn), "SELECT count(*) AS n FROM orders")
    assert count["n"] == 100000, "the DROP in the two-statement text never ran"
