"""The only module that imports psycopg: fenced connections and driver errors translated."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict as conninfo_to_dict
from psycopg.conninfo import make_conninfo as make_conninfo
from psycopg.rows import dict_row

from tuner.dsn import dsn_has_password as dsn_has_password
from tuner.dsn import redact as redact
from tuner.dsn import valid_dsn as valid_dsn
from tuner.errors import (
    Canceled,
    DatabaseUnavailable,
    LockTimeout,
    MissingPrivilege,
    NotInPrerequisiteState,
    OperationFailed,
    QueryFailed,
    UnresolvedType,
)

APPLICATION_NAME = "pg-tuner"

Connection = psycopg.Connection[dict[str, Any]]
Row = dict[str, Any]

SQL = sql.SQL
Identifier = sql.Identifier
Literal = sql.Literal
Composed = sql.Composed


def find_password(password_file: Path | None = None) -> str | None:
    """The password from TUNER_PASSWORD, a credentials file, or None to let libpq decide."""
    if env := os.environ.get("TUNER_PASSWORD"):
        return env
    candidates = [password_file] if password_file else []
    if creds := os.environ.get("CREDENTIALS_DIRECTORY"):
        candidates.append(Path(creds) / "password")
    for path in candidates:
        if path and path.is_file():
            return path.read_text(encoding="utf-8").strip()
    return None


def _ms(value: timedelta) -> str:
    return f"{int(value.total_seconds() * 1000)}ms"


def connect(
    dsn: str,
    *,
    password: str | None = None,
    autocommit: bool = True,
    lock_timeout: timedelta | None = None,
    statement_timeout: timedelta | None = None,
    connect_timeout: int = 10,
    application_name: str = APPLICATION_NAME,
    options: Mapping[str, str] | None = None,
) -> Connection:
    """Open a fenced session: application_name and timeouts set before the first statement."""
    settings: dict[str, str] = dict(options or {})
    if lock_timeout is not None:
        settings["lock_timeout"] = _ms(lock_timeout)
    if statement_timeout is not None:
        settings["statement_timeout"] = _ms(statement_timeout)
    extra: dict[str, Any] = {
        "application_name": application_name,
        "connect_timeout": connect_timeout,
    }
    if password is not None:
        extra["password"] = password
    if settings:
        extra["options"] = " ".join(f"-c {k}={v}" for k, v in settings.items())
    try:
        return psycopg.connect(
            make_conninfo(dsn, **extra), autocommit=autocommit, row_factory=dict_row
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to {redact(dsn)}: {redact(str(exc))}") from exc
    except psycopg.Error as exc:
        raise _ours(exc) from exc


@contextmanager
def translated() -> Iterator[None]:
    """Turn every driver error into ours: 'the database went away' (DatabaseUnavailable),
    'not allowed' (MissingPrivilege), anything else a QueryFailed of its kind (a timeout or
    a cancel is the caller's to judge)."""
    try:
        yield
    except pgerrors.InsufficientPrivilege as exc:
        raise MissingPrivilege(str(exc).strip()) from exc
    except psycopg.OperationalError as exc:
        if not _connection_lost(exc):
            raise _ours(exc) from exc
        raise DatabaseUnavailable(redact(str(exc)).strip() or "connection lost") from exc
    except psycopg.Error as exc:
        raise _ours(exc) from exc


_KINDS: tuple[tuple[type[psycopg.Error], type[QueryFailed]], ...] = (
    (pgerrors.QueryCanceled, Canceled),
    (pgerrors.LockNotAvailable, LockTimeout),
    (pgerrors.ObjectNotInPrerequisiteState, NotInPrerequisiteState),
    (pgerrors.AmbiguousFunction, UnresolvedType),
    (pgerrors.IndeterminateDatatype, UnresolvedType),
    (pgerrors.UndefinedFunction, UnresolvedType),
    (psycopg.OperationalError, OperationFailed),
)


def _ours(exc: psycopg.Error) -> QueryFailed:
    """The project's exception for a driver error: the same text, SQLSTATE and name."""
    kind = next((ours for theirs, ours in _KINDS if isinstance(exc, theirs)), QueryFailed)
    return kind(str(exc), exc.sqlstate, type(exc).__name__)


# SQLSTATEs that mean the server went away rather than that a statement failed.
_GONE = ("57P01", "57P02", "57P03")


def _connection_lost(exc: psycopg.OperationalError) -> bool:
    """True when `exc` means the session is gone: no SQLSTATE (the driver lost the socket),
    a shutdown, or a class 08 error the server ended the session with. Class 08 at ERROR
    severity (`bind message supplies 0 parameters`, 08P01) failed one statement only."""
    state = exc.sqlstate
    if state is None or state in _GONE:
        return True
    return state.startswith("08") and exc.diag.severity_nonlocalized != "ERROR"


def server_error(exc: QueryFailed) -> str:
    """A server error as the server said it: `message (SQLSTATE xxxxx)`, secrets redacted."""
    message = redact(str(exc)).strip() or exc.name
    return f"{message} (SQLSTATE {exc.sqlstate})" if exc.sqlstate else message


# What a statement may end in besides success: the role may lack a privilege (`must be
# owner of table`) as surely as the server may fail or go away.
STATEMENT_ERRORS = (QueryFailed, DatabaseUnavailable, MissingPrivilege)


def failure_reason(exc: BaseException) -> str:
    """`SQLSTATE class: first line`, naming the driver's error (`LockNotAvailable`) rather
    than ours; for another error of ours wrapping one, the wrapped one's."""
    if not isinstance(exc, QueryFailed) and isinstance(exc.__cause__, QueryFailed):
        exc = exc.__cause__
    name = exc.name if isinstance(exc, QueryFailed) else type(exc).__name__
    if not isinstance(exc, QueryFailed) and isinstance(exc.__cause__, psycopg.Error):
        name, exc = type(exc.__cause__).__name__, exc.__cause__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return redact(f"{name}: {text}")


def fetch(
    conn: Connection,
    query: str | sql.Composable,
    params: Sequence[Any] | Mapping[str, Any] = (),
    *,
    binary: bool = False,
) -> list[Row]:
    """Run one statement and return its rows as dicts (`binary`: results in binary format,
    cheaper to decode for large arrays; exact for float8)."""
    with translated(), conn.cursor() as cur:
        cur.execute(query, params or None, binary=binary)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


class _LenientJson(Loader):
    """json whose bytes may not be valid UTF-8: HypoPG cuts a hypothetical index's name at
    63 bytes, mid-character for a multibyte name, and EXPLAIN prints it as it is. json's
    binary form is its text."""

    format = psycopg.pq.Format.BINARY

    def load(self, data: Any) -> Any:
        return json.loads(bytes(data).decode("utf-8", errors="replace"))


def fetch_plan(conn: Connection, statement: str | sql.Composable) -> Any:
    """Run one `EXPLAIN (FORMAT JSON)` and return its document, read leniently (above).
    Sent with the extended protocol, as `execute_one`: one statement, never several."""
    with translated(), conn.cursor() as cur:
        cur.adapters.register_loader("json", _LenientJson)
        cur.execute(statement, binary=True)  # type: ignore[arg-type]
        row = cur.fetchone()
    if row is None:
        raise QueryFailed("EXPLAIN returned no row")
    return next(iter(row.values()))


def execute(
    conn: Connection, query: str | sql.Composable, params: Sequence[Any] | Mapping[str, Any] = ()
) -> None:
    """Run one statement, discarding any result."""
    with translated(), conn.cursor() as cur:
        cur.execute(query, params or None)  # type: ignore[arg-type]


def execute_one(conn: Connection, query: str | sql.Composable) -> None:
    """Run `query` as exactly one statement: sent with the extended protocol, where
    PostgreSQL refuses a text that holds several (statement texts are hostile input)."""
    with translated(), conn.cursor() as cur:
        cur.execute(query, binary=True)  # type: ignore[arg-type]


def render(conn: Connection, statement: sql.Composable) -> str:
    """The exact text psycopg would send for `statement` on this connection."""
    return statement.as_string(conn)
