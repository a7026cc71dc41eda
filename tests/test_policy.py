"""policy.decide with plain values: every rule, every rejection reason, every mode."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuner.config import Policy, Target
from tuner.journal import Journal
from tuner.models import (
    Action,
    ActionKind,
    ActionState,
    Decision,
    IndexSpec,
    IndexStat,
    ServerStat,
    Snapshot,
    TableRef,
    TableStat,
)
from tuner.policy import (
    DropTarget,
    History,
    PastAction,
    decide,
    drop_refusal,
    history_from,
    rules,
)
from tuner.recovery import replay

ORDERS = TableRef("public", "orders")
ITEMS = TableRef("public", "items")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MB = 1024**2
GB = 1024**3
CUSTOMER_IDX = IndexSpec(ORDERS, ("customer_id",))


@dataclass(frozen=True)
class Proposal:
    kind: ActionKind = ActionKind.CREATE_INDEX
    table: TableRef = ORDERS
    index: IndexSpec | None = CUSTOMER_IDX
    index_name: str | None = None
    index_definition: str | None = None
    cost_reduction: float = 0.9
    workload_share: float = 0.5
    size_bytes: int = 10 * MB
    low_confidence: bool = False
    measured_only: bool = False
    unused_for: timedelta | None = None
    duplicate_of: str | None = None
    reason: str = "serves 3 queries"


def drop(name: str, unused: timedelta | None = None, table: TableRef = ORDERS) -> Proposal:
    return Proposal(
        kind=ActionKind.DROP_INDEX, table=table, index=None, index_name=name,
        index_definition=f"CREATE INDEX {name} ON {table} (x)", cost_reduction=0.0,
        workload_share=0.0, size_bytes=0, unused_for=unused,
    )  # fmt: skip


def maintenance(kind: ActionKind, table: TableRef = ORDERS) -> Proposal:
    return Proposal(kind=kind, table=table, index=None, cost_reduction=0.0, workload_share=0.0)


def policy(**settings: Any) -> Policy:
    settings.setdefault("mode", "apply")
    return Policy(target=Target(dsn="host=localhost dbname=app"), **settings)


def table(ref: TableRef = ORDERS, size: int = 100 * MB) -> TableStat:
    return TableStat(
        relid=1, table=ref, size_bytes=size, indexes_bytes=0, reltuples=1e6, n_live_tup=10**6,
        n_dead_tup=0, seq_scan=0, seq_tup_read=0, idx_scan=0, idx_tup_fetch=0, n_tup_ins=0,
        n_tup_upd=0, n_tup_del=0, n_tup_hot_upd=0, n_mod_since_analyze=0, last_vacuum=None,
        last_autovacuum=None, last_analyze=None, last_autoanalyze=None, heap_blks_hit=0,
        heap_blks_read=0,
    )  # fmt: skip


def index(name: str, ref: TableRef = ORDERS, size: int = 1 * MB, **flags: Any) -> IndexStat:
    values: dict[str, Any] = dict(
        indexrelid=2, table=ref, schema=ref.schema, name=name,
        definition=f"CREATE INDEX {name} ON {ref} USING btree (x)", method="btree",
        columns=("x",), include=(), predicate=None, size_bytes=size, idx_scan=0, idx_tup_read=0,
        idx_tup_fetch=0, is_valid=True, is_ready=True, is_unique=False, is_primary=False,
        backs_constraint=False, is_replica_identity=False, comment=None,
    )  # fmt: skip
    values.update(flags)
    return IndexStat(**values)


def server(**overrides: Any) -> ServerStat:
    values: dict[str, Any] = dict(
        version_num=150000, version="PostgreSQL 15", database="app", dbid=5, settings={},
        in_recovery=False, blks_hit=0, blks_read=0, xact_commit=0, xact_rollback=0,
        deadlocks=0, temp_bytes=0, sessions_by_state={}, active_sessions=1, total_sessions=5,
        max_connections=100, oldest_xact_age=None, waiting_locks=0, replicas=(),
        index_builds=(),
    )  # fmt: skip
    values.update(overrides)
    return ServerStat(**values)


def snapshot(
    tables: tuple[TableStat, ...] = (), indexes: tuple[IndexStat, ...] = (), **srv: Any
) -> Snapshot:
    return Snapshot(
        taken_at=NOW, monotonic=0.0, server=server(**srv), queries=(), stats_reset=None,
        dealloc=0, tables=tables or (table(ORDERS), table(ITEMS)), indexes=indexes,
        long_running=(),
    )  # fmt: skip


def one(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1
    return decisions[0]


# --- modes -----------------------------------------------------------------------------------


def test_observe_mode_decides_nothing() -> None:
    assert decide([Proposal()], policy(mode="observe"), History(), snapshot()) == []


def test_apply_mode_approves_and_recommend_mode_waits_for_approval() -> None:
    applied = one(decide([Proposal()], policy(mode="apply"), History(), snapshot()))
    assert applied.state is ActionState.APPROVED and not applied.rejected
    recommended = one(decide([Proposal()], policy(mode="recommend"), History(), snapshot()))
    assert recommended.state is ActionState.PROPOSED
    assert "approve" in recommended.reason


def test_low_confidence_estimate_is_only_recommended_even_in_apply_mode() -> None:
    d = one(decide([Proposal(low_confidence=True)], policy(), History(), snapshot()))
    assert d.state is ActionState.PROPOSED
    assert "low-confidence" in d.reason


def test_a_measured_only_estimate_is_applied_alone_only_where_the_level_allows() -> None:
    # A gin index (HypoPG cannot cost it): conservative waits for approval, moderate builds.
    gin = Proposal(measured_only=True)
    waits = one(decide([gin], policy(level="conservative"), History(), snapshot()))
    assert waits.state is ActionState.PROPOSED and "measured-only" in waits.reason
    built = one(decide([gin], policy(level="moderate"), History(), snapshot()))
    assert built.state is ActionState.APPROVED
    override = policy(level="moderate", thresholds={"apply_measured_only": False})
    assert one(decide([gin], override, History(), snapshot())).state is ActionState.PROPOSED


def test_each_action_gets_a_fresh_id_and_carries_the_proposal() -> None:
    proposals = [Proposal(), Proposal(table=ITEMS, index=IndexSpec(ITEMS, ("sku",)))]
    decisions = decide(proposals, policy(level="aggressive"), History(), snapshot())
    ids = {d.action.id for d in decisions}
    assert len(ids) == 2 and all(len(i) == 12 for i in ids)
    first = decisions[0].action
    assert first.kind is ActionKind.CREATE_INDEX and first.table == ORDERS
    assert first.index == IndexSpec(ORDERS, ("customer_id",))
    assert first.figures["cost_reduction"] == 0.9 and first.figures["size_bytes"] == 10 * MB


# --- the bar ---------------------------------------------------------------------------------


def test_below_the_cost_reduction_bar_is_rejected_with_the_figures() -> None:
    # conservative wants 50 %; 40 % is short of it.
    d = one(decide([Proposal(cost_reduction=0.4)], policy(), History(), snapshot()))
    assert d.rejected and d.rule == "below_bar"
    assert "40%" in d.reason and "50%" in d.reason


def test_below_the_workload_share_bar_is_rejected() -> None:
    # moderate wants the served queries to take at least 1 % of workload time.
    d = one(
        decide([Proposal(workload_share=0.005)], policy(level="moderate"), History(), snapshot())
    )
    assert d.rejected and d.rule == "below_bar" and "0.5%" in d.reason


def test_a_threshold_override_moves_the_bar() -> None:
    lowered = policy(thresholds={"min_cost_reduction": 0.3})
    assert not one(decide([Proposal(cost_reduction=0.4)], lowered, History(), snapshot())).rejected


def test_create_indexes_false_rejects_every_index() -> None:
    off = policy(thresholds={"create_indexes": False})
    d = one(decide([Proposal()], off, History(), snapshot()))
    assert d.rejected and d.rule == "create_disabled"


# --- limits (invariant 9) ----------------------------------------------------------------------


def test_invariant_9_storage_budget_counts_tuner_indexes_and_this_estimate() -> None:
    # 900 MB of our indexes already; budget 1 GB; a 200 MB estimate would pass it.
    ours = index("tuner_a", size=900 * MB, comment="pg-tuner: made by action x")
    history = History(tuner_indexes=((ORDERS, "tuner_a"),))
    tight = policy(level="aggressive", limits={"index_storage_budget": "1GB"})
    d = one(decide([Proposal(size_bytes=200 * MB)], tight, history, snapshot(indexes=(ours,))))
    assert d.rejected and d.rule == "budget_spent"
    assert "900.0 MiB" in d.reason and "1.0 GiB" in d.reason
    fits = one(decide([Proposal(size_bytes=124 * MB)], tight, history, snapshot(indexes=(ours,))))
    assert not fits.rejected


def test_invariant_9_storage_budget_falls_back_to_journaled_sizes() -> None:
    # The index is not in this snapshot (another schema filter, say): the journal's size counts.
    history = History(tuner_indexes=((ORDERS, "tuner_a"),), index_sizes={"tuner_a": 990 * MB})
    tight = policy(level="aggressive", limits={"index_storage_budget": "1GB"})
    d = one(decide([Proposal(size_bytes=50 * MB)], tight, history, snapshot()))
    assert d.rule == "budget_spent"


def test_invariant_9_budget_accumulates_within_one_batch() -> None:
    tight = policy(level="aggressive", limits={"index_storage_budget": "25MB"})
    decisions = decide([Proposal(), Proposal(table=ITEMS), Proposal()], tight, History(),
                       snapshot())  # fmt: skip
    assert [d.rule for d in decisions] == ["accepted", "accepted", "budget_spent"]


def test_invariant_9_daily_index_limit_counts_todays_history() -> None:
    # conservative: one new index a day; one was approved this morning.
    history = History(actions=(PastAction(NOW - timedelta(hours=3), ActionKind.CREATE_INDEX),))
    d = one(decide([Proposal()], policy(), history, snapshot()))
    assert d.rejected and d.rule == "daily_limit" and "1 indexes already today" in d.reason
    yesterday = History(actions=(PastAction(NOW - timedelta(days=1), ActionKind.CREATE_INDEX),))
    assert not one(decide([Proposal()], policy(), yesterday, snapshot())).rejected


def test_invariant_9_the_day_is_the_policy_time_zone_day() -> None:
    # Noon UTC on 10 March is 01:00 on 11 March in Auckland (UTC+13): an action at 10:30 UTC
    # (23:30 on the 10th there) was yesterday; one at 11:30 UTC (00:30 on the 11th) today.
    auckland = policy(timezone="Pacific/Auckland")
    earlier = History(actions=(PastAction(NOW - timedelta(minutes=90), ActionKind.CREATE_INDEX),))
    assert not one(decide([Proposal()], auckland, earlier, snapshot())).rejected
    assert one(decide([Proposal()], policy(), earlier, snapshot())).rule == "daily_limit"
    later = History(actions=(PastAction(NOW - timedelta(minutes=30), ActionKind.CREATE_INDEX),))
    assert one(decide([Proposal()], auckland, later, snapshot())).rule == "daily_limit"


def test_invariant_9_daily_index_limit_counts_this_batch() -> None:
    # moderate: three a day; five proposals on five tables.
    tables = [TableRef("public", f"t{i}") for i in range(5)]
    snap = snapshot(tables=tuple(table(t) for t in tables))
    decisions = decide([Proposal(table=t) for t in tables], policy(level="moderate"), History(),
                       snap)  # fmt: skip
    assert [d.rule for d in decisions] == ["accepted"] * 3 + ["daily_limit"] * 2


def test_invariant_9_max_actions_per_day_counts_every_kind() -> None:
    history = History(
        actions=tuple(PastAction(NOW - timedelta(minutes=m), ActionKind.ANALYZE) for m in (1, 2))
    )
    capped = policy(level="aggressive", limits={"max_actions_per_day": 2})
    d = one(decide([maintenance(ActionKind.VACUUM)], capped, history, snapshot()))
    assert d.rejected and d.rule == "daily_limit" and "2 actions already today" in d.reason
    d = one(decide([Proposal()], capped, history, snapshot()))
    assert d.rule == "daily_limit"


def test_invariant_9_tuner_indexes_per_table() -> None:
    # conservative allows 3 tuner indexes per table; orders has 3, items none.
    history = History(tuner_indexes=tuple((ORDERS, f"tuner_{i}") for i in range(3)))
    lenient = policy(limits={"max_actions_per_day": 99}, thresholds={"max_indexes_per_day": 9})
    d = one(decide([Proposal()], lenient, history, snapshot()))
    assert d.rejected and d.rule == "table_index_limit" and "3 tuner indexes" in d.reason
    other = Proposal(table=ITEMS, index=IndexSpec(ITEMS, ("sku",)))
    assert not one(decide([other], lenient, history, snapshot())).rejected


def test_invariant_9_table_too_large_for_an_online_build() -> None:
    big = snapshot(tables=(table(ORDERS, size=2 * GB),))
    capped = policy(level="aggressive", limits={"max_table_size": "1GB"})
    d = one(decide([Proposal()], capped, History(), big))
    assert d.rejected and d.rule == "table_too_large" and "2.0 GiB" in d.reason
    reindex = maintenance(ActionKind.REINDEX)
    assert one(decide([reindex], capped, History(), big)).rule == "table_too_large"
    analyze = maintenance(ActionKind.ANALYZE)
    assert not one(decide([analyze], capped, History(), big)).rejected


# --- kinds per level -------------------------------------------------------------------------


def test_maintenance_kinds_follow_the_level() -> None:
    kinds = [ActionKind.ANALYZE, ActionKind.VACUUM, ActionKind.REINDEX]
    expected = {
        "conservative": ["accepted", "kind_disabled", "kind_disabled"],
        "moderate": ["accepted", "accepted", "kind_disabled"],
        "aggressive": ["accepted", "accepted", "accepted"],
    }
    for level, rules_ in expected.items():
        decisions = decide([maintenance(k) for k in kinds], policy(level=level), History(),
                           snapshot())  # fmt: skip
        assert [d.rule for d in decisions] == rules_, level
    assert (
        "VACUUM is not allowed at level conservative"
        in decide([maintenance(ActionKind.VACUUM)], policy(), History(), snapshot())[0].reason
    )


OWN = "pg-tuner: action abc123"


def test_own_unused_index_is_dropped_only_after_drop_unused_after() -> None:
    snap = snapshot(indexes=(index("tuner_a", comment=OWN),))
    moderate = policy(level="moderate")  # drops after 30 days
    soon = one(decide([drop("tuner_a", timedelta(days=10))], moderate, History(), snap))
    assert soon.rejected and soon.rule == "drop_too_soon" and "10d" in soon.reason
    due = one(decide([drop("tuner_a", timedelta(days=31))], moderate, History(), snap))
    assert due.state is ActionState.APPROVED
    assert due.action.index_definition == "CREATE INDEX tuner_a ON public.orders (x)"
    never = one(decide([drop("tuner_a", timedelta(days=400))], policy(), History(), snap))
    assert never.rule == "drop_disabled"


def test_own_duplicate_is_dropped_at_once_while_the_index_that_stays_is_valid() -> None:
    """A shield kept beside the plain index it extends: the plain one need not go unused
    for drop_unused_after first. Tried: the index that stays gone, or INVALID; level
    conservative (never drops its own)."""
    shield = index("tuner_shield", comment=OWN)
    plain = index("tuner_plain", comment=OWN)
    moderate = policy(level="moderate")
    twin = replace(drop("tuner_plain"), duplicate_of="tuner_shield")
    now = one(decide([twin], moderate, History(), snapshot(indexes=(plain, shield))))
    assert now.state is ActionState.APPROVED, now.reason
    gone = one(decide([twin], moderate, History(), snapshot(indexes=(plain,))))
    assert gone.rejected and gone.rule == "drop_too_soon"
    broken = replace(shield, is_valid=False)
    invalid = one(decide([twin], moderate, History(), snapshot(indexes=(plain, broken))))
    assert invalid.rejected and invalid.rule == "drop_too_soon"
    kept = one(decide([twin], policy(), History(), snapshot(indexes=(plain, shield))))
    assert kept.rejected and kept.rule == "drop_disabled"


def test_foreign_index_is_dropped_only_when_aggressive_and_allowed() -> None:
    snap = snapshot(indexes=(index("app_idx"),))
    old = timedelta(days=90)
    allowed = policy(level="aggressive", thresholds={"allow_drop_foreign": True})
    assert one(decide([drop("app_idx", old)], allowed, History(), snap)).rule == "accepted"
    for refusing in (
        policy(level="aggressive"),
        policy(level="moderate", thresholds={"allow_drop_foreign": True}),
    ):
        d = one(decide([drop("app_idx", old)], refusing, History(), snap))
        assert d.rejected and d.rule == "drop_foreign" and "not made by pg-tuner" in d.reason


def test_constraint_and_replica_identity_indexes_are_never_dropped() -> None:
    snap = snapshot(
        indexes=(
            index("orders_pkey", comment=OWN, backs_constraint=True, is_primary=True),
            index("orders_ri", comment=OWN, is_replica_identity=True),
        )
    )
    anything = policy(level="aggressive", thresholds={"allow_drop_foreign": True})
    old = timedelta(days=365)
    pkey = one(decide([drop("orders_pkey", old)], anything, History(), snap))
    assert pkey.rejected and pkey.rule == "drop_constraint"
    ri = one(decide([drop("orders_ri", old)], anything, History(), snap))
    assert ri.rejected and ri.rule == "drop_replica_identity"


def test_dropping_an_index_missing_from_the_catalog_is_rejected() -> None:
    d = one(decide([drop("gone", timedelta(days=99))], policy(level="aggressive"), History(),
                   snapshot()))  # fmt: skip
    assert d.rejected and d.rule == "index_missing"


def test_every_rule_given_is_listed_in_rules() -> None:
    seen = {"accepted", "awaiting_approval", *rules()}
    decisions = decide(
        [Proposal(cost_reduction=0.0), replace(Proposal(), low_confidence=True)],
        policy(), History(), snapshot(),
    )  # fmt: skip
    assert {d.rule for d in decisions} <= seen


# --- history from the journal ----------------------------------------------------------------


def history_of(journal: Journal) -> History:
    """The caller's part: read and replay the journal, then hand the policy the result."""
    records = journal.read()
    return history_from(records, replay(records).values())


