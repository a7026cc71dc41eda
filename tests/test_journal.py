"""The journal: append-only, fsync'd, hash-chained (replay and recovery: test_recovery.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner import journal
from tuner.journal import EntryKind, Journal, TransitionRefused, undo_command
from tuner.log import register_secret
from tuner.models import Action, ActionKind, ActionState, IndexSpec, TableRef
from tuner.recovery import replay

ORDERS = TableRef("public", "orders")


def create_action(action_id: str = "a1", name: str = "ix_orders_customer_id") -> Action:
    return Action(
        id=action_id,
        kind=ActionKind.CREATE_INDEX,
        table=ORDERS,
        index=IndexSpec(ORDERS, ("customer_id",), include=("total",)),
        index_name=name,
        reason="3 queries (12% of workload time) would cost 71% less",
        figures={"cost_reduction": 0.71, "workload_share": 0.12, "est_bytes": 44040192},
    )


def drop_action(action_id: str = "d1") -> Action:
    return Action(
        id=action_id,
        kind=ActionKind.DROP_INDEX,
        table=ORDERS,
        index_name="ix_old",
        index_definition="CREATE INDEX ix_old ON public.orders USING btree (created_at)",
        reason="unused for 31 days",
    )


def lifecycle(j: Journal, action: Action, *states: ActionState) -> None:
    j.append(ActionState.PROPOSED, action=action)
    for state in states:
        j.append(state, action_id=action.id)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.jsonl"


def test_a_record_carries_time_actor_action_figures_undo_and_chain(jpath: Path) -> None:
    j = Journal(jpath)
    first = j.append(ActionState.PROPOSED, action=create_action(), ddl="CREATE INDEX ...")
    second = j.append(ActionState.APPROVED, action_id="a1", actor="operator:alice")
    on_disk = [json.loads(raw) for raw in lines(jpath)]
    assert [r["seq"] for r in on_disk] == [1, 2]
    assert on_disk[0]["actor"] == "pg-tuner" and on_disk[1]["actor"] == "operator:alice"
    assert on_disk[0]["time"].endswith("+00:00")
    assert on_disk[0]["action"]["columns"] == ["customer_id"]
    assert on_disk[0]["action"]["ddl"] == "CREATE INDEX ..."
    assert on_disk[0]["figures"]["cost_reduction"] == 0.71
    assert on_disk[0]["undo"] == 'DROP INDEX CONCURRENTLY "public"."ix_orders_customer_id"'
    assert on_disk[0]["prev"] == journal.GENESIS
    assert on_disk[1]["prev"] == first.hash == on_disk[0]["hash"]
    assert second.hash == on_disk[1]["hash"]
    assert j.read()[1].line == 2 and j.read()[1].offset == len(lines(jpath)[0])
    result = j.verify()
    assert result.ok and result.problems == [] and result.last_seq == 2


def test_undo_of_a_drop_is_its_journaled_definition_built_concurrently() -> None:
    assert undo_command(drop_action()) == (
        "CREATE INDEX CONCURRENTLY ix_old ON public.orders USING btree (created_at)"
    )
    odd = Action("x", ActionKind.CREATE_INDEX, TableRef('we"ird', "t"), index_name='i"x')
    assert undo_command(odd) == 'DROP INDEX CONCURRENTLY "we""ird"."i""x"'


def test_invariant_7_append_only_and_fsynced_before_append_returns(
    jpath: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = Journal(jpath)
    synced: list[int] = []  # journal size on disk at each fsync of the journal file
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        real_fsync(fd)
        if os.path.exists(jpath) and os.fstat(fd).st_ino == os.stat(jpath).st_ino:
            synced.append(os.fstat(fd).st_size)

    monkeypatch.setattr(os, "fsync", spy)
    before = b""
    for state in (ActionState.PROPOSED, ActionState.APPROVED, ActionState.BASELINED):
        if state is ActionState.PROPOSED:
            j.append(state, action=create_action())
        else:
            j.append(state, action_id="a1")
        now = jpath.read_bytes()
        assert now.startswith(before), "an earlier byte of the journal changed"
        assert synced[-1] == len(now), "append returned before its record was fsync'd"
        before = now
    assert len(synced) == 3
    assert oct(jpath.stat().st_mode & 0o777) == oct(0o640)


def test_invariant_7_a_modified_byte_is_detected(jpath: Path) -> None:
    j = Journal(jpath)
    lifecycle(j, create_action(), ActionState.APPROVED, ActionState.BASELINED)
    content = bytearray(jpath.read_bytes())
    middle = content.index(b"0.71")  # the middle of record 1's figures: 0.71 → 0.91
    content[middle + 2] = ord("9")
    jpath.write_bytes(bytes(content))
    result = j.verify()
    assert not result.ok
    assert result.problems == [
        "line 1 (byte 0), seq 1: its content does not match its hash: the record was modified"
    ]


def test_invariant_7_a_byte_that_breaks_the_json_is_detected(jpath: Path) -> None:
    j = Journal(jpath)
    lifecycle(j, create_action(), ActionState.APPROVED, ActionState.BASELINED)
    raw = lines(jpath)
    damaged = raw[1][:40] + b"\x00" + raw[1][41:]
    jpath.write_bytes(raw[0] + damaged + raw[2])
    result = j.verify()
    assert not result.ok
    assert result.problems[0].startswith(f"line 2 (byte {len(raw[0])}): not a valid record")
    assert any("seq 3" in p and "chain is broken" in p for p in result.problems)


def test_invariant_7_a_deleted_record_is_detected(jpath: Path) -> None:
    j = Journal(jpath)
    lifecycle(j, create_action(), ActionState.APPROVED, ActionState.BASELINED)
    raw = lines(jpath)
    jpath.write_bytes(raw[0] + raw[2])
    result = j.verify()
    assert not result.ok
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.startswith(f"line 2 (byte {len(raw[0])}), seq 3:")
    assert "expected seq 2" in problem and "chain is broken" in problem


def test_invariant_7_reordered_records_are_detected(jpath: Path) -> None:
    j = Journal(jpath)
    lifecycle(j, create_action(), ActionState.APPROVED, ActionState.BASELINED)
    raw = lines(jpath)
    jpath.write_bytes(raw[0] + raw[2] + raw[1])
    result = j.verify()
    assert not result.ok
    assert any("seq 3" in p and "expected seq 2" in p for p in result.problems)
    assert any("seq 2" in p and "expected seq 4" in p for p in result.problems)


def test_invariant_7_removing_the_first_record_is_detected(jpath: Path) -> None:
    j = Journal(jpath)
    lifecycle(j, create_action(), ActionState.APPROVED)
    jpath.write_bytes(lines(jpath)[1])
    result = j.verify()
    assert not result.ok and "the start of the journal" in result.problems[0]


def test_invariant_7_truncated_last_line_reported_earlier_records_kept(jpath: Path) -> None:
    j = Journal(jpath)
    lifecycle(j, create_action(), ActionState.APPROVED, ActionState.BASELINED)
    size = jpath.stat().st_size
    cut = size - 30  # a crash mid-write of record 3 leaves part of its line
    os.truncate(jpath, cut)
    third = sum(len(r) for r in lines(jpath)[:2])
    records = j.read()
    assert [r.seq for r in records] == [1, 2], "the intact records must still be returned"
    result = j.verify()
    assert not result.ok
    assert result.problems == [
        f"line 3 (byte {third}): truncated last line, {cut - third} bytes without a newline: "
        "a crash mid-write or a cut file; the 2 records before it are intact"
    ]


def test_invariant_7_next_append_repairs_a_partial_line_without_gluing(jpath: Path) -> None:
    j = Journal(jpath)
    lifecycle(j, create_action(), ActionState.APPROVED)
    fragment = b'{"seq":3,"time":"2026-11-28T10:00'
    with open(jpath, "ab") as fh:
        fh.write(fragment)
    offset = jpath.stat().st_size - len(fragment)
    before = jpath.read_bytes()

    j.append(ActionState.BASELINED, action_id="a1", figures={"calls": 1200})

    after = jpath.read_bytes()
    assert after.startswith(before), "the fragment must be kept, not rewritten"
    assert after[len(before) : len(before) + 1] == b"\n", "the fragment must be ended first"
    records = j.read()
    repair, baselined = records[-2], records[-1]
    assert repair.state == EntryKind.JOURNAL_REPAIR and repair.seq == 3
    assert base64.b64decode(repair.data["fragments"][0]["base64"]) == fragment
    assert repair.data["fragments"][0]["offset"] == offset
    assert repair.prev == records[1].hash
    assert baselined.seq == 4 and baselined.prev == repair.hash
    result = j.verify()
    assert result.ok, result.problems
    assert result.notes == [
        f"line 3 (byte {offset}): {len(fragment)}-byte fragment of an interrupted write,"
        " acknowledged by seq 3"
    ]
    assert replay(records)["a1"].state is ActionState.BASELINED


def test_invariant_7_writers_in_two_processes_never_interleave(jpath: Path) -> None:
    script = (
        "import sys; from tuner.journal import Journal\n"
        "j = Journal(sys.argv[1])\n"
        "for i in range(150): j.append('proposed', action_id=f'{sys.argv[2]}-{i}', "
        "reason='x' * 3000)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(jpath), tag], env=env)
        for tag in ("cli", "daemon")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    result = Journal(jpath).verify()
    assert result.ok, result.problems[:3]
    assert result.records == 300 and result.last_seq == 300


def test_invariant_10_passwords_never_reach_the_journal(jpath: Path) -> None:
    register_secret("s3cr3t-Passw0rd")
    j = Journal(jpath)
    action = create_action()
    j.append(
        ActionState.FAILED,
        action=action,
        reason="connect to host=db user=tuner password=s3cr3t-Passw0rd failed",
        figures={
            "dsn": "postgresql://tuner:hunter2-uri@db:5432/app",
            "note": "the operator typed s3cr3t-Passw0rd",
            "password": "plain-in-a-field",
            "s3cr3t-Passw0rd": 1,
        },
        data={"nested": ["password='quoted secret'"]},
    )
    raw = jpath.read_bytes()
    for secret in (b"s3cr3t-Passw0rd", b"hunter2-uri", b"plain-in-a-field", b"quoted secret"):
        assert secret not in raw
    assert b"user=tuner" in raw and b"failed" in raw  # the rest of the text is kept
    assert Journal(jpath).verify().ok


def test_expect_refuses_unknown_actions_and_wrong_states(jpath: Path) -> None:
    j = Journal(jpath)
    lifecycle(j, create_action(), ActionState.APPROVED)
    # tried: approving an ID that was never proposed, and one that is already approved
    with pytest.raises(TransitionRefused, match="no action 'nope'"):
        j.append(ActionState.APPROVED, action_id="nope", expect={ActionState.PROPOSED})
    with pytest.raises(TransitionRefused, match="a1 is approved; this needs it to be proposed"):
        j.append(ActionState.APPROVED, action_id="a1", expect={ActionState.PROPOSED})
    assert len(j.read()) == 2


def test_invariant_7_a_writer_killed_mid_stream_leaves_a_verifiable_journal(jpath: Path) -> None:
    script = (
        "import sys; from tuner.journal import Journal\n"
        "j = Journal(sys.argv[1])\n"
        "i = 0\n"
        "while True:\n"
        "    j.append('proposed', action_id=f'k{i}', reason='y' * 200_000); i += 1\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script, str(jpath)], env=env)
    try:
        deadline = 200
        while deadline and (not jpath.exists() or jpath.stat().st_size < 2_000_000):
            subprocess.run(["sleep", "0.05"], check=True)
            deadline -= 1
    finally:
        proc.kill()  # SIGKILL: no handler, no flush, wherever the writer was
        proc.wait(timeout=30)
    j = Journal(jpath)
    before = j.verify()
    # either intact, or exactly one problem: the last line cut by the kill
    assert before.ok or (
        len(before.problems) == 1 and "truncated last line" in before.problems[0]
    ), before.problems
    assert before.records >= 5
    j.append(ActionState.PROPOSED, action_id="after-restart")
    after = j.verify()
    assert after.ok, after.problems
    assert j.read()[-1].action_id == "after-restart"


def test_a_complete_but_unparseable_last_line_is_damage_not_an_interrupted_write(
    jpath: Path,
) -> None:
    """Before: the next append called an edited last record (its newline intact) an
    interrupted write, acknowledged it, and `audit --verify` said intact. Only a line without
    its newline is a torn write. Tried: the last record's JSON broken by one byte."""
    j = Journal(jpath)
    lifecycle(j, create_action(), ActionState.APPROVED)
    raw = lines(jpath)
    jpath.write_bytes(raw[0] + b"#" + raw[1][1:])
    j.append(ActionState.BASELINED, action_id="a1")
    result = j.verify()
    assert not result.ok
    assert any(
        p.startswith(f"line 2 (byte {len(raw[0])}): not a valid record") for p in result.problems
    ), result.problems
    assert not any(r.state == EntryKind.JOURNAL_REPAIR for r in j.read())
    assert result.notes == []


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(torn=st.booleans(), at=st.integers(min_value=0, max_value=10**6),
       byte=st.integers(min_value=0, max_value=255))  # fmt: skip
