"""Driver errors translated: an outage is reported as one, a refused statement as itself."""

from __future__ import annotations

import pytest

from tuner import db
from tuner.cli import main
from tuner.errors import DatabaseUnavailable


def test_a_protocol_error_on_a_live_session_is_the_servers_error_not_an_outage(
    conn: db.Connection,
) -> None:
    # Tried: what the driver did to `EXPLAIN (GENERIC_PLAN) ... $1` after five runs: prepare
    # a text with a placeholder on the server, then bind no parameter (SQLSTATE 08P01).
    with pytest.raises(db.Error) as raised, db.translated():
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
