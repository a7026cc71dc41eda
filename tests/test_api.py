"""The read-only JSON API on a running daemon's metrics listener, checked against the
OpenAPI document it serves."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import write_policy
from tests.test_audit_cli import history
from tests.test_metrics import wait_until
from tuner.config import load_policy
from tuner.daemon import Daemon


def call(url: str, method: str = "GET", token: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def running(tmp_path: Path, dsn: str, **metrics: Any) -> Iterator[tuple[Daemon, str]]:
    history(tmp_path / "journal.jsonl")  # a1 kept, a2 proposed, a3 rejected
    policy = load_policy(write_policy(tmp_path / "p.yaml", dsn, metrics=metrics))
    daemon = Daemon(policy)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: daemon.server is not None and daemon.health.check()[0])
        assert daemon.server is not None
        yield daemon, f"http://127.0.0.1:{daemon.server.address[1]}"
    finally:
        daemon.request_stop()
        thread.join(30)


@pytest.fixture
def api(tmp_path: Path, dsn: str) -> Iterator[tuple[Daemon, str]]:
    yield from running(tmp_path, dsn, listen="127.0.0.1:0")


def test_every_documented_path_answers_as_documented(api: tuple[Daemon, str]) -> None:
    _, url = api
    status, kind, body = call(url + "/openapi.json")
    assert status == 200 and kind == "application/json"
    document = json.loads(body)
    assert document["openapi"].startswith("3.")
    for path, item in document["paths"].items():
        assert set(item) - {"parameters"} == {"get"}, f"{path}: only GET is documented"
        status, kind, body = call(url + path.replace("{id}", "a1"))
        assert status == 200, (path, body)  # the bodies' schemas: tests/test_api_fuzz.py


def test_the_api_reads_the_journal(api: tuple[Daemon, str]) -> None:
    _, url = api
    actions = json.loads(call(url + "/actions")[2])["actions"]
    assert {(a["id"], a["state"]) for a in actions} == {
        ("a1", "kept"), ("a2", "proposed"), ("a3", "rejected")}  # fmt: skip
    [proposal] = json.loads(call(url + "/proposals")[2])["proposals"]
    assert proposal["id"] == "a2" and proposal["kind"] == "analyze"
    one = json.loads(call(url + "/actions/a1")[2])
    assert one["index_name"] == "ix_orders_customer_id" and one["records"][0]["state"] == "proposed"
    status = json.loads(call(url + "/status")[2])
    assert status["mode"] == "observe" and status["database"] and status["verdict"]
    assert call(url + "/actions/nope")[0] == 404


def test_nothing_writes_and_health_has_its_two_halves(api: tuple[Daemon, str]) -> None:
    # tried: POST, PUT, PATCH and DELETE on the API's paths
    _, url = api
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/actions", "/actions/a2", "/proposals", "/status"):
            assert call(url + path, method)[0] == 405, (method, path)
    assert call(url + "/livez")[:1] == (200,)
    wait_until(lambda: call(url + "/readyz")[0] == 200)
    assert call(url + "/healthz")[0] == 200, "the old name is kept"


def test_beyond_loopback_the_api_needs_the_token(tmp_path: Path, dsn: str) -> None:
    # tried: no token file at all, then no token, a wrong token, the right one
    for _, url in running(tmp_path / "open", dsn, listen="0.0.0.0:0"):
        status, _, body = call(url + "/actions")
        assert status == 403 and "metrics.token_file" in body
        assert call(url + "/metrics")[0] == 200, "metrics stay as they were"
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    for _, url in running(tmp_path / "guarded", dsn, listen="0.0.0.0:0", token_file=str(token)):
        assert call(url + "/actions")[0] == 401
        assert call(url + "/actions", token="wrong")[0] == 401
        assert call(url + "/actions", token="s3cret-token")[0] == 200
        assert call(url + "/openapi.json")[0] == 200, "the document itself is public"
