"""The daemon: APScheduler jobs (sample, advise, act, verify, housekeeping), one at a time each.

The `Daemon` owns the policy, the scheduler, signals and reload; the work lives in
`tuner.jobs`, whose jobs each return a one-line verdict (`FROZEN: ...`, `KEPT: ...`) that
is logged, sent to systemd as STATUS=, exported as metrics, and handed to `on_event` (a
`Notice`) for whoever watches in-process (the demo, the tests).

    SIGTERM/SIGINT  stop starting jobs; a running statement gets `timeouts.shutdown_grace`,
                    then is cancelled and cleaned up; the journal is written; exit 0
    SIGHUP          re-read the policy; a bad one is refused, its errors logged, the old kept
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from tuner import log
from tuner.api import Api, is_loopback
from tuner.config import Policy, load_policy
from tuner.errors import DatabaseUnavailable, JournalError, PolicyError, TunerError
from tuner.jobs import act, advise, gate, housekeeping, resume, sample, verify
from tuner.jobs.context import Context
from tuner.jobs.context import Notice as Notice  # what observers are handed
from tuner.metrics import Liveness, Metrics, MetricsServer, parse_listen
from tuner.notify import Notifier

_log = log.get("daemon")

JOBS: dict[str, Callable[[Context], str]] = {
    "sample": sample.run,
    "advise": advise.run,
    "act": act.run,
    "verify": verify.run,
    "housekeeping": housekeeping.run,
}


NoticeSink = Callable[[Notice], None]


@dataclass
class Backoff:
    """Exponential retry delays: first, 2·first, 4·first ... capped at `cap` seconds."""

    first: float = 1.0
    cap: float = 60.0
    failures: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2.0**self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class Daemon:
    """Runs the jobs on a schedule until SIGTERM; reloads the policy on SIGHUP."""

    def __init__(
        self,
        policy: Policy,
        *,
        policy_path: Path | None = None,
        password: str | None = None,
        on_event: NoticeSink | None = None,
        notifier: Notifier | None = None,
        metrics_listen: str | None = "policy",
    ) -> None:
        self.policy = policy
        self.policy_path = policy_path
        self.notifier = notifier or Notifier()
        self.metrics = Metrics(database=_database_of(policy.target.dsn))
        self.health = Liveness(stale_after=_stale_after(policy))
        self._listen = policy.metrics.listen if metrics_listen == "policy" else metrics_listen
        self._sinks: list[NoticeSink] = [on_event] if on_event else []
        self.ctx = Context(policy, password=password, metrics=self.metrics, emit=self.emit)
        self.backoff = Backoff(cap=max(60.0, policy.schedule.sample_interval.total_seconds()))
        self.last_verdict = "STARTING"
        self.server: MetricsServer | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._wake = threading.Event()
        self._stop_requested = False
        self._reload_requested = False
        self._running: dict[str, float] = {}
        self._idle = threading.Condition()
        self._retry_at: float | None = None
        self.degraded = False
        self._heartbeat = time.monotonic()

    # --- events -----------------------------------------------------------------------------

    def subscribe(self, sink: NoticeSink) -> None:
        self._sinks.append(sink)

    def emit(self, event: Notice) -> None:
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:  # an observer's bug must not stop the tuner
                _log.exception("daemon.observer_failed", kind=event.kind)

    def _verdict(self, job: str, text: str) -> str:
        self.last_verdict = text
        _log.info("cycle.verdict", job=job, verdict=text)
        self.notifier.status(text)
        self.emit(Notice("verdict", text, job=job))
        return text

    # --- jobs -------------------------------------------------------------------------------

    def run_job(self, job: str) -> str:
        """Run one job now (the scheduler's entry point too) and return its verdict."""
        with self._idle:
            self._running[job] = time.monotonic()
        try:
            return self._run_job(job)
        finally:
            with self._idle:
                self._running.pop(job, None)
                self._idle.notify_all()

    def _run_job(self, job: str) -> str:
        if self._stop_requested:
            return self._verdict(job, "STOPPING: not starting new work")
        if self._retry_at is not None and job != "reconnect":
            wait = max(0.0, self._retry_at - time.monotonic())
            return self._verdict(job, f"DEGRADED: database unreachable, retry in {wait:.0f}s")
        if job == "reconnect":
            return self.reconnect()
        try:
            self.ctx.fresh()
            held = gate.held(self.ctx, job) if job != "sample" else None
            text = held or JOBS[job](self.ctx)
        except DatabaseUnavailable as exc:
            return self._degraded(job, str(exc))
        except JournalError as exc:  # a full disk: stop acting, say why, try again each job
            self.ctx.journal_fault = str(exc)
            self.metrics.cycles.labels(job, "error").inc()
            self.health.problem = self.ctx.problem()
            _log.error("journal.unwritable", job=job, error=str(exc))
            return self._verdict(
                job, f"DEGRADED: {exc}; not acting until the journal can be written"
            )
        except Exception as exc:  # the cycle boundary: log it, report it, keep running
            _log.exception("cycle.failed", job=job)
            self.metrics.cycles.labels(job, "error").inc()
            self.health.failed(f"{job} failed: {type(exc).__name__}: {exc}")
            return self._verdict(job, f"ERROR: {job} failed: {type(exc).__name__}: {exc}")
        self.metrics.cycles.labels(job, "ok").inc()
        self.health.succeeded()
        self.health.problem = self.ctx.problem()
        self._hurry_act(job, text)
        return self._verdict(job, text)

    def _hurry_act(self, job: str, text: str) -> None:
        """Bring act's next turn forward: at once when nothing is in flight any more (a
        verdict, an action that needs none: the next one's baseline may be the samples
        already taken), and to a baseline's end when that comes before act's next turn."""
        scheduler = self._scheduler
        if scheduler is None or self._stop_requested or not scheduler.running:
            return
        now = datetime.now(UTC)
        flight = self.ctx.flight
        if (job == "verify" and text.startswith(("KEPT", "ROLLED BACK"))) or (
            job == "act" and text.startswith(("APPLIED", "SKIPPED")) and flight is None
        ):
            when = now
        elif job == "act" and text.startswith("BASELINE") and flight is not None:
            when = max(now, flight.due(self.policy.resolved.baseline_window))
        else:
            return
        act = scheduler.get_job("act")
        if act is not None and (act.next_run_time is None or when < act.next_run_time):
            scheduler.modify_job("act", next_run_time=when)

    def _degraded(self, job: str, reason: str) -> str:
        delay = self.backoff.next_delay()
        first, self.degraded = not self.degraded, True
        self._retry_at = time.monotonic() + delay
        self.metrics.degraded.set(1)
        self.metrics.cycles.labels(job, "unreachable").inc()
        self.health.failed(f"database unreachable: {reason}", reachable=False)
        self.ctx.disconnect()
        if first:
            self.emit(Notice("degraded", reason, job=job))
        _log.warning("daemon.degraded", job=job, reason=reason, retry_in=delay)
        if self._scheduler is not None and not self._stop_requested:
            self._scheduler.add_job(
                self.run_job, "date", args=["reconnect"], id="reconnect", replace_existing=True,
                run_date=datetime.now(UTC) + timedelta(seconds=delay), misfire_grace_time=None,
            )  # fmt: skip
        return self._verdict(job, f"DEGRADED: database unreachable, retry in {delay:.0f}s")

    def _resume(self) -> str:
        self.ctx.fresh()
        return resume.run(self.ctx)

    def reconnect(self) -> str:
        """Try the database again; on success resume from the journal."""
        try:
            text = self._resume()
        except DatabaseUnavailable as exc:
            return self._degraded("reconnect", str(exc))
        self._retry_at, self.degraded = None, False
        self.backoff.reset()
        self.metrics.degraded.set(0)
        self.health.succeeded()
        return self._verdict("reconnect", text)

    # --- running ------------------------------------------------------------------------------

    def start(self, serve_metrics: bool = True) -> str:
        """Take leadership, replay the journal, start metrics; the first verdict."""
        if serve_metrics and self._listen and self.server is None:
            host = parse_listen(self._listen)[0]
            api = Api(self.policy.journal.path, self.api_status, loopback=is_loopback(host),
                      token_file=self.policy.metrics.token_file)  # fmt: skip
            self.server = MetricsServer(self.metrics, self.health, self._listen, api).start()
        try:
            text = self._resume()
            self.health.succeeded()
        except DatabaseUnavailable as exc:
            return self._degraded("start", str(exc))
        return self._verdict("start", text)

    def api_status(self) -> dict[str, Any]:
        """What GET /status answers: the daemon now."""
        ok, reason = self.health.check()
        return {
            "verdict": self.last_verdict, "mode": self.policy.mode.value,
            "level": self.policy.level.value, "database": self.metrics.database,
            "ready": ok, "ready_reason": reason, "degraded": self.degraded,
        }  # fmt: skip

    def run_once(self, pause: float | None = None) -> str:
        """One full cycle: sample, pause, sample, advise, act, verify; the cycle's verdict."""
        self.start(serve_metrics=False)
        if self._retry_at is not None:
            return self.last_verdict
        interval = _seconds(self.policy.schedule.sample_interval)
        gap = pause if pause is not None else min(5.0, interval)
        verdicts = [self.run_job("sample")]
        time.sleep(gap)
        for job in ("sample", "advise", "act", "verify"):
            verdicts.append(self.run_job(job))
            if self._retry_at is not None:
                break
        return most_important(verdicts)

    def run(self, install_signals: bool = True) -> int:
        """Schedule the jobs and block until stopped; exit status 0."""
        if install_signals:
            self._install_signals()
        self._scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"max_instances": 1, "coalesce": True,
                                        "misfire_grace_time": None},
        )  # fmt: skip
        self._scheduler.start()
        try:
            self.start()
        except TunerError:  # e.g. the metrics port is taken: said once, clearly, by the CLI
            self._scheduler.shutdown(wait=False)
            raise
        self._schedule_jobs()
        self.notifier.ready(self.last_verdict)
        self.emit(Notice("started", self.last_verdict))
        _log.info(
            "daemon.started", mode=self.policy.mode.value, policy_level=self.policy.level.value
        )
        try:
            self._main_loop()
        finally:
            self._shutdown()
        return 0

    def request_stop(self) -> None:
        self._stop_requested = True
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    def _schedule_jobs(self) -> None:
        assert self._scheduler is not None
        s = self.policy.schedule
        now = datetime.now(UTC)
        every = {
            "sample": _seconds(s.sample_interval),
            "advise": _seconds(s.advise_interval),
            "act": _seconds(s.sample_interval),
            "verify": _seconds(s.sample_interval),
            "housekeeping": max(_seconds(s.advise_interval), 3600.0),
        }
        for job, seconds in every.items():
            first = now + timedelta(seconds=seconds if job == "housekeeping" else 0)
            if job in ("advise",):
                first = now + timedelta(seconds=min(seconds, 2 * every["sample"]))
            self._scheduler.add_job(
                self.run_job, "interval", args=[job], id=job, replace_existing=True,
                seconds=seconds, next_run_time=first,
            )  # fmt: skip
        if self.notifier.watchdog_interval:
            self._scheduler.add_job(
                self._beat, "interval", id="heartbeat", replace_existing=True,
                seconds=self.notifier.watchdog_interval / 2,
            )  # fmt: skip

    def _beat(self) -> None:
        self._heartbeat = time.monotonic()

    def _main_loop(self) -> None:
        interval = self.notifier.watchdog_interval
        tick = min(1.0, interval) if interval else 1.0
        while not self._stop_requested:
            self._wake.wait(tick)
            self._wake.clear()
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            if interval and time.monotonic() - self._heartbeat < 2 * interval:
                self.notifier.watchdog()  # only while the scheduler still runs jobs

    def reload(self) -> bool:
        """Re-read the policy file; keep the running one if the new one is bad."""
        if self.policy_path is None:
            _log.warning("policy.reload_skipped", reason="no policy file to re-read")
            return False
        self.notifier.reloading()
        try:
            new = load_policy(self.policy_path)
        except PolicyError as exc:
            for problem in exc.problems:
                _log.error("policy.refused", problem=problem)
            self.metrics.reloads.labels("refused").inc()
            text = f"RELOAD REFUSED: {len(exc.problems)} problem(s); running policy kept"
            self.emit(Notice("reload", text, figures={"problems": list(exc.problems)}))
            self.notifier.ready(text)
            return False
        self.policy = new
        note = self.ctx.set_policy(new)
        self.health.stale_after = _stale_after(new)
        if self._scheduler is not None:
            self._schedule_jobs()
        self.metrics.reloads.labels("ok").inc()
        text = f"RELOADED: mode {new.mode.value}, level {new.level.value}"
        text += f"; {note}" if note else ""
        _log.info("policy.reloaded", mode=new.mode.value, policy_level=new.level.value)
        self.emit(Notice("reload", text))
        self.notifier.ready(text)
        return True

    def _shutdown(self) -> None:
        """Stop starting jobs, give running ones the grace, cancel, write the journal."""
        self.notifier.stopping("STOPPING: finishing or cancelling the running statement")
        _log.info("daemon.stopping", running=sorted(self._running))
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        grace = _seconds(self.policy.timeouts.shutdown_grace)
        if not self._wait_idle(grace):
            _log.warning("daemon.cancelling", running=sorted(self._running), grace=grace)
            self.ctx.cancel()
            self._wait_idle(30.0)
        self.close()
        self.emit(Notice("stopped", "STOPPED"))
        _log.info("daemon.stopped")

    def close(self) -> None:
        """Release the connections, the metrics port and the notify socket."""
        self.ctx.close()
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.notifier.close()

    def _wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _install_signals(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        def hup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)


