"""Prometheus metrics and /healthz, scraped over HTTP from a running daemon."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_support import write_policy
from tests.plugins.postgres import Server
from tuner import __version__
from tuner.cli import main
from tuner.config import Policy, load_policy
from tuner.daemon import Daemon
from tuner.metrics import (
    DEFAULT_PORT,
    Liveness,
    Metrics,
    MetricsServer,
    PortTaken,
    parse_listen,
)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def value(text: str, name: str) -> float:
    """The value of the sample line `name` (with its labels, `database` left out) in a
    /metrics page."""
    for line in text.splitlines():
        bare = re.sub(r'database="[^"]*",?', "", line).replace("{}", "")
        if bare.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


@pytest.fixture
def server() -> Iterator[tuple[Metrics, Liveness, str]]:
    metrics, health = Metrics(), Liveness(stale_after=60)
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


def test_every_metric_is_exported(server: tuple[Metrics, Liveness, str]) -> None:
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
    assert value(text, "pg_tuner_index_built_bytes_total") == 8192
    for name in ("pg_tuner_proposals", "pg_tuner_rollbacks_total", "pg_tuner_builds_in_progress",
                 'pg_tuner_verifications_total{verdict="keep"}', "pg_tuner_frozen",
                 "pg_tuner_degraded", "pg_tuner_leader"):  # fmt: skip
        assert name in text


def test_healthz_says_why_it_is_unhealthy(server: tuple[Metrics, Liveness, str]) -> None:
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


METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def exposition(metrics: Metrics) -> list[Any]:
    """The families of a /metrics page as Prometheus' own parser reads them."""
    return list(text_string_to_metric_families(metrics.render().decode()))


def test_names_pass_prometheus_conventions_and_nothing_is_nan() -> None:
    """What `promtool check metrics` checks: valid names, counters in `_total`, base units;
    and no `_created` twin series, no NaN (the age before the first sample is absent)."""
    metrics = Metrics(database="shop")
    metrics.build_seconds.labels("create_index", "applied").observe(12.5)
    metrics.verdict_seconds.labels("keep").observe(1800)
    text = metrics.render().decode()
    assert "_created" not in text
    assert "NaN" not in text and "pg_tuner_last_sample_age_seconds{" not in text
    for family in exposition(metrics):
        assert METRIC_NAME.match(family.name) and family.name.startswith("pg_tuner_")
        for sample in family.samples:
            assert sample.labels["database"] == "shop", sample
            assert sample.value == sample.value, f"NaN in {sample}"
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
        assert not family.name.endswith(("_ms", "_milliseconds", "_kb", "_mb")), family.name
    metrics.sampled()
    assert 0 <= value(metrics.render().decode(), "pg_tuner_last_sample_age_seconds") < 5


def test_build_info_histograms_and_the_storage_budget_are_exported() -> None:
    metrics = Metrics(database="shop")
    metrics.build_seconds.labels("create_index", "applied").observe(12.5)
    metrics.verdict_seconds.labels("rollback").observe(1800)
    metrics.storage(40 << 20, 1 << 30)
    text = metrics.render().decode()
    info = next(line for line in text.splitlines() if line.startswith("pg_tuner_build_info{"))
    assert 'database="shop"' in info and f'version="{__version__}"' in info
    assert info.endswith(" 1.0")
    assert value(text, 'pg_tuner_build_duration_seconds_bucket{kind="create_index",'
                 'le="15.0",outcome="applied"}') == 1  # fmt: skip
    assert value(text, 'pg_tuner_verdict_duration_seconds_count{verdict="rollback"}') == 1
    assert value(text, "pg_tuner_index_storage_used_bytes") == 40 << 20
    assert value(text, "pg_tuner_index_storage_limit_bytes") == 1 << 30


def test_the_default_port_is_not_postgres_exporters() -> None:
    assert Policy.model_validate({"target": {"dsn": "dbname=x"}}).metrics.listen == (
        f"127.0.0.1:{DEFAULT_PORT}"
    )
    assert DEFAULT_PORT != 9187


def test_a_taken_port_is_a_clear_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # tried: the metrics port already bound by another process (postgres_exporter's case)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(PortTaken, match=f"127.0.0.1:{port}: the port is already in use"):
            MetricsServer(Metrics(), Liveness(stale_after=60), f"127.0.0.1:{port}")
        policy = write_policy(tmp_path / "p.yaml", "host=127.0.0.1 port=1 dbname=x",
                              metrics={"listen": f"127.0.0.1:{port}"})  # fmt: skip
        assert main(["run", "--policy", str(policy)]) == 2  # refused with the policy's line
    err = capsys.readouterr().err
    assert "in use" in err and "metrics.listen" in err and "p.yaml:" in err
    assert "Traceback" not in err


def test_every_dashboard_query_names_an_exported_metric() -> None:
    metrics = Metrics(database="shop")
    metrics.build_seconds.labels("create_index", "applied").observe(1)
    metrics.verdict_seconds.labels("keep").observe(1)
    metrics.proposals.labels("create_index").inc()
    metrics.guard_rejections.labels("frozen").inc()
    metrics.cycles.labels("sample", "ok").inc()
    metrics.reloads.labels("ok").inc()
    metrics.sampled()
    exported = {s.name for f in exposition(metrics) for s in f.samples}
    dashboards = sorted((Path(__file__).parent.parent / "dashboards").glob("*.json"))
    assert dashboards, "no dashboard in dashboards/"
    for path in dashboards:
        board = json.loads(path.read_text())
        exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
        exprs += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
        assert len(exprs) >= 10
        for expr in exprs:
            names = set(re.findall(r"\bpg_tuner_[a-z_]+", expr))
            assert names, f"{path.name}: a query that names no pg-tuner metric: {expr}"
            missing = names - exported
            assert not missing, f"{path.name}: {expr} names {missing}, which /metrics lacks"
        assert all('database=~"$database"' in t["expr"] for p in board["panels"]
                   for t in p["targets"]), "every panel follows the database picker"  # fmt: skip
