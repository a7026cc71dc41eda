"""watch.py with plain values: which queries an action is measured on."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from tuner import verify, watch
from tuner.flight import Change
from tuner.models import QueryWindow, TableRef
from tuner.models.records import TransitionData

ORDERS = TableRef("public", "orders")


def q(queryid: int, text: str, calls: int = 10, total_ms: float = 1.0) -> QueryWindow:
    return QueryWindow(
        key=(10, 5, queryid, True), queryid=queryid, query=text, calls=calls, total_ms=total_ms,
        mean_ms=total_ms / calls, variance_ms2=0.0, m2=0.0, rows=calls, shared_blks_hit=0,
        shared_blks_read=0,
    )  # fmt: skip


WINDOW = [
    q(1, "SELECT * FROM orders WHERE customer_id = $1", calls=50, total_ms=5.0),
    q(2, "UPDATE public.orders SET total = $1 WHERE id = $2", calls=20, total_ms=40.0),
    q(3, "SELECT * FROM items WHERE id = $1", calls=90, total_ms=2.0),
    q(4, "SELECT * FROM users WHERE id = $1", calls=30, total_ms=1.0),
    q(5, "SELECT count(*) FROM pg_class", calls=500, total_ms=9.0),
    q(6, "SELECT * FROM information_schema.tables", calls=400, total_ms=9.0),
    q(7, "SELECT * FROM rare WHERE id = $1", calls=2, total_ms=1.0),
    q(8, "SELECT * FROM archive.orders WHERE id = $1", calls=60, total_ms=1.0),
    q(9, "SELECT 1", calls=1000, total_ms=1.0),
]


def test_an_actions_queries_are_those_of_its_table_busiest_first() -> None:
    texts = watch.table_queries(watch.parsed(WINDOW), ORDERS)
    assert list(texts) == [2, 1]  # the UPDATE took more time; another schema's orders is not it
    assert texts[1] == WINDOW[0].query


def test_at_most_max_explained_queries_of_a_table_are_explained() -> None:
    many = [q(i, f"SELECT * FROM orders WHERE id = {i}") for i in range(watch.MAX_EXPLAINED + 5)]
    assert len(watch.table_queries(watch.parsed(many), ORDERS)) == watch.MAX_EXPLAINED


def test_the_loads_controls_are_busy_statements_on_other_user_tables() -> None:
    parsed = watch.parsed(WINDOW)
    texts = watch.table_queries(parsed, ORDERS)
    controls = watch.controls(parsed, texts, ORDERS, min_calls=5)
    # never the action's table, the catalog, a statement on no table, or a rare one
    assert controls == {3, 4, 8}
    # nor one on a table changed within the window (another action's build): it measures
    # that change, not the load
    items = TableRef("public", "items")
    assert watch.controls(parsed, texts, ORDERS, min_calls=5, changed={items}) == {4, 8}


def change(
    table: TableRef,
    watched: set[int] | None = None,
    unmoved: Iterable[int] = (),
    ours: bool = False,
) -> Change:
    ids = frozenset(watched) if watched is not None else None
    at = datetime(2026, 3, 10, tzinfo=UTC)
    return Change(at, table, "a change", ours, ids, frozenset(unmoved))


def test_a_table_is_linked_to_an_action_by_a_query_that_reads_both() -> None:
    joined = q(10, "SELECT * FROM orders o JOIN users u ON u.id = o.user_id", calls=5)
    linked = watch.linked(watch.parsed([*WINDOW, joined]), ORDERS)
    users, items = TableRef("public", "users"), TableRef("public", "items")
    assert linked(change(ORDERS)) and linked(change(users))
    assert not linked(change(items))
    # `orders` unqualified may name another schema's orders for some role: linked (better
    # to wait out a window than to span a change of the action's own queries)
    assert linked(change(TableRef("archive", "orders")))
    assert not watch.linked(watch.parsed(WINDOW), ORDERS)(change(users))
    # The tuner's change of users moves orders' figures only through the queries it is
    # verified on: the join among them, or not.
    assert linked(change(users, {10})) and not linked(change(users, {99}))
    assert linked(change(ORDERS, set()))  # the action's own table, always


def test_a_change_moves_the_queries_it_could_have_moved_and_no_others() -> None:
    """orders' queries: a lookup (1), its update (2), a join with users (10). Tried: the
    tuner's build on orders that left the lookup alone, the same before that is known, an
    operator's index on orders, the tuner's build on users verified on the join or not, an
    operator's index on users, and one on items, which no query of orders reads."""
    joined = q(10, "SELECT * FROM orders o JOIN users u ON u.id = o.user_id", calls=5)
    moves = watch.moves(watch.parsed([*WINDOW, joined]), ORDERS)
    users, items = TableRef("public", "users"), TableRef("public", "items")
    assert moves(change(ORDERS, {2, 10}, unmoved={1}, ours=True)) == frozenset({2, 10})
    assert moves(change(ORDERS, ours=True)) is None  # not yet known what it left alone
    assert moves(change(ORDERS)) is None  # an operator's: everything
    assert moves(change(users, {10, 4}, ours=True)) == frozenset({10})
    assert moves(change(users, {4}, ours=True)) == frozenset()
    assert moves(change(users)) == frozenset({10})  # an operator's: the queries that read both
    assert moves(change(items)) == frozenset()