_ORDER = ("DEGRADED", "ERROR", "STUCK", "RECOVERED", "ROLLED BACK", "FAILED", "REJECTED",
          "KEPT", "APPLIED", "APPLYING", "FROZEN", "CLOSED", "HELD", "BASELINE", "VERIFYING",
          "QUEUED", "PROPOSED", "HOUSEKEEPING", "RELOADED", "RELOAD REFUSED", "STARTED", "LEADER",
          "OBSERVE", "IDLE")  # fmt: skip


def most_important(verdicts: list[str]) -> str:
    """The verdict an operator should see first, of several jobs' verdicts."""

    def rank(text: str) -> int:
        head = text.split(":", 1)[0]
        return _ORDER.index(head) if head in _ORDER else len(_ORDER)

    return min(reversed(verdicts), key=rank) if verdicts else "IDLE"


def _seconds(value: timedelta) -> float:
    return value.total_seconds()


def _database_of(dsn: str) -> str:
    """The database a DSN names, for the metrics' `database` label ("" when it names none)."""
    from tuner.db import conninfo_to_dict

    try:
        return str(conninfo_to_dict(dsn).get("dbname") or "")
    except Exception:  # a DSN the driver cannot read fails later, with its own message
        return ""


def _stale_after(policy: Policy) -> float:
    """How long /healthz tolerates no successful cycle: three sample intervals, at least 60s."""
    return max(60.0, 3 * _seconds(policy.schedule.sample_interval))
