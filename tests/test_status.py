"""`pg-tuner status` end to end against the test database, with a small workload running."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tuner import db
from tuner.cli import main
from tuner.commands.status import render
from tuner.errors import QueryFailed
from tuner.labels import label
from tuner.sampler import version_warning

SETUP = """
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, status text, note text)
    WITH (autovacuum_enabled = false);
INSERT INTO orders SELECT g, g % 500, 'open', 'n' || (g % 7) FROM generate_series(1, 20000) g;
SELECT pg_stat_force_next_flush();
ANALYZE orders;
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_customer_status_idx ON orders (customer_id, status);
CREATE INDEX orders_status_idx ON orders (status);
UPDATE orders SET status = 'closed' WHERE id <= 8000;
CREATE TABLE events (id int, payload text) WITH (autovacuum_enabled = false);
INSERT INTO events SELECT g, repeat('x', 50) FROM generate_series(1, 5000) g;
SELECT pg_stat_force_next_flush();
ANALYZE events;
DELETE FROM events WHERE id <= 2000;
"""


@pytest.fixture
def busy(dsn: str, conn: Any) -> Iterator[str]:
    """The test database with findings to report, and a workload running during the window."""
    for statement in SETUP.strip().split(";\n"):
        db.fetch(conn, statement)
    with pytest.raises(QueryFailed):  # duplicates make the build fail: an INVALID index stays
        db.execute(conn, "CREATE UNIQUE INDEX CONCURRENTLY orders_note_key ON orders (note)")
    db.fetch(conn, "SELECT pg_stat_force_next_flush()")
    db.fetch(conn, "SELECT 1")
    stop = threading.Event()

    def work() -> None:
        with db.connect(dsn) as worker:
            customer = 0
            while not stop.is_set():
                customer = (customer + 1) % 500
                db.fetch(worker, "SELECT count(*) FROM orders WHERE note = %s AND id > %s",
                         (f"n{customer % 7}", customer))  # fmt: skip

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.2)
    yield dsn
    stop.set()
    thread.join()


def test_status_reads_at_a_glance(
    busy: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["status", "--dsn", busy, "--window", "1"]) == 0
    out = capsys.readouterr().out
    print(out)  # shown with -s: this is what a DBA sees

    assert "HEALTH: DEGRADED" in out
    with db.connect(busy) as conn:
        major = db.fetch(conn, "SELECT current_setting('server_version_num')::int / 10000 AS m")
    assert f"on PostgreSQL {major[0]['m']}." in out.splitlines()[0]
    assert "WARNING" not in out  # 14 to 18: no version warning
    assert "1 invalid index(es): public.orders_note_key" in out
    (stale,) = [line for line in out.splitlines() if "table(s) with stale statistics" in line]
    assert "public.orders" in stale
    top = out.split("TOP STATEMENTS BY TOTAL TIME IN THE WINDOW")[1].split("TABLES NEEDING")[0]
    assert "SELECT count(*) FROM orders WHERE note = $1 AND id > $2" in top
    assert label("SELECT count(*) FROM orders WHERE note = $1 AND id > $2") in top
    maintenance = out.split("TABLES NEEDING MAINTENANCE")[1].split("INDEXES:")[0]
    assert "ANALYZE" in maintenance and "public.orders" in maintenance
    assert "VACUUM   public.events" in maintenance  # 2,000 deleted rows are dead tuples
    indexes = out.split("INDEXES: UNUSED, DUPLICATE, INVALID")[1]
    assert "invalid    public.orders_note_key" in indexes
    assert "duplicate  public.orders_customer_idx" in indexes
    assert "prefix of public.orders_customer_status_idx" in indexes
    assert "unused     public.orders_status_idx" in indexes
    assert "unused     public.orders_customer_status_idx" in indexes
    assert "orders_pkey" not in indexes  # backs the primary key, never listed as unused


def test_status_json_has_the_same_content(busy: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--dsn", busy, "--window", "0.5", "--json"]) == 0
    content = json.loads(capsys.readouterr().out)

    assert content["health"]["status"] == "degraded"
    assert content["window_seconds"] >= 0.5
    (top, *_) = content["top_queries"]
    assert top["query"] == "SELECT count(*) FROM orders WHERE note = $1 AND id > $2"
    assert top["calls"] > 0 and top["mean_ms"] > 0 and 0 < top["share"] <= 1
    findings = {(i["finding"], i["index"]) for i in content["indexes"]}
    assert findings == {
        ("invalid", "public.orders_note_key"),
        ("duplicate", "public.orders_customer_idx"),
        ("unused", "public.orders_status_idx"),
        ("unused", "public.orders_customer_status_idx"),
    }
    tables = {(t["action"], t["table"]) for t in content["tables"]}
    assert {("ANALYZE", "public.orders"), ("VACUUM", "public.events")} <= tables
    assert content["index_builds"] == [] and content["not_visible"] == []
    assert content["server"]["connections"] >= 2
    assert 14 <= content["server_major"] <= 18
    assert content["server_version"].startswith(f"{content['server_major']}.")
    assert content["version_warning"] is None
    # A server outside 14-18 (here: its warning as status would make it) is named up front.
    warned = render({**content, "version_warning": version_warning(190000)})
    assert warned.splitlines()[1] == (
        "WARNING: PostgreSQL 19 is newer than pg-tuner is tested on (14 to 18): "
        "read its advice with care"
    )


def test_status_refuses_a_negative_window(capsys: pytest.CaptureFixture[str]) -> None:
    # Tried: --window -1, --window 0 and a window of a day.
    for bad in ("-1", "0", "86400"):
        assert main(["status", "--dsn", "host=127.0.0.1 dbname=x", "--window", bad]) == 2
        assert "--window" in capsys.readouterr().err


def test_status_shows_the_statements_since_the_reset_after_a_quiet_moment(
    dsn: str, conn: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy morning, then quiet: status still shows the morning's statements, at once."""
    db.execute(conn, "CREATE TABLE accounts (id int PRIMARY KEY, owner text)")
    db.execute(conn, "INSERT INTO accounts SELECT g, 'o' || g FROM generate_series(1, 2000) g")
    db.fetch(conn, "SELECT pg_stat_statements_reset()")
    for n in range(30):
        db.fetch(conn, "SELECT owner FROM accounts WHERE owner LIKE %s", (f"o{n}%",))
    started = time.monotonic()
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["status", "--dsn", dsn]) == 0
    assert time.monotonic() - started < 4, "no silent wait without --window"
    out = capsys.readouterr().out
    text = "SELECT owner FROM accounts WHERE owner LIKE $1"
    assert "statements since their reset" in out.splitlines()[0]
    top = out.split("TOP STATEMENTS BY TOTAL TIME SINCE THE RESET")[1].split("TABLES NEEDING")[0]
    row = next(line for line in top.splitlines() if label(text) in line)
    assert row.rstrip().endswith(text) and " 30 " in row

    assert main(["status", "--dsn", dsn, "--json"]) == 0
    content = json.loads(capsys.readouterr().out)
    [entry] = [q for q in content["top_queries"] if q["query"] == text]
    assert isinstance(entry["queryid"], str) and int(entry["queryid"]) != 0
    assert entry["label"] == label(text) and content["since_reset"] is True


def test_status_window_counts_down_on_stderr(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--dsn", dsn, "--window", "0.3"]) == 0
    out, err = capsys.readouterr()
    assert "sampling the statements for 0.3 s" in err
    assert "live window" in out.splitlines()[0]
    assert "TOP STATEMENTS BY TOTAL TIME IN THE WINDOW" in out


def test_status_lines_fit_the_terminal(
    busy: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for columns in (100, 72):
        monkeypatch.setenv("COLUMNS", str(columns))
        assert main(["status", "--dsn", busy]) == 0
        top = capsys.readouterr().out.split("TOP STATEMENTS")[1].split("TABLES NEEDING")[0]
        assert max(len(line) for line in top.splitlines()) <= columns
        assert "SELECT count(*) FROM orders WHERE" in top


def test_status_without_pg_stat_statements_says_how_to_fix_it(
    dsn: str, conn: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tried: a database where the extension was dropped.
    db.execute(conn, "DROP EXTENSION pg_stat_statements")
    assert main(["status", "--dsn", dsn]) == 1
    err = capsys.readouterr().err
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;" in err
    assert "Traceback" not in err
