"""Tests for tuner.sqlinfo: what an index advisor reads out of one query text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuner.sqlinfo import (
    QueryInfo,
    SkipReason,
    SortKey,
    StatementKind,
    TableName,
    TableUse,
    Unparsed,
    analyze,
    count_skipped,
    describe_skipped,
    rewrite_typed_placeholders,
)


def info(text: str) -> QueryInfo:
    result = analyze(text)
    assert isinstance(result, QueryInfo), result
    return result


def use(text: str, table: str, schema: str | None = None) -> TableUse:
    found = info(text).use(table, schema)
    assert found is not None, f"{table} not among the tables of {text!r}"
    return found


def skipped(text: str) -> Unparsed:
    result = analyze(text)
    assert isinstance(result, Unparsed), result
    return result


# --- single-table lookups -----------------------------------------------------------


def test_simple_lookup_by_parameter() -> None:
    q = info("SELECT id, total FROM orders WHERE customer_id = $1")
    assert q.kind is StatementKind.SELECT
    assert q.reads == (TableName(None, "orders"),)
    assert q.writes == ()
    orders = q.use("orders")
    assert orders is not None
    assert orders.equality == ("customer_id",)
    assert orders.returned == ("id", "total")
    assert not orders.returns_all
    assert not q.has_limit


def test_raw_literal_and_reversed_comparison() -> None:
    orders = use("SELECT id FROM orders WHERE status = 'paid' AND $1 < total", "orders")
    assert orders.equality == ("status",)
    assert orders.ranges == ("total",)


def test_parameter_on_the_left_of_equality() -> None:
    assert use("SELECT id FROM orders WHERE $1 = customer_id", "orders").equality == (
        "customer_id",
    )


def test_function_in_from_is_no_table() -> None:
    q = info("SELECT g, t.x FROM generate_series(1, $1) g JOIN t ON t.n = g WHERE t.k = $2")
    assert q.reads == (TableName(None, "t"),)
    t = q.use("t")
    assert t is not None and t.equality == ("k",)


def test_in_list_is_equality() -> None:
    orders = use("SELECT * FROM orders WHERE status IN ($1, $2, $3)", "orders")
    assert orders.equality == ("status",)
    assert orders.returns_all


def test_any_array_parameter_is_equality() -> None:
    assert use("SELECT id FROM users WHERE id = ANY($1)", "users").equality == ("id",)


def test_is_null_is_equality_and_is_not_null_is_not() -> None:
    users = use("SELECT id FROM users WHERE deleted_at IS NULL AND email IS NOT NULL", "users")
    assert users.equality == ("deleted_at",)
    assert "email" not in users.equality
    assert "email" in users.returned


def test_between_is_a_range() -> None:
    events = use("SELECT count(*) FROM events WHERE created_at BETWEEN $1 AND $2", "events")
    assert events.ranges == ("created_at",)
    assert events.equality == ()


def test_like_prefix_and_parameter_are_ranges_but_not_infix() -> None:
    text = "SELECT id FROM users WHERE name LIKE 'abc%' AND email LIKE $1 AND city LIKE '%x%'"
    users = use(text, "users")
    assert users.ranges == ("name", "email")
    assert "city" in users.returned


def test_negated_like_and_ilike_are_not_ranges() -> None:
    users = use("SELECT id FROM users WHERE name NOT LIKE $1 AND email ILIKE $2", "users")
    assert users.ranges == ()


def test_cast_on_the_parameter_side_is_still_a_range() -> None:
    orders = use("SELECT id FROM orders WHERE created_at >= $1::date", "orders")
    assert orders.ranges == ("created_at",)


def test_function_on_the_column_side_is_an_expression_predicate() -> None:
    users = use("SELECT id FROM users WHERE lower(email) = $1", "users")
    assert users.equality == ()
    assert users.expression_predicates == ("LOWER(email) = $1",)


def test_cast_on_the_column_side_is_not_plain_equality() -> None:
    users = use("SELECT id FROM users WHERE id::text = $1", "users")
    assert users.equality == ()
    assert len(users.expression_predicates) == 1


def test_boolean_column_alone_is_equality() -> None:
    assert use("SELECT id FROM jobs WHERE active AND queue = $1", "jobs").equality == (
        "active",
        "queue",
    )


def test_order_by_asc_desc_nulls_last_and_limit() -> None:
    text = (
        "SELECT id FROM orders WHERE customer_id = $1 "
        "ORDER BY created_at DESC NULLS LAST, id LIMIT $2"
    )
    q = info(text)
    orders = q.use("orders")
    assert orders is not None
    assert orders.order_by == (
        SortKey("created_at", descending=True, nulls_first=False),
        SortKey("id", descending=False, nulls_first=False),
    )
    assert q.has_limit


def test_order_by_desc_defaults_to_nulls_first_like_postgres() -> None:
    events = use("SELECT id FROM events ORDER BY ts DESC FETCH FIRST 10 ROWS ONLY", "events")
    assert events.order_by == (SortKey("ts", descending=True, nulls_first=True),)


def test_order_by_an_expression_records_no_sort() -> None:
    events = use("SELECT id FROM events ORDER BY ts, lower(kind)", "events")
    assert events.order_by == ()
    assert set(events.returned) >= {"ts", "kind"}


def test_order_by_output_alias_and_position() -> None:
    events = use("SELECT ts AS t, kind FROM events ORDER BY t DESC, 2", "events")
    assert events.order_by == (
        SortKey("ts", descending=True, nulls_first=True),
        SortKey("kind"),
    )


def test_group_by_having_and_aggregate_arguments() -> None:
    text = (
        "SELECT customer_id, sum(total) FROM orders WHERE created_at > $1 "
        "GROUP BY customer_id HAVING count(*) > $2"
    )
    orders = use(text, "orders")
    assert orders.group_by == ("customer_id",)
    assert orders.ranges == ("created_at",)
    assert "total" in orders.returned
    assert orders.expression_predicates == ()  # an aggregate is no index predicate


def test_window_function_columns_are_read() -> None:
    text = (
        "SELECT id, row_number() OVER (PARTITION BY account_id ORDER BY ts) "
        "FROM ledger WHERE kind = $1"
    )
    ledger = use(text, "ledger")
    assert ledger.equality == ("kind",)
    assert set(ledger.returned) == {"id", "account_id", "ts"}
    assert ledger.order_by == ()


def test_count_star_does_not_return_all() -> None:
    orders = use("SELECT count(*) FROM orders WHERE status = $1", "orders")
    assert not orders.returns_all
    assert orders.returned == ()


def test_select_distinct_columns() -> None:
    assert use("SELECT DISTINCT country FROM users", "users").returned == ("country",)


# --- joins ----------------------------------------------------------------------------


def test_inner_join_on() -> None:
    text = (
        "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id "
        "WHERE c.country = $1"
    )
    q = info(text)
    assert q.reads == (TableName(None, "orders"), TableName(None, "customers"))
    orders, customers = q.use("orders"), q.use("customers")
    assert orders is not None and customers is not None
    assert orders.joins == ("customer_id",)
    assert customers.joins == ("id",)
    assert customers.equality == ("country",)
    assert orders.returned == ("id",)
    assert customers.returned == ("name",)


def test_left_join_and_join_in_where() -> None:
    text = "SELECT a.x FROM a LEFT JOIN b ON b.a_id = a.id, c WHERE c.b_id = b.id AND a.kind = $1"
    q = info(text)
    assert [(u.table.name, u.joins) for u in q.tables] == [
        ("a", ("id",)),
        ("b", ("a_id", "id")),
        ("c", ("b_id",)),
    ]
    a = q.use("a")
    assert a is not None and a.equality == ("kind",)


def test_join_using_marks_both_tables() -> None:
    q = info("SELECT * FROM orders JOIN items USING (order_id) WHERE items.sku = $1")
    assert [(u.table.name, u.joins, u.returns_all) for u in q.tables] == [
        ("orders", ("order_id",), True),
        ("items", ("order_id",), True),
    ]


def test_qualified_star_returns_all_of_that_table_only() -> None:
    q = info("SELECT o.*, c.name FROM orders o JOIN customers c ON c.id = o.customer_id")
    assert [(u.table.name, u.returns_all) for u in q.tables] == [
        ("orders", True),
        ("customers", False),
    ]


def test_three_way_join() -> None:
    text = (
        "SELECT u.name, p.title FROM users u "
        "JOIN posts p ON p.user_id = u.id "
        "JOIN comments k ON k.post_id = p.id "
        "WHERE k.created_at > $1 ORDER BY k.created_at DESC LIMIT 20"
    )
    q = info(text)
    comments = q.use("comments")
    posts = q.use("posts")
    assert comments is not None and posts is not None
    assert comments.joins == ("post_id",)
    assert comments.ranges == ("created_at",)
    assert comments.order_by == (SortKey("created_at", descending=True, nulls_first=True),)
    assert posts.joins == ("user_id", "id")
    assert q.has_limit


def test_self_join_merges_into_one_table() -> None:
    q = info("SELECT e.name FROM emp e JOIN emp m ON e.manager_id = m.id WHERE m.name = $1")
    assert len(q.tables) == 1
    assert q.tables[0].joins == ("manager_id", "id")
    assert q.tables[0].equality == ("name",)


def test_unqualified_column_among_several_tables_is_not_guessed() -> None:
    q = info("SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id WHERE status = $1")
    assert q.unattributed == ("status",)
    for table in q.tables:
        assert "status" not in table.equality


def test_order_by_columns_of_two_tables_records_no_sort() -> None:
    q = info("SELECT a.id FROM a JOIN b ON b.id = a.b_id ORDER BY a.x, b.y")
    assert all(t.order_by == () for t in q.tables)


# --- subqueries, CTEs, derived tables, LATERAL -----------------------------------------


def test_in_subquery_is_a_semi_join() -> None:
    text = "SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE vip)"
    q = info(text)
    orders, customers = q.use("orders"), q.use("customers")
    assert orders is not None and customers is not None
    assert orders.joins == ("customer_id",)
    assert customers.equality == ("vip",)
    assert customers.returned == ("id",)


def test_correlated_exists() -> None:
    text = (
        "SELECT c.id FROM customers c WHERE EXISTS "
        "(SELECT * FROM orders o WHERE o.customer_id = c.id AND o.status = $1)"
    )
    q = info(text)
    orders, customers = q.use("orders"), q.use("customers")
    assert orders is not None and customers is not None
    assert orders.joins == ("customer_id",)
    assert orders.equality == ("status",)
    assert not orders.returns_all  # the * of EXISTS reads nothing
    assert customers.joins == ("id",)


def test_scalar_subquery_comparison_is_equality() -> None:
    text = "SELECT id FROM prices WHERE amount = (SELECT max(amount) FROM prices WHERE sku = $1)"
    prices = use(text, "prices")
    assert prices.equality == ("amount", "sku")


def test_cte_name_is_not_a_table() -> None:
    text = (
        "WITH recent AS (SELECT customer_id FROM orders WHERE created_at > $1) "
        "SELECT c.name FROM customers c JOIN recent r ON r.customer_id = c.id"
    )
    q = info(text)
    assert q.reads == (TableName(None, "orders"), TableName(None, "customers"))
    assert q.use("recent") is None
    orders, customers = q.use("orders"), q.use("customers")
    assert orders is not None and customers is not None
    assert orders.ranges == ("created_at",)
    assert orders.returned == ("customer_id",)
    assert customers.joins == ("id",)


def test_recursive_cte() -> None:
    text = (
        "WITH RECURSIVE tree AS ("
        " SELECT id, parent_id FROM nodes WHERE id = $1"
        " UNION ALL"
        " SELECT n.id, n.parent_id FROM nodes n JOIN tree t ON n.parent_id = t.id"
        ") SELECT * FROM tree"
    )
    q = info(text)
    assert q.reads == (TableName(None, "nodes"),)
    nodes = q.use("nodes")
    assert nodes is not None
    assert nodes.equality == ("id",)
    assert nodes.joins == ("parent_id",)
    assert not nodes.returns_all  # the outer * is over the CTE


def test_derived_table() -> None:
    text = (
        "SELECT d.day, d.n FROM (SELECT date_trunc('day', ts) AS day, count(*) AS n "
        "FROM events WHERE kind = $1 GROUP BY 1) d ORDER BY d.day"
    )
    q = info(text)
    assert q.reads == (TableName(None, "events"),)
    events = q.use("events")
    assert events is not None
    assert events.equality == ("kind",)
    assert events.returned == ("ts",)
    assert events.order_by == ()  # the outer sort is over the derived table


def test_lateral_subquery_sees_the_outer_table() -> None:
    text = (
        "SELECT c.id, l.total FROM customers c, LATERAL ("
        " SELECT o.total FROM orders o WHERE o.customer_id = c.id"
        " ORDER BY o.created_at DESC LIMIT 3) l WHERE c.country = $1"
    )
    q = info(text)
    orders, customers = q.use("orders"), q.use("customers")
    assert orders is not None and customers is not None
    assert orders.joins == ("customer_id",)
    assert orders.order_by == (SortKey("created_at", descending=True, nulls_first=True),)
    assert customers.joins == ("id",)
    assert customers.equality == ("country",)
    assert not q.has_limit  # the LIMIT is the subquery's, not the statement's


def test_union_of_two_tables() -> None:
    q = info("SELECT id FROM a WHERE x = $1 UNION SELECT id FROM b WHERE y > $2")
    a, b = q.use("a"), q.use("b")
    assert a is not None and b is not None
    assert a.equality == ("x",)
    assert b.ranges == ("y",)


# --- writes ---------------------------------------------------------------------------


def test_update_from() -> None:
    text = (
        "UPDATE orders o SET status = $1, total = o.total + i.price FROM items i "
        "WHERE i.order_id = o.id AND i.sku = $2"
    )
    q = info(text)
    assert q.kind is StatementKind.UPDATE
    assert q.writes == (TableName(None, "orders"),)
    assert TableName(None, "items") in q.reads
    orders, items = q.use("orders"), q.use("items")
    assert orders is not None and items is not None
    assert orders.written == ("status", "total")
    assert orders.joins == ("id",)
    assert items.joins == ("order_id",)
    assert items.equality == ("sku",)
    assert items.returned == ("price",)


def test_update_by_primary_key() -> None:
    users = use("UPDATE users SET last_seen = now() WHERE id = $1", "users")
    assert users.equality == ("id",)
    assert users.written == ("last_seen",)


def test_insert_select() -> None:
    text = "INSERT INTO archive (id, payload) SELECT id, payload FROM events WHERE created_at < $1"
    q = info(text)
    assert q.kind is StatementKind.INSERT
    assert q.writes == (TableName(None, "archive"),)
    assert q.reads == (TableName(None, "events"),)
    events = q.use("events")
    archive = q.use("archive")
    assert events is not None and archive is not None
    assert events.ranges == ("created_at",)
    assert events.returned == ("id", "payload")
    assert archive.written == ("id", "payload")


def test_insert_on_conflict_do_update() -> None:
    text = (
        "INSERT INTO counters (key, n) VALUES ($1, $2) "
        "ON CONFLICT (key) DO UPDATE SET n = counters.n + excluded.n RETURNING n"
    )
    q = info(text)
    assert q.reads == ()
    assert q.writes == (TableName(None, "counters"),)
    counters = q.use("counters")
    assert counters is not None
    assert counters.written == ("key", "n")
    assert "n" in counters.returned
    assert q.unattributed == ()


def test_delete_using() -> None:
    text = "DELETE FROM sessions s USING users u WHERE s.user_id = u.id AND u.banned RETURNING s.id"
    q = info(text)
    assert q.kind is StatementKind.DELETE
    assert q.writes == (TableName(None, "sessions"),)
    assert q.reads == (TableName(None, "sessions"), TableName(None, "users"))
    sessions, users = q.use("sessions"), q.use("users")
    assert sessions is not None and users is not None
    assert sessions.joins == ("user_id",)
    assert sessions.returned == ("id",)
    assert users.equality == ("banned",)


def test_delete_with_cte() -> None:
    text = (
        "WITH old AS (SELECT id FROM jobs WHERE finished_at < $1 LIMIT 1000) "
        "DELETE FROM jobs WHERE id IN (SELECT id FROM old)"
    )
    q = info(text)
    assert q.writes == (TableName(None, "jobs"),)
    jobs = q.use("jobs")
    assert jobs is not None
    assert jobs.ranges == ("finished_at",)
    assert jobs.joins == ("id",)


# --- names ----------------------------------------------------------------------------


def test_quoted_mixed_case_identifiers_keep_their_case() -> None:
    text = 'SELECT "Total" FROM "Sales"."Orders" WHERE "Orders"."CustomerId" = $1'
    q = info(text)
    assert q.reads == (TableName("Sales", "Orders"),)
    orders = q.use("Orders", "Sales")
    assert orders is not None
    assert orders.equality == ("CustomerId",)
    assert orders.returned == ("Total",)
    assert str(orders.table) == "Sales.Orders"


def test_unquoted_names_fold_to_lower_case() -> None:
    q = info("SELECT Id FROM Public.Orders WHERE CustomerId = $1")
    assert q.reads == (TableName("public", "orders"),)
    orders = q.use("orders", "public")
    assert orders is not None
    assert orders.equality == ("customerid",)


def test_schema_qualified_table_with_alias() -> None:
    text = "SELECT o.id FROM public.orders o JOIN billing.invoices i ON i.order_id = o.id"
    q = info(text)
    assert q.reads == (TableName("public", "orders"), TableName("billing", "invoices"))
    invoices = q.use("invoices", "billing")
    assert invoices is not None and invoices.joins == ("order_id",)


def test_unicode_names() -> None:
    text = 'SELECT имя FROM таблица WHERE ünïcode = $1 AND "Größe" > $2'
    q = info(text)
    assert q.reads == (TableName(None, "таблица"),)
    table = q.use("таблица")
    assert table is not None
    assert table.equality == ("ünïcode",)
    assert table.ranges == ("Größe",)
    assert table.returned == ("имя",)


def test_reserved_words_as_quoted_column_names() -> None:
    text = 'SELECT "order", "user" FROM t WHERE "user" = $1 ORDER BY "order" DESC'
    t = use(text, "t")
    assert t.equality == ("user",)
    assert t.order_by == (SortKey("order", descending=True, nulls_first=True),)


# --- TPC-H-style texts as pg_stat_statements stores them ------------------------------

TPCH_Q3 = """
SELECT l_orderkey, sum(l_extendedprice * ($1 - l_discount)) AS revenue, o_orderdate, o_shippriority
FROM customer, orders, lineitem
WHERE c_mktsegment = $2 AND c_custkey = o_custkey AND l_orderkey = o_orderkey
  AND o_orderdate < date $3 AND l_shipdate > date $4
