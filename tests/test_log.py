"""Logging: JSON lines off a TTY, and no password or DSN secret in any line."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest

from tests.daemon_support import write_policy
from tuner import log
from tuner.config import load_policy
from tuner.daemon import Daemon
from tuner.errors import DatabaseUnavailable


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    log.configure("debug", stream=out)
    return out


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_when_not_a_tty(stream: io.StringIO) -> None:
    log.get("sampler").info("sample.taken", queries=12, seconds=0.04)
    [event] = lines(stream)
    assert event["event"] == "sample.taken" and event["queries"] == 12
    assert event["level"] == "info" and "timestamp" in event


def test_console_format_on_request() -> None:
    out = io.StringIO()
    log.configure("info", stream=out, json=False)
    log.get().info("index.built", index="ix_a")
    text = out.getvalue()
    assert "index.built" in text and "ix_a" in text and not text.startswith("{")


def test_password_in_a_dsn_field_is_redacted(stream: io.StringIO) -> None:
    # Tried: a key=value DSN, a URI, a quoted password, and a password field.
    logger = log.get()
    logger.info("connect", dsn="host=db user=app password=hunter22 dbname=x")
    logger.info("connect", dsn="postgresql://app:s3cr3t@db:5432/x")
    logger.info("connect", conninfo="password='with space' host=db")
    logger.info("login", password="letmein")
    text = stream.getvalue()
    for secret in ("hunter22", "s3cr3t", "with space", "letmein"):
        assert secret not in text
    assert text.count("***") == 4
    assert "host=db" in text  # the rest of the DSN stays readable


def test_registered_secret_never_appears_even_inside_an_error(stream: io.StringIO) -> None:
    # Tried: the password from TUNER_PASSWORD echoed inside an exception message.
    log.register_secret("Tr0ub4dor&3")
    try:
        raise DatabaseUnavailable("authentication failed for password Tr0ub4dor&3")
    except DatabaseUnavailable:
        log.get().exception("db.unavailable", detail="retry with Tr0ub4dor&3")
    text = stream.getvalue()
    assert "Tr0ub4dor&3" not in text
    assert "authentication failed" in text


def test_apschedulers_own_messages_are_json_lines_too(stream: io.StringIO) -> None:
    """APScheduler logs through the standard library; off a TTY its lines are JSON too."""
    import logging

    logging.getLogger("apscheduler.scheduler").warning(
        'Execution of job "sample" skipped: maximum number of running instances reached (1)'
    )
    logging.getLogger("apscheduler.scheduler").info("Added job: not news")  # below WARNING
    [event] = lines(stream)
    assert event["level"] == "warning" and event["logger"] == "apscheduler.scheduler"
    assert "maximum number of running instances reached" in str(event["event"])
    assert "timestamp" in event


def test_the_policy_level_has_its_own_field(tmp_path: Path, stream: io.StringIO) -> None:
    """`daemon.started` carries the policy's level as policy_level; `level` stays the log's."""
    policy = load_policy(write_policy(tmp_path / "p.yaml", "host=127.0.0.1 port=1 dbname=x"))
    daemon = Daemon(policy)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "daemon.started" not in stream.getvalue():
        time.sleep(0.05)
    daemon.request_stop()
    thread.join(30)
    started = next(e for e in lines(stream) if e["event"] == "daemon.started")
    assert started["level"] == "info" and started["policy_level"] == "aggressive"