def test_invariant_9_history_from_the_journal_counts_today_and_live_tuner_indexes(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "journal.jsonl")

    def create(name: str, states: list[ActionState], table: TableRef = ORDERS) -> Action:
        action = Action(id=name, kind=ActionKind.CREATE_INDEX, table=table, index_name=name,
                        index=IndexSpec(table, ("x",)), figures={"size_bytes": 5 * MB})  # fmt: skip
        for state in states:
            journal.append(state, action=action)
        return action

    built = [ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING,
             ActionState.APPLIED, ActionState.VERIFYING]  # fmt: skip
    create("kept_idx", [ActionState.PROPOSED, *built, ActionState.KEPT])
    create("undone_idx", [*built, ActionState.ROLLED_BACK])
    create("waiting_idx", [ActionState.PROPOSED])  # awaiting approval: counts nowhere
    create("refused_idx", [ActionState.PROPOSED, ActionState.REJECTED])
    create("items_idx", [ActionState.APPROVED], table=ITEMS)
    history = history_of(journal)
    # Three approvals today (kept, rolled back, items): each counts against the day.
    assert len(history.actions) == 3
    assert {a.kind for a in history.actions} == {ActionKind.CREATE_INDEX}
    assert set(history.tuner_indexes) == {(ORDERS, "kept_idx"), (ITEMS, "items_idx")}
    assert history.index_sizes == {"kept_idx": 5 * MB, "items_idx": 5 * MB}
    now = max(a.at for a in history.actions)
    d = one(decide([Proposal()], policy(level="moderate"), history,
                   replace(snapshot(), taken_at=now)))  # fmt: skip
    assert d.rule == "daily_limit" and "3 indexes already today" in d.reason

    # Dropping the kept index (an own unused one) frees its place and its storage.
    gone = Action(id="drop1", kind=ActionKind.DROP_INDEX, table=ORDERS, index_name="kept_idx")
    for state in (ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING,
                  ActionState.APPLIED):  # fmt: skip
        journal.append(state, action=gone)
    assert history_of(journal).tuner_indexes == ((ITEMS, "items_idx"),)


