"""Statements a timeout cancelled: read from the server's log, named by `advise`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.postgres import Server
from tests.test_advisor import ORDERS, load
from tuner import db
from tuner.cli import main
from tuner.errors import QueryFailed
from tuner.labels import label
from tuner.serverlog import parse

LOG = """\
2026-12-06 05:00:01.123 UTC [4242] LOG:  checkpoint starting: time
2026-12-06 05:00:02.456 UTC [4243] ERROR:  canceling statement due to statement timeout
2026-12-06 05:00:02.456 UTC [4243] STATEMENT:  SELECT sum(l_extendedprice) FROM lineitem
\tWHERE l_quantity < 12
2026-12-06 05:00:03.001 UTC [4244] ERROR:  canceling statement due to statement timeout
2026-12-06 05:00:03.001 UTC [4244] STATEMENT:  SELECT sum(l_extendedprice) FROM lineitem
\tWHERE l_quantity < 30
2026-12-06 05:00:04.000 UTC [4245] ERROR:  relation "nope" does not exist at character 15
2026-12-06 05:00:04.000 UTC [4245] STATEMENT:  SELECT * FROM nope
2026-12-06 05:00:05.000 UTC [4246] ERROR:  canceling statement due to lock timeout
2026-12-06 05:00:05.000 UTC [4246] STATEMENT:  UPDATE parts SET p_size = 1 WHERE p_partkey = 7
"""


def test_the_log_gives_each_cancelled_statement_once_with_its_count() -> None:
    found = parse(LOG.splitlines())
    assert [(c.count, c.reason) for c in found] == [(2, "statement timeout"), (1, "lock timeout")]
    assert found[0].text == "SELECT sum(l_extendedprice) FROM lineitem\nWHERE l_quantity < 12"
    assert all("nope" not in c.text for c in found), "other errors are not cancellations"
    assert parse([]) == [] and parse(["STATEMENT:  SELECT 1"]) == []


def test_advise_names_the_statements_a_timeout_cancelled(
    pg_server: Server, dsn: str, conn: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if pg_server.sandbox is None:
        pytest.skip("needs the sandbox's log file")
    load(dsn, *ORDERS)
    slow = "SELECT count(*) FROM orders a JOIN orders b ON a.note = b.note"
    db.execute(conn, "SET statement_timeout = '200ms'")
    with pytest.raises(QueryFailed):
        db.fetch(conn, slow)
    db.execute(conn, "RESET statement_timeout")
    log = str(pg_server.sandbox.logfile)
    assert main(["advise", "--dsn", dsn, "--server-log", log]) == 0
    out = capsys.readouterr().out
    cancelled = out.split("CANCELLED BY A TIMEOUT, NEVER COUNTED")[1]
    assert label(slow) in cancelled and "by a statement timeout" in cancelled
    assert slow in cancelled and "advise --queries FILE" in out

    assert main(["advise", "--dsn", dsn, "--server-log", log, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert any(c["query"] == slow and c["count"] >= 1 for c in document["cancelled"])


def test_advise_says_why_it_could_not_look(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # tried: a log file that does not exist; a server without a log collector
    load(dsn, *ORDERS)
    assert main(["advise", "--dsn", dsn, "--server-log", str(tmp_path / "none.log")]) == 0
    out = capsys.readouterr().out
    assert "never reach pg_stat_statements" in out and "No such file" in out
    assert main(["advise", "--dsn", dsn]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "logging_collector is off" in out and "--server-log FILE" in out
