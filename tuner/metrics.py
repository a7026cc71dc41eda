"""Prometheus metrics and /healthz for the daemon, on the policy's `metrics.listen` address
(default 127.0.0.1:8187: postgres_exporter, often beside it, has 9187).

Each daemon owns its registry (no process-wide globals), so tests and the demo can run
several. Every series carries the `database` the daemon tunes, so one Prometheus can scrape
a tuner per database; names follow Prometheus' conventions (`_total` counters, base units,
no `_created` series). /healthz answers 200 while the last cycle succeeded recently and the
database was reachable, else 503 with the reason as the body.
"""

from __future__ import annotations

import errno
import json
import platform
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tuner import __version__, log
from tuner.api import Api
from tuner.errors import TunerError
from tuner.models import ActionState
from tuner.policyfile import parse_listen as parse_listen

_log = log.get("metrics")
disable_created_metrics()  # type: ignore[no-untyped-call]  # `x_created` doubles the series

DEFAULT_PORT = 8187  # not 9187: that is postgres_exporter's, often on the same host
# An index build takes seconds to hours; a verdict minutes to hours.
BUILD_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600)
VERDICT_BUCKETS = (60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 12 * 3600, 24 * 3600)


class PortTaken(TunerError):
    """The metrics address is in use by another process."""


class _SampleAge(Collector):
    """Seconds since the last snapshot; no sample at all before the first (never NaN)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "pg_tuner_last_sample_age_seconds",
            "Seconds since the last successful snapshot (absent before the first)",
        )
        last = self._metrics._last_sample
        if last is not None:
            family.add_metric([], time.monotonic() - last)
        yield family


class _Labelled(Collector):
    """The daemon's registry with `database` added to every series."""

    def __init__(self, inner: CollectorRegistry, database: str) -> None:
        self._inner, self._database = inner, database

    def collect(self) -> Iterable[Metric]:
        for family in self._inner.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for s in family.samples:
                labels = {"database": self._database, **s.labels}
                out.add_sample(s.name, labels, s.value, s.timestamp, s.exemplar)
            yield out


