"""Hostile statement texts and objects against the what-if path (issue 15, items 1, 3-6, 8).

Each test builds on a real server what a user of the database can build — functions,
operators, schemas, roles, odd names, huge statements — runs the workload, then `pg-tuner
advise`, and checks that nothing ran with the tuner's rights, that the odd statement or
object only skipped itself (counted, with a reason), and that the rest was still advised.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.postgres import Server
from tests.test_advisor import BY_CUSTOMER, ORDERS, advise, load, run
from tuner import db

pytestmark = pytest.mark.hypopg  # advice is costed with HypoPG


def sql_id(name: str) -> db.Composed:
    return db.SQL("{}").format(db.Identifier(name))


def advise_process(dsn: str, *args: str) -> dict[str, Any]:
    """`pg-tuner advise --json` as its own process, as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "tuner", "advise", "--dsn", dsn, "--json", *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def columns_proposed(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (p["table"], p["columns"][0]) for p in document["proposals"] if p["kind"] == "create_index"
    ]


@pytest.fixture
def roles(pg_server: Server, dsn: str) -> Iterator[list[str]]:
    """Names of roles the test creates; each is dropped (with what it owns here) after it."""
    made: list[str] = []
    yield made
    with db.connect(dsn) as conn:
        for name in made:
            db.execute(conn, db.SQL("DROP OWNED BY {} CASCADE").format(db.Identifier(name)))
    with db.connect(pg_server.admin_dsn) as admin:
        for name in made:
            db.execute(admin, db.SQL("DROP ROLE IF EXISTS {}").format(db.Identifier(name)))


def as_role(pg_server: Server, dsn: str, role: str) -> str:
    """`dsn`'s database, logged in as `role`."""
    return pg_server.dsn(str(db.conninfo_to_dict(dsn)["dbname"]), role)


def make_role(pg_server: Server, roles: list[str], name: str, *grants: str) -> str:
    with db.connect(pg_server.admin_dsn) as admin:
        db.execute(admin, db.SQL("DROP ROLE IF EXISTS {}").format(db.Identifier(name)))
        db.execute(admin, db.SQL("CREATE ROLE {} LOGIN").format(db.Identifier(name)))
        for grant in grants:
            db.execute(admin, db.SQL(grant).format(db.Identifier(name)))
    roles.append(name)
    return name


# --- item 4: a schema the tuner may not use ---------------------------------------------------


def test_a_schema_without_usage_skips_its_statements_and_advises_the_rest(
    pg_server: Server, dsn: str, roles: list[str]
) -> None:
    """Bad input: a statement on `hidden.t`, a schema the advising role has no USAGE on.
    Before: MissingPrivilege escaped the advisor and `advise` failed as a whole."""
    load(
        dsn, *ORDERS, "CREATE SCHEMA hidden",
        "CREATE TABLE hidden.t AS SELECT g AS id, g % 100 AS k FROM generate_series(1, 50000) g",
        "ANALYZE hidden.t",
    )  # fmt: skip
    run(dsn, [(BY_CUSTOMER, ["n"]), ("SELECT id FROM hidden.t WHERE k = %s", ["n"])])
    name = make_role(  # the SET granted, so that only the missing USAGE is tried here
        pg_server, roles, "t_nousage", "GRANT pg_monitor TO {}",
        "GRANT SET ON PARAMETER pg_stat_statements.track TO {}",
    )  # fmt: skip
    with db.connect(dsn) as conn:
        db.execute(conn, db.SQL("GRANT SELECT ON orders TO {}").format(db.Identifier(name)))
    document = advise_process(as_role(pg_server, dsn, name))
    assert columns_proposed(document) == [("public.orders", "customer_id")]
    assert document["skipped_reasons"].get("no privilege") == 1


# --- item 6: a statement too deep for a recursive reading -------------------------------------


