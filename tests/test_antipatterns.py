"""Each anti-pattern rule: a statement that triggers it and one that must not."""

from __future__ import annotations

import pytest

from tuner.antipatterns import Column, Shape, find

TABLES = {
    "users": Shape(
        {"id": Column("bigint", True), "email": Column("text", True), "name": Column("text", False),
         "org_id": Column("integer", False), "phone": Column("text", False)},
        (("id",), ("email",), ("org_id",)),
    ),
    "orgs": Shape({"id": Column("integer", True), "name": Column("text", True)}, (("id",),)),
    "bans": Shape({"user_id": Column("bigint", False), "strict_id": Column("bigint", True)}),
}  # fmt: skip

CASES = [  # (rule, triggers, must not trigger)
    ("leading-wildcard-like",
     "SELECT id FROM users WHERE email LIKE '%@example.com'",
     "SELECT id FROM users WHERE email LIKE 'bob%'"),
    ("function-on-indexed-column",
     "SELECT id FROM users WHERE lower(email) = $1",
     "SELECT id FROM users WHERE email = lower($1)"),
    ("large-offset",
     "SELECT id FROM users ORDER BY id LIMIT 20 OFFSET 50000",
     "SELECT id FROM users ORDER BY id LIMIT 20 OFFSET 40"),
    ("not-in-nullable",
     "SELECT id FROM users WHERE id NOT IN (SELECT user_id FROM bans)",
     "SELECT id FROM users WHERE id NOT IN (SELECT strict_id FROM bans)"),
    ("implicit-cast",
     "SELECT id FROM users WHERE org_id = 42.0",
     "SELECT id FROM users WHERE org_id = 42"),
    ("select-star",
     "SELECT * FROM users WHERE email = $1",
     "SELECT id, email FROM users WHERE email = $1"),
    ("cross-join",
     "SELECT * FROM users u, orgs o WHERE u.email = $1",
     "SELECT u.id FROM users u, orgs o WHERE u.org_id = o.id AND u.email = $1"),
    ("or-across-columns",
     "SELECT id FROM users WHERE email = $1 OR phone = $2",
     "SELECT id FROM users WHERE email = $1 OR email = $2"),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "bad", "good"), CASES, ids=[c[0] for c in CASES])
def test_a_rule_fires_on_its_pattern_and_not_on_the_fix(rule: str, bad: str, good: str) -> None:
    found = [f for f in find(bad, TABLES) if f.rule == rule]
    assert len(found) == 1, find(bad, TABLES)
    assert found[0].reason and found[0].fix and found[0].where
    assert [f for f in find(good, TABLES) if f.rule == rule] == []


def test_the_findings_name_what_to_do() -> None:
    [finding] = find("SELECT id FROM users WHERE lower(email) = $1", TABLES)
    assert "expression index on users ((LOWER(email)))" in finding.fix
    [cast] = find("SELECT id FROM users WHERE org_id = $1::numeric", TABLES)
    assert cast.rule == "implicit-cast" and "integer" in cast.reason


def test_a_function_on_an_unindexed_column_is_no_finding() -> None:
    assert find("SELECT id FROM users WHERE lower(name) = $1", TABLES) == []


def test_joins_written_with_on_or_using_are_related() -> None:
    assert find("SELECT u.id FROM users u JOIN orgs o ON o.id = u.org_id", TABLES) == []
    assert find("SELECT id FROM users JOIN orgs USING (id)", TABLES) == []


def test_a_nested_query_is_read_on_its_own() -> None:
    text = "SELECT id FROM orgs WHERE id IN (SELECT org_id FROM users WHERE email LIKE '%x')"
    assert [f.rule for f in find(text, TABLES)] == ["leading-wildcard-like"]


def test_unknown_tables_and_bad_text_give_no_guesses() -> None:
    # tried: a table the shapes do not know, a text that does not parse, two statements
    assert [f.rule for f in find("SELECT * FROM nowhere WHERE lower(x) = $1", {})] == []
    assert find("SELEC id FRM", TABLES) == []
    assert find("SELECT 1; SELECT 2", TABLES) == []
