"""`pg-tuner advise` end to end: the table, the JSON, the fallback without HypoPG."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_advisor import BY_CUSTOMER, ORDERS, load, run
from tuner import db
from tuner.advisor import statement_key
from tuner.cli import main
from tuner.errors import TunerError
from tuner.journal import Journal
from tuner.labels import label
from tuner.models import Action, ActionKind, ActionState, IndexSpec, TableRef

pytestmark = pytest.mark.hypopg  # advice is costed with HypoPG


def advise_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["advise", *args, "--json"]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


@pytest.mark.hypopg
def test_json_has_every_key_the_issue_lists(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    load(dsn, *ORDERS)
    run(dsn, [(BY_CUSTOMER, ["n"])])
    document = advise_json(capsys, "--dsn", dsn, "--budget", "500MB")
    assert {"proposals", "workload_cost_before", "workload_cost_after", "skipped_queries"} <= set(
        document
    )
    [proposal] = [p for p in document["proposals"] if p["kind"] == "create_index"]
    for key in ("kind", "table", "columns", "include", "ddl", "estimated_size_bytes", "queries",
                "reason"):  # fmt: skip
        assert key in proposal
    [query] = proposal["queries"]
    assert set(query) >= {"queryid", "cost_before", "cost_after", "calls", "label", "query"}
    assert isinstance(query["queryid"], str) and int(query["queryid"]), "int8 as a string"
    assert query["query"] == "SELECT id, total FROM orders WHERE customer_id = $1"
    assert query["label"] == label(query["query"]) and query["label"] in proposal["reason"]
    assert query["cost_after"] < query["cost_before"]
    assert proposal["table"] == "public.orders" and proposal["columns"][0] == "customer_id"
    assert proposal["confidence"] == "high"
    assert document["workload_cost_after"] < document["workload_cost_before"]
    assert isinstance(document["skipped_queries"], int)


def test_the_readable_table(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    load(dsn, *ORDERS)
    run(dsn, [(BY_CUSTOMER, ["n"])])
    assert main(["advise", "--dsn", dsn]) == 0
    out = capsys.readouterr().out
    assert "KIND" in out and "create_index" in out and "public.orders" in out
    assert "CREATE INDEX CONCURRENTLY" in out
    assert "Estimated workload cost (the planner's generic-plan estimates, in its units)" in out
    assert "of the 10.0 GiB budget; the budget was not the limit" in out
    text = "SELECT id, total FROM orders WHERE customer_id = $1"
    assert "serves:" in out and f"{label(text)}  {text}" in out, "by label and text"
    assert "serves 1 query (select orders #" in out, "the reason names it by label, not queryid"


def test_a_budget_too_small_for_any_index_gives_none(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    load(dsn, *ORDERS)
    run(dsn, [(BY_CUSTOMER, ["n"])])
    document = advise_json(capsys, "--dsn", dsn, "--budget", "16kB")
    assert [p for p in document["proposals"] if p["kind"] == "create_index"] == []


def test_without_hypopg_the_advice_is_a_heuristic_marked_low_confidence(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    load(dsn, *ORDERS, "DROP EXTENSION IF EXISTS hypopg")
    run(dsn, [(BY_CUSTOMER, ["n"])])
    document = advise_json(capsys, "--dsn", dsn)
    assert any("HypoPG is not installed" in note for note in document["notes"])
    assert document["hypopg"] is False
    [proposal] = [p for p in document["proposals"] if p["kind"] == "create_index"]
    assert proposal["columns"] == ["customer_id"]
    assert proposal["confidence"] == "low"
    assert "heuristic" in proposal["reason"]
    assert proposal["queries"][0]["cost_after"] is None


def test_the_policy_gives_target_and_width(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(dsn, *ORDERS)
    run(dsn, [("SELECT id FROM orders WHERE customer_id = %s AND status = %s", ["n", "new"])])
    policy = tmp_path / "policy.yaml"
    policy.write_text(f'target:\n  dsn: "{dsn}"\nlimits:\n  max_index_width: 1\n')
    document = advise_json(capsys, "--policy", str(policy))
    indexes = [p for p in document["proposals"] if p["kind"] == "create_index"]
    assert indexes and all(len(p["columns"]) == 1 for p in indexes)


def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    # A budget with an unknown unit, and a width out of range: refused before connecting.
    assert main(["advise", "--dsn", "host=127.0.0.1 port=1", "--budget", "5XB"]) == 2
    assert "--budget" in capsys.readouterr().err
    assert main(["advise", "--dsn", "host=127.0.0.1 port=1", "--max-width", "0"]) == 2


def test_an_unreachable_database_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["advise", "--dsn", "host=127.0.0.1 port=1 connect_timeout=2"]) == 1
    assert "unavailable" in capsys.readouterr().err


def test_without_pg_stat_statements_it_says_what_to_install(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with db.connect(dsn) as conn:
        db.execute(conn, "DROP EXTENSION pg_stat_statements")
    assert main(["advise", "--dsn", dsn]) == 1
    assert "pg_stat_statements" in capsys.readouterr().err


@pytest.mark.hypopg
def test_a_statement_running_now_that_never_finished_is_advised_on(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pg_stat_statements has never counted it (a statement_timeout would cancel it first):
    the advice still sees it running, with its literals, and serves it.

    Tried: a correlated subquery running for seconds while advise runs; nothing else ran.
    """
    load(dsn, *ORDERS)
    slow = ("SELECT o.id, (SELECT max(p.total) FROM orders p WHERE p.customer_id = o.id)"
            " FROM orders o WHERE o.id <= 3000")  # fmt: skip
    policy = tmp_path / "policy.yaml"
    policy.write_text(f'target:\n  dsn: "{dsn}"\nschedule:\n  long_query: 1s\n')
    client = db.connect(dsn)
    pid = db.fetch(client, "SELECT pg_backend_pid() AS pid")[0]["pid"]

    def run_slow() -> None:
        with contextlib.suppress(TunerError):  # cancelled at the end, as meant
            db.fetch(client, slow)

    thread = threading.Thread(target=run_slow)
    thread.start()
    try:
        time.sleep(1.5)
        document = advise_json(capsys, "--policy", str(policy))
    finally:
        with db.connect(dsn) as conn:
            db.fetch(conn, "SELECT pg_cancel_backend(%s)", [pid])
        thread.join(timeout=30)
        client.close()
    served = [p for p in document["proposals"] if p["kind"] == "create_index"
              and str(statement_key(slow)) in [q["queryid"] for q in p["queries"]]]  # fmt: skip
    assert served and served[0]["columns"][0] == "customer_id", document["proposals"]