def test_a_thousand_or_terms_do_not_stop_the_advice(dsn: str) -> None:
    """Bad input: `WHERE customer_id = $1 OR ... OR customer_id = $1000` and a statement
    nested 300 parentheses deep. Before: RecursionError in sqlinfo stopped every cycle."""
    load(dsn, *ORDERS)
    many = "SELECT id FROM orders WHERE " + " OR ".join(["status = %s"] * 1000)
    deep = "SELECT id FROM orders WHERE " + "(" * 300 + "total = %s" + ")" * 300
    run(dsn, [(BY_CUSTOMER, ["n"]), (many, ["x"] * 1000), (deep, [1])], repeat=3)
    advice = advise(dsn)
    assert ("orders", "customer_id") in [(p.table.name, p.columns[0]) for p in advice.indexes]
    assert advice.costed_queries == 2  # BY_CUSTOMER and the thousand ORs
    deep_skip = {k: n for k, n in advice.skipped.items() if k != "no user table"}
    assert sum(deep_skip.values()) == 1, advice.skipped  # the 300 parentheses, counted


# --- item 5: names of 63 bytes cut mid-character ----------------------------------------------

CJK_TABLE = "注" * 21  # 63 bytes in UTF-8
CJK_COLUMN = "文" * 21


def test_a_63_byte_multibyte_name_does_not_stop_the_advice(dsn: str) -> None:
    """Bad input: a table and a column named with 21 CJK characters (63 bytes), so HypoPG's
    name for a hypothetical index on them is cut mid-character and EXPLAIN's JSON is not
    valid UTF-8. Before: UnicodeDecodeError, no advice for any table."""
    table, column = sql_id(CJK_TABLE), sql_id(CJK_COLUMN)
    load(
        dsn, *ORDERS,
        db.SQL("CREATE TABLE {} AS SELECT g AS id, g % 1000 AS {} FROM generate_series(1, 50000) g")
        .format(table, column).as_string(None),
        db.SQL("ANALYZE {}").format(table).as_string(None),
    )  # fmt: skip
    odd = db.SQL("SELECT id FROM {} WHERE {} = %s").format(table, column).as_string(None)
    run(dsn, [(BY_CUSTOMER, ["n"]), (odd, ["n"])])
    advice = advise(dsn)
    found = {(p.table.name, p.columns[0]) for p in advice.indexes}
    assert ("orders", "customer_id") in found
    assert (CJK_TABLE, CJK_COLUMN) in found  # read leniently, the odd name costs as any other


# --- item 1: code run with the tuner's rights while planning ----------------------------------

APP = (
    "CREATE ROLE {owner}",
    "CREATE SCHEMA app AUTHORIZATION {owner}",
    "CREATE TABLE app.orders (id bigint PRIMARY KEY, customer int NOT NULL, note text)",
    "INSERT INTO app.orders SELECT g, g % 5000, 'x' FROM generate_series(1, 100000) g",
    "CREATE TABLE app.secret (token text)",
    "INSERT INTO app.secret VALUES ('the owner''s secret')",
    "ALTER TABLE app.orders OWNER TO {owner}",
    "ALTER TABLE app.secret OWNER TO {owner}",
    "ANALYZE app.orders",
)
# What a user who may only run queries builds in a schema of their own: a payload that
# records who ran it and tries to grant itself the owner's secret, reached at plan time by
# an IMMUTABLE function (folded), an operator, a cast, a view and an index expression.
ATTACK = (
    "CREATE TABLE att.ran (who text, granted boolean)",
    "GRANT INSERT ON att.ran TO PUBLIC",
    """CREATE FUNCTION att.payload() RETURNS int VOLATILE LANGUAGE plpgsql AS $$
       BEGIN
         BEGIN
           EXECUTE 'GRANT SELECT ON app.secret TO ' || quote_ident('{att}');
           INSERT INTO att.ran VALUES (current_user, true);
         EXCEPTION WHEN OTHERS THEN
           INSERT INTO att.ran VALUES (current_user, false);
         END;
         RETURN 0;
       END $$""",
    "CREATE FUNCTION att.fold() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT att.payload()'",
    "CREATE FUNCTION att.plus(int, text) RETURNS int IMMUTABLE LANGUAGE sql"
    " AS 'SELECT $1 + att.payload()'",
    "CREATE OPERATOR att.+ (LEFTARG = int, RIGHTARG = text, FUNCTION = att.plus)",
    "CREATE TYPE att.code AS ENUM ('a', 'b')",
    "CREATE FUNCTION att.to_code(int) RETURNS att.code IMMUTABLE LANGUAGE sql"
    " AS 'SELECT (''a'' || att.payload())::text::att.code'",
    "CREATE CAST (int AS att.code) WITH FUNCTION att.to_code(int)",
    "CREATE VIEW att.mine AS SELECT id, customer FROM app.orders WHERE customer = att.fold()",
    "CREATE TABLE att.t AS SELECT g AS id, g % 100 AS k FROM generate_series(1, 20000) g",
    "CREATE INDEX ON att.t ((k + att.fold()))",
    "CREATE TABLE att.p AS SELECT g AS id, g % 100 AS k FROM generate_series(1, 20000) g",
    "ALTER TABLE att.p ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY p ON att.p USING (k + att.fold() >= 0)",
    "CREATE TABLE att.d (id int, k int DEFAULT att.fold())",
    "GRANT USAGE ON SCHEMA att TO PUBLIC",
    "GRANT SELECT ON att.mine, att.t, att.p, att.d TO PUBLIC",
    "GRANT INSERT ON att.d TO PUBLIC",
)


