"""Hostile names and a closed pipe: what a person's terminal receives from every command.

A table named with escape sequences must reach `status`, `advise`, `audit`, `check-policy`
and `rollback` output as visible `\\u001b` text, never as a control sequence; `| head` must
never leave a traceback; `--since`/`--window` values out of range are bad input, not crashes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_advisor import load, run
from tuner import db
from tuner.cli import main
from tuner.journal import Journal
from tuner.models import Action, ActionKind, ActionState, IndexSpec, TableRef
from tuner.terminal import printable

HOSTILE = "esc\x1b[2J\x1b]0;pwned\x07\u202etbl"  # clear screen, set title, bidi override
SHOWN = "esc\\u001b[2J\\u001b]0;pwned\\u0007\\u202etbl"


def assert_inert(text: str) -> None:
    """Nothing in `text` a terminal acts on but newline and tab."""
    assert printable(text) == text, [c for c in text if printable(c) != c]


def test_printable_escapes_what_a_terminal_would_act_on() -> None:
    assert printable(HOSTILE) == SHOWN
    assert printable("naïve 日本 tab\tline\n") == "naïve 日本 tab\tline\n"
    assert printable("\x9b2J\r\x7f\u200b\U000e0001") == (
        "\\u009b2J\\u000d\\u007f\\u200b\\udb40\\udc01"
    )
    # the escape is JSON's own: a JSON document that passes through still parses the same
    document = json.dumps({"t": "\x9b\u202e"}, ensure_ascii=False)
    assert json.loads(printable(document)) == {"t": "\x9b\u202e"}


def hostile_table(dsn: str) -> None:
    load(
        dsn,
        f'CREATE TABLE "{HOSTILE}" (id bigint PRIMARY KEY, customer_id int NOT NULL, total int)',
        f'INSERT INTO "{HOSTILE}" SELECT g, g % 5000, g % 300 FROM generate_series(1, 100000) g',
        f'ANALYZE "{HOSTILE}"',
    )
    run(dsn, [(f'SELECT id, total FROM "{HOSTILE}" WHERE customer_id = %s', ["n"])])


@pytest.mark.hypopg
def test_advise_shows_a_hostile_table_name_escaped(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tried: a table whose name clears the screen, sets the window title and reverses text.
    hostile_table(dsn)
    assert main(["advise", "--dsn", dsn]) == 0
    out, err = capsys.readouterr()
    assert "CREATE INDEX CONCURRENTLY" in out and SHOWN in out  # the DDL names it, escaped
    assert_inert(out)
    assert_inert(err)
    assert main(["advise", "--dsn", dsn, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert HOSTILE in document["proposals"][0]["ddl"]  # JSON keeps the real name


def test_status_shows_a_hostile_table_name_escaped(
    dsn: str, conn: db.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tried: the same table, with statistics gone stale so it is named among the findings.
    hostile_table(dsn)
    db.execute(conn, f'UPDATE "{HOSTILE}" SET total = total + 1 WHERE id <= 40000')
    db.execute(conn, "SELECT pg_stat_force_next_flush()")
    assert main(["status", "--dsn", dsn]) == 0
    out, err = capsys.readouterr()
    assert SHOWN in out
    assert_inert(out)
    assert_inert(err)


def hostile_journal(path: Path, records: int = 1) -> Journal:
    table = TableRef("public", HOSTILE)
    action = Action(
        id="a1", kind=ActionKind.CREATE_INDEX, table=table,
        index=IndexSpec(table, ("customer_id",)), index_name=f"pgt_{HOSTILE}",
        reason=f"1 query on {HOSTILE} would cost 70% less " + "x" * 400,
    )  # fmt: skip
    journal = Journal(path)
    journal.append(ActionState.PROPOSED, action=action)
    for state in (ActionState.APPROVED, ActionState.APPLYING, ActionState.APPLIED):
        journal.append(state, action=action, reason=f"{state.value}: {HOSTILE}")
    for n in range(records - 4):
        journal.append(ActionState.VERIFYING, action=action, reason=f"check {n} " + "y" * 400)
    return journal


def test_audit_and_rollback_show_hostile_names_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tried: an action on the hostile table in the journal, then an operator's rollback of it
    # and of an ID that is itself an escape sequence.
    journal = hostile_journal(tmp_path / "j.jsonl")
    assert main(["audit", "--journal", str(journal.path)]) == 0
    out, err = capsys.readouterr()
    assert SHOWN in out and "undo:" in out
    assert_inert(out + err)
    assert main(["rollback", "a1", "--journal", str(journal.path)]) == 0
    out, err = capsys.readouterr()
    assert "rollback of a1 requested" in out and SHOWN in out
    assert_inert(out + err)
    assert main(["rollback", "\x1b[2J", "--journal", str(journal.path)]) == 2
    out, err = capsys.readouterr()
    assert "no action" in err and "[2J" in err
    assert_inert(out + err)


def test_check_policy_shows_a_hostile_window_name_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tried: a freeze window named with an escape sequence (YAML's "\e" is ESC).
    path = tmp_path / "p.yaml"
    path.write_text(
        'target: {dsn: "host=127.0.0.1 dbname=app"}\nmetrics: {listen: null}\n'
        'freeze:\n  - {name: "x\\e[2Jy", days: [mon], from: "01:00", to: "02:00"}\n'
    )
    assert main(["check-policy", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "x\\u001b[2Jy (weekly)" in out
    assert_inert(out + err)


def piped_to_head(*argv: str) -> tuple[str, subprocess.CompletedProcess[bytes]]:
    """`pg-tuner ARGV | head -1`: head's output, and pg-tuner's status and stderr."""
    writer = subprocess.Popen([sys.executable, "-m", "tuner", *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)  # fmt: skip
    assert writer.stdout is not None and writer.stderr is not None
    head = subprocess.run(["head", "-1"], stdin=writer.stdout, capture_output=True, check=True)
    writer.stdout.close()
    err = writer.stderr.read()
    status = writer.wait(timeout=60)
    return head.stdout.decode(), subprocess.CompletedProcess(argv, status, b"", err)


def test_a_reader_that_stops_early_leaves_no_traceback(tmp_path: Path) -> None:
    # Tried: `audit --json | head -1` over 300 records (about 270 kB: far more than a pipe
    # holds, so the writer meets the closed pipe), and the same for audit and --help.
    journal = hostile_journal(tmp_path / "j.jsonl", records=300)
    for argv in (["audit", "--json", "--journal", str(journal.path)],
                 ["audit", "--journal", str(journal.path)], ["--help"]):  # fmt: skip
        first, writer = piped_to_head(*argv)
        assert first.strip(), argv
        assert writer.stderr == b"", (argv, writer.stderr.decode()[-2000:])
        assert writer.returncode in (0, 141), argv  # 141: closed pipe, as for any Unix tool


def test_out_of_range_ages_and_windows_are_bad_input_not_crashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tried: an age older than the calendar (99999999 days), and windows of nan, inf, -1.
    journal = hostile_journal(tmp_path / "j.jsonl")
    assert main(["audit", "--journal", str(journal.path), "--since", "99999999d"]) == 2
    assert capsys.readouterr().err == (
        "pg-tuner audit: --since '99999999d': a duration cannot be longer than 36500d (100 years)\n"
    )
    assert main(["audit", "--journal", str(journal.path), "--since", "36500d"]) == 0
    assert "action a1" in capsys.readouterr().out
    for window in ("nan", "inf", "-1", "1e9"):
        assert main(["status", "--dsn", "host=127.0.0.1 port=1", "--window", window]) == 2
        err = capsys.readouterr().err
        assert "--window" in err and "give 0 to 3600 seconds" in err, err
