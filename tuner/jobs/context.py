"""What the jobs share: the sessions, the latest snapshot, the flight, the journal.

`Context.transition` is the one way a job records a decision: it journals the action's new
state, logs it and hands it to the daemon's observers. The journal is read and replayed at
most once per job run (`fresh()` at its start; records the context writes are added as they
are written), so the jobs read `records()` / `statuses()` instead of the file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tuner import db, journal, log, series, workload
from tuner.config import Policy
from tuner.executor import Executor
from tuner.flight import Flight, Phase, Recent
from tuner.journal import Journal, Record
from tuner.ledger import ActionStatus, transition_data
from tuner.metrics import Metrics
from tuner.models import Action, ActionKind, ActionState, LongRunningGroup, Snapshot, TableRef
from tuner.models.records import TransitionData
from tuner.policy import history_from
from tuner.queue import Rejections, applying, unsettled
from tuner.sampler import Sampler
from tuner.statements import index_name

_log = log.get("jobs")


@dataclass(frozen=True)
class Notice:
    """Something the daemon did, for in-process observers: a job's verdict or a transition.

    kind: "verdict" (job, text), "transition" (action_id, state, text, figures),
          "proposal" (action_id, text, figures), "reload" (text), "degraded" (text),
          "leader" (text), "started" / "stopped" (text).
    """

    kind: str
    text: str
    job: str | None = None
    action_id: str | None = None
    state: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Context:
    """The state the jobs share between runs; each job is `run(ctx) -> verdict`."""

    def __init__(
        self,
        policy: Policy,
        *,
        password: str | None,
        metrics: Metrics,
        emit: Callable[[Notice], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.policy = policy
        self.password = password
        self.metrics = metrics
        self._emit = emit
        self.now = clock
        self.lock = threading.RLock()
        self._sample_lock = threading.Lock()
        self.sampler = Sampler.from_dsn(policy.target.dsn, password=password, policy=policy)
        self.executor = Executor(policy.target.dsn, password, policy)
        self.journal = Journal(policy.journal.path)
        self.latest: Snapshot | None = None
        self.advise_base: Snapshot | None = None  # the snapshot the next advice starts from
        self.flight: Flight | None = None
        self.leader = False
        self.rejections = Rejections()
        self._conn: db.Connection | None = None
        # why the journal could not be written, while it cannot: no job acts until it can
        self.journal_fault: str | None = None
        # the journal's chain problems no operator acknowledged: apply mode holds on them
        self.chain_problems: list[str] = []
        self._journal_next: Journal | None = None  # a reloaded path, once nothing is in flight
        # the samples of the last baseline window and the changes of the tables' indexes: a
        # baseline needs no wait when no change of its tables came within the window.
        self.recent = Recent()
        self._series_base: Snapshot | None = None  # the latency series' previous sample
        self._recorder: series.Recorder | None = None
        self._records: tuple[Record, ...] | None = None
        self._generation = 0  # each write and each fresh(): a read that raced one is not kept
        self._statuses: dict[str, ActionStatus] | None = None

    # --- the journal ----------------------------------------------------------------------

    def fresh(self) -> None:
        """Forget the journal read so far: the next read sees what others wrote since (the
        CLI's approvals and rollback requests, recovery's records)."""
        with self.lock:
            self._records = self._statuses = None
            self._generation += 1

    def records(self) -> tuple[Record, ...]:
        with self.lock:
            if self._records is not None:
                return self._records
            current, generation = self.journal, self._generation
        records = tuple(current.read())  # outside the lock: a sample must not wait for it
        with self.lock:  # kept unless a write or fresh() came meanwhile
            if self._records is None and self._generation == generation:
                self._records = records
        return records

    def statuses(self) -> dict[str, ActionStatus]:
        """Each action as the journal last left it (replayed once until the next write)."""
        with self.lock:
            if self._statuses is not None:
                return self._statuses
            generation = self._generation
        statuses = journal.replay(list(self.records()))
        with self.lock:
            if self._statuses is None and self._generation == generation:
                self._statuses = statuses
        return statuses

    def data_of(self, action_id: str) -> TransitionData:
        """The `data` of every record of this action merged, later records winning, typed."""
        return transition_data(list(self.records()), action_id)

    def expected(self, action_id: str) -> tuple[int, ...]:
        """The queries advice expected the action to speed up (journaled with its proposal,
        so a restart keeps them): verification watches them whatever their plans do."""
        return self.data_of(action_id).expected

    def append(self, state: ActionState | journal.EntryKind, **fields: Any) -> Record:
        """Write one record, keeping what the context has read of the journal current."""
        record = self.journal.append(state, **fields)
        with self.lock:
            self._generation += 1
            cached = self._records
            if cached is not None and (not cached or cached[-1].seq < record.seq):
                self._records = (*cached, record)  # not when a read already saw it
            self._statuses = None
        return record

    def transition(
        self,
        state: ActionState,
        action: Action,
        reason: str,
        *,
        figures: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Journal the action's new state, log it and tell the observers."""
        self.append(state, action=action, reason=reason, figures=figures or {}, data=data)
        _log.info("action.transition", action=action.id, state=state.value, reason=reason)
        self.emit("transition", reason, action_id=action.id, state=state.value,
                  figures=dict(figures or {}))  # fmt: skip

    def refresh_action_metrics(self) -> None:
        counts = {state: 0 for state in ActionState}
        for status in self.statuses().values():
            counts[status.state] += 1
        for state, count in counts.items():
            self.metrics.actions.labels(state.value).set(count)
        held = history_from(self.records(), self.statuses().values()).index_sizes.values()
        self.metrics.storage(sum(held), self.policy.limits.index_storage_budget)

    def move_journal(self) -> bool:
        """Switch to the reloaded policy's journal if one waits and nothing is in flight."""
        moved = self._journal_next
        if moved is None:
            return False
        if self.flight is not None or unsettled(self.statuses()):
            return False
        _log.info("journal.moved", old=str(self.journal.path), new=str(moved.path))
        self.journal, self._journal_next = moved, None
        self.fresh()
        self.chain_problems = moved.standing_problems()
        return True

    def chain_text(self) -> str:
        return (f"the journal's hash chain is broken ({len(self.chain_problems)} problem(s), "
                f"first: {self.chain_problems[0]}); apply mode holds until an operator runs "
                "`pg-tuner audit --acknowledge`")  # fmt: skip

    def problem(self) -> str | None:
        """A standing condition that makes this tuner unhealthy (for /healthz), or None."""
        if self.journal_fault is not None:
            return f"the journal cannot be written: {self.journal_fault}"
        if self.chain_problems:
            return self.chain_text()
        if not self.leader:
            return None
        with self.lock:
            running = self.flight is not None and self.flight.phase is Phase.APPLYING
        if running:
            return None
        stuck = applying(self.statuses())
        return f"action {', '.join(stuck)} stuck in applying" if stuck else None

    # --- the policy -----------------------------------------------------------------------

    def set_policy(self, policy: Policy) -> str | None:
        """A reloaded policy: thresholds, mode and windows take effect at the next job. A new
        journal path takes effect once no action is in flight (their records stay in the
        file that holds their history); the note saying so, or None."""
        note = None
        with self.lock:
            if policy.target.dsn != self.policy.target.dsn:
                _log.warning("policy.target_changed", note="a new target takes a restart")
                policy = policy.model_copy(update={"target": self.policy.target})
            self.policy = policy
            self.executor.reload(policy)
            moved = Journal(policy.journal.path)
            self._journal_next = None
            if moved.path != self.journal.path:
                self._journal_next = moved
                self.fresh()
                if not self.move_journal():
                    note = (f"journal stays {self.journal.path} until the actions in flight "
                            f"settle, then moves to {moved.path}")  # fmt: skip
                    _log.warning("journal.move_deferred", old=str(self.journal.path),
                                 new=str(moved.path))  # fmt: skip
        with self._sample_lock:
            self.sampler.close()
            self.sampler = Sampler.from_dsn(
                policy.target.dsn, password=self.password, policy=policy
            )
        return note

    # --- events and words -----------------------------------------------------------------

    def emit(self, kind: str, text: str, **fields: Any) -> None:
        self._emit(Notice(kind, text, **fields))

    def describe(self, action: Action | None) -> str:
        if action is None:
            return "(unknown action)"
        return f"{action.kind.value} {name(action)} [{action.id}]"

    def when(self, moment: datetime) -> str:
        local = moment.astimezone(self.policy.tz)
        return f"{local:%Y-%m-%d %H:%M:%S} {self.policy.timezone}"

    # --- sessions ---------------------------------------------------------------------------

    def connection(self) -> db.Connection:
        """The context's own fenced session for catalog reads (reopened when lost)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            t = self.policy.timeouts
            self._conn = db.connect(
                self.policy.target.dsn,
                password=self.password,
                lock_timeout=t.lock_timeout,
                statement_timeout=t.query_timeout,
            )
        return self._conn

    def whatif_session(self) -> db.Connection:
        """A short-lived session for what-if work: HypoPG state and DEALLOCATE ALL stay in it."""
        t = self.policy.timeouts
        return db.connect(
            self.policy.target.dsn,
            password=self.password,
            lock_timeout=t.lock_timeout,
            statement_timeout=t.query_timeout,
        )

    def disconnect(self) -> None:
        """Drop every session after the database went away (the leader lock goes with it)."""
        conn, self._conn = self._conn, None
        for close in (conn.close if conn else None, self.sampler.close, self.executor.close):
            if close is not None:
                try:
                    close()
                except Exception as exc:  # a broken session may fail to close; it is gone
                    _log.debug("jobs.close_failed", error=str(exc))
        self.leader = False
        self.metrics.leader.set(0)

    def close(self) -> None:
        self.disconnect()

    def cancel(self) -> None:
        """Cancel the executor's running statement (SIGTERM after the grace)."""
        if self.executor.cancel():
            _log.warning("jobs.cancelled", action=self.flight.action.id if self.flight else None)

    # --- samples ----------------------------------------------------------------------------

    def sample(self) -> Snapshot:
        """A new snapshot: the latest one, the next advice's start if none, a recent sample."""
        with self._sample_lock:
            snapshot = self.sampler.sample()
        with self.lock:
            self.latest = snapshot
            if self.advise_base is None:
                self.advise_base = snapshot
            t, schedule = self.policy.resolved, self.policy.schedule
            verifying = t.verification_window * (schedule.max_window_extensions + 1)
            keep = 2 * max(schedule.advise_interval, t.baseline_window, verifying)
            self.recent.add(self.now(), snapshot, t.baseline_window, keep)
        self.metrics.sampled()
        self._record_series(snapshot)
        self.metrics.builds_in_progress.set(len(snapshot.server.index_builds))
        return snapshot

    def _record_series(self, snapshot: Snapshot) -> None:
        """Append the delta since the previous sample to the latency series beside the
        journal (`pg-tuner report` draws it). Only the leader writes it; a failure to write
        is logged and never stops the jobs: the series is a picture, not a record."""
        with self.lock:
            base, self._series_base = self._series_base, snapshot
            if not self.leader or base is None or base.server.dbid != snapshot.server.dbid:
                return
            path = self.journal.path
            if self._recorder is None or self._recorder.path != series.path_for(path):
                self._recorder = series.Recorder(path)
            recorder = self._recorder
        try:
            recorder.record(workload.diff(base, snapshot))
        except (OSError, ValueError) as exc:
            _log.warning("series.not_written", path=str(recorder.path), error=str(exc))

    def changed(
        self,
        table: TableRef,
        what: str,
        watched: Iterable[int] | None = None,
        unmoved: Iterable[int] = (),
        index: str = "",
    ) -> None:
        """The tuner changed `table` (`what`: "the build of public.t_k", of `index`):
        samples from before no longer count as a baseline of the queries it may have moved
        (`watched`: the queries the change is verified on, `unmoved`: those of the table it
        left alone, when known)."""
        with self.lock:
            self.recent.changed(self.now(), table, what, watched, unmoved, index)

    def watching(self, table: TableRef, watched: Iterable[int], unmoved: Iterable[int]) -> None:
        """The queries the tuner's last change of `table` is verified on, and those of the
        table it left alone, now known."""
        with self.lock:
            self.recent.watching(table, watched, unmoved)

    def captured(self, since: datetime, finished: Iterable[str]) -> list[LongRunningGroup]:
        with self.lock:
            return self.recent.captured(since, finished)


def change_of(action: Action, *, undone: bool = False) -> str:
    """What the tuner's build (or its undo) did to the action's table, in words."""
    if undone:
        return f"the rollback of {name(action)}"
    verb = {ActionKind.CREATE_INDEX: "build", ActionKind.DROP_INDEX: "drop"}
    return f"the {verb.get(action.kind, action.kind.value)} of {name(action)}"


def name(action: Action) -> str:
    """The action's index (schema-qualified) or table, as verdicts name it."""
    if action.index_name:
        return f"{action.table.schema}.{action.index_name}"
    if action.index is not None:
        return f"{action.table.schema}.{index_name(action.index)}"
    return str(action.table)
