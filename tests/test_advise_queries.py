"""`pg-tuner advise --queries FILE`: advice for statements that have not run, a CI gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_advisor import ORDERS, load
from tuner.cli import main
from tuner.labels import label
from tuner.sqlfile import split_statements

pytestmark = pytest.mark.hypopg  # advice is costed with HypoPG

NEEDS = "SELECT id, total FROM orders WHERE customer_id = 42"
FINE = "SELECT note FROM orders WHERE id = 7"
SQL = f"""-- the release's new statements
{NEEDS};
/* a ; inside a comment */ {FINE};
SELECT id FROM orders WHERE id = 3 AND note <> 'a;b';
"""


def test_statements_split_at_semicolons_outside_strings_and_comments() -> None:
    text = "SELECT 'a;b';\nSELECT $x$ ; $x$ ; -- c;\n/* only ; a comment */;\nSELECT \"q;\" FROM t"
    assert split_statements(text) == ["SELECT 'a;b'", "SELECT $x$ ; $x$", 'SELECT "q;" FROM t']
    assert split_statements("SELECT 1\n\nSELECT 2\n-- note\n") == ["SELECT 1", "SELECT 2"]


def test_a_statement_that_needs_an_index_fails_the_gate_with_exit_3(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(dsn, *ORDERS)
    path = tmp_path / "release.sql"
    path.write_text(SQL)
    assert main(["advise", "--dsn", dsn, "--queries", str(path), "--fail-on-missing"]) == 3
    out = capsys.readouterr().out
    assert f"{label(NEEDS)}: NEEDS AN INDEX (cost -" in out
    assert f"    {NEEDS}" in out and "CREATE INDEX CONCURRENTLY" in out
    assert '("customer_id"' in out
    assert f"{label(FINE)}: ok" in out, "a primary-key lookup needs nothing"
    assert "3 statement(s) from the file" in out
    assert "generic-plan estimates" in out

    assert main(["advise", "--dsn", dsn, "--queries", str(path)]) == 0, "no gate: exit 0"
    capsys.readouterr()
    assert main(["advise", "--dsn", dsn, "--queries", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    by_text = {s["query"]: s for s in document["statements"]}
    assert by_text[NEEDS]["missing"] and by_text[NEEDS]["cost_reduction"] >= 0.3
    assert not by_text[FINE]["missing"] and by_text[FINE]["indexes"] == []
    assert document["missing"] == 1
    assert all(p["kind"] == "create_index" for p in document["proposals"]), "no maintenance"


def test_one_statement_a_line_and_a_clean_file_passes(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(dsn, *ORDERS, "CREATE INDEX ON orders (customer_id)")
    path = tmp_path / "statements.log"
    path.write_text(f"{NEEDS}\n{FINE}\n")
    assert main(["advise", "--dsn", dsn, "--queries", str(path), "--fail-on-missing"]) == 0
    out = capsys.readouterr().out
    assert "2 statement(s) from the file" in out and "No statement needs an index." in out


def test_bad_query_files_exit_2_and_say_why(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # tried: a missing file, an empty file, comments only, bytes that are not UTF-8,
    # and --fail-on-missing without --queries
    empty, comments, binary = tmp_path / "e.sql", tmp_path / "c.sql", tmp_path / "b.sql"
    empty.write_text("")
    comments.write_text("-- nothing here;\n/* nor here */\n")
    binary.write_bytes(b"SELECT \xff\xfe")
    cases = {
        str(tmp_path / "missing.sql"): "No such file",
        str(empty): "no statements in it",
        str(comments): "no statements in it",
        str(binary): "not UTF-8",
    }
    for path, why in cases.items():
        assert main(["advise", "--dsn", dsn, "--queries", path]) == 2
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err, err
    assert main(["advise", "--dsn", dsn, "--fail-on-missing"]) == 2
    assert "--fail-on-missing needs --queries" in capsys.readouterr().err
