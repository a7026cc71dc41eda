"""Prometheus metrics and /healthz, scraped over HTTP from a running daemon."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon_support import write_policy
from tests.plugins.postgres import Server
from tuner.config import load_policy
from tuner.daemon import Daemon
from tuner.metrics import Health, Metrics, MetricsServer, parse_listen


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def value(text: str, name: str) -> float:
    """The value of the sample line `name` (with its labels) in a /metrics page."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


@pytest.fixture
def server() -> Iterator[tuple[Metrics, Health, str]]:
    metrics, health = Metrics(), Health(stale_after=60)
    srv = MetricsServer(metrics, health, "127.0.0.1:0").start()
    host, port = srv.address
    yield metrics, health, f"http://{host}:{port}"
    srv.stop()


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9187") == ("127.0.0.1", 9187)
    assert parse_listen("[::1]:9187") == ("::1", 9187)
    assert parse_listen(":9187") == ("127.0.0.1", 9187)
    # tried: a port missing, a port out of range, no colon at all
    for bad in ("127.0.0.1:", "127.0.0.1:70000", "localhost"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_every_metric_is_exported(server: tuple[Metrics, Health, str]) -> None:
    metrics, _, url = server
    metrics.sampled()
    metrics.guard_rejections.labels("frozen").inc()
    metrics.actions.labels("kept").set(2)
    metrics.index_bytes_created.inc(8192)
    status, text = get(url + "/metrics")
    assert status == 200
    assert value(text, "pg_tuner_samples_total") == 1
    assert 0 <= value(text, "pg_tuner_last_sample_age_seconds") < 5
    assert value(text, 'pg_tuner_guard_rejections_total{reason="frozen"}') == 1
    assert value(text, 'pg_tuner_actions{state="kept"}') == 2
    assert value(text, 'pg_tuner_actions{state="rolled_back"}') == 0
    assert value(text, "pg_tuner_index_bytes_created_total") == 8192
    for name in ("pg_tuner_proposals", "pg_tuner_rollbacks_total", "pg_tuner_builds_in_progress",
                 'pg_tuner_verifications_total{verdict="keep"}', "pg_tuner_frozen",
                 "pg_tuner_degraded", "pg_tuner_leader"):  # fmt: skip
        assert name in text


def test_healthz_says_why_it_is_unhealthy(server: tuple[Metrics, Health, str]) -> None:
    _, health, url = server
    status, body = get(url + "/healthz")
    assert (status, body.strip()) == (503, "starting: no cycle has completed yet")
    health.succeeded()
    assert get(url + "/healthz") == (200, "ok\n")
    health.failed("database unreachable: connection refused", reachable=False)
    assert get(url + "/healthz") == (503, "database unreachable: connection refused\n")
    health.succeeded()
    health.stale_after = 0.0
    time.sleep(0.01)
    status, body = get(url + "/healthz")
    assert status == 503 and "last successful cycle" in body
    assert get(url + "/nothing")[0] == 404


def run_in_thread(daemon: Daemon) -> threading.Thread:
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    return thread


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_scrape_a_running_daemon(dsn: str, tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path / "p.yaml", dsn, metrics={"listen": "127.0.0.1:0"}))
    daemon = Daemon(policy)
    thread = run_in_thread(daemon)
    try:
        samples = daemon.metrics.registry.get_sample_value
        wait_until(
            lambda: (
                daemon.server is not None
                and (samples("pg_tuner_cycles_total", {"job": "sample", "outcome": "ok"}) or 0) >= 2
            )
        )
        assert daemon.server is not None
        host, port = daemon.server.address
        status, text = get(f"http://{host}:{port}/metrics")
        assert status == 200
        assert value(text, "pg_tuner_samples_total") >= 2
        assert value(text, "pg_tuner_last_sample_age_seconds") < 5
        assert value(text, 'pg_tuner_cycles_total{job="sample",outcome="ok"}') >= 2
        assert value(text, "pg_tuner_degraded") == 0
        assert get(f"http://{host}:{port}/healthz") == (200, "ok\n")
    finally:
        daemon.request_stop()
        thread.join(30)
    assert not thread.is_alive()


def test_healthz_503_while_the_database_is_unreachable(pg_server: Server, tmp_path: Path) -> None:
    # tried: a target database that does not exist (the server answers, the database does not)
    dsn = pg_server.dsn("t_metrics_not_there")
    policy = load_policy(write_policy(tmp_path / "p.yaml", dsn, metrics={"listen": "127.0.0.1:0"}))
    daemon = Daemon(policy)
    thread = run_in_thread(daemon)
    try:
        wait_until(lambda: daemon.server is not None and daemon.degraded)
        assert daemon.server is not None
        host, port = daemon.server.address
        status, body = get(f"http://{host}:{port}/healthz")
        assert status == 503
        assert "database unreachable" in body and "t_metrics_not_there" in body
        assert value(get(f"http://{host}:{port}/metrics")[1], "pg_tuner_degraded") == 1
    finally:
        daemon.request_stop()
        thread.join(30)
