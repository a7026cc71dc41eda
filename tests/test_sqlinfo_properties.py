"""Property tests: sqlinfo reads any statement text without raising (issue 15).

Statement texts in pg_stat_statements and pg_stat_activity are written by whoever can
connect. Generated here: identifiers plain, quoted (with doubled quotes inside), unicode
and 63 bytes long; predicates nested in parentheses and subqueries; AND / OR chains up to
1,500 terms; placeholders, literals with quotes, and plain noise. `analyze` must return a
QueryInfo or an Unparsed — never raise — and the text rewriters must not raise either.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner import sqlinfo, workload

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_PLAIN = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)
_ANY_CHARS = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=30,
)
_LONG = st.sampled_from(["注" * 21, "é" * 31 + "x", "a" * 63, "文" * 20 + "ab", "x" * 64])


@st.composite
def identifiers(draw: st.DrawFn) -> str:
    """An identifier as a statement spells it: plain, or quoted with anything inside."""
    kind = draw(st.sampled_from(["plain", "quoted", "long"]))
    if kind == "plain":
        return draw(_PLAIN)
    name = draw(_ANY_CHARS) if kind == "quoted" else draw(_LONG)
    return '"' + name.replace('"', '""') + '"'


@st.composite
def values(draw: st.DrawFn) -> str:
    choice = draw(st.sampled_from(["param", "int", "string", "column", "cast", "call"]))
    if choice == "param":
        return f"${draw(st.integers(1, 120))}"
    if choice == "int":
        return str(draw(st.integers(-(10**12), 10**12)))
    if choice == "string":
        return "'" + draw(st.text(max_size=20)).replace("\x00", "").replace("'", "''") + "'"
    if choice == "cast":
        return f"${draw(st.integers(1, 9))}::{draw(st.sampled_from(['int', 'text', 'date']))}"
    if choice == "call":
        return f"{draw(identifiers())}({draw(identifiers())})"
    return draw(identifiers())


@st.composite
def predicates(draw: st.DrawFn, depth: int = 0) -> str:
    """A predicate: a comparison, a chain of them under AND/OR, parentheses, a subquery."""
    shape = draw(st.sampled_from(["cmp", "chain", "parens", "sub", "in", "like"]))
    column = draw(identifiers())
    if shape == "cmp" or depth > 3:
        op = draw(st.sampled_from(["=", "<", ">=", "<>", "IS NOT DISTINCT FROM"]))
        return f"{column} {op} {draw(values())}"
    if shape == "chain":
        glue = draw(st.sampled_from([" OR ", " AND "]))
        terms = draw(st.integers(2, 1500))
        return glue.join(f"{column} = {draw(values())}" for _ in range(terms))
    if shape == "parens":
        n = draw(st.integers(1, 400))
        return "(" * n + draw(predicates(depth + 1)) + ")" * n
    if shape == "in":
        items = ", ".join(draw(values()) for _ in range(draw(st.integers(1, 50))))
        return f"{column} IN ({items})"
    if shape == "like":
        return f"{column} LIKE {draw(values())}"
    inner = draw(statements(depth + 1))
    return f"{column} IN ({inner})"


@st.composite
def statements(draw: st.DrawFn, depth: int = 0) -> str:
    table = draw(identifiers())
    if draw(st.booleans()):
        table = f"{draw(identifiers())}.{table}"
    alias = draw(identifiers())
    kind = draw(st.sampled_from(["select", "update", "delete", "insert", "with", "union"]))
    where = draw(predicates(depth))
    if kind == "update":
        return f"UPDATE {table} SET {draw(identifiers())} = {draw(values())} WHERE {where}"
    if kind == "delete":
        return f"DELETE FROM {table} WHERE {where}"
    if kind == "insert":
        return f"INSERT INTO {table} ({draw(identifiers())}) VALUES ({draw(values())})"
    select = f"SELECT {draw(identifiers())} FROM {table} {alias} WHERE {where}"
    if draw(st.booleans()):
        select += f" ORDER BY {draw(identifiers())} DESC LIMIT {draw(values())}"
    if kind == "with":
        return f"WITH {draw(identifiers())} AS ({select}) SELECT * FROM {alias}"
    if kind == "union":
        return f"{select} UNION ALL {select}"
    return select


def _never_raises(text: str) -> None:
    result = sqlinfo.analyze(text)
    assert isinstance(result, sqlinfo.QueryInfo | sqlinfo.Unparsed)
    sqlinfo.rewrite_typed_placeholders(text)
    sqlinfo.substitute_parameters(text, {1: "CAST(NULL AS int)"})
    if isinstance(result, sqlinfo.QueryInfo):
        for name in (*result.reads, *result.writes):
            workload.resolve(name, [], ("public",))


@SETTINGS
@given(statements())
def test_generated_statements_are_read_or_skipped_never_raised(text: str) -> None:
    _never_raises(text)


@SETTINGS
@given(st.text(max_size=400))
def test_any_text_is_read_or_skipped_never_raised(text: str) -> None:
    _never_raises(text)


@SETTINGS
@given(st.lists(st.sampled_from(["(", ")", "SELECT", "'", '"', "$1", "/*", "*/", "--", "\n",
                                 "$$", "$a$", " OR ", "x", ",", ";", "::", "date", "interval"]),
                max_size=200))  # fmt: skip
def test_token_soup_is_read_or_skipped_never_raised(tokens: list[str]) -> None:
    _never_raises(" ".join(tokens))


@SETTINGS
@given(st.text(max_size=200), st.one_of(st.none(), st.text(max_size=20)))
def test_any_search_path_setting_parses(value: str, role: str | None) -> None:
    path = workload.parse_search_path(value, role)
    assert all(isinstance(s, str) and s for s in path)
    assert "pg_catalog" not in path and "pg_temp" not in path