# --- the one drop-safety rule ----------------------------------------------------------------


def _target(**facts: Any) -> DropTarget:
    values: dict[str, Any] = dict(
        ref="public.orders_x", table_name="orders", own=True, backs_constraint=False,
        replica_identity=False, unique=False,
    )  # fmt: skip
    values.update(facts)
    return DropTarget(**values)


def test_drop_refusal_is_one_rule_for_the_policy_and_the_executor() -> None:
    aggressive = policy(level="aggressive")
    foreign_ok = policy(level="aggressive", thresholds={"allow_drop_foreign": True})
    assert drop_refusal(_target(), ORDERS, aggressive) is None
    cases = {
        "index_missing": (_target(table_name="lines"), aggressive),
        "drop_constraint": (_target(backs_constraint=True), foreign_ok),
        "drop_replica_identity": (_target(replica_identity=True), foreign_ok),
        "drop_unique": (_target(unique=True), foreign_ok),
        "drop_partitioned": (_target(partitioned=True), foreign_ok),
        "drop_foreign": (_target(own=False), aggressive),
        "drop_unrecreatable": (_target(recreate_problem="not a template"), aggressive),
    }
    for rule, (target, pol) in cases.items():
        refusal = drop_refusal(target, ORDERS, pol)
        assert refusal is not None and refusal[0] == rule and rule in rules(), rule
    assert drop_refusal(_target(own=False), ORDERS, foreign_ok) is None
    moderate_foreign = policy(level="moderate", thresholds={"allow_drop_foreign": True})
    refusal = drop_refusal(_target(own=False), ORDERS, moderate_foreign)
    assert refusal is not None and "not made by pg-tuner" in refusal[1]


def test_a_unique_index_in_the_snapshot_is_refused_before_the_executor_sees_it() -> None:
    snap = snapshot(indexes=(index("orders_u", comment=OWN, is_unique=True),))
    d = one(decide([drop("orders_u", timedelta(days=99))], policy(level="aggressive"),
                   History(), snap))  # fmt: skip
    assert d.rejected and d.rule == "drop_unique"