def test_a_change_leaves_alone_the_explained_queries_it_could_not_serve() -> None:
    """Plans of orders' queries before and after an index: the lookup (1) kept its plan
    but is watched (it could use the index); a report (11) kept its plan and is not
    watched; a read (12) changed its plan; one (13) was explained before only; the
    update (2) kept its plan, but a write maintains every index."""
    scan = {"Plan": {"Node Type": "Seq Scan", "Relation Name": "orders"}}
    walk = {"Plan": {"Node Type": "Index Scan", "Index Name": "o_k", "Relation Name": "orders"}}
    texts = {1: WINDOW[0].query, 2: WINDOW[1].query, 11: "SELECT count(*) FROM orders",
             12: "SELECT * FROM orders WHERE k = $1",
             13: "SELECT * FROM orders LIMIT 1"}  # fmt: skip
    before = {1: scan, 2: scan, 11: scan, 12: scan, 13: scan}
    after = {1: scan, 2: scan, 11: scan, 12: walk}
    watched = watch.Watch(reads=frozenset({1, 12}), writes=frozenset({2}), guards=frozenset({1}))
    assert watch.unmoved(before, after, texts, ORDERS, watched) == {11}


def test_the_controls_are_the_busiest_up_to_max_controls() -> None:
    many = [q(i, f"SELECT * FROM t{i} WHERE id = $1", calls=100 + i) for i in range(30)]
    controls = watch.controls(watch.parsed(many), {}, ORDERS, min_calls=5)
    assert controls == set(range(30 - watch.MAX_CONTROLS, 30))


def test_a_watch_survives_the_journal_and_a_restart() -> None:
    kept = verify.Watch(frozenset({1, 3}), frozenset({2}), frozenset({3}), frozenset({8}))
    data = watch.watch_data(kept)
    assert data == {"reads": [1, 3], "writes": [2], "guards": [3], "controls": [8]}
    journaled = TransitionData.from_data({"watch": data})
    assert watch.watch_from_data(journaled, ORDERS, None, {}) == kept


def test_an_action_journaled_before_its_watch_was_is_watched_on_its_baselines_queries() -> None:
    texts = {1: WINDOW[0].query, 2: WINDOW[1].query}
    resumed = watch.watch_from_data(TransitionData(), ORDERS, [1, 2, 3], texts)
    assert resumed == verify.Watch(frozenset({1}), frozenset({2}))  # 3 was a control: unknown
    assert watch.watch_from_data(TransitionData(), ORDERS, None, texts) is None