class Metrics:
    """The daemon's instruments; `pg_tuner_` prefixed, one registry per daemon."""

    def __init__(self, database: str = "") -> None:
        self.database = database
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._exposed = CollectorRegistry(auto_describe=False)
        self._exposed.register(_Labelled(r, database) if database else _Passthrough(r))
        self.samples = Counter("pg_tuner_samples", "Snapshots taken", registry=r)
        self._last_sample: float | None = None
        r.register(_SampleAge(self))
        self.build_info = Gauge(
            "pg_tuner_build_info", "pg-tuner's version (always 1)", ["version", "python"],
            registry=r,
        )  # fmt: skip
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.build_seconds = Histogram(
            "pg_tuner_build_duration_seconds",
            "Time the executor's statements took, by action kind and outcome",
            ["kind", "outcome"], buckets=BUILD_BUCKETS, registry=r,
        )  # fmt: skip
        self.verdict_seconds = Histogram(
            "pg_tuner_verdict_duration_seconds",
            "Time from the start of verification to its verdict, by verdict",
            ["verdict"], buckets=VERDICT_BUCKETS, registry=r,
        )  # fmt: skip
        self.storage_used = Gauge(
            "pg_tuner_index_storage_used_bytes",
            "Bytes of the indexes the tuner made and holds, counted against its budget",
            registry=r,
        )
        self.storage_limit = Gauge(
            "pg_tuner_index_storage_limit_bytes", "The policy's index storage budget", registry=r
        )
        self.proposals = Counter(
            "pg_tuner_proposals", "Proposals the advisor made, by kind", ["kind"], registry=r
        )
        self.actions = Gauge(
            "pg_tuner_actions", "Actions in the journal, by current state", ["state"], registry=r
        )
        for state in ActionState:
            self.actions.labels(state.value)
        self.rollbacks = Counter("pg_tuner_rollbacks", "Actions rolled back", registry=r)
        self.builds_in_progress = Gauge(
            "pg_tuner_builds_in_progress", "Statements the executor is running now", registry=r
        )
        self.index_bytes_created = Counter(
            "pg_tuner_index_built_bytes", "Bytes of indexes the tuner built", registry=r
        )
        self.verifications = Counter(
            "pg_tuner_verifications", "Verification verdicts", ["verdict"], registry=r
        )
        for verdict in ("keep", "rollback", "undecided"):
            self.verifications.labels(verdict)
        self.guard_rejections = Counter(
            "pg_tuner_guard_rejections", "Actions a guard held back, by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.frozen = Gauge("pg_tuner_frozen", "1 while a freeze window holds actions", registry=r)
        self.degraded = Gauge(
            "pg_tuner_degraded", "1 while the database is unreachable", registry=r
        )
        self.leader = Gauge(
            "pg_tuner_leader", "1 while this tuner holds the database's advisory lock", registry=r
        )
        self.cycles = Counter(
            "pg_tuner_cycles", "Job runs, by job and outcome", ["job", "outcome"], registry=r
        )
        self.reloads = Counter(
            "pg_tuner_reloads", "Policy reloads, by outcome", ["outcome"], registry=r
        )

    def sampled(self) -> None:
        self.samples.inc()
        self._last_sample = time.monotonic()

    def storage(self, used: int, limit: int) -> None:
        self.storage_used.set(used)
        self.storage_limit.set(limit)

    def render(self) -> bytes:
        return generate_latest(self._exposed)


class _Passthrough(Collector):
    def __init__(self, inner: CollectorRegistry) -> None:
        self._inner = inner

    def collect(self) -> Iterable[Metric]:
        return self._inner.collect()


@dataclass
class Liveness:
    """What /healthz reports: the last cycle's outcome and whether the database answered."""

    stale_after: float
    last_success: float | None = None
    reachable: bool = True
    reason: str = "starting: no cycle has completed yet"
    problem: str | None = None  # a standing condition (journal, stuck action): unhealthy

    def succeeded(self) -> None:
        self.last_success = time.monotonic()
        self.reachable = True

    def failed(self, reason: str, *, reachable: bool = True) -> None:
        self.reachable = reachable
        self.reason = reason

    def check(self) -> tuple[bool, str]:
        """(healthy, reason)."""
        if not self.reachable:
            return False, self.reason
        if self.problem is not None:
            return False, self.problem
        if self.last_success is None:
            return False, self.reason
        age = time.monotonic() - self.last_success
        if age > self.stale_after:
            return False, f"last successful cycle {age:.0f}s ago (limit {self.stale_after:.0f}s)"
        return True, "ok"


class MetricsServer:
    """A small threaded HTTP server: GET /metrics and GET /healthz; anything else 404."""

    def __init__(
        self, metrics: Metrics, health: Liveness, listen: str, api: Api | None = None
    ) -> None:
        host, port = parse_listen(listen)
        handler = _handler(metrics, health, api)
        family_server = _server_class(host)
        try:
            self._server = family_server((host, port), handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(
                    f"metrics.listen {listen}: the port is already in use by another process"
                    + (" (9187 is postgres_exporter's)" if port == 9187 else "")
                    + f"; set metrics.listen in the policy to a free port (default "
                    f"127.0.0.1:{DEFAULT_PORT}), or to null to switch the metrics off"
                ) from None
            raise PortTaken(f"metrics.listen {listen}: cannot listen: {exc.strerror}") from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pg-tuner-metrics", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> MetricsServer:
        self._thread.start()
        _log.info("metrics.listening", host=self.address[0], port=self.address[1])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    if ":" not in host:
        return ThreadingHTTPServer
    import socket

    class V6(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    return V6


_NOT_FOUND = b"not found: try /metrics, /livez, /readyz, /status, /actions or /openapi.json\n"


def _handler(metrics: Metrics, health: Liveness, api: Api | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "pg-tuner"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            reply = api.get(path, self.headers.get("Authorization")) if api else None
            if reply is not None:
                body = (json.dumps(reply[1], indent=1, default=str) + "\n").encode()
                self._reply(reply[0], body, "application/json")
            elif path == "/metrics":
                self._reply(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif path == "/livez":
                self._reply(200, b"ok\n", "text/plain")
            elif path in ("/readyz", "/healthz"):  # /healthz: the old name, kept
                ok, reason = health.check()
                self._reply(200 if ok else 503, (reason + "\n").encode(), "text/plain")
            else:
                self._reply(404, _NOT_FOUND, "text/plain")

        def _refuse(self) -> None:
            self._reply(405, b"read-only: only GET is served\n", "text/plain")

        do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not events worth a log line."""

    return Handler
