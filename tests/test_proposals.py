"""The pieces the advisor's recipe was split into, with plain values: the limits and write
prices of a choice (refine), a proposal's words and figures (proposals), the plan readers
(whatif) and the captured statements' identity (workload). No database."""

from __future__ import annotations

import pytest

from tuner.catalog import ColumnFacts, Schema, TableFacts, estimate_size
from tuner.models import (
    Confidence,
    IndexSpec,
    LongRunningGroup,
    ProposalKind,
    ProposalQuery,
    TableRef,
    Trap,
)
from tuner.proposals import (
    index_proposal,
    measured_only_proposal,
    missing_trgm_note,
    shield_proposal,
    why_kind,
)
from tuner.refine import BRIN_WRITE_SHARE, PARTIAL_WRITE_FLOOR, Limits, as_existing, by_key
from tuner.whatif import scan_rows, seq_scanned
from tuner.workload import captured_queries, statement_key

ORDERS = TableRef("public", "orders")
STATUS = ColumnFacts("status", "text", True, True, 3.0, 5, null_frac=0.1,
                     common={"open": 0.02, "done": 0.88})  # fmt: skip
CUSTOMER = ColumnFacts("customer_id", "int4", True, True, -0.5, 4, typlen=4, correlation=0.1)
CREATED = ColumnFacts("created_at", "timestamptz", True, True, -1.0, 8, typlen=8,
                      typalign="d", correlation=0.99)  # fmt: skip
FACTS = TableFacts(ORDERS, 100_000.0, {"status": STATUS, "customer_id": CUSTOMER,
                                       "created_at": CREATED}, pages=1000)  # fmt: skip
SCHEMA = Schema({ORDERS: FACTS}, ("public",), 160000, True)


def test_limits_price_a_write_by_the_kind_of_index() -> None:
    limits = Limits(SCHEMA, budget=10**9)
    assert limits.write_share(IndexSpec(ORDERS, ("customer_id",))) == 1.0
    assert limits.write_share(IndexSpec(ORDERS, ("created_at",), method="brin")) == (
        BRIN_WRITE_SHARE
    )
    open_only = IndexSpec(ORDERS, ("customer_id",), predicate=(("status", "=", "open"),))
    assert limits.write_share(open_only) == pytest.approx(max(0.02, PARTIAL_WRITE_FLOOR))
    spec = IndexSpec(ORDERS, ("customer_id", "created_at"))
    assert limits.size(spec) == estimate_size(spec, FACTS)


def test_chosen_indexes_stand_in_for_existing_ones_but_a_partial_covers_nothing() -> None:
    full = IndexSpec(ORDERS, ("customer_id",))
    partial = IndexSpec(ORDERS, ("status",), predicate=(("status", "=", "open"),))
    [existing] = as_existing([full, partial])
    assert (existing.table, existing.columns, existing.is_valid) == (ORDERS, full.columns, True)
    assert existing.predicate is None
    assert sorted([partial, full], key=by_key) == sorted([full, partial], key=by_key)


def rows(*costs: tuple[float, float]) -> tuple[ProposalQuery, ...]:
    return tuple(
        ProposalQuery(queryid=n, cost_before=b, cost_after=a, calls=10, share=0.25,
                      text=f"SELECT * FROM orders WHERE customer_id = $1 AND n = {n}")
        for n, (b, a) in enumerate(costs, 1)
    )  # fmt: skip


def test_an_index_proposal_carries_its_figures_and_says_why() -> None:
    spec = IndexSpec(ORDERS, ("customer_id",), include=("status",))
    proposal = index_proposal(spec, rows((100.0, 10.0), (300.0, 30.0)), 2.5, True,
                              facts=FACTS, name="ix", ddl="CREATE INDEX ix", raw=123)  # fmt: skip
    assert proposal.kind is ProposalKind.CREATE_INDEX and proposal.confidence is Confidence.HIGH
    assert proposal.cost_reduction == pytest.approx(0.9)
    assert proposal.workload_share == pytest.approx(0.5) and proposal.calls == 20
    assert proposal.estimated_size_bytes == estimate_size(spec, FACTS)
    assert (proposal.index_name, proposal.ddl, proposal.hypopg_size_bytes) == (
        "ix", "CREATE INDEX ix", 123,
    )  # fmt: skip
    assert "(customer_id INCLUDE (status)) serves 2 queries" in proposal.reason
    assert "90% less" in proposal.reason and "2.5 row writes per second" in proposal.reason
    heuristic = index_proposal(spec, rows((100.0, 100.0)), 0.0, False, facts=FACTS,
                               name="ix", ddl="", raw=None)  # fmt: skip
    assert heuristic.confidence is Confidence.LOW and heuristic.cost_reduction == 0.0
    assert "HypoPG is not installed" in heuristic.reason


def test_why_kind_names_what_is_not_a_plain_btree() -> None:
    assert why_kind(IndexSpec(ORDERS, ("customer_id",)), FACTS) == ""
    brin = why_kind(IndexSpec(ORDERS, ("created_at",), method="brin"), FACTS)
    assert brin.startswith("brin: the table's rows lie in created_at's order (correlation 0.99)")
    partial = IndexSpec(ORDERS, ("customer_id",), predicate=(("status", "=", "open"),))
    assert why_kind(partial, FACTS).startswith("partial: 2.0% of rows match")


def test_shields_gin_and_missing_trgm_read_as_such() -> None:
    own = index_proposal(IndexSpec(ORDERS, ("customer_id",)), rows((100.0, 50.0)), 1.0, True,
                         facts=FACTS, name="ix", ddl="", raw=None)  # fmt: skip
    trap = Trap(7, ORDERS, "ix_created", workload_share=0.9, cost_reduction=0.95)
    shield = shield_proposal(own, "SELECT * FROM orders ORDER BY created_at LIMIT 5", trap)
    assert shield.shields == "ix_created" and shield.reason.startswith("A shield for query")
    assert (shield.workload_share, shield.cost_reduction) == (0.9, 0.95)
    gin = measured_only_proposal(own, 0.2)
    assert gin.confidence is Confidence.MEASURED_ONLY and "at most 20% of the table" in gin.reason
    note = missing_trgm_note(IndexSpec(ORDERS, ("status",)), 3, 1234.0)
    assert "CREATE EXTENSION pg_trgm" in note and "3 statement(s)" in note and "1,234 ms" in note


def test_plan_readers_find_sequential_scans_and_their_rows() -> None:
    plan = {"Node Type": "Gather", "Workers Planned": 2, "Plans": [
        {"Node Type": "Seq Scan", "Relation Name": "orders", "Parallel Aware": True,
         "Plan Rows": 100.0},
        {"Node Type": "Index Scan", "Relation Name": "items", "Plan Rows": 1.0},
    ]}  # fmt: skip
    assert scan_rows(plan, "orders") == 300.0  # per process, times the processes
    assert scan_rows(plan, "items") is None
    assert list(seq_scanned(plan)) == ["orders"]


def test_captured_statements_get_a_stable_key_and_their_seen_time() -> None:
    text = "SELECT * FROM orders WHERE status = 'open'"
    assert statement_key(text) == statement_key(text) < 0
    group = LongRunningGroup(fingerprint="f", example=text, count=2, max_duration=2.0,
                             durations=(1.5, 2.0))  # fmt: skip
    [query] = captured_queries([group])
    assert (query.queryid, query.query, query.calls, query.total_ms) == (
        statement_key(text), text, 2, 3500.0,
    )  # fmt: skip
