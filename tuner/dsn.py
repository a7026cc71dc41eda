"""Connection strings without a connection: is one valid, does it carry a password, and
the same text with every secret blanked out (pure: parsed by libpq's own conninfo parser,
nothing is opened). `config` and `log` use it without importing `db`."""

from __future__ import annotations

import re

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict

_SECRET_IN_DSN = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_SECRET_IN_URI = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)


def redact(text: str) -> str:
    """Blank out any password in a key=value DSN or a postgresql:// URI inside `text`."""
    text = _SECRET_IN_DSN.sub(r"\1***", text)
    return _SECRET_IN_URI.sub(r"\1***\3", text)


def dsn_has_password(dsn: str) -> bool:
    """True when the DSN itself carries a password (which the policy refuses)."""
    try:
        return "password" in conninfo_to_dict(dsn)
    except ProgrammingError:
        return bool(_SECRET_IN_DSN.search(dsn) or _SECRET_IN_URI.search(dsn))


def valid_dsn(dsn: str) -> str | None:
    """None when libpq can parse `dsn`, else the reason (with any secret redacted)."""
    try:
        conninfo_to_dict(dsn)
    except ProgrammingError as exc:
        return redact(str(exc))
    return None
