"""Driver errors translated: an outage is reported as one, a refused statement as itself."""

from __future__ import annotations

import pytest

from tuner import db
from tuner.cli import main
from tuner.errors import Canceled, DatabaseUnavailable, QueryFailed, UnresolvedType


def test_a_protocol_error_on_a_live_session_is_the_servers_error_not_an_outage(
    conn: db.Connection,
) -> None:
    # Tried: what the driver did to `EXPLAIN (GENERIC_PLAN) ... $1` after five runs: prepare
    # a text with a placeholder on the server, then bind no parameter (SQLSTATE 08P01).
    with pytest.raises(QueryFailed) as raised, db.translated():
        conn.execute("SELECT $1::int + $2::int AS n", prepare=True)
    assert not isinstance(raised.value, DatabaseUnavailable)
    assert raised.value.sqlstate == "08P01"
    assert "bind message supplies 0 parameters" in db.server_error(raised.value)
    assert "SQLSTATE 08P01" in db.server_error(raised.value)
    assert db.fetch(conn, "SELECT 1 AS one") == [{"one": 1}]  # the session lives on


def test_the_cli_names_a_server_error_as_such(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dsn: str
) -> None:
    # Tried: a command whose statement the server refuses while the database is up.
    def refused(args: object) -> int:
        with db.connect(dsn) as conn:
            conn.execute("SELECT $1::int", prepare=True)
        return 0

    monkeypatch.setattr("tuner.cli._handler", lambda command: refused)
    assert main(["status", "--dsn", dsn]) == 1
    err = capsys.readouterr().err
    assert "database unavailable" not in err
    assert "pg-tuner: server error: bind message supplies 0 parameters" in err
    assert "SQLSTATE 08P01" in err


@pytest.mark.parametrize(
    ("sql", "kind", "name"),
    [
        ("SELECT pg_sleep(1)", Canceled, "QueryCanceled"),  # statement_timeout below
        ("SELECT 1/0", QueryFailed, "DivisionByZero"),
        ("SELECT no_such_function(1)", UnresolvedType, "UndefinedFunction"),
    ],
)
def test_driver_errors_reach_callers_as_ours_with_the_same_text(
    conn: db.Connection, sql: str, kind: type[QueryFailed], name: str
) -> None:
    db.execute(conn, "SET statement_timeout = '50ms'")
    with pytest.raises(kind) as raised:
        db.fetch(conn, sql)
    assert raised.value.name == name and raised.value.sqlstate
    assert db.failure_reason(raised.value).startswith(f"{name}: ")
    assert isinstance(raised.value.__cause__, Exception) and str(raised.value.__cause__) == str(
        raised.value
    )
    db.execute(conn, "RESET statement_timeout")
