"""`pg-tuner audit`, `approve`, `reject`, `rollback` through the CLI, on a temporary journal."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tuner import db, log
from tuner.cli import main
from tuner.config import load_policy
from tuner.executor import Executor
from tuner.journal import EntryKind, Journal, operator_actor
from tuner.labels import label
from tuner.models import (
    Action,
    ActionKind,
    ActionState,
    IndexSpec,
    Method,
    Outcome,
    TableRef,
    Verdict,
)
from tuner.recovery import replay
from tuner.statements import index_name

ORDERS = TableRef("public", "orders")
CREATE = Action(
    id="a1",
    kind=ActionKind.CREATE_INDEX,
    table=ORDERS,
    index=IndexSpec(ORDERS, ("customer_id",), include=("total",)),
    index_name="ix_orders_customer_id",
    reason="3 queries (12% of workload time) would cost 71% less",
    figures={"cost_reduction": 0.71, "workload_share": 0.12, "estimated_size_bytes": 44040192},
)
LIFE = (ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING, ActionState.APPLIED,
        ActionState.VERIFYING)  # fmt: skip


def history(path: Path) -> Journal:
    """a1 built and kept; a2 proposed; a3 rejected by an operator."""
    j = Journal(path)
    j.append(ActionState.PROPOSED, action=CREATE)
    for state in LIFE:
        j.append(state, action=CREATE, reason=f"{state.value} step")
    j.append(ActionState.KEPT, action=CREATE,
             reason="workload time fell 38% (p=0.001); no query slowed significantly",
             figures={"net_gain": 0.38, "worst_regression": 0.02})  # fmt: skip
    a2 = Action("a2", ActionKind.ANALYZE, TableRef("public", "bookings"),
                reason="statistics 40% stale")  # fmt: skip
    j.append(ActionState.PROPOSED, action=a2)
    a3 = Action("a3", ActionKind.CREATE_INDEX, ORDERS, IndexSpec(ORDERS, ("status",)),
                index_name="ix_orders_status", reason="1 query would cost 55% less")  # fmt: skip
    j.append(ActionState.PROPOSED, action=a3)
    j.append(ActionState.REJECTED, action_id="a3", actor="operator:alice", reason="peak season")
    return j


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(autouse=True)
def _log_to_this_tests_stderr() -> None:
    """main() points logging at the stderr of the test that called it; start each test fresh."""
    log.configure("warning", stream=sys.stderr)


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    path = tmp_path / "journal.jsonl"
    history(path)
    return path


def test_audit_tells_a_person_what_happened_and_why(
    jpath: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    status, out, _ = run(capsys, "audit", "--journal", str(jpath))
    assert status == 0
    assert (
        "action a1: create index ix_orders_customer_id on public.orders (customer_id) "
        "include (total) — now kept"
    ) in out
    proposed = next(line for line in out.splitlines() if " proposed " in line)
    assert proposed.startswith("  20") and " UTC  pg-tuner" in proposed
    assert proposed.endswith("3 queries (12% of workload time) would cost 71% less")
    assert "cost_reduction 0.71 · workload_share 0.12 · estimated_size_bytes 42.0 MiB" in out
    assert "workload time fell 38% (p=0.001)" in out
    assert out.count("cost_reduction 0.71") == 1, "unchanged figures are shown once"
    assert (
        '  undo: DROP INDEX CONCURRENTLY "public"."ix_orders_customer_id"   '
        "(or: pg-tuner rollback a1)"
    ) in out
    assert '"ix_orders_status"' not in out, "no undo for an action never applied"
    assert "action a2: analyze public.bookings — now proposed" in out
    rejected = next(line for line in out.splitlines() if " rejected " in line)
    assert "operator:alice" in rejected and rejected.endswith("peak season")


def test_audit_filters_by_action_and_age_and_prints_json(
    jpath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "audit", "--journal", str(jpath), "--action", "a3")
    assert status == 0 and "action a3" in out and "action a1" not in out
    status, out, _ = run(capsys, "audit", "--journal", str(jpath), "--since", "2d")
    assert status == 0 and "action a1" in out
    status, out, _ = run(capsys, "audit", "--journal", str(jpath), "--since", "2999-01-01")
    assert status == 0 and out.strip() == "no records match"
    status, out, _ = run(capsys, "audit", "--journal", str(jpath), "--json", "--action", "a1")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["state"] for r in records][-2:] == ["verifying", "kept"]
    assert all(len(r["hash"]) == 64 for r in records)


def test_audit_refuses_bad_input(jpath: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # tried: an action ID that is not in the journal
    status, _, err = run(capsys, "audit", "--journal", str(jpath), "--action", "zz")
    assert status == 2 and "no records for action 'zz'" in err
    # tried: --since in words
    status, _, err = run(capsys, "audit", "--journal", str(jpath), "--since", "yesterday")
    assert status == 2 and "--since 'yesterday'" in err


def test_audit_reads_the_journal_path_from_the_policy(
    jpath: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f'target:\n  dsn: "host=127.0.0.1 dbname=app"\ntimezone: Europe/Berlin\n'
        f"journal:\n  path: {jpath}\n",
        encoding="utf-8",
    )
    status, out, _ = run(capsys, "audit", "--policy", str(policy))
    assert status == 0 and "action a1" in out and " Europe/Berlin  pg-tuner" in out


def test_audit_verify_passes_an_intact_journal(
    jpath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "audit", "--journal", str(jpath), "--verify")
    assert status == 0
    assert out.startswith(f"journal {jpath}: intact — 10 records, last seq 10, hash ")


def test_invariant_7_audit_verify_detects_a_byte_edited_in_the_middle(
    jpath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content = bytearray(jpath.read_bytes())
    at = content.index(b"fell 38%") + len(b"fell ")
    content[at] = ord("9")  # 38% → 98%, a figure a person might want to flatter
    jpath.write_bytes(bytes(content))
    status, out, err = run(capsys, "audit", "--journal", str(jpath), "--verify")
    assert status == 1
    assert "FAILED verification — 1 problem(s)" in out
    assert "seq 7: its content does not match its hash: the record was modified" in out
    status, _, err = run(capsys, "audit", "--journal", str(jpath))
    assert status == 0 and "fails verification (1 problem(s))" in err


def test_invariant_7_audit_verify_detects_a_deleted_line(
    jpath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = jpath.read_bytes().splitlines(keepends=True)
    jpath.write_bytes(b"".join(lines[:8] + lines[9:]))  # the proposal of a3 disappears
    status, out, _ = run(capsys, "audit", "--journal", str(jpath), "--verify")
    assert status == 1
    assert "seq 10: expected seq 9" in out and "the chain is broken" in out


def test_invariant_7_audit_verify_detects_a_truncated_last_line_until_repaired(
    jpath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = jpath.read_bytes().splitlines(keepends=True)
    offset = sum(len(line) for line in lines[:-1])
    os.truncate(jpath, offset + len(lines[-1]) // 2)
    status, out, _ = run(capsys, "audit", "--journal", str(jpath), "--verify")
    assert status == 1
    assert f"line 10 (byte {offset}): truncated last line" in out
    assert "the 9 records before it are intact" in out
    status, out, _ = run(capsys, "audit", "--journal", str(jpath), "--action", "a1")
    assert "now kept" in out, "earlier records must still be shown"

    assert run(capsys, "approve", "a2", "--journal", str(jpath))[0] == 0

    status, out, _ = run(capsys, "audit", "--journal", str(jpath), "--verify")
    assert status == 0, out
    assert "intact — 11 records" in out and f"note: line 10 (byte {offset})" in out
    status, out, _ = run(capsys, "audit", "--journal", str(jpath))
    assert "journal repaired" in out


def test_approve_and_reject_only_a_proposed_action(
    jpath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "approve", "a2", "--journal", str(jpath))
    assert status == 0 and out.startswith("approved a2: analyze public.bookings")
    last = Journal(jpath).read()[-1]
    assert (last.state, last.actor, last.action_id) == ("approved", operator_actor(), "a2")
    assert operator_actor().startswith("operator:")
    # tried: approving twice, rejecting after approval, approving a kept one, an unknown ID
    status, _, err = run(capsys, "approve", "a2", "--journal", str(jpath))
    assert status == 2 and "action a2 is approved; this needs it to be proposed" in err
    status, _, err = run(capsys, "reject", "a2", "--journal", str(jpath))
    assert status == 2 and "a2 is approved" in err
    status, _, err = run(capsys, "approve", "a1", "--journal", str(jpath))
    assert status == 2 and "a1 is kept" in err
    status, _, err = run(capsys, "reject", "nope", "--journal", str(jpath))
    assert status == 2 and "no action 'nope'" in err
    assert len(Journal(jpath).read()) == 11, "refused commands must write nothing"


def test_reject_records_the_operator_and_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "j.jsonl"
    Journal(path).append(ActionState.PROPOSED, action=CREATE)
    status, out, _ = run(capsys, "reject", "a1", "--journal", str(path), "--reason", "too big")
    assert status == 0 and out.startswith("rejected a1: create index ix_orders_customer_id")
    status_ = replay(Journal(path).read())["a1"]
    assert status_.state is ActionState.REJECTED and status_.reason == "too big"


def test_rollback_journals_the_request_with_the_os_user(
    jpath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "rollback", "a1", "--journal", str(jpath), "--reason", "slow")
    assert status == 0 and "rollback of a1 requested" in out and "next cycle" in out
    last = Journal(jpath).read()[-1]
    assert (last.state, last.actor, last.reason) == (
        EntryKind.ROLLBACK_REQUESTED, operator_actor(), "slow",
    )  # fmt: skip
    status, out, _ = run(capsys, "rollback", "a1", "--journal", str(jpath))
    assert status == 0 and "already requested" in out
    assert len(Journal(jpath).read()) == 11, "a repeated request is not journaled twice"
    # tried: rolling back a proposal (nothing applied) and an unknown ID
    assert run(capsys, "rollback", "a2", "--journal", str(jpath))[0] == 2
    assert run(capsys, "rollback", "zz", "--journal", str(jpath))[0] == 2
    assert Journal(jpath).verify().ok


def _policy(tmp_path: Path, dsn: str, journal: Path, extra: str = "") -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"target:\n  dsn: {json.dumps(dsn)}\nmode: apply\njournal:\n  path: {journal}\n{extra}",
        encoding="utf-8",
    )
    return path


def test_rollback_undoes_now_through_the_executor_when_no_tuner_leads(
    tmp_path: Path, dsn: str, conn: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    db.execute(conn, "CREATE TABLE orders (customer_id int, total numeric, status text)")
    db.execute(conn, "INSERT INTO orders SELECT g % 100, g, 'new' FROM generate_series(1, 500) g")
    path = tmp_path / "journal.jsonl"
    policy = _policy(tmp_path, dsn, path)
    action = Action("b1", ActionKind.CREATE_INDEX, ORDERS, IndexSpec(ORDERS, ("customer_id",)))
    j = Journal(path)
    j.append(ActionState.PROPOSED, action=action)
    with Executor(dsn, None, load_policy(policy)) as executor:
        built = executor.apply(action)
    assert built.state is ActionState.APPLIED
    name = index_name(action.index)  # type: ignore[arg-type]
    assert built.index_name == name
    for state in (*LIFE, ActionState.KEPT):
        j.append(state, action=replace(action, index_name=name))

    status, out, err = run(capsys, "rollback", "b1", "--policy", str(policy))

    assert status == 0, err
    assert f'rolled back: DROP INDEX CONCURRENTLY IF EXISTS "public"."{name}"' in out
    assert f"rollback of b1 requested: create index {name} on public.orders" in out
    rows = db.fetch(conn, "SELECT 1 FROM pg_class WHERE relname = %s", (name,))
    assert rows == [], "the index must be gone"
    final = replay(j.read())["b1"]
    assert final.state is ActionState.ROLLED_BACK and final.rollback_requested is None
    assert j.read()[-1].actor == operator_actor()
    assert j.verify().ok


def test_rollback_inside_a_freeze_window_only_journals_the_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.jsonl"
    history(path)
    freeze = (
        "freeze:\n  - name: moratorium\n"
        "    from: 2000-01-01 00:00:00\n    to: 2100-01-01 00:00:00\n"
    )
    policy = _policy(tmp_path, "host=127.0.0.1 port=1 dbname=none", path, freeze)
    status, out, _ = run(capsys, "rollback", "a1", "--policy", str(policy))
    assert status == 0
    assert "not undone now: frozen by moratorium until 2100-01-01 00:00 UTC" in out
    assert replay(Journal(path).read())["a1"].rollback_requested is not None


def test_invariant_10_a_password_in_an_operators_reason_never_reaches_the_journal(
    jpath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = "see postgresql://admin:Tr0ub4dor@db/app and password=correct-horse"
    assert run(capsys, "reject", "a2", "--journal", str(jpath), "--reason", reason)[0] == 0
    raw = jpath.read_bytes()
    assert b"Tr0ub4dor" not in raw and b"correct-horse" not in raw
    assert b"postgresql://admin:***@db/app" in raw
    status, out, _ = run(capsys, "audit", "--journal", str(jpath), "--action", "a2")
    assert status == 0 and "password=***" in out


def test_rollback_of_a_foreign_drop_recreates_it_without_the_tuners_marker(
    tmp_path: Path, dsn: str, conn: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Undoing the drop of an index the tuner did not make must not adopt it as the tuner's."""
    db.execute(conn, "CREATE TABLE orders (customer_id int, total numeric, status text)")
    db.execute(conn, "CREATE INDEX orders_dba_idx ON orders (status)")
    path = tmp_path / "journal.jsonl"
    policy = _policy(
        tmp_path, dsn, path, "level: aggressive\nthresholds:\n  allow_drop_foreign: true\n"
    )
    action = Action("d1", ActionKind.DROP_INDEX, ORDERS, index_name="orders_dba_idx")
    j = Journal(path)
    j.append(ActionState.PROPOSED, action=action)
    with Executor(dsn, None, load_policy(policy)) as executor:
        dropped = executor.apply(action)
    assert dropped.state is ActionState.APPLIED and dropped.index_definition
    applied = replace(action, index_definition=dropped.index_definition)
    for state in (*LIFE, ActionState.KEPT):
        j.append(state, action=applied)

    status, _, err = run(capsys, "rollback", "d1", "--policy", str(policy))

    assert status == 0, err
    rows = db.fetch(
        conn,
        "SELECT obj_description(c.oid, 'pg_class') AS comment FROM pg_class c "
        "WHERE relname = 'orders_dba_idx'",
    )
    assert len(rows) == 1, "the dropped index must be back"
    assert not (rows[0]["comment"] or "").startswith("pg-tuner"), rows


