"""Logging: structlog events, JSON lines off a TTY, a console format on one; secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from tuner.dsn import redact

_SECRET_KEYS = ("password", "passwd", "secret", "token")
_DSN_KEYS = ("dsn", "conninfo", "target")
_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Never print `value` (a password read at start-up) in any log line."""
    if value and len(value) >= 3:
        _known_secrets.add(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        text = redact(value)
        for secret in _known_secrets:
            text = text.replace(secret, "***")
        return text
    if isinstance(value, dict):
        return {k: _scrub_field(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def _scrub_field(key: str, value: Any) -> Any:
    lowered = key.lower()
    if any(s in lowered for s in _SECRET_KEYS) and "file" not in lowered:
        return "***" if value else value
    return _scrub(value)


def redact_processor(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank passwords in every field, including inside DSNs and errors."""
    for key in list(event):
        event[key] = _scrub_field(key, event[key])
    return event


class _StandardError:
    """sys.stderr looked up at every write, so a replaced or closed stream is never kept."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _fields() -> list[Any]:
    """Level, time, exception text, secrets blanked: every line, ours or a library's."""
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
    ]


class _StreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` installs on the standard library's root logger."""


def _standard_library(out: Any, renderer: Any, level: int) -> None:
    """Route the standard library's records (APScheduler's "skipped: maximum number of
    running instances reached", psycopg's pool) through the same fields and renderer."""
    handler = _StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *_fields()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StreamHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # APScheduler says every job run at INFO; only its warnings and errors are news
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(max(level, logging.WARNING))


def configure(level: str = "info", stream: TextIO | None = None, json: bool | None = None) -> None:
    """Set up structlog; JSON lines unless the stream is a terminal. Default stream: stderr.
    The standard library's loggers (APScheduler's) write through the same format."""
    out: Any = stream or _StandardError()
    as_json = json if json is not None else not out.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    _standard_library(out, renderer, logging.getLevelName(level.upper()))
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *_fields(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get(name: str | None = None) -> Any:
    """A bound logger; `name` becomes the `logger` field."""
    return structlog.get_logger(name) if name else structlog.get_logger()
