"""queue.py with plain values: what the tuner does next, as an operator would check it."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

from tests.test_policy import NOW, ORDERS, index, snapshot
from tuner import queue
from tuner.models import (
    Action,
    ActionKind,
    ActionState,
    IndexBuild,
    IndexSpec,
    Proposal,
    ProposalKind,
    TableRef,
)
from tuner.queue import Candidate, Rejections
from tuner.recovery import ActionStatus
from tuner.statements import index_name

CUSTOMER = IndexSpec(ORDERS, ("customer_id",))
VERIFIED = (ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING,
            ActionState.APPLIED, ActionState.VERIFYING)  # fmt: skip


def status(
    action_id: str,
    *history: ActionState,
    kind: ActionKind = ActionKind.CREATE_INDEX,
    name: str | None = "ix_customer",
    table: TableRef = ORDERS,
    columns: tuple[str, ...] = ("customer_id",),
    figures: dict[str, Any] | None = None,
    seq: int = 1,
    since: timedelta = timedelta(0),
) -> ActionStatus:
    """An action as the journal's replay leaves it, after `history` (proposed first)."""
    data: dict[str, Any] = {"kind": kind.value, "table": {"schema": table.schema,
                                                          "name": table.name}}  # fmt: skip
    if name is not None:
        data["index_name"] = name
    if kind is ActionKind.CREATE_INDEX:
        data["columns"] = list(columns)
    states = (ActionState.PROPOSED, *history)
    return ActionStatus(
        action_id, states[-1], data, "", figures or {}, None, (NOW + since).isoformat(), seq,
        states,
    )  # fmt: skip


def by_id(*found: ActionStatus) -> dict[str, ActionStatus]:
    return {s.action_id: s for s in found}


def create(name: str = "ix_customer", share: float = 0.5, reduction: float = 0.9) -> Candidate:
    proposal = Proposal(ProposalKind.CREATE_INDEX, ORDERS, "CREATE INDEX ...", "serves reads",
                        columns=("customer_id",), workload_share=share,
                        cost_reduction=reduction)  # fmt: skip
    return Candidate(proposal, ActionKind.CREATE_INDEX, name, None)


def drop(name: str, duplicate_of: str | None = None) -> Candidate:
    proposal = Proposal(ProposalKind.DROP_DUPLICATE_INDEX, ORDERS, f"DROP INDEX {name}",
                        "a duplicate", index_name=name, duplicate_of=duplicate_of)  # fmt: skip
    return Candidate(proposal, ActionKind.DROP_INDEX, name, None)


# --- known: what advice does not propose again -------------------------------------------------


def test_an_index_already_queued_building_or_kept_is_not_proposed_again() -> None:
    for history in ((ActionState.APPROVED,), VERIFIED, (*VERIFIED, ActionState.KEPT)):
        assert queue.known(create(), by_id(status("a1", *history)))


def test_an_index_that_failed_or_was_rejected_may_be_proposed_again() -> None:
    for final in (ActionState.FAILED, ActionState.REJECTED):
        assert not queue.known(create(), by_id(status("a1", final)))


def test_another_index_or_table_is_not_the_same_action() -> None:
    other_table = status("a1", ActionState.APPROVED, table=TableRef("public", "items"))
    other_name = status("a2", ActionState.APPROVED, name="ix_other")
    assert not queue.known(create(), by_id(other_table, other_name))


def test_maintenance_done_may_be_due_again_but_not_while_queued() -> None:
    analyze = Candidate(
        Proposal(ProposalKind.ANALYZE, ORDERS, "ANALYZE orders", "stale statistics"),
        ActionKind.ANALYZE, None, None,
    )  # fmt: skip
    done = status("m1", ActionState.APPROVED, ActionState.KEPT, kind=ActionKind.ANALYZE, name=None)
    queued = status("m1", ActionState.APPROVED, kind=ActionKind.ANALYZE, name=None)
    assert not queue.known(analyze, by_id(done))
    assert queue.known(analyze, by_id(queued))


def test_a_rolled_back_index_is_known_until_another_index_on_its_table_was_kept() -> None:
    rolled = status("a1", *VERIFIED, ActionState.ROLLED_BACK, seq=1)
    assert queue.known(create(), by_id(rolled))
    kept = status("b1", *VERIFIED, ActionState.KEPT, name="ix_other", seq=2)
    assert not queue.known(create(), by_id(rolled, kept))


# --- being built: drops that must wait -------------------------------------------------------


def test_an_index_still_being_built_is_never_dropped() -> None:
    build = IndexBuild(pid=7, table=ORDERS, index="public.ix_building",
                       command="CREATE INDEX CONCURRENTLY", phase="building index", blocks_done=0,
                       blocks_total=0, tuples_done=0, tuples_total=0)  # fmt: skip
    latest = snapshot(index_builds=(build,))
    assert queue.being_built(drop("ix_building"), latest, None)
    assert queue.being_built(drop("ix_old", duplicate_of="ix_building"), latest, None)
    assert not queue.being_built(drop("ix_old"), latest, None)


def test_a_duplicate_of_the_index_in_flight_is_not_dropped_while_it_may_be_rolled_back() -> None:
    assert queue.being_built(drop("ix_old", duplicate_of="ix_new"), snapshot(), "ix_new")
    assert not queue.being_built(create("ix_new"), snapshot(), "ix_new")