def test_audit_shows_how_a_verdict_was_decided_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A verdict as verify makes it: kept at the first of four looks, Holm over 3 tests.
    method = Method("Welch t, Holm over 3 tests", 1, 4, 8.86e-5, 2.95e-5, 0.0102, 0.031,
                    "measured")  # fmt: skip
    verdict = Verdict(Outcome.KEEP, "net change -99.0% of the watched queries' time by look 1 "
                      "of 4", net_change=-0.99, method=method)  # fmt: skip
    j = Journal(tmp_path / "journal.jsonl")
    j.append(ActionState.PROPOSED, action=CREATE)
    j.append(ActionState.KEPT, action=CREATE, reason=verdict.reason, figures=verdict.figures())
    status, out, _ = run(capsys, "audit", "--journal", str(j.path))
    assert status == 0
    (line,) = [line for line in out.splitlines() if "decided by" in line]
    assert line.strip() == (
        "decided by Welch t, Holm over 3 tests, look 1/4 at level 8.9e-05 (threshold 2.9e-05); "
        "noise floor reads up to 0.010 ms, writes 0.031 ms (measured)"
    )
    assert "net_change -0.99" in out and "look 1 ·" not in out, "the method is not repeated"
    # --json keeps every figure for a script: the look, the level, the floors.
    status, out, _ = run(capsys, "audit", "--journal", str(j.path), "--json")
    kept = json.loads(out.splitlines()[-1])["figures"]
    assert (kept["look"], kept["looks"], kept["read_floor_ms"]) == (1, 4, 0.0102)


