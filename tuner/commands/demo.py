"""`pg-tuner demo`: a throwaway PostgreSQL with a booking workload, tuned live in five minutes.

The story it tells, on a real server with real measurements:
1. a booking application with primary keys only runs a mixed read/write workload;
2. a colleague asks for an index on bookings(created_at) (the planner likes it) — pg-tuner
   baselines, builds it, measures, and rolls it back on its own because it makes the
   classic `WHERE package_id = $1 ORDER BY created_at DESC LIMIT 20` far slower;
3. pg-tuner's own advice: indexes proposed with their reasons, built, verified, kept;
4. a freeze window is put in the policy (SIGHUP-style reload) and holds the next action;
5. the audit history, a before/after latency table, and `pg-tuner report`'s HTML page.
Everything runs in a temporary directory that is removed at the end (Ctrl-C too).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import shutil
import signal
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from tuner import db, log, series
from tuner.config import load_policy
from tuner.daemon import Daemon, Notice
from tuner.demo import booking
from tuner.errors import QueryFailed, TunerError
from tuner.journal import Journal
from tuner.models import Action, ActionKind, ActionState, IndexSpec, TableRef
from tuner.sandbox import Sandbox
from tuner.statements import index_name

# The workload's mix for the demo: the trap query and the queries the tuner will fix
# are frequent enough to reach the verification's minimum number of calls in seconds.
WEIGHTS = {
    "user_bookings": 10, "package_availability": 4, "package_reviews": 8, "package_rating": 4,
    "search_packages": 4, "login": 6, "booking_payments": 6, "pending_payments": 0.5,
    "latest_bookings": 3, "package_latest_bookings": 8, "revenue_by_destination": 0.1,
    "event_by_trace": 0.1, "create_booking": 4, "create_payment": 3, "confirm_booking": 3,
    "settle_payments": 2, "cancel_booking": 1, "add_review": 1, "log_events": 6,
}  # fmt: skip

POLICY = """\
# The demo's policy: apply mode with windows of seconds instead of minutes.
target:
  dsn: "{dsn}"
mode: apply
level: aggressive
timezone: UTC
thresholds:
  baseline_window: {window}s
  verification_window: {window}s
  max_indexes_per_day: 10
  max_query_regression: 0.2
  min_net_gain: 0.05
schedule:
  sample_interval: 3s
  advise_interval: 20s
  min_calls: 8
  max_window_extensions: 2
journal:
  path: "{journal}"
metrics:
  listen: null
{freeze}"""

FREEZE = """\
freeze:
  - name: demo-freeze
    from: {start}
    to: {end}
"""


class Show:
    """Prints what happens as it happens, with the time since the workload started."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.names: dict[str, str] = {}
        self.t0 = time.monotonic()
        self.last_verdict = ""
        self.kept = 0
        self.rolled_back = 0
        self.frozen = threading.Event()
        self.baselining = threading.Event()
        self._verdicts: dict[str, str] = {}
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        text = self.named(text)
        lines = textwrap.wrap(text, 110) or [""]
        with self._lock:
            print(f"[{self.elapsed():6.1f}s] " + "\n          ".join(lines), flush=True)

    def named(self, text: str) -> str:
        """Query ids replaced by the workload's statement names, which a reader knows."""
        ids = set(_QUERYID.findall(text))
        if self.dsn and ids - self.names.keys():
            self.names.update(_statement_names(self.dsn))
        return _QUERYID.sub(lambda m: self.names.get(m.group(0), m.group(0)), text)

    def event(self, event: Notice) -> None:
        if event.kind == "verdict":
            if event.text.startswith("FROZEN"):
                self.frozen.set()
            quiet = event.job == "sample" or event.text.startswith(("IDLE", "OBSERVE"))
            if not quiet and event.text != self._verdicts.get(event.job or ""):
                self._verdicts[event.job or ""] = event.text
                self.say(f"verdict   {_short(event.text)}")
            return
        if event.kind == "proposal":
            self.say(f"proposal  {event.text}")
            return
        if event.kind == "transition":
            self.say(f"{event.state or event.kind:<9} {event.text}")
            if event.state == "baselining":
                self.baselining.set()
            if event.state == ActionState.KEPT.value:
                self.kept += 1
            if event.state == ActionState.ROLLED_BACK.value:
                self.rolled_back += 1
            return
        if event.kind in ("reload", "degraded"):
            self.say(f"{event.kind:<9} {event.text}")