def attack_ran_as(dsn: str, role: str) -> list[dict[str, Any]]:
    with db.connect(dsn) as conn:
        return db.fetch(conn, "SELECT who, granted FROM att.ran WHERE who = %s", (role,))


def set_up_attack(pg_server: Server, dsn: str, roles: list[str], tuner: str) -> str:
    """The app (owned by a role the tuner is a member of, as README grants it for apply
    mode), the attacker's objects, and the tuner's role; returns the attacker's DSN."""
    owner = make_role(pg_server, roles, "t_app_owner")
    roles.remove(owner)  # made by APP below, in this database's cluster
    with db.connect(pg_server.admin_dsn) as admin:
        db.execute(admin, db.SQL("DROP ROLE IF EXISTS {}").format(db.Identifier(owner)))
    load(dsn, *(s.format(owner=owner) for s in APP))
    roles.append(owner)
    att = make_role(pg_server, roles, "t_att")
    with db.connect(dsn) as conn:
        db.execute(conn, db.SQL("CREATE SCHEMA att AUTHORIZATION {}").format(db.Identifier(att)))
        db.execute(conn, db.SQL("GRANT USAGE ON SCHEMA app TO {}").format(db.Identifier(att)))
        db.execute(conn, db.SQL("GRANT SELECT ON app.orders TO {}").format(db.Identifier(att)))
    make_role(
        pg_server, roles, tuner, "GRANT pg_monitor TO {}", "GRANT pg_read_all_data TO {}",
        f"GRANT {owner} TO {{}}",
    )  # fmt: skip
    attacker = as_role(pg_server, dsn, att)
    with db.connect(attacker) as conn:
        for statement in ATTACK:
            db.execute(conn, statement.replace("{att}", att))
    return attacker


def test_a_users_immutable_function_is_never_run_by_advise(
    pg_server: Server, dsn: str, roles: list[str]
) -> None:
    """Bad input: `SELECT id FROM app.orders WHERE customer = att.fold() + $1`, where the
    user's IMMUTABLE att.fold() calls a VOLATILE function that grants the owner's secret.
    Before: `pg-tuner advise` PREPAREd and EXPLAINed it, the planner folded att.fold(), and
    the payload ran as the tuner and granted the attacker SELECT on app.secret."""
    attacker = set_up_attack(pg_server, dsn, roles, "t_tuner_fold")
    run(attacker, [("SELECT id FROM app.orders WHERE customer = att.fold() + %s", [1]),
                   ("SELECT id FROM app.orders WHERE customer = %s", ["n"])])  # fmt: skip
    document = advise_process(as_role(pg_server, dsn, "t_tuner_fold"))
    assert attack_ran_as(dsn, "t_tuner_fold") == []
    with db.connect(dsn) as conn:
        granted = "SELECT has_table_privilege('t_att', 'app.secret', 'SELECT') AS yes"
        assert db.fetch(conn, granted)[0]["yes"] is False
    assert document["skipped_reasons"].get("untrusted function") == 1
    assert ("app.orders", "customer") in columns_proposed(document)  # the honest one