def test_audit_names_queries_by_label_and_text_not_by_queryid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verdict's figures name queries by queryid; audit shows their labels and texts."""
    qid, text = "-2011910912755315913", "SELECT id, total FROM orders WHERE customer_id = $1"
    j = Journal(tmp_path / "journal.jsonl")
    j.append(ActionState.PROPOSED, action=CREATE)
    baselined = j.append(ActionState.BASELINED, action=CREATE, reason="baseline over 60s",
                         data={"texts": {qid: text}})  # fmt: skip
    assert baselined.data["labels"] == {qid: label(text)}, "the journal keeps the label too"
    long_reason = f"net change -41.0% of the watched queries' time; query {qid} " + "x " * 200
    j.append(ActionState.KEPT, action=CREATE, reason=long_reason,
             figures={"net_change": -0.41, qid: f"query {qid}: 1.000 → 0.200 ms (-80.0%, "
                      "p=0.001, 500/480 calls)"})  # fmt: skip
    monkeypatch.setenv("COLUMNS", "100")
    status, out, _ = run(capsys, "audit", "--journal", str(j.path))
    assert status == 0
    assert qid not in out
    flat = " ".join(out.split())
    assert f"query {label(text)}: 1.000 → 0.200 ms" in flat
    assert f"query {label(text)} x x" in flat
    assert f"    {label(text)}  {text}" in out, "each named statement with its text, once"
    assert max(len(line) for line in out.splitlines()) <= 100, "long reasons wrap"


def test_audit_json_gives_large_queryids_as_strings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    j = Journal(tmp_path / "journal.jsonl")
    big = -2011910912755315913
    j.append(ActionState.BASELINED, action=CREATE, reason="baseline",
             data={"baseline": {"queries": [[big, 12, 0.5, 0.1, True]]}})  # fmt: skip
    status, out, _ = run(capsys, "audit", "--journal", str(j.path), "--json")
    assert status == 0
    record = json.loads(out)
    assert record["data"]["baseline"]["queries"][0][:2] == [str(big), 12]
    assert record["seq"] == 1, "small integers stay numbers"
    assert j.verify().ok, "the file itself keeps its numbers"
