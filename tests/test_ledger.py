"""The journal's records as typed values: both ways with plain values, tolerant of older
lines, and a journal written by an earlier version (tests/data) replayed as it is on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.test_journal import ORDERS, create_action, drop_action
from tuner.commands.audit import describe_action
from tuner.journal import Journal
from tuner.ledger import replay, transition_data
from tuner.models import (
    AcknowledgedData,
    ActionData,
    ActionKind,
    ActionState,
    Fragment,
    IndexSpec,
    NoData,
    RepairData,
    TableRef,
    TransitionData,
    WatchData,
    payload_of,
)
from tuner.recovery import recover

WRITTEN = Path(__file__).parent / "data" / "journal_v1.jsonl"  # by the journal of 22b0240


@pytest.fixture
def old(tmp_path: Path) -> Journal:
    copy = tmp_path / "journal.jsonl"
    shutil.copyfile(WRITTEN, copy)
    return Journal(copy)


def test_action_data_goes_both_ways() -> None:
    for action in (create_action(), drop_action()):
        typed = ActionData.of(action, ddl="CREATE INDEX ...")
        assert ActionData.from_data(typed.to_data()) == typed
        assert typed.to_action(action.id, action.reason, action.figures) == action
    partial = IndexSpec(ORDERS, ("status",), predicate=(("deleted_at", "is null", None),))
    typed = ActionData(ActionKind.CREATE_INDEX, ORDERS, "ix_live", partial)
    assert ActionData.from_data(typed.to_data()).index == partial


def test_action_data_from_an_older_line_takes_defaults_and_ignores_unknown_keys() -> None:
    older = {"kind": "create_index", "table": {"schema": "public", "name": "orders"},
             "columns": ["status"], "someday": [1, 2]}  # fmt: skip
    typed = ActionData.from_data(older)
    assert typed.index == IndexSpec(ORDERS, ("status",))  # btree, no include, ascending
    assert (typed.index_name, typed.index_definition, typed.ddl) == (None, None, None)


@pytest.mark.parametrize(
    "data",
    [
        {"table": {"schema": "public", "name": "orders"}},
        {"kind": "create_index"},
        {"kind": "teleport", "table": {"schema": "public", "name": "orders"}},
        {"kind": "drop_index", "table": {"schema": "s", "name": "t"}, "index_name": 7},
    ],
)
def test_action_data_without_what_it_needs_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ActionData.from_data(data)


def test_transition_data_goes_both_ways() -> None:
    typed = TransitionData(
        ddl="CREATE INDEX ...", expected=(5, -3), shields="ix_old",
        baseline={"queries": [], "seconds": 60.0}, texts={5: "SELECT 1"}, labels={5: "select 1"},
        captured={"fp": (3, 1.5, 0.25)}, watch=WatchData(frozenset({5}), frozenset({-3})),
        index_definition="CREATE INDEX ix ON t (a)",
    )  # fmt: skip
    assert TransitionData.from_data(typed.to_data()) == typed
    assert TransitionData.from_data({}) == TransitionData()
    assert TransitionData().to_data() == {}


def test_transition_data_skips_what_it_cannot_read() -> None:
    typed = TransitionData.from_data({
        "expected": [1, "two", True, 3], "texts": {"12": "SELECT 1", "x": "SELECT 2", "13": 4},
        "captured": {"a": [1, 2.0, 3.0], "b": [1]}, "watch": {"reads": [1], "later": [2]},
        "unknown": {"kept": False},
    })  # fmt: skip
    assert typed.expected == (1, 3)
    assert typed.texts == {12: "SELECT 1"}
    assert typed.captured == {"a": (1, 2.0, 3.0)}
    assert typed.watch == WatchData(reads=frozenset({1}))


def test_each_kind_of_record_has_its_payload() -> None:
    fragments = {"fragments": [{"line": 3, "offset": 80, "bytes": 4, "base64": "eyJz"}]}
    assert payload_of("journal_repair", fragments) == RepairData((Fragment(80, "eyJz", 3, 4),))
    assert RepairData.from_data(fragments).to_data() == fragments
    problems = {"problems": ["line 3: edited", 4]}
    assert payload_of("chain_acknowledged", problems) == AcknowledgedData(("line 3: edited",))
    assert payload_of("rollback_requested", {"x": 1}) == NoData()
    assert payload_of("journal_resumed", {}) == NoData()
    assert payload_of("baselined", {"ddl": "x"}) == TransitionData(ddl="x")


def test_a_journal_written_by_an_earlier_version_still_replays(old: Journal) -> None:
    result = old.verify()
    assert result.ok and result.records == 21 and len(result.notes) == 1  # the torn write
    statuses = replay(old.read())
    assert list(statuses) == ["c1", "d1", "h1", "a1", "o1"]
    assert {k: s.state for k, s in statuses.items()} == {
        "c1": ActionState.ROLLED_BACK, "d1": ActionState.KEPT, "h1": ActionState.REJECTED,
        "a1": ActionState.APPLYING, "o1": ActionState.PROPOSED,
    }  # fmt: skip
    created = statuses["c1"].to_action()
    assert created is not None and created.index is not None
    assert created.index.columns == ("customer_id", "created_at")
    assert created.index.descending == (False, True) and created.index.include == ("total",)
    dropped = statuses["d1"].to_action()
    assert dropped is not None and dropped.index_definition is not None
    hashed = statuses["h1"].typed_action
    assert hashed is not None and hashed.index is not None and hashed.index.method == "hash"
    older = statuses["o1"].typed_action
    assert older == ActionData(ActionKind.CREATE_INDEX, ORDERS, "pgtuner_orders_status",
                               IndexSpec(ORDERS, ("status",)))  # fmt: skip
    assert describe_action(older) == "create index pgtuner_orders_status on public.orders (status)"
    assert describe_action(statuses["a1"].typed_action) == "analyze public.orders"


def test_the_payloads_of_an_earlier_journal_read_typed(old: Journal) -> None:
    records = old.read()
    merged = transition_data(records, "c1")
    assert merged.expected == (101, -202) and merged.shields == "old_ix"
    assert merged.texts == {101: "SELECT * FROM orders WHERE customer_id = $1",
                            -202: "UPDATE orders SET total = $1"}  # fmt: skip
    assert merged.captured == {"fp1": (3, 1200.5, 40.25)}
    assert merged.baseline is not None and merged.baseline["seconds"] == 60.0
    assert merged.watch == WatchData(frozenset({101}), frozenset({-202}), frozenset(),
                                     frozenset({7}))  # fmt: skip
    assert transition_data(records, "d1").index_definition is not None
    assert transition_data(records, "o1").texts == {303: "SELECT 1"}  # `future_key` ignored
    by_state = {r.state: r for r in records if r.action_id is None}
    repair = by_state["journal_repair"].payload
    assert isinstance(repair, RepairData) and repair.fragments[0].bytes == 17
    ack = by_state["chain_acknowledged"].payload
    assert ack == AcknowledgedData(("line 3: edited",))
    assert all(isinstance(r.data, dict) for r in records)  # the raw dict stays for old readers


def test_an_earlier_journal_is_recovered_and_appended_to(old: Journal) -> None:
    found = recover(old, lambda name: "missing")
    assert [(r.action_id, r.outcome) for r in found] == [("a1", "failed")]
    old.append(ActionState.PROPOSED, action=create_action("n1"))
    assert old.verify().ok
    assert replay(old.read())["n1"].typed_action == ActionData.of(create_action("n1"))


def test_table_ref_of_an_action_data_is_the_catalogs() -> None:
    typed = ActionData.from_data({"kind": "vacuum", "table": {"schema": "A b", "name": "c"}})
    assert typed.table == TableRef("A b", "c") and typed.index is None