def test_operators_casts_views_and_index_expressions_are_refused_too(
    pg_server: Server, dsn: str, roles: list[str]
) -> None:
    """Bad input, as statements caught running with their literals (pg_stat_activity): a
    user's operator `+` (int, text), a user's cast to a type of theirs, a view of theirs
    whose filter calls their function, a table of theirs with an index expression that
    does (the planner folds index expressions when it opens the table), one whose row
    security policy does, and an INSERT into one whose column default does."""
    from tuner.advisor import Advisor, statement_key
    from tuner.whatif import WorkloadQuery, read_schema

    set_up_attack(pg_server, dsn, roles, "t_tuner_ops")
    texts = [
        "SELECT id FROM app.orders WHERE customer = 1 + 'x'::text",
        "SELECT id FROM app.orders WHERE customer::text::att.code = 7::att.code",
        "SELECT m.id FROM att.mine m JOIN app.orders o ON o.id = m.id WHERE o.customer = 5",
        "SELECT id FROM att.t WHERE k = 5",
        "SELECT id FROM att.p WHERE k = 5",
        "INSERT INTO att.d (id) VALUES (1)",
        "SELECT id FROM app.orders WHERE customer = 42",
    ]
    with db.connect(dsn) as conn:  # the user's path, on which `+` finds theirs
        db.execute(conn, "ALTER ROLE t_att SET search_path = att, public")
        att = db.fetch(conn, "SELECT oid::bigint AS oid FROM pg_roles WHERE rolname = 't_att'")
    statements = [WorkloadQuery(statement_key(t), t, 10, 1000.0, (att[0]["oid"],)) for t in texts]
    with db.connect(as_role(pg_server, dsn, "t_tuner_ops")) as conn:
        advice = Advisor(conn, read_schema(conn), budget=1 << 30).advise(statements)
    assert attack_ran_as(dsn, "t_tuner_ops") == []
    assert advice.skipped == {"untrusted function": 6}
    assert [(p.table.name, p.columns[0]) for p in advice.indexes] == [("orders", "customer")]


# --- item 3: the documented roles, as the README writes them ----------------------------------


def readme_roles() -> list[str]:
    """The statements of the README's role block (the ```sql block that creates the role)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", readme, re.DOTALL)
    [block] = [b for b in blocks if "CREATE ROLE" in b]
    code = "\n".join(line.split("--")[0] for line in block.splitlines())
    return [s.strip() for s in code.split(";") if s.strip()]


def own_entries(dsn: str) -> list[str]:
    """pg_stat_statements texts of the tuner's own statements that lack its mark."""
    with db.connect(dsn) as conn:
        rows = db.fetch(
            conn,
            "SELECT query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
            " WHERE datname = current_database()) AND toplevel AND query !~ '^/\\* pg-tuner'"
            " AND query ~* 'hypopg|pgtuner|explain|discard|pg_prepared|search_path|plan_cache"
            "|pg_stat_statements\\(|pg_stat_user|pg_attribute|pg_index|pg_depend|begin|rollback'",
        )
    return [r["query"] for r in rows]