def test_advise_beside_the_journal_says_the_daemon_rolled_an_index_back(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(dsn, *ORDERS)
    run(dsn, [(BY_CUSTOMER, ["n"])])
    journal = tmp_path / "journal.jsonl"
    policy = tmp_path / "p.yaml"
    policy.write_text(f'target:\n  dsn: "{dsn}"\njournal:\n  path: "{journal}"\n')
    [first] = [p for p in advise_json(capsys, "--policy", str(policy))["proposals"]
               if p["kind"] == "create_index"]  # fmt: skip
    assert "rolled_back" not in first
    table = TableRef(*first["table"].split("."))
    spec = IndexSpec(table, tuple(first["columns"]), tuple(first["include"]))
    action = Action("r1", ActionKind.CREATE_INDEX, table, spec, first["index_name"])
    j = Journal(journal)
    for state in (ActionState.PROPOSED, ActionState.APPLIED, ActionState.VERIFYING):
        j.append(state, action=action)
    j.append(ActionState.ROLLED_BACK, action=action,
             reason="query select orders #1: 2.000 → 9.000 ms (+350%)")  # fmt: skip
    assert main(["advise", "--policy", str(policy)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "NOTE: the daemon built this index (action r1), measured it and rolled it back" in out
    assert "+350%" in out and "pg-tuner audit --action r1" in out
    again = advise_json(capsys, "--policy", str(policy))["proposals"][0]
    assert again["rolled_back"]["action_id"] == "r1"


def test_busy_statements_no_index_can_help_are_listed_with_why(
    dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    load(dsn, *ORDERS, "CREATE INDEX orders_status ON orders (status)")
    # length(): a function the advisor builds no expression index for (lower() it does)
    lowered = "SELECT count(*) FROM orders WHERE length(status) = %s"
    run(dsn, [(lowered, [4]), (BY_CUSTOMER, ["n"])])
    assert main(["advise", "--dsn", dsn]) == 0
    out = capsys.readouterr().out
    section = out.split("BUSY STATEMENTS NO INDEX CAN HELP AS THEY ARE WRITTEN")[1]
    text = lowered.replace("%s", "$1")
    assert label(text) in section and "function-on-indexed-column" in section
    assert "expression index on orders ((LENGTH(status)))" in " ".join(section.split())
    assert label(BY_CUSTOMER.replace("%s", "$1")) not in section, "served by a proposal"
    assert main(["advise", "--dsn", dsn, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    [entry] = [c for c in document["cannot_help"] if c["query"] == text]
    assert entry["findings"][0]["rule"] == "function-on-indexed-column"