_QUERYID = re.compile(r"-?\b\d{12,20}\b")
_LITERALS = re.compile(r"\$\d+|%s|'[^']*'|\b\d+(?:\.\d+)?\b")


def _shape(sql: str) -> str:
    return " ".join(_LITERALS.sub("?", sql).lower().split())


def _statement_names(dsn: str) -> dict[str, str]:
    """queryid → template name, by matching pg_stat_statements' texts to the templates."""
    shapes = {_shape(t.sql): name for name, t in booking.TEMPLATES.items()}
    with contextlib.suppress(TunerError), db.connect(dsn) as conn:
        rows = db.fetch(conn, "SELECT queryid::text AS id, query FROM pg_stat_statements "
                              "WHERE dbid = (SELECT oid FROM pg_database "
                              "WHERE datname = current_database())")  # fmt: skip
        return {r["id"]: shapes[_shape(r["query"])] for r in rows if _shape(r["query"]) in shapes}
    return {}


def _short(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _watch_builds(dsn: str, show: Show, stop: threading.Event) -> None:
    """Print index build progress from pg_stat_progress_create_index while builds run."""
    last = ""
    with contextlib.suppress(QueryFailed), db.connect(dsn) as conn:
        while not stop.wait(0.5):
            rows = db.fetch(
                conn,
                """
                SELECT c.relname AS table, p.phase,
                       CASE WHEN p.blocks_total > 0 THEN 100.0 * p.blocks_done / p.blocks_total
                            WHEN p.tuples_total > 0 THEN 100.0 * p.tuples_done / p.tuples_total
                       END AS pct
                FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid""",
            )
            for row in rows:
                pct = f"{row['pct']:.0f}%" if row["pct"] is not None else ""
                line = f"building on {row['table']}: {row['phase']} {pct}"
                if line != last:
                    show.say(f"progress {line}")
                    last = line


def _ask_for_trap_index(journal: Journal) -> str:
    """Journal what a colleague asks for: an index on bookings(created_at), approved."""
    table = TableRef("public", "bookings")
    spec = IndexSpec(table, ("created_at",))
    action = Action(
        id="demo-created-at", kind=ActionKind.CREATE_INDEX, table=table, index=spec,
        index_name=index_name(spec),
        reason="a colleague's request: 'latest bookings' is slow; the planner estimates an "
               "index on created_at makes it 100x cheaper",
    )  # fmt: skip
    actor = "operator:demo"
    journal.append(ActionState.PROPOSED, action=action, actor=actor, reason=action.reason)
    journal.append(ActionState.APPROVED, action=action, actor=actor,
                   reason="approved without measuring — pg-tuner will measure")  # fmt: skip
    return action.id


def _write_policy(path: Path, dsn: str, journal: Path, window: int, freeze: str = "") -> None:
    path.write_text(POLICY.format(dsn=dsn, window=window, journal=journal, freeze=freeze))


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """The demo prints its own story; the daemon's JSON events go to a file instead."""
    sink = io.StringIO()
    log.configure("warning", stream=sink, json=True)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.configure("info")


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread so every `finally` runs: the daemon stops, the
    server stops, its directory goes (as on Ctrl-C); exit status 143 (128 + SIGTERM)."""


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except Terminated:
        print("\npg-tuner demo: stopped by SIGTERM; its PostgreSQL is stopped and its "
              "temporary directory removed", flush=True)  # fmt: skip
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    with _stop_on_sigterm():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget = 60.0 * float(getattr(args, "minutes", 5.0))
    window = 20
    print("pg-tuner demo: a throwaway PostgreSQL 15, a booking application, and pg-tuner in "
          "apply mode with windows of seconds.\nNothing outside a temporary directory is "
          f"touched; the report goes to {out}.\n")  # fmt: skip
    with Sandbox() as sandbox, _quiet_logs():
        dsn = sandbox.create_database("booking")
        show = Show(dsn)
        show.say(f"PostgreSQL 15 on 127.0.0.1:{sandbox.port} in {sandbox.root}")
        started = time.monotonic()
        rows = booking.load(dsn, args.scale)
        show.say(f"loaded {sum(rows.values()):,} rows in {time.monotonic() - started:.0f}s: "
                 + ", ".join(f"{k} {v:,}" for k, v in rows.items()))  # fmt: skip
        show.say("tables have primary keys only: finding the other indexes is pg-tuner's job")

        work = out / "run"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        journal_path, policy_path = work / "journal.jsonl", work / "policy.yaml"
        _write_policy(policy_path, dsn, journal_path, window)
        policy = load_policy(policy_path)

        driver = booking.Driver(dsn, threads=4, weights=WEIGHTS, seed=1)
        stop_watch = threading.Event()
        daemon: Daemon | None = None
        daemon_thread: threading.Thread | None = None
        try:
            driver.start(duration_s=budget + 120)
            show.t0 = time.monotonic()
            show.say("workload started: 4 client threads, 19 statement kinds, reads and writes")
            warmup = 15.0
            time.sleep(warmup)

            trap = _ask_for_trap_index(Journal(journal_path))
            show.say(f"operator asks for an index on bookings(created_at) — action {trap}")
            daemon = Daemon(policy, policy_path=policy_path, on_event=show.event,
                            metrics_listen=None)  # fmt: skip
            daemon_thread = threading.Thread(
                target=daemon.run, kwargs={"install_signals": False}, daemon=True
            )
            daemon_thread.start()
            watcher = threading.Thread(
                target=_watch_builds, args=(dsn, show, stop_watch), daemon=True
            )
            watcher.start()

            freeze_at = budget - 60
            _wait(lambda: show.rolled_back >= 1 and show.kept >= 2, freeze_at - show.elapsed())
            # Freeze while the next action is in its baseline: its build is then held back.
            show.baselining.clear()
            _wait(show.baselining.is_set, 2 * window + 15)
            now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
            freeze = FREEZE.format(start=now - timedelta(minutes=1), end=now + timedelta(hours=1))
            _write_policy(policy_path, dsn, journal_path, window, freeze)
            show.say("an operator adds a freeze window 'demo-freeze' and reloads the policy")
            daemon.request_reload()
            if not _wait(show.frozen.is_set, window + 20):
                show.say("(no action was waiting while frozen: nothing to hold back)")
            show.names.update(_statement_names(dsn))
            show.dsn = ""  # the cluster goes away next: names are known by now
            time.sleep(5)
        finally:
            stop_watch.set()
            if daemon is not None:
                daemon.request_stop()
            if daemon_thread is not None:
                daemon_thread.join(timeout=60)
            report = driver.stop(timeout_s=30)

    end = report.seconds
    print("\n== What pg-tuner did (pg-tuner audit) ==")
    from tuner.cli import main as cli_main

    history = io.StringIO()
    with contextlib.redirect_stdout(history):
        cli_main(["audit", "--journal", str(journal_path)])
    print(show.named(history.getvalue()), end="")
    print("\n== Latency per query: first 15 s (before) vs last 30 s (after) ==")
    print(booking.compare_table(report.stats(0.0, 15.0), report.stats(max(15.0, end - 30), end)))
    print(f"\nclient errors during the whole run: {report.errors} of {report.calls:,} calls")
    shutil.copy(journal_path, out / "journal.jsonl")
    shutil.copy(series.path_for(journal_path), series.path_for(out / "journal.jsonl"))
    page = out / "report.html"
    print("\n== The report (pg-tuner report) ==")
    cli_main(["report", "--policy", str(policy_path), "--title", "pg-tuner demo",
              "--out", str(page)])  # fmt: skip
    print(f"journal: {out / 'journal.jsonl'} (pg-tuner audit --journal {out / 'journal.jsonl'})")
    return 0