GROUP BY l_orderkey, o_orderdate, o_shippriority
ORDER BY revenue DESC, o_orderdate
LIMIT $5
"""

TPCH_Q5 = """
SELECT n_name, sum(l_extendedprice * ($1 - l_discount)) AS revenue
FROM customer c, orders o, lineitem l, supplier s, nation n, region r
WHERE c.c_custkey = o.o_custkey AND l.l_orderkey = o.o_orderkey AND l.l_suppkey = s.s_suppkey
  AND c.c_nationkey = s.s_nationkey AND s.s_nationkey = n.n_nationkey
  AND n.n_regionkey = r.r_regionkey AND r.r_name = $2
  AND o.o_orderdate >= date $3 AND o.o_orderdate < date $4 + interval $5 year
GROUP BY n.n_name
ORDER BY revenue DESC
"""

TPCH_Q10 = """
SELECT c.c_custkey, c.c_name, sum(l.l_extendedprice * ($1 - l.l_discount)) AS revenue
FROM customer c JOIN orders o ON c.c_custkey = o.o_custkey
JOIN lineitem l ON l.l_orderkey = o.o_orderkey
WHERE o.o_orderdate >= date $2 AND o.o_orderdate < date $3 + interval $4 month
  AND l.l_returnflag = $5
GROUP BY c.c_custkey, c.c_name
ORDER BY revenue DESC
LIMIT $6
"""


def test_tpch_q3_unqualified_columns_in_a_join_are_counted_not_guessed() -> None:
    q = info(TPCH_Q3)
    assert q.reads == tuple(TableName(None, n) for n in ("customer", "orders", "lineitem"))
    assert {"c_mktsegment", "o_orderdate", "l_shipdate", "c_custkey"} <= set(q.unattributed)
    assert q.has_limit


def test_tpch_q5_typed_interval_with_aliases() -> None:
    q = info(TPCH_Q5)
    orders, lineitem, region = q.use("orders"), q.use("lineitem"), q.use("region")
    assert orders is not None and lineitem is not None and region is not None
    assert orders.ranges == ("o_orderdate",)
    assert orders.joins == ("o_custkey", "o_orderkey")
    assert lineitem.joins == ("l_orderkey", "l_suppkey")
    assert region.equality == ("r_name",)
    assert len(q.tables) == 6


def test_tpch_q10_join_syntax() -> None:
    q = info(TPCH_Q10)
    orders, lineitem, customer = q.use("orders"), q.use("lineitem"), q.use("customer")
    assert orders is not None and lineitem is not None and customer is not None
    assert orders.ranges == ("o_orderdate",)
    assert lineitem.equality == ("l_returnflag",)
    assert set(lineitem.returned) == {"l_extendedprice", "l_discount"}
    assert customer.group_by == ("c_custkey", "c_name")
    assert customer.order_by == ()  # ORDER BY revenue is an aggregate


def test_tpch_q1_single_table_with_date_minus_interval() -> None:
    text = (
        "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty FROM lineitem "
        "WHERE l_shipdate <= date $1 - interval $2 day "
        "GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus"
    )
    lineitem = use(text, "lineitem")
    assert lineitem.ranges == ("l_shipdate",)
    assert lineitem.group_by == ("l_returnflag", "l_linestatus")
    assert lineitem.order_by == (SortKey("l_returnflag"), SortKey("l_linestatus"))


# --- rewrite_typed_placeholders -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "l_shipdate <= date $1 - interval $2 day",
            "l_shipdate <= $1::date - ($2 || ' day')::interval",
        ),
        (
            "o_orderdate < date $1 + interval $2 month",
            "o_orderdate < $1::date + ($2 || ' month')::interval",
        ),
        ("ts > timestamp $3", "ts > $3::timestamp"),
        ("ts > TIMESTAMP WITH TIME ZONE $1", "ts > $1::TIMESTAMP WITH TIME ZONE"),
        ("now() - interval $1", "now() - $1::interval"),
        ("d + interval $1 day to second", "d + $1::interval"),
        ("x = $1 AND y = $2::date", "x = $1 AND y = $2::date"),
    ],
)
def test_rewrite_typed_placeholders(text: str, expected: str) -> None:
    assert rewrite_typed_placeholders(text) == expected


def test_rewrite_leaves_strings_identifiers_and_comments_alone() -> None:
    text = "SELECT 'date $1', \"date $1\", $$interval $2 day$$ -- date $3\nFROM t WHERE d = date $4"
    assert rewrite_typed_placeholders(text) == (
        "SELECT 'date $1', \"date $1\", $$interval $2 day$$ -- date $3\nFROM t WHERE d = $4::date"
    )


def test_typed_placeholders_do_not_parse_without_the_rewrite() -> None:
    import sqlglot
    from sqlglot.errors import ParseError

    with pytest.raises(ParseError):
        sqlglot.parse_one("SELECT 1 FROM t WHERE d < date $1 + interval $2 month", "postgres")
    assert use("SELECT 1 FROM t WHERE d < date $1 + interval $2 month", "t").ranges == ("d",)


# --- texts that are skipped ------------------------------------------------------------


def test_garbage_is_unparsable() -> None:
    # tried: words that are no SQL statement at all
    assert skipped("gibberish blah").reason is SkipReason.UNPARSABLE


def test_unbalanced_parenthesis_is_unparsable() -> None:
    # tried: a syntax error sqlglot rejects
    result = skipped("SELECT (id FROM orders")
    assert result.reason is SkipReason.UNPARSABLE
    assert result.detail


@pytest.mark.parametrize("text", ["", "   \n\t", "-- only a comment", ";"])
def test_empty_texts(text: str) -> None:
    # tried: nothing, whitespace, a comment, a lone semicolon
    assert skipped(text).reason is SkipReason.EMPTY


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("BEGIN", "BEGIN statement"),
        ("COMMIT", "COMMIT statement"),
        ("SET search_path = public", "SET statement"),
        ("COPY orders FROM STDIN WITH (FORMAT csv)", "COPY statement"),
        ("VACUUM (ANALYZE) orders", "VACUUM statement"),
        ("DO $$BEGIN PERFORM 1; END$$", "DO statement"),
        ("/* app */ SHOW work_mem", "SHOW statement"),
        ("CREATE INDEX ON orders (customer_id)", "CREATE statement"),
    ],
)
def test_utility_statements(text: str, detail: str) -> None:
    # tried: transaction control, settings, bulk load, maintenance, procedural, DDL
    result = skipped(text)
    assert result.reason is SkipReason.UTILITY
    assert result.detail == detail


def test_two_statements_in_one_text() -> None:
    # tried: two queries separated by a semicolon, as a simple-protocol client may send
    result = skipped("SELECT 1 FROM a; SELECT 2 FROM b")
    assert result.reason is SkipReason.MULTIPLE
    assert result.detail == "2 statements in one text"


@pytest.mark.parametrize(
    "text",
    [
        "SELECT id FROM orders WHERE customer_id = $1 AND status IN ($2, $",
        "SELECT id FROM orders WHERE note = 'unterminated",
        "SELECT id FROM orders WHERE created_at >",
    ],
)
def test_truncated_query_text(text: str) -> None:
    # tried: a text cut off at track_activity_query_size bytes
    assert skipped(text).reason is SkipReason.UNPARSABLE


def test_trailing_semicolon_is_one_statement() -> None:
    assert use("SELECT id FROM orders WHERE id = $1;", "orders").equality == ("id",)


def test_skipped_results_are_tallied_by_reason() -> None:
    texts = ["BEGIN", "SET x = 1", "COMMIT", "((", "SELECT 1; SELECT 2", "SELECT 1 FROM t"]
    counts = count_skipped(analyze(t) for t in texts)
    assert counts == {SkipReason.UTILITY: 3, SkipReason.UNPARSABLE: 1, SkipReason.MULTIPLE: 1}
    assert describe_skipped(counts) == (
        "skipped 5 queries: 3 utility statements, 1 unparsable, 1 multi-statement text"
    )
    assert describe_skipped(count_skipped([])) == "skipped 0 queries"


# --- other statement kinds --------------------------------------------------------------


def test_merge_lists_its_tables() -> None:
    q = info("MERGE INTO stock s USING deliveries d ON s.sku = d.sku WHEN MATCHED THEN DELETE")
    assert q.kind is StatementKind.OTHER
    assert q.writes == (TableName(None, "stock"),)
    assert q.reads == (TableName(None, "deliveries"),)


def test_columns_property_unions_all_roles() -> None:
    text = "SELECT total FROM orders WHERE customer_id = $1 AND created_at > $2 ORDER BY id"
    orders = use(text, "orders")
    assert orders.columns == frozenset({"total", "customer_id", "created_at", "id"})


_KEYWORDS = ("SELECT", "FROM", "WHERE", "JOIN", "ON", "IN", "AND", "LIMIT", "WITH", "date")
_TOKENS = ("t", "u.x", "=", "$1", "(", ")", ",", "*", "interval", "day", "'a'", '"Q"', ";")
_WORDS = st.sampled_from((*_KEYWORDS, *_TOKENS))


@given(st.lists(_WORDS, max_size=14).map(" ".join))
def test_analyze_never_raises_on_sql_like_word_salad(text: str) -> None:
    assert isinstance(analyze(text), QueryInfo | Unparsed)


@given(st.text(max_size=80))
def test_analyze_never_raises_on_any_text(text: str) -> None:
    assert isinstance(analyze(text), QueryInfo | Unparsed)