def test_any_cut_or_changed_byte_is_either_a_repaired_tear_or_a_reported_problem(
    tmp_path_factory: pytest.TempPathFactory, torn: bool, at: int, byte: int
) -> None:
    """Tried: the last line cut anywhere (a torn write, down to its newline alone), or one
    byte anywhere changed. Reading, verifying and appending raise nothing; a tear is repaired
    and verifies; a changed byte in a complete line is never taken for a tear."""
    path = tmp_path_factory.mktemp("j") / "journal.jsonl"
    j = Journal(path)
    lifecycle(j, create_action(), ActionState.APPROVED, ActionState.BASELINED)
    raw = path.read_bytes()
    last_start = raw.rstrip(b"\n").rfind(b"\n") + 1
    if torn:
        damaged = raw[: last_start + at % (len(raw) - last_start)]
    else:
        at %= len(raw) - 1  # not the final newline: without it the line is a tear
        damaged = raw[:at] + bytes([byte]) + raw[at + 1 :]
    path.write_bytes(damaged)
    j.read()
    j.verify()
    j.append(ActionState.APPLYING, action_id="a1")
    after = j.verify()
    if torn:
        assert after.ok, after.problems
    else:
        assert not any(r.state == EntryKind.JOURNAL_REPAIR for r in j.read())
        assert after.ok == (damaged == raw), after.problems