def test_the_readmes_roles_can_be_created_and_advise_works_with_them(
    pg_server: Server, dsn: str, roles: list[str]
) -> None:
    """Bad input: the README's own role statements, run as written. Before: `CREATE ROLE
    pg_tuner` is refused (pg_ names are reserved), and with pg_monitor + pg_read_all_data
    `advise` failed at once on `SET pg_stat_statements.track`. A second `advise` right
    after the first must not count the first's statements."""
    statements = readme_roles()
    created = re.search(r"CREATE ROLE (\w+)", statements[0])
    assert created is not None
    role = created.group(1)
    load(dsn, *ORDERS)
    with db.connect(pg_server.admin_dsn) as admin:
        db.execute(admin, "DROP ROLE IF EXISTS app_owner")
        db.execute(admin, "CREATE ROLE app_owner")
        db.execute(admin, db.SQL("DROP ROLE IF EXISTS {}").format(db.Identifier(role)))
    roles += [role, "app_owner"]
    optional = [s for s in statements if "SET ON PARAMETER" in s]
    with db.connect(dsn) as conn:  # GRANT SET ON PARAMETER is the README's optional step
        for statement in statements:
            if statement not in optional:
                db.execute(conn, statement)
    run(dsn, [(BY_CUSTOMER, ["n"])])
    tuner = as_role(pg_server, dsn, role)
    first = advise_process(tuner)
    second = advise_process(tuner)
    assert columns_proposed(first) == [("public.orders", "customer_id")]
    assert (second["costed_queries"], second["skipped_reasons"]) == (
        first["costed_queries"], first["skipped_reasons"],
    )  # fmt: skip
    assert own_entries(dsn) == []
    with db.connect(dsn) as conn:
        for statement in optional:
            db.execute(conn, statement)
    third, fourth = advise_process(tuner), advise_process(tuner)
    assert columns_proposed(third) == [("public.orders", "customer_id")]
    assert (fourth["costed_queries"], fourth["skipped_reasons"]) == (
        third["costed_queries"], third["skipped_reasons"],
    )  # fmt: skip
    assert own_entries(dsn) == []


# --- item 8: unqualified names resolve as the statement's role resolved them -----------------

PICKS = (
    "CREATE SCHEMA alt",
    "CREATE TABLE alt.pick AS SELECT g AS id, g % 20000 AS v FROM generate_series(1, 200000) g",
    "CREATE TABLE public.pick AS SELECT g AS id, g % 100 AS v FROM generate_series(1, 1000) g",
    "ANALYZE alt.pick",
    "ANALYZE public.pick",
)


def test_an_unqualified_name_is_the_table_the_statements_role_meant(
    pg_server: Server, dsn: str, roles: list[str]
) -> None:
    """Bad input: `SELECT * FROM pick WHERE v = $1` run by a role whose search_path
    (`ALTER ROLE ... SET search_path = alt, public`) makes `pick` alt.pick (200 k rows),
    while the tuner's own path makes it public.pick (1,000 rows). Before: the advice (and
    the daemon's build) went to public.pick. Then the same text from a second role whose
    path means public.pick: the statement is ambiguous, skipped with that reason."""
    load(dsn, *PICKS)
    alt = make_role(pg_server, roles, "t_alt_reader")
    dbname = str(db.conninfo_to_dict(dsn)["dbname"])
    with db.connect(dsn) as conn:
        db.execute(conn, "GRANT USAGE ON SCHEMA alt TO t_alt_reader")
        db.execute(conn, "GRANT SELECT ON alt.pick, public.pick TO t_alt_reader")
        setting = "ALTER ROLE t_alt_reader IN DATABASE {} SET search_path = alt, public"
        db.execute(conn, db.SQL(setting).format(db.Identifier(dbname)))
    run(as_role(pg_server, dsn, alt), [("SELECT * FROM pick WHERE v = %s", ["n"])])
    document = advise_process(dsn)
    assert columns_proposed(document) == [("alt.pick", "v")]

    plain = make_role(pg_server, roles, "t_plain_reader")
    with db.connect(dsn) as conn:
        db.execute(conn, "GRANT SELECT ON public.pick TO t_plain_reader")
    run(as_role(pg_server, dsn, plain), [("SELECT * FROM pick WHERE v = %s", ["n"])])
    document = advise_process(dsn)
    assert document["skipped_reasons"].get("ambiguous search_path") == 1
    assert columns_proposed(document) == []
