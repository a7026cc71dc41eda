"""Statements a timeout cancelled, from the server's log: pg_stat_statements never counts
them (it records a statement when it finishes), so without this `advise` would not know
the slowest statements of all exist.

The log is read from a file the operator names (`advise --server-log FILE`) or, with
`logging_collector` on and the right to read server files, through the server itself.
Only the stderr format's `ERROR:  canceling statement due to statement timeout` followed
by its `STATEMENT:` line is read; anything else in the log is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tuner import db, queries
from tuner.errors import MissingPrivilege, QueryFailed
from tuner.models import QueryWindow
from tuner.sampler import fingerprint

TAIL_BYTES = 4 << 20  # the end of the log that is read: recent cancellations
_CANCEL = re.compile(r"ERROR:\s+canceling statement due to (statement|lock) timeout")
_STATEMENT = re.compile(r"STATEMENT:\s+(.*)$")


@dataclass(frozen=True, slots=True)
class Cancelled:
    """One statement text (the first seen of its fingerprint) and how often it was cancelled."""

    text: str
    count: int
    reason: str  # "statement timeout" or "lock timeout"


def parse(lines: Iterable[str]) -> list[Cancelled]:
    """Cancelled statements in log lines, most often cancelled first."""
    found: dict[str, Cancelled] = {}
    pending: str | None = None
    current: list[str] | None = None
    for line in lines:
        if current is not None:
            if line.startswith("\t"):  # a statement's next lines are tab-indented
                current.append(line[1:])
                continue
            _keep(found, "\n".join(current), pending or "statement timeout")
            current, pending = None, None
        if match := _CANCEL.search(line):
            pending = f"{match.group(1)} timeout"
            continue
        if pending and (match := _STATEMENT.search(line)):
            current = [match.group(1)]
            continue
        pending = None if line.strip() and "STATEMENT:" not in line else pending
    if current is not None:
        _keep(found, "\n".join(current), pending or "statement timeout")
    return sorted(found.values(), key=lambda c: -c.count)


def _keep(found: dict[str, Cancelled], text: str, reason: str) -> None:
    key = fingerprint(text)
    seen = found.get(key)
    found[key] = Cancelled(seen.text if seen else text, (seen.count if seen else 0) + 1, reason)


def from_file(path: Path) -> list[Cancelled]:
    """The cancelled statements in the last TAIL_BYTES of `path`; OSError when unreadable."""
    with path.open("rb") as f:
        f.seek(max(f.seek(0, 2) - TAIL_BYTES, 0))
        return parse(f.read().decode("utf-8", errors="replace").splitlines())


def from_server(conn: db.Connection) -> tuple[list[Cancelled], str | None]:
    """The cancelled statements in the server's current log, or [] and why it is unread."""
    try:
        rows = db.fetch(conn, queries.get("advise_server_log"), {"bytes": TAIL_BYTES})
    except MissingPrivilege:
        return [], "this role may not read the server's log (grant pg_read_server_files)"
    except QueryFailed as exc:
        return [], f"the server's log is unreadable: {str(exc).strip().splitlines()[0]}"
    if not rows:
        return [], "the server writes no log file of its own (logging_collector is off)"
    return parse(str(rows[0]["tail"]).splitlines()), None


def cancelled_statements(
    conn: db.Connection, path: str | None, counted: Iterable[QueryWindow]
) -> tuple[list[Cancelled], str | None]:
    """Statements a timeout cancelled that pg_stat_statements never counted, from the
    server's log (`--server-log FILE`, else through the server); and why none could be read."""
    if path:
        try:
            found, unread = from_file(Path(path)), None
        except OSError as exc:
            found, unread = [], f"--server-log {path}: {exc.strerror or exc}"
    else:
        found, unread = from_server(conn)
    known = {fingerprint(q.query) for q in counted}
    return [c for c in found if fingerprint(c.text) not in known], unread
