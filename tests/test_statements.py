"""The statement whitelist without a database: names, templates and the strict re-parse.

Safety invariant 1 of DESIGN.md is tested here as far as it is pure (`check` refuses anything
but one whitelisted statement); that the executor runs only checked text, and that hostile
identifiers build the right index, is tested against PostgreSQL in test_executor.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.errors import RefusedStatement
from tuner.models import Action, ActionKind, IndexSpec, TableRef
from tuner.statements import (
    NAME_PREFIX,
    check,
    index_name,
    is_tuner_index,
    made_by,
    marker,
    quote_ident,
    quote_ref,
    recreate_problem,
    spec_from_definition,
)
from tuner.templates import render

T = TableRef("public", "t")


def create(spec: IndexSpec, action_id: str = "a1") -> Action:
    return Action(action_id, ActionKind.CREATE_INDEX, spec.table, spec)


# --- names ----------------------------------------------------------------------------------

names = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), min_size=1
).filter(lambda s: len(s.encode()) <= 63)


@settings(max_examples=300, deadline=None)
@given(names, st.lists(names, min_size=1, max_size=4), st.lists(names, max_size=2))
def test_index_names_are_short_deterministic_and_round_trip(
    table: str, columns: list[str], include: list[str]
) -> None:
    spec = IndexSpec(TableRef("public", table), tuple(columns), tuple(include))
    name = index_name(spec)
    assert name == index_name(spec)
    assert name.startswith(NAME_PREFIX)
    assert 0 < len(name.encode()) <= 63
    name.encode().decode()  # valid UTF-8, never cut inside a character
    # the rendered statement passes the re-parse and names exactly this spec
    parsed = check(render(create(spec)).as_string(None))
    assert parsed.head == "CREATE INDEX CONCURRENTLY" and parsed.name == name
    assert parsed.spec == spec


def test_index_names_differ_when_long_columns_differ_only_at_the_end() -> None:
    base = "k" * 63
    one = IndexSpec(T, (base[:-1] + "1",))
    two = IndexSpec(T, (base[:-1] + "2",))
    desc = IndexSpec(T, (base[:-1] + "1",), descending=(True,))
    assert len({index_name(one), index_name(two), index_name(desc)}) == 3
    assert all(len(index_name(s).encode()) <= 63 for s in (one, two, desc))


MALICIOUS = [
    'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ("a"); DROP TABLE "t"',
    'ANALYZE "public"."t"; ANALYZE "public"."t"',
    'ANALYZE "public"."t";',
    'VACUUM FULL "public"."t"',
    'VACUUM (FULL) "public"."t"',
    'VACUUM (ANALYZE, FULL) "public"."t"',
    'VACUUM "public"."t"',
    'DROP TABLE "public"."t"',
    'DROP INDEX "public"."i"',
    'DROP INDEX CONCURRENTLY "public"."i", "public"."j"',
    'ANALYZE "public"."t" -- ; DROP TABLE t',
    'ANALYZE "public"."t" /* hidden */ DROP TABLE "t"',
    'ANALYZE "public"."t"\n/* ; */; DROP TABLE t',
    'ANALYZE "public"."t" $$; DROP TABLE t$$',
    'ANALYZE "public"."t" \\; DROP TABLE t',
    'ANALYZE\u00a0"public"."t"',  # not a space to PostgreSQL's lexer
    'CREATE UNIQUE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ("a")',
    'CREATE INDEX "i" ON "public"."t" USING btree ("a")',
    'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ("a") WHERE "a" > 0',
    'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree (("a" || pg_sleep(1)))',
    'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING spgist ("a")',
    'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING gin ("a" public.jsonb_path_ops)',
    'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING hash ("a", "b")',  # one column only
    'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING hash ("a") INCLUDE ("b")',
    'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING hash ("a" DESC)',
    'CREATE INDEX CONCURRENTLY "i" ON "public"."t" USING btree ("a" text_pattern_ops)',
    'COMMENT ON INDEX "public"."i" IS \'anything\'',
    'COMMENT ON TABLE "public"."t" IS \'pg-tuner: x\'',
    'COMMENT ON INDEX "public"."i" IS \'pg-tuner: x\'; DROP TABLE t',
    'COMMENT ON INDEX "public"."i" IS \'pg-tuner: \\\'; DROP TABLE t; --\'',
    'REINDEX TABLE "public"."t"',
    'REINDEX INDEX "public"."i"',
    "ANALYZE t",  # unquoted identifiers are never rendered
    'ANALYZE "public"."' + "x" * 64 + '"',  # PostgreSQL would truncate it to another name
    "SELECT pg_sleep(10)",
    "",
    "   ",
]


@pytest.mark.parametrize("text", MALICIOUS)
def test_invariant_1_check_refuses_anything_but_one_whitelisted_statement(text: str) -> None:
    # Tried: a second statement after `;`, one hidden behind comments, dollar quotes or a
    # psql meta-command, VACUUM FULL, non-concurrent variants, expressions, other kinds,
    # other access methods, and hash indexes with what a hash cannot have.
    with pytest.raises(RefusedStatement):
        check(text)


def test_invariant_1_check_accepts_each_template() -> None:
    spec = IndexSpec(T, ("a", "b"), ("c",), (False, True))
    name = index_name(spec)
    hashed = IndexSpec(T, ("a",), method="hash")
    assert check(render(create(hashed)).as_string(None)).spec == hashed
    texts = {
        "CREATE INDEX CONCURRENTLY": render(create(spec)).as_string(None),
        "DROP INDEX CONCURRENTLY": render(
            Action("d", ActionKind.DROP_INDEX, T, index_name=name)
        ).as_string(None),
        "REINDEX INDEX CONCURRENTLY": render(
            Action("r", ActionKind.REINDEX, T, index_name=name)
        ).as_string(None),
        "ANALYZE": render(Action("x", ActionKind.ANALYZE, T)).as_string(None),
        "VACUUM (ANALYZE)": render(Action("v", ActionKind.VACUUM, T)).as_string(None),
        "COMMENT ON INDEX": 'COMMENT ON INDEX "public"."i" IS E\'pg-tuner: a\\\\b\'',
    }
    for head, text in texts.items():
        assert check(text).head == head, text


def test_invariant_1_render_refuses_names_postgresql_would_truncate() -> None:
    # Tried: a table name of 64 bytes, which PostgreSQL would cut to another table's name.
    action = Action("x", ActionKind.ANALYZE, TableRef("public", "é" * 32))
    with pytest.raises(RefusedStatement, match="63 bytes"):
        render(action)


def test_spec_from_definition_reads_what_postgresql_prints() -> None:
    name, spec = spec_from_definition(
        'CREATE INDEX "x y" ON public."T" USING btree (a DESC, "b c") INCLUDE ("select")', "public"
    )
    assert name == "x y"
    assert spec == IndexSpec(TableRef("public", "T"), ("a", "b c"), ("select",), (True, False))
    _, hashed = spec_from_definition("CREATE INDEX h ON s.t USING hash (trace_id)", "public")
    assert hashed == IndexSpec(TableRef("s", "t"), ("trace_id",), method="hash")


def test_a_hash_index_is_named_apart_from_the_btree_on_its_column() -> None:
    btree, hashed = IndexSpec(T, ("k",)), IndexSpec(T, ("k",), method="hash")
    assert index_name(btree) != index_name(hashed) and "_hash_" in index_name(hashed)
    # What a hash index cannot be is refused when the spec is made, not at the server.
    for bad in ({"columns": ("a", "b")}, {"include": ("b",)}, {"descending": (True,)}):
        with pytest.raises(ValueError, match="hash index"):
            IndexSpec(T, **{"columns": ("a",), **bad, "method": "hash"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not one of"):
        IndexSpec(T, ("a",), method="spgist")


def test_the_ownership_marker_is_written_and_read_in_one_place() -> None:
    made = marker("a1", datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    assert made == "pg-tuner: action a1 2026-03-10T12:00:00Z"
    assert is_tuner_index(made) and made_by(made, "a1") and not made_by(made, "a2")
    for foreign in (None, "", "made by hand", "pg-tunerish", "a pg-tuner: index"):
        assert not is_tuner_index(foreign)


def test_recreate_problem_names_what_rollback_could_not_rebuild() -> None:
    assert recreate_problem("CREATE INDEX i ON public.t USING btree (a)", "public") is None
    assert recreate_problem("CREATE INDEX i ON public.t USING foo (a) WITH (x=1)", "public")


def test_one_quoter_always_quotes_or_only_where_postgresql_needs_it() -> None:
    assert quote_ident("orders") == '"orders"'
    assert quote_ident('we"ird') == '"we""ird"'
    assert quote_ident("orders", only_if_needed=True) == "orders"
    for needs in ("Orders", "two words", "é", 'a"b'):
        assert quote_ident(needs, only_if_needed=True).startswith('"'), needs
    assert quote_ref("public", "Big", only_if_needed=True) == 'public."Big"'
    assert quote_ref("s", "t") == '"s"."t"'
