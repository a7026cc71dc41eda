"""Placeholders in a normalized text: typed ones (`interval $1`, `date $2`) rewritten so
sqlglot and PostgreSQL read them, and `$n` replaced by values."""

from __future__ import annotations

import re

_SKIPPED = re.compile(  # strings, quoted identifiers, dollar quotes, comments
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(\$(?:[A-Za-z_]\w*)?\$)[\s\S]*?\1|--[^\n]*|/\*[\s\S]*?\*/"
)
_TYPES = (
    r"timestamp\s+with(?:out)?\s+time\s+zone|time\s+with(?:out)?\s+time\s+zone|"
    r"double\s+precision|timestamptz|timestamp|timetz|time|date|numeric|decimal|bigint|"
    r"smallint|integer|int|real|boolean|bool|text|varchar|uuid|jsonb|json|inet|cidr|bytea"
)
_UNIT = r"year|month|day|hour|minute|second"
_TYPED_INTERVAL = re.compile(
    rf"\binterval\s+(\$\d+)(\s+(?:{_UNIT})(?:\s+to\s+(?:{_UNIT}))?\b)?", re.IGNORECASE
)
_TYPED_OTHER = re.compile(rf"(?<![\w.\"])({_TYPES})\s+(\$\d+)", re.IGNORECASE)


def _rewrite_code(code: str) -> str:
    def interval(match: re.Match[str]) -> str:
        param, fields = match.group(1), (match.group(2) or "").strip().lower()
        if fields and " " not in fields:  # `interval $2 day`: $2 counts days
            return f"({param} || ' {fields}')::interval"
        return f"{param}::interval"  # a `day to second` restriction only truncates

    code = _TYPED_INTERVAL.sub(interval, code)
    return _TYPED_OTHER.sub(lambda m: f"{m.group(2)}::{' '.join(m.group(1).split())}", code)


_PLACEHOLDER = re.compile(r"\$(\d+)")


def substitute_parameters(text: str, values: dict[int, str]) -> str:
    """`text` with each `$n` outside strings, quoted identifiers and comments replaced by
    `values[n]` (left as it is when `values` has none)."""

    def one(match: re.Match[str]) -> str:
        return values.get(int(match.group(1)), match.group(0))

    parts: list[str] = []
    done = 0
    for match in _SKIPPED.finditer(text):
        parts += [_PLACEHOLDER.sub(one, text[done : match.start()]), match.group(0)]
        done = match.end()
    parts.append(_PLACEHOLDER.sub(one, text[done:]))
    return "".join(parts)


def rewrite_typed_placeholders(text: str) -> str:
    """Turn pg_stat_statements' typed placeholders (`date $1`, `interval $2 day`) into casts.

    PostgreSQL accepts a type name before a string literal but not before a parameter,
    so the normalized text cannot be parsed or PREPAREd as stored. Strings, quoted
    identifiers and comments are left alone.
    """
    parts: list[str] = []
    done = 0
    for match in _SKIPPED.finditer(text):
        parts += [_rewrite_code(text[done : match.start()]), match.group(0)]
        done = match.end()
    parts.append(_rewrite_code(text[done:]))
    return "".join(parts)