# --- the queue ---------------------------------------------------------------------------------


def test_the_most_beneficial_index_is_queued_first() -> None:
    small, big = create("ix_small", share=0.1), create("ix_big", share=0.6)
    middle = create("ix_middle", share=0.9, reduction=0.3)
    assert [c.index_name for c in queue.by_benefit([small, middle, big])] == [
        "ix_big", "ix_middle", "ix_small",
    ]  # fmt: skip


def test_the_queue_runs_the_oldest_approved_action_and_resumes_a_baselined_one() -> None:
    proposed = status("p1")
    first, second = status("a1", ActionState.APPROVED), status("a2", ActionState.APPROVED)
    head = queue.next_action(by_id(proposed, first, second))
    assert head is not None and head.action_id == "a1"
    baselined = status("b1", ActionState.APPROVED, ActionState.BASELINED)
    head = queue.next_action(by_id(proposed, baselined, second))
    assert head is not None and head.action_id == "b1"
    assert queue.next_action(by_id(proposed)) is None


def test_advice_counts_the_queued_and_the_in_flight_actions_it_waits_for() -> None:
    statuses = by_id(status("p1"), status("a1", ActionState.APPROVED), status("v1", *VERIFIED),
                     status("k1", *VERIFIED, ActionState.KEPT))  # fmt: skip
    assert queue.queued(statuses) == 2
    assert queue.unsettled(statuses)
    assert not queue.unsettled(by_id(status("k1", *VERIFIED, ActionState.KEPT)))


def test_an_approved_index_another_index_already_covers_is_not_built_twice() -> None:
    action = Action("a1", ActionKind.CREATE_INDEX, ORDERS, CUSTOMER, index_name="ix_customer")
    wider = index("ix_customer_total", columns=("customer_id", "total"))
    twin = queue.covering_twin(action, snapshot(indexes=(wider,)))
    assert twin is not None and twin.name == "ix_customer_total"
    other = index("ix_total", columns=("total", "customer_id"))
    assert queue.covering_twin(action, snapshot(indexes=(other,))) is None
    # its own name is the action's index (a retry after a restart), not a twin
    itself = index("ix_customer", columns=("customer_id",))
    assert queue.covering_twin(action, snapshot(indexes=(itself,))) is None


def test_an_index_that_lacks_the_queued_ones_include_columns_does_not_cover_it() -> None:
    spec = IndexSpec(ORDERS, ("customer_id",), include=("total",))
    action = Action("a1", ActionKind.CREATE_INDEX, ORDERS, spec, index_name="ix_customer_inc")
    plain = index("ix_customer", columns=("customer_id",))
    assert queue.covering_twin(action, snapshot(indexes=(plain,))) is None


def test_an_action_the_journal_shows_applying_is_stuck() -> None:
    statuses = by_id(status("a1", ActionState.APPROVED, ActionState.BASELINED,
                            ActionState.APPLYING), status("a2", ActionState.APPROVED))  # fmt: skip
    assert queue.applying(statuses) == ["a1"]


def test_housekeeping_measures_unused_from_when_an_index_was_kept() -> None:
    statuses = by_id(status("k1", *VERIFIED, ActionState.KEPT, since=timedelta(days=3)),
                     status("v1", *VERIFIED, name="ix_verifying"))  # fmt: skip
    assert queue.kept_since(statuses) == {"ix_customer": NOW + timedelta(days=3)}


# --- candidates and rejections ---------------------------------------------------------------


def test_a_proposed_index_is_named_as_the_executor_builds_it_and_a_drop_keeps_its_definition(
) -> None:  # fmt: skip
    create_proposal = Proposal(ProposalKind.CREATE_INDEX, ORDERS, "CREATE INDEX ...", "reads",
                               columns=("customer_id",))  # fmt: skip
    drop_proposal = Proposal(ProposalKind.DROP_UNUSED_INDEX, ORDERS, "DROP INDEX ix_old",
                             "unused", index_name="ix_old")  # fmt: skip
    old = index("ix_old")
    made, dropped = queue.candidates([create_proposal, drop_proposal], snapshot(indexes=(old,)))
    assert made.kind is ActionKind.CREATE_INDEX and made.index_name == index_name(CUSTOMER)
    assert dropped.kind is ActionKind.DROP_INDEX and dropped.index_definition == old.definition


def test_a_rejection_is_journaled_once_per_index_and_rule() -> None:
    rejections = Rejections()
    candidate = create()
    action = Action("a1", ActionKind.CREATE_INDEX, ORDERS, CUSTOMER, index_name="ix_customer")
    assert rejections.first(candidate, action, "budget")
    assert not rejections.first(candidate, replace(action, id="a2"), "budget")
    assert rejections.first(candidate, action, "per_table")
    assert rejections.first(create("ix_other"), action, "budget")


def test_a_rolled_back_index_that_trapped_a_read_is_not_excluded_from_advice() -> None:
    plain = status("a1", *VERIFIED, ActionState.ROLLED_BACK)
    trapped = status("a2", *VERIFIED, ActionState.ROLLED_BACK, name="ix_trap",
                     figures={"trapped": "42"})  # fmt: skip
    assert queue.rolled_back(by_id(plain, trapped), Counter()) == [CUSTOMER]
