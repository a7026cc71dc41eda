"""`pg-tuner demo`: a throwaway PostgreSQL with a booking workload, tuned live in five minutes.

The story it tells, on a real server with real measurements:
1. a booking application with primary keys only runs a mixed read/write workload;
2. a colleague asks for an index on bookings(created_at) (the planner likes it) — pg-tuner
   baselines, builds it, measures, and rolls it back on its own because it makes the
   classic `WHERE package_id = $1 ORDER BY created_at DESC LIMIT 20` far slower;
3. pg-tuner's own advice: indexes proposed with their reasons, built, verified, kept;
4. a freeze window is put in the policy (SIGHUP-style reload) and holds the next action;
5. the audit history, a before/after latency table, and `pg-tuner report`'s HTML page.
Everything runs in a temporary directory that is removed at the end (Ctrl-C and SIGTERM too).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import shutil
import signal
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
    """Prints what happens as it happens, every line on one clock: seconds since the start.

    The daemon's notices are relayed on the same clock, its wall-clock times rewritten as
    seconds on it, a verdict that only restates the transition just printed is left out,
    and a line is never printed twice in a row.
    """

    WIDTH = 180  # relayed texts longer than this are shortened between clauses

    def __init__(self) -> None:
        self.dsn = ""
        self.names: dict[str, str] = {}
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.relaying = True
        self.sandbox_root: Path | None = None
        self.kept = 0
        self.rolled_back = 0
        self.frozen = threading.Event()
        self.baselining = threading.Event()
        self._verdicts: dict[str, str] = {}
        self._states: dict[str, str] = {}  # action id → the last transition printed
        self._last = ""
        self._lock = threading.RLock()  # a signal may stop the main thread while it prints

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str, width: int | None = None) -> None:
        """One line on the clock: statement names, clock times, shortened if `width`."""
        text = self.clocked(self.named(text))
        self._print(_short(text, width) if width else text)

    def block(self, text: str) -> None:
        """Several lines (a command's output), each on the clock; blank lines left out."""
        for line in self.clocked(self.named(text)).splitlines():
            if line.strip():
                self._print(line)

    def _print(self, line: str) -> None:
        with self._lock:
            if line == self._last:
                return
            self._last = line
            print(f"{clock(self.elapsed())} {line}", flush=True)

    def clocked(self, text: str) -> str:
        """Wall-clock times (`2026-12-06 11:05:57 UTC`) as seconds on the demo's clock."""

        def seconds(match: re.Match[str]) -> str:
            moment = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            return f"{moment.timestamp() - self.wall0:.0f}s"

        return _WALL_CLOCK.sub(seconds, text)

    def named(self, text: str) -> str:
        """Query ids replaced by the workload's statement names, which a reader knows."""
        ids = set(_QUERYID.findall(text))
        if self.dsn and ids - self.names.keys():
            self.names.update(_statement_names(self.dsn))
        return _QUERYID.sub(lambda m: self.names.get(m.group(0), m.group(0)), text)

    def event(self, event: Notice) -> None:
        if not self.relaying:
            return
        if event.kind == "verdict":
            if event.text.startswith("FROZEN"):
                self.frozen.set()
            if self._restates(event):
                return
            self._verdicts[event.job or ""] = event.text
            self.say(f"verdict   {event.text}", self.WIDTH)
            return
        if event.kind == "proposal":
            self.say(f"proposal  {event.text}", self.WIDTH)
            return
        if event.kind == "transition":
            if event.action_id and event.state:
                self._states[event.action_id] = event.state
            self.say(f"{event.state or event.kind:<9} {event.text}", self.WIDTH)
            if event.state == "baselining":
                self.baselining.set()
            if event.state == ActionState.KEPT.value:
                self.kept += 1
            if event.state == ActionState.ROLLED_BACK.value:
                self.rolled_back += 1
            return
        if event.kind in ("reload", "degraded"):
            self.say(f"{event.kind:<9} {event.text}", self.WIDTH)

    def _restates(self, event: Notice) -> bool:
        """Quiet, unchanged since this or another job said it, or said by a transition."""
        text = event.text
        if event.job == "sample" or text.startswith(("IDLE", "OBSERVE")):
            return True
        if text in self._verdicts.values():
            return True
        word = text.split(":", 1)[0]
        action = _ACTION_ID.search(text)
        said = self._states.get(action.group(1)) if action else None
        return said is not None and said in _TOLD_BY.get(word, ())


def clock(seconds: float) -> str:
    """The demo's one clock: `[  42s]`, seconds since `pg-tuner demo` started."""
    return f"[{seconds:4.0f}s]"


# A verdict word → the transitions that already told it (for the same action).
_TOLD_BY = {
    "BASELINE": ("baselining",),
    "APPLYING": ("applying",),
    "APPLIED": ("applied", "verifying"),
    "VERIFYING": ("applied", "verifying"),
    "KEPT": ("kept",),
    "ROLLED BACK": ("rolled_back",),
    "FAILED": ("failed",),
}
_ACTION_ID = re.compile(r"\[([\w-]+)\]")
_WALL_CLOCK = re.compile(r"\b(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) UTC\b")


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


def _short(text: str, width: int) -> str:
    """`text` cut to `width` between clauses, else between words, never after a number
    (its unit would go): a reader sees whole figures or none."""
    if len(text) <= width:
        return text
    head = text[:width]
    for stop in ("; ", ". ", ", ", " "):
        cut = head.rfind(stop)
        while cut > width // 2 and stop == " " and head[cut - 1].isdigit():
            cut = head.rfind(stop, 0, cut)
        if cut > width // 2:
            return text[: cut + len(stop.strip())] + " …"
    return text  # no place to cut: left whole


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
                line = f"building on {row['table']}: {row['phase']} {pct}".rstrip()
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


class Stopped(BaseException):
    """SIGTERM or Ctrl-C, raised in the main thread so every `finally` runs: the daemon and
    the clients stop, the server stops, its directory goes. Not an `Exception`: nothing on
    the way out may catch it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


def _stop(signum: int, frame: FrameType | None) -> None:
    for other in STOP_SIGNALS:  # a second signal must not cut the clean-up short
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signum)


def run(args: argparse.Namespace) -> int:
    """The demo; SIGTERM stops it as Ctrl-C does, exit status 128 + signal (143, 130)."""
    show = Show()
    previous = {signum: signal.signal(signum, _stop) for signum in STOP_SIGNALS}
    sandbox = Sandbox()
    try:
        return _run(args, show, sandbox)
    except Stopped as stopped:
        show.relaying, show.dsn = False, ""
        root = show.sandbox_root or sandbox.root
        sandbox.stop()  # stopped already unless the signal came while it started
        by = STOP_SIGNALS[signal.Signals(stopped.signum)]
        show.say(f"pg-tuner demo: stopped by {by}: daemon and clients stopped, {_gone(root)}")
        return 128 + stopped.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _gone(root: Path | None) -> str:
    """What became of the server and its directory, as checked, not as hoped."""
    if root is not None and root.exists():
        return f"PostgreSQL stopped, but {root} is still there"
    return f"PostgreSQL stopped, {root or 'its directory'} removed"


def _run(args: argparse.Namespace, show: Show, sandbox: Sandbox) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget = 60.0 * float(getattr(args, "minutes", 5.0))
    window = 20
    show.say(
        "pg-tuner demo: a throwaway PostgreSQL 15, a booking application, and pg-tuner "
        "in apply mode with windows of seconds"
    )
    show.say(f"nothing outside a temporary directory is touched; the report goes to {out}")
    with sandbox, _quiet_logs():
        show.sandbox_root = sandbox.root
        dsn = show.dsn = sandbox.create_database("booking")
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
            workload_t0 = time.monotonic()
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
            _wait(
                lambda: show.rolled_back >= 1 and show.kept >= 2,
                freeze_at - (time.monotonic() - workload_t0),
            )
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
            show.relaying = False  # the daemon is done: nothing of it after this line
            report = driver.stop(timeout_s=30)
    show.dsn = ""
    show.say(_gone(show.sandbox_root))

    end = report.seconds
    show.say("== What pg-tuner did (pg-tuner audit) ==")
    status, history = _command(["audit", "--journal", str(journal_path)])
    show.block(history)
    show.say("== Latency per query: first 15 s (before) vs last 30 s (after) ==")
    show.block(
        booking.compare_table(report.stats(0.0, 15.0), report.stats(max(15.0, end - 30), end))
    )
    show.say(f"client errors during the whole run: {report.errors} of {report.calls:,} calls")
    journal = out / "journal.jsonl"
    shutil.copy(journal_path, journal)
    shutil.copy(series.path_for(journal_path), series.path_for(journal))
    show.say(f"journal: {journal} (pg-tuner audit --journal {journal})")
    show.say("== The report (pg-tuner report) ==")
    status, written = _command(["report", "--policy", str(policy_path), "--title",
                                "pg-tuner demo", "--out", str(out / "report.html")])  # fmt: skip
    show.block(written)
    return status


def _command(argv: list[str]) -> tuple[int, str]:
    """Run a pg-tuner command as `pg-tuner ARGV` would; its exit status and what it printed."""
    from tuner.cli import main  # the CLI imports the commands: not at module level

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(argv)
    return status, printed.getvalue()
