"""The tuning loop's work: one method per scheduled job, each returning a one-line verdict.

The recipe, as the jobs share it:
  sample        a Snapshot every `sample_interval`; the latest one feeds every other job.
  advise        the workload since the last advice → Advisor → policy.decide → journal:
                `proposed` (recommend mode, awaiting `pg-tuner approve`) or `approved` (apply).
  act           the oldest approved action, if the guards allow it now: samples over
                `baseline_window` (journal `baselined`, with the figures), EXPLAIN the
                table's queries, run it (`applying` → `applied`/`failed`), EXPLAIN again,
                and start the verification window (`verifying`, with the watched queries).
  verify        when the window has run: keep, roll back (DROP / re-create), or extend.
                Operator rollback requests (`pg-tuner rollback ID`) are carried out here too.
  housekeeping  drop the tuner's own indexes unused for the level's `drop_unused_after`.
Only the leader (the executor's advisory lock) acts; without it the loop only samples.
One action is in flight at a time; its state lives in the journal, so a restart resumes it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tuner import db, journal, log, queries, series, sqlinfo, verify, whatif, workload
from tuner.advisor import Advisor, captured_queries
from tuner.candidates import covered_by
from tuner.config import Mode, Policy, format_duration, format_size
from tuner.errors import JournalError, MissingPrivilege, UntrustedCode
from tuner.executor import Executor
from tuner.flight import Flight, Recent, Window, entries, may_retry, shield_history, watch_data
from tuner.guards import may_start
from tuner.journal import Journal
from tuner.metrics import Metrics
from tuner.models import (
    Action,
    ActionKind,
    ActionResult,
    ActionState,
    Confidence,
    GuardReason,
    IndexSpec,
    LongRunningGroup,
    Outcome,
    Proposal,
    ProposalKind,
    QueryWindow,
    Snapshot,
    TableRef,
)
from tuner.policy import History, PastAction, decide, history_from, is_tuner_index
from tuner.recovery import ActionStatus, spec_of
from tuner.sampler import Sampler, fingerprint
from tuner.statements import index_name
from tuner.windows import Calendar

if TYPE_CHECKING:
    from tuner.daemon import Event

_log = log.get("loop")

MAX_EXPLAINED = 200  # queries of the action's table EXPLAINed before and after it
MAX_CONTROLS = 20  # statements on other tables that measure the load (verify.load_change)
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
Parsed = tuple[QueryWindow, tuple[sqlinfo.TableName, ...]]  # a statement and its tables
VERIFIED_KINDS = (ActionKind.CREATE_INDEX, ActionKind.DROP_INDEX)
_KINDS = {
    ProposalKind.CREATE_INDEX: ActionKind.CREATE_INDEX,
    ProposalKind.DROP_UNUSED_INDEX: ActionKind.DROP_INDEX,
    ProposalKind.DROP_DUPLICATE_INDEX: ActionKind.DROP_INDEX,
    ProposalKind.DROP_INVALID_INDEX: ActionKind.DROP_INDEX,
    ProposalKind.ANALYZE: ActionKind.ANALYZE,
    ProposalKind.VACUUM: ActionKind.VACUUM,
}


@dataclass(frozen=True, slots=True)
class Candidate:
    """An advisor Proposal as policy.decide reads it (its ProposalLike)."""

    proposal: Proposal
    kind: ActionKind
    index_name: str | None
    index_definition: str | None
    unused_for: timedelta | None = None

    @property
    def duplicate_of(self) -> str | None:
        return self.proposal.duplicate_of

    @property
    def table(self) -> TableRef:
        return self.proposal.table

    @property
    def index(self) -> IndexSpec | None:
        return self.proposal.index

    @property
    def cost_reduction(self) -> float:
        return self.proposal.cost_reduction

    @property
    def workload_share(self) -> float:
        return self.proposal.workload_share

    @property
    def size_bytes(self) -> int:
        return self.proposal.estimated_size_bytes

    @property
    def low_confidence(self) -> bool:
        return self.proposal.confidence is Confidence.LOW

    @property
    def measured_only(self) -> bool:
        return self.proposal.confidence is Confidence.MEASURED_ONLY

    @property
    def reason(self) -> str:
        return self.proposal.reason


class Loop:
    """Sample → advise → act → verify, plus housekeeping; the state the jobs share."""

    def __init__(
        self,
        policy: Policy,
        *,
        password: str | None,
        metrics: Metrics,
        emit: Callable[[Event], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.policy = policy
        self.password = password
        self.metrics = metrics
        self._emit = emit
        self.now = clock
        self._lock = threading.RLock()
        self._sample_lock = threading.Lock()
        self.sampler = Sampler.from_dsn(policy.target.dsn, password=password, policy=policy)
        self.executor = Executor(policy.target.dsn, password, policy)
        self.journal = Journal(policy.journal.path)
        self.latest: Snapshot | None = None
        self._advise_base: Snapshot | None = None
        self.flight: Flight | None = None
        self.leader = False
        self._expected: dict[str, tuple[int, ...]] = {}
        self._rejected: set[tuple[str, str]] = set()
        self._conn: db.Connection | None = None
        # why the journal could not be written, while it cannot: no job acts until it can
        self.journal_fault: str | None = None
        # the journal's chain problems no operator acknowledged: apply mode holds on them
        self.chain_problems: list[str] = []
        self._journal_next: Journal | None = None  # a reloaded path, once nothing is in flight
        # (our clock, snapshot) since the database last changed: a baseline needs no wait
        # when the samples already cover `baseline_window` of the state an action starts from.
        self.recent = Recent()
        self._series_base: Snapshot | None = None  # the latency series' previous sample
        self._recorder: series.Recorder | None = None

    def set_policy(self, policy: Policy) -> str | None:
        """A reloaded policy: thresholds, mode and windows take effect at the next job. A new
        journal path takes effect once no action is in flight (their records stay in the
        file that holds their history); the note saying so, or None."""
        note = None
        with self._lock:
            if policy.target.dsn != self.policy.target.dsn:
                _log.warning("policy.target_changed", note="a new target takes a restart")
                policy = policy.model_copy(update={"target": self.policy.target})
            self.policy = policy
            self.executor.reload(policy)
            moved = Journal(policy.journal.path)
            self._journal_next = None
            if moved.path != self.journal.path:
                self._journal_next = moved
                if not self._move_journal():
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

    def _move_journal(self) -> bool:
        """Switch to the reloaded policy's journal if one waits and nothing is in flight."""
        moved = self._journal_next
        if moved is None:
            return False
        in_flight = (ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING,
                     ActionState.APPLIED, ActionState.VERIFYING)  # fmt: skip
        if self.flight is not None or any(
            s.state in in_flight for s in journal.replay(self.journal.read()).values()
        ):
            return False
        _log.info("journal.moved", old=str(self.journal.path), new=str(moved.path))
        self.journal, self._journal_next = moved, None
        self.chain_problems = moved.standing_problems()
        return True

    def emit(self, kind: str, text: str, **fields: Any) -> None:
        from tuner.daemon import Event

        self._emit(Event(kind, text, **fields))

    # --- connections ----------------------------------------------------------------------

    def _connection(self) -> db.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            t = self.policy.timeouts
            self._conn = db.connect(
                self.policy.target.dsn,
                password=self.password,
                lock_timeout=t.lock_timeout,
                statement_timeout=t.query_timeout,
            )
        return self._conn

    def disconnect(self) -> None:
        """Drop every session after the database went away (the leader lock goes with it)."""
        conn, self._conn = self._conn, None
        for close in (conn.close if conn else None, self.sampler.close, self.executor.close):
            if close is not None:
                try:
                    close()
                except Exception as exc:  # a broken session may fail to close; it is gone
                    _log.debug("loop.close_failed", error=str(exc))
        self.leader = False
        self.metrics.leader.set(0)

    def close(self) -> None:
        self.disconnect()

    def cancel(self) -> None:
        """Cancel the executor's running statement (SIGTERM after the grace)."""
        if self.executor.cancel():
            _log.warning("loop.cancelled", action=self.flight.action.id if self.flight else None)

    # --- start and resume -------------------------------------------------------------------

    def resume(self) -> str:
        """Sample, take the lead if free, settle the journal's in-flight actions."""
        self._take_sample()
        self._lead()
        with self._lock:
            if self.flight is not None and self.flight.phase == "applying":
                self.flight = None  # interrupted with the connection; the journal settles it
        if not self.leader:
            return "OBSERVE: another pg-tuner leads this database; observing only"
        settled = self._recover()
        self._refresh_action_metrics()
        queued = self._next_action()
        parts = [f"{self.policy.mode.value} mode, level {self.policy.level.value}"]
        if self.chain_problems:
            parts.append(self._chain_text())
        if settled:
            parts.append("; ".join(settled))
        if self.flight is not None:
            parts.append(f"verifying {self._name(self.flight.action)}")
        elif queued is not None:
            parts.append(f"next: {self._describe(queued.to_action())}")
        return "STARTED: " + "; ".join(parts)

    def _lead(self) -> bool:
        """Take the advisory lock if free; True when this call made the loop the leader."""
        was = self.leader
        self.leader = self.executor.leadership.acquire()
        self.metrics.leader.set(1 if self.leader else 0)
        if self.leader and not was:
            self.emit("leader", "LEADER: holding the advisory lock")
        return self.leader and not was

    def _recover(self) -> list[str]:
        """journal.recover with the catalog, then resume verification windows."""
        self.chain_problems = self.journal.standing_problems()
        for problem in self.chain_problems:
            _log.warning("journal.chain_broken", path=str(self.journal.path), problem=problem)
        statuses = journal.replay(self.journal.read())

        def lookup(name: str) -> journal.IndexHealth:
            status = next(s for s in statuses.values() if s.index_name == name)
            action = status.to_action()
            if action is not None and action.kind is ActionKind.CREATE_INDEX and action.index:
                # its table, definition and marker: another index of that name is not ours
                own = self.executor.own_index(action)
                return "missing" if own is None else ("valid" if own.valid else "invalid")
            schema = (status.action or {}).get("table", {}).get("schema", "public")
            rows = db.fetch(
                self._connection(), queries.get("exec_index_info"), {"schema": schema, "name": name}
            )
            if not rows:
                return "missing"
            return "valid" if rows[0]["valid"] else "invalid"

        def drop_invalid(status: ActionStatus) -> None:
            action = status.to_action()
            if action is not None:
                self.executor.recover(action)

        done: list[str] = []
        for found in journal.recover(self.journal, lookup, drop_invalid):
            _log.info(
                "journal.recovered",
                action=found.action_id,
                was=found.was.value,
                outcome=found.outcome,
                detail=found.detail,
            )
            self.emit("transition", found.detail, action_id=found.action_id, state=found.outcome)
            if found.outcome in ("applied", "failed"):
                done.append(f"{found.action_id} {found.outcome} after restart")
        cleaned = self.executor.cleanup_invalid()
        if cleaned:
            done.append(f"dropped INVALID leftovers {', '.join(cleaned)}")
        statuses = journal.replay(self.journal.read())
        with self._lock:
            if self.flight is None:
                for status in statuses.values():
                    if status.state in (ActionState.APPLIED, ActionState.VERIFYING):
                        self.flight = self._resumed_flight(status)
                        if self.flight is not None:
                            done.append(f"verification of {status.action_id} resumes")
                            break
        return done

    def _resumed_flight(self, status: ActionStatus) -> Flight | None:
        action = status.to_action()
        if action is None:
            return None
        data = self._data_of(status.action_id)
        baseline = Window.from_data(data["baseline"]) if "baseline" in data else None
        texts = {int(k): str(v) for k, v in data.get("texts", {}).items()}
        captured = {
            str(fp): verify.Stats(int(v[0]), float(v[1]), float(v[2]))
            for fp, v in data.get("captured", {}).items()
        }
        watched = data.get("watch")
        watch = None
        if isinstance(watched, dict):
            watch = verify.Watch(
                frozenset(watched.get("reads", ())),
                frozenset(watched.get("writes", ())),
                frozenset(watched.get("guards", ())),
                frozenset(watched.get("controls", ())),
            )
        elif baseline is not None:  # the table's queries, not the load's controls
            ids = {e.queryid: texts.get(e.queryid, "") for e in baseline.queries
                   if e.queryid in texts or not texts}  # fmt: skip
            writes = verify.write_queries(ids, action.table)
            watch = verify.Watch(frozenset(ids) - writes, frozenset(writes))
        result = ActionResult(
            action.id,
            action.kind,
            ActionState.APPLIED,
            index_name=action.index_name,
            index_definition=action.index_definition,
            tuner_made=action.kind is ActionKind.CREATE_INDEX,
        )
        if status.state is ActionState.APPLIED:
            self._journal(
                ActionState.VERIFYING,
                action,
                "verification resumes after a restart",
                data={"watch": watch_data(watch)} if watch else None,
            )
        return Flight(
            action,
            "verify",
            self.latest,
            self.now(),
            texts,
            baseline,
            watch=watch,
            result=result,
            captured=captured,
        )

    def _data_of(self, action_id: str) -> dict[str, Any]:
        """The `data` of every record of this action merged, later records winning."""
        merged: dict[str, Any] = {}
        for record in self.journal.read():
            if record.action_id == action_id:
                merged.update(record.data)
        return merged

    # --- sample ------------------------------------------------------------------------------

    def _take_sample(self) -> Snapshot:
        with self._sample_lock:
            snapshot = self.sampler.sample()
        with self._lock:
            self.latest = snapshot
            if self._advise_base is None:
                self._advise_base = snapshot
            t, schedule = self.policy.resolved, self.policy.schedule
            verifying = t.verification_window * (schedule.max_window_extensions + 1)
            keep = 2 * max(schedule.advise_interval, t.baseline_window, verifying)
            self.recent.add(self.now(), snapshot, t.baseline_window, keep)
        self.metrics.sampled()
        self._record_series(snapshot)
        builds = len(snapshot.server.index_builds)
        self.metrics.builds_in_progress.set(builds)
        return snapshot

    def _record_series(self, snapshot: Snapshot) -> None:
        """Append the delta since the previous sample to the latency series beside the
        journal (`pg-tuner report` draws it). Only the leader writes it; a failure to write
        is logged and never stops the loop: the series is a picture, not a record."""
        with self._lock:
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

    def _changed(self) -> None:
        """The tuner changed the database: samples from before no longer count as a baseline."""
        with self._lock:
            self.recent.changed()

    def _captured(self, since: datetime, finished: Iterable[str]) -> list[LongRunningGroup]:
        with self._lock:
            return self.recent.captured(since, finished)

    def sample(self) -> str:
        snapshot = self._take_sample()
        if not self.leader and self._lead():
            # The previous leader may have died mid-action: settle the journal as a start does.
            settled = self._recover()
            self._refresh_action_metrics()
            return "LEADER: took the lead; " + ("; ".join(settled) or "nothing to recover")
        role = "" if self.leader else "; another pg-tuner leads, observing only"
        return f"OBSERVE: {len(snapshot.queries)} queries sampled{role}"

    # --- advise ------------------------------------------------------------------------------

    def advise(self) -> str:
        policy = self.policy
        if policy.mode is Mode.OBSERVE or not self.leader:
            why = "observe mode" if policy.mode is Mode.OBSERVE else "not the leader"
            return f"OBSERVE: no advice ({why})"
        base, latest = self._advise_base, self.latest
        if base is None or latest is None or latest is base:
            return "OBSERVE: no workload window yet"
        records = self.journal.read()
        statuses = journal.replay(records)
        queued = _queued(statuses)
        if queued:
            # Advice does not know what the queue will build; it waits for it (and its
            # window grows), or it proposes what the queued indexes will already do.
            return f"OBSERVE: advice waits for {queued} queued action(s)"
        window = workload.diff(base, latest)
        since = self.now() - timedelta(seconds=window.seconds)
        captured = captured_queries(self._captured(since, (q.query for q in window.valid_queries)))
        if not window.valid_queries and not captured:  # a statement that never finishes
            return f"OBSERVE: no queries ran in the last {window.seconds:.0f}s"  # is one
        with self._lock:
            self._advise_base = latest
        traps, shielded = shield_history(records, statuses)
        activity = workload.table_activity(latest, window)
        with self._whatif_session() as conn:
            advisor = self._advisor(conn)
            advice = advisor.advise(
                [*workload.merged(window.valid_queries), *captured],
                activity,
                latest.indexes,
                stats_age=0.0,
                window=window.seconds,
                excluded=_rolled_back(statuses, shielded),
            )
            shields = advisor.shields(window.valid_queries, traps, activity, latest.indexes)
        named = {p.index_name for p in shields}
        proposals = [*shields, *(p for p in advice.proposals if p.index_name not in named)]
        # An index that trapped a read is not tried again while the shield that lets it
        # back in is only proposed: the retry would trap the read once more.
        awaiting = {p.shields for p in shields}
        for proposal in proposals:
            self.metrics.proposals.labels(proposal.kind.value).inc()
        candidates = [
            c
            for c in self._candidates(proposals, latest)
            if not self._known(c, statuses, shielded) and not self._being_built(c, latest)
            and c.index_name not in awaiting
        ]  # fmt: skip
        # The queue runs one action at a time in journal order: most expected benefit first.
        candidates.sort(key=lambda c: c.workload_share * c.cost_reduction, reverse=True)
        decisions = decide(candidates, policy, self._history(statuses), latest)
        proposed: list[str] = []
        approved: list[str] = []
        for decision, candidate in zip(decisions, candidates, strict=True):
            action = decision.action
            expected = tuple(q.queryid for q in candidate.proposal.queries)
            self._expected[action.id] = expected
            if decision.rejected:
                key = (candidate.index_name or f"{action.kind}:{action.table}", decision.rule)
                if key in self._rejected:
                    continue
                self._rejected.add(key)
                self._journal(
                    ActionState.REJECTED, action, decision.reason, figures={"rule": decision.rule}
                )
                continue
            shielding = candidate.proposal.shields
            self._journal(
                decision.state,
                action,
                action.reason,
                figures=dict(action.figures),
                data={"ddl": candidate.proposal.ddl, "expected": list(expected)}
                | ({"shields": shielding} if shielding else {}),
            )
            (approved if decision.state is ActionState.APPROVED else proposed).append(
                self._describe(action)
            )
        self._refresh_action_metrics()
        if approved:
            return f"QUEUED: {len(approved)} ({'; '.join(approved)})"
        if proposed:
            return f"PROPOSED: {len(proposed)} (awaiting approval): {'; '.join(proposed)}"
        return f"OBSERVE: {len(window.valid_queries)} queries advised on, nothing new to propose"

    def _whatif_session(self) -> db.Connection:
        """A short-lived session for what-if work: HypoPG state and DEALLOCATE ALL stay in it."""
        t = self.policy.timeouts
        return db.connect(
            self.policy.target.dsn,
            password=self.password,
            lock_timeout=t.lock_timeout,
            statement_timeout=t.query_timeout,
        )

    def _advisor(self, conn: db.Connection) -> Advisor:
        t, limits = self.policy.resolved, self.policy.limits
        return Advisor(
            conn,
            whatif.read_schema(conn),
            budget=limits.index_storage_budget,
            max_width=limits.max_index_width,
            per_table=t.max_tuner_indexes_per_table,
            include_columns=limits.include_columns,
            hash_indexes=limits.hash_indexes,
            trusted_roles=self.policy.target.trusted_roles,
            stale_ratio=self.policy.health.stale_statistics_ratio,
            dead_ratio=self.policy.health.dead_tuple_ratio,
        )

    @staticmethod
    def _candidates(proposals: Iterable[Proposal], snapshot: Snapshot) -> list[Candidate]:
        found = []
        for p in proposals:
            kind = _KINDS[p.kind]
            name = index_name(p.index) if p.index is not None else p.index_name
            definition = None
            if kind is ActionKind.DROP_INDEX:
                stat = next(
                    (i for i in snapshot.indexes_of(p.table) if i.name == p.index_name), None
                )
                definition = stat.definition if stat else None
            found.append(Candidate(p, kind, name, definition))
        return found

    def _being_built(self, c: Candidate, snapshot: Snapshot) -> bool:
        """A drop proposed for an index that a build is still making (it looks INVALID), or
        as a duplicate of one still being built or verified (it may yet be rolled back)."""
        if c.kind is not ActionKind.DROP_INDEX or c.index_name is None:
            return False
        names = {c.index_name, c.duplicate_of} - {None}
        flight = self.flight
        if flight is not None and flight.action.index_name in names:
            return True
        building = {b.index for b in snapshot.server.index_builds}
        return any(f"{c.table.schema}.{name}" in building for name in names)

    def _known(
        self, c: Candidate, statuses: dict[str, ActionStatus], shielded: Counter[str] | None = None
    ) -> bool:
        """Already journaled: pending, in flight, kept, or rolled back (see `flight.may_retry`;
        `shielded`: the shields kept for each index)."""
        for status in statuses.values():
            data = status.action or {}
            if data.get("kind") != c.kind.value:
                continue
            same_table = data.get("table") == {"schema": c.table.schema, "name": c.table.name}
            if not same_table or data.get("index_name") != c.index_name:
                continue
            if status.state in (ActionState.FAILED, ActionState.REJECTED):
                continue
            if c.kind in (ActionKind.ANALYZE, ActionKind.VACUUM) and status.state.final:
                continue  # maintenance may be due again
            shields = shielded[c.index_name] if shielded and c.index_name else 0
            if status.state is ActionState.ROLLED_BACK and may_retry(status, statuses, shields):
                continue
            return True
        return False

    def _history(self, statuses: dict[str, ActionStatus]) -> History:
        started = (
            ActionState.APPROVED,
            ActionState.BASELINED,
            ActionState.APPLYING,
            ActionState.APPLIED,
            ActionState.VERIFYING,
            ActionState.KEPT,
            ActionState.ROLLED_BACK,
        )
        actions, indexes = [], []
        for status in statuses.values():
            data = status.action or {}
            kind = ActionKind(data.get("kind", "analyze"))
            if any(s in started for s in status.history):
                actions.append(PastAction(datetime.fromisoformat(status.since), kind))
            live = (
                ActionState.APPLYING,
                ActionState.APPLIED,
                ActionState.VERIFYING,
                ActionState.KEPT,
            )
            if kind is ActionKind.CREATE_INDEX and status.state in live and status.index_name:
                table = data["table"]
                indexes.append((TableRef(table["schema"], table["name"]), status.index_name))
        return History(tuple(actions), tuple(indexes))

    # --- act ---------------------------------------------------------------------------------

    def act(self) -> str:
        if not self.leader:
            return "OBSERVE: another pg-tuner leads this database; not acting"
        if self.policy.mode is Mode.OBSERVE:
            return "OBSERVE: observe mode, not acting"
        with self._lock:
            flight = self.flight
        if flight is not None and flight.phase == "verify":
            return self._verifying_text(flight)
        if flight is not None and flight.phase == "applying":
            return f"APPLYING: {self._describe(flight.action)}"
        if flight is None and (stuck := self._stuck()):
            return stuck
        if flight is None:
            status = self._next_action()
            if status is None:
                return "IDLE: no approved action"
            action = status.to_action()
            if action is None:
                return "IDLE: no approved action"
            action = replace(action, figures={**action.figures})
            covered = self._covered(action)
            if covered is not None:
                return covered
            held = self._held(action)
            if held is not None:
                return held
            if action.kind not in VERIFIED_KINDS:
                return self._apply(Flight(action, "applying", None, self.now()))
            flight = self._start_baseline(action)
        due = flight.due(self.policy.resolved.baseline_window)
        if self.now() < due:
            return f"BASELINE: {self._describe(flight.action)}; applying after {self._when(due)}"
        held = self._held(flight.action)
        if held is not None:
            return held
        return self._apply(self._finish_baseline(flight))

    def _stuck(self) -> str | None:
        """An action the journal shows `applying` while nothing runs it (its apply ended in an
        error, or its record of the outcome could not be written): settle it from the catalog
        as a restart would, and say so; None when there is none."""
        statuses = journal.replay(self.journal.read())
        stuck = [s for s in statuses.values() if s.state is ActionState.APPLYING]
        if not stuck:
            return None
        settled = self._recover()
        self._refresh_action_metrics()
        left = [s.action_id for s in journal.replay(self.journal.read()).values()
                if s.state is ActionState.APPLYING]  # fmt: skip
        if left:
            return f"STUCK: {', '.join(left)} still applying; recovery could not settle it"
        return "RECOVERED: " + "; ".join(settled or [f"{stuck[0].action_id} settled"])

    def _chain_text(self) -> str:
        return (f"the journal's hash chain is broken ({len(self.chain_problems)} problem(s), "
                f"first: {self.chain_problems[0]}); apply mode holds until an operator runs "
                "`pg-tuner audit --acknowledge`")  # fmt: skip

    def journal_held(self, job: str = "act") -> str | None:
        """The verdict when the journal holds `job` back, else None.

        A broken chain no operator acknowledged holds what changes the database in apply
        mode (act, verify's rollbacks), checked again each time. While the journal cannot be
        written: try once (a `journal_resumed` record); on success settle what the failure
        interrupted, as a restart would; else DEGRADED. Nothing acts without its record."""
        with self._lock:
            self._move_journal()
        if self.chain_problems:
            self.chain_problems = self.journal.standing_problems()
            if self.chain_problems and self.policy.mode is Mode.APPLY and job in ("act", "verify"):
                return f"HELD: {self._chain_text()}"
        fault = self.journal_fault
        if fault is None:
            return None
        try:
            self.journal.append(journal.EntryKind.JOURNAL_RESUMED,
                                reason=f"the journal is written again after: {fault}")  # fmt: skip
        except JournalError as exc:
            self.journal_fault = str(exc)
            return f"DEGRADED: {exc}; not acting until the journal can be written"
        self.journal_fault = None
        _log.warning("journal.resumed", after=fault)
        if self.leader:
            with self._lock:
                self.flight = None  # whatever was in flight, the journal now settles it
            self._recover()
            self._refresh_action_metrics()
        return None

    def problem(self) -> str | None:
        """A standing condition that makes this tuner unhealthy (for /healthz), or None."""
        if self.journal_fault is not None:
            return f"the journal cannot be written: {self.journal_fault}"
        if self.chain_problems:
            return self._chain_text()
        if not self.leader:
            return None
        with self._lock:
            running = self.flight is not None and self.flight.phase == "applying"
        if running:
            return None
        stuck = [s.action_id for s in journal.replay(self.journal.read()).values()
                 if s.state is ActionState.APPLYING]  # fmt: skip
        return f"action {', '.join(stuck)} stuck in applying" if stuck else None

    def _covered(self, action: Action) -> str | None:
        """Reject a queued index that an index built since it was queued already leads with
        the same columns and carries its INCLUDEs (advice ran while an earlier, wider one
        was still queued)."""
        snapshot, spec = self.latest, action.index
        if action.kind is not ActionKind.CREATE_INDEX or spec is None or snapshot is None:
            return None
        same = [i for i in snapshot.indexes_of(action.table) if i.name != action.index_name]
        twin = next((i for i in same if covered_by(spec, [i], include=True)), None)
        if twin is None:
            return None
        reason = f"index {twin.schema}.{twin.name} built since leads with the same columns"
        self._journal(ActionState.REJECTED, action, reason, figures={"rule": "covered"})
        self._refresh_action_metrics()
        return f"SKIPPED: {self._describe(action)}: {reason}"

    def _next_action(self) -> ActionStatus | None:
        statuses = journal.replay(self.journal.read())
        ready = (ActionState.APPROVED, ActionState.BASELINED)
        return next((s for s in statuses.values() if s.state in ready), None)

    def _held(self, action: Action) -> str | None:
        """The verdict when a guard holds `action` back now, else None."""
        snapshot = self.latest
        if snapshot is None:
            return "HELD: no snapshot yet"
        calendar = Calendar.from_policy(self.policy)
        now = self.now()
        verdict = may_start(action, snapshot, self.policy, calendar, now)
        frozen = calendar.frozen_until(now) is not None
        self.metrics.frozen.set(1 if frozen else 0)
        if verdict.ok:
            return None
        assert verdict.reason is not None
        self.metrics.guard_rejections.labels(verdict.reason.value).inc()
        _log.info(
            "action.held", action=action.id, reason=verdict.reason.value, detail=verdict.detail
        )
        if verdict.reason in (GuardReason.FROZEN, GuardReason.OUTSIDE_MAINTENANCE):
            return f"{calendar.verdict(now)}; holding {self._describe(action)}"
        return f"HELD: {self._describe(action)}: {verdict}"

    def _start_baseline(self, action: Action) -> Flight:
        """Open the baseline window at the first sample of the current state still needed.

        When the database has not changed for `baseline_window` (say, since the previous
        action was kept), the samples already taken are the baseline and nothing waits.
        """
        latest = self._take_sample()
        with self._lock:
            started, start = self.recent.state_since() or (self.now(), latest)
        flight = Flight(
            action, "baseline", start, started, expected=self._expected.get(action.id, ())
        )
        with self._lock:
            self.flight = flight
        due = flight.due(self.policy.resolved.baseline_window)
        since = "" if start is latest else f" (sampled since {self._when(started)})"
        self.emit(
            "transition",
            f"baseline of {self._describe(action)} until {self._when(due)}{since}",
            action_id=action.id,
            state="baselining",
        )
        return flight

    def _finish_baseline(self, flight: Flight) -> Flight:
        """The baseline window's figures for the table's queries; journaled `baselined`."""
        snapshot = self._take_sample()
        assert flight.start is not None
        window = workload.diff(flight.start, snapshot)
        parsed = _parsed(window)
        texts = self._table_queries(parsed, flight.action.table)
        flight.texts = texts
        controls = self._controls(parsed, texts, flight.action.table)
        flight.baseline = Window(
            entries(window.queries, texts.keys() | controls),
            window.stats_reset,
            window.seconds,
        )
        calls = sum(e.calls for e in flight.baseline.queries if e.queryid in texts)
        with self._lock:  # the samples the baseline spans, for its noise (verify's floors)
            taken = [s for _, s in self.recent.quiet if s.monotonic >= flight.start.monotonic]
        steps = zip([flight.start, *taken], [*taken, snapshot], strict=True)
        flight.samples = verify.baseline_samples(
            (workload.diff(a, b) for a, b in steps if a.monotonic < b.monotonic), texts
        )
        for group in self._captured(flight.started, (q.query for q in window.valid_queries)):
            ms = [1000.0 * d for d in group.durations]
            mean = sum(ms) / len(ms)
            flight.captured[group.fingerprint] = verify.Stats(
                len(ms), mean, sum((x - mean) ** 2 for x in ms)
            )
        self._journal(
            ActionState.BASELINED,
            flight.action,
            f"baseline over {window.seconds:.0f}s: {len(texts)} queries of "
            f"{flight.action.table}, {calls} calls",
            figures={"seconds": round(window.seconds, 3), "queries": len(texts), "calls": calls},
            data={
                "baseline": flight.baseline.to_data(),
                "texts": {str(k): v for k, v in texts.items()},
                "captured": {fp: [b.calls, b.mean, b.m2] for fp, b in flight.captured.items()},
            },
        )
        flight.plans_before = self._plans(texts)
        return flight

    def _table_queries(self, parsed: list[Parsed], table: TableRef) -> dict[int, str]:
        """queryid → text of the window's statements that read or write `table`, busiest first."""
        found: dict[int, str] = {}
        for q, names in sorted(parsed, key=lambda p: -p[0].total_ms):
            if any(_is(n, table) for n in names):
                found[q.queryid] = q.query
            if len(found) >= MAX_EXPLAINED:
                break
        return found

    def _controls(self, parsed: list[Parsed], texts: dict[int, str], table: TableRef) -> set[int]:
        """The busiest statements of the window on user tables, none of them `table`, called
        `min_calls` times: verification's measure of the load (`verify.load_change`)."""
        found: set[int] = set()
        min_calls = self.policy.schedule.min_calls
        for q, names in sorted(parsed, key=lambda p: -p[0].calls):
            if q.queryid in texts or q.calls < min_calls or not names:
                continue
            if not any(n.schema in SYSTEM_SCHEMAS or n.name.startswith("pg_") or _is(n, table)
                       for n in names):  # fmt: skip
                found.add(q.queryid)
                if len(found) >= MAX_CONTROLS:
                    break
        return found

    def _plans(self, texts: dict[int, str]) -> dict[int, Any]:
        """EXPLAIN (generic plan) of each query; those PostgreSQL cannot plan are left out."""
        plans: dict[int, Any] = {}
        with (
            self._whatif_session() as conn,
            whatif.WhatIf(
                conn, whatif.read_schema(conn), self.policy.target.trusted_roles
            ) as session,
        ):
            for queryid, text in texts.items():
                try:
                    plans[queryid] = session.plan(session.prepare(queryid, text, ()))
                except (db.Error, UntrustedCode, MissingPrivilege) as exc:  # never planned
                    _log.debug("loop.explain_skipped", queryid=queryid, error=str(exc).strip())
        return plans

    def _apply(self, flight: Flight) -> str:
        action = flight.action
        if action.kind is ActionKind.CREATE_INDEX:
            # The name is journaled with `applying`: another index may hold the first one.
            try:
                name = self.executor.free_name(action)
            except db.Error:  # the build itself chooses again, and says why if it cannot
                name = None
            if name is not None and name != action.index_name:
                action = flight.action = replace(action, index_name=name)
        flight.phase = "applying"
        with self._lock:
            self.flight = flight
        self._journal(ActionState.APPLYING, action, f"running {self._describe(action)}")
        self._refresh_action_metrics()
        self.metrics.builds_in_progress.inc()

        def before_drop(definition: str) -> None:
            self._journal(
                ActionState.APPLYING,
                action,
                "definition captured before the drop",
                data={"index_definition": definition},
            )

        try:
            result = self.executor.apply(action, before_drop=before_drop)
        except Exception:
            with self._lock:  # the journal says `applying`: recovery settles it (see `act`)
                self.flight = None
            raise
        finally:
            self.metrics.builds_in_progress.dec()
            self._changed()
        self.metrics.build_seconds.labels(action.kind.value, result.state.value).observe(
            result.seconds
        )
        figures: dict[str, Any] = {"seconds": round(result.seconds, 3)}
        if result.size_bytes is not None:
            figures["size_bytes"] = result.size_bytes
        if result.estimated_size_bytes is not None:
            figures["estimated_size_bytes"] = result.estimated_size_bytes
        if result.state is not ActionState.APPLIED:
            state = (
                ActionState.REJECTED
                if result.state is ActionState.REJECTED
                else (ActionState.FAILED)
            )
            if result.cleaned_up:
                figures["cleaned_up"] = ", ".join(result.cleaned_up)
            self._journal(state, action, result.reason or "failed", figures=figures)
            with self._lock:
                self.flight = None
            self._refresh_action_metrics()
            return f"{state.value.upper()}: {self._describe(action)}: {result.reason}"
        action = replace(
            action,
            index_name=result.index_name or action.index_name,
            index_definition=result.index_definition or action.index_definition,
        )
        flight.action, flight.result = action, result
        self._journal(ActionState.APPLIED, action, result.statement, figures=figures)
        if action.kind is ActionKind.CREATE_INDEX and result.size_bytes:
            self.metrics.index_bytes_created.inc(result.size_bytes)
        if action.kind not in VERIFIED_KINDS:
            self._journal(ActionState.KEPT, action, f"{action.kind.value} needs no verification")
            with self._lock:
                self.flight = None
            self._refresh_action_metrics()
            return f"APPLIED: {self._describe(action)} in {result.seconds:.1f}s"
        plans_after = self._plans(flight.texts)
        leading = (
            action.index.columns[0]
            if action.index and action.kind is ActionKind.CREATE_INDEX
            else None
        )
        controls = (e.queryid for e in flight.baseline.queries) if flight.baseline else ()
        flight.watch = verify.watch(
            flight.plans_before, plans_after, flight.texts, action.table, flight.expected, leading,
            controls,
        )  # fmt: skip
        flight.start, flight.started, flight.phase = self._take_sample(), self.now(), "verify"
        due = flight.due(self.policy.resolved.verification_window)
        self._journal(
            ActionState.VERIFYING,
            action,
            f"watching {len(flight.watch.reads)} read and {len(flight.watch.writes)} write "
            f"queries until {self._when(due)}",
            figures={"reads": len(flight.watch.reads), "writes": len(flight.watch.writes)},
            data={"watch": watch_data(flight.watch)},
        )
        self._refresh_action_metrics()
        size = f"{format_size(result.size_bytes)}, " if result.size_bytes else ""
        return (
            f"APPLIED: {self._describe(action)} ({size}{result.seconds:.1f}s); "
            f"verifying until {self._when(due)}"
        )

    # --- verify ------------------------------------------------------------------------------

    def verify(self) -> str:
        if not self.leader:
            return "OBSERVE: not the leader; not verifying"
        requested = self._rollback_requests()
        if requested:
            return requested
        with self._lock:
            flight = self.flight
        if flight is None or flight.phase != "verify":
            return "IDLE: nothing to verify"
        if flight.undo_pending is not None:
            return self._roll_back(flight, *flight.undo_pending)
        window = self.policy.resolved.verification_window
        looks = self.policy.schedule.verification_looks
        look: int | None = None
        if self.now() < flight.due(window):
            # An interim look (the first window only): decided at once when the evidence is
            # overwhelming either way, else the window runs on (`verify.verify`, step 7).
            look = int((self.now() - flight.started) / (window / looks))
            if flight.extensions or not flight.looks < look < looks:
                return self._verifying_text(flight)
        snapshot = self._take_sample()
        assert flight.start is not None and flight.watch is not None
        after_window = workload.diff(flight.start, snapshot)
        bounds = {
            q.queryid: flight.captured[fp]
            for q in after_window.valid_queries
            if (fp := fingerprint(q.query)) in flight.captured
        }
        ids = verify.watched_queries(flight.watch) | bounds.keys()
        after = Window(
            entries(after_window.queries, ids),
            after_window.stats_reset,
            after_window.seconds,
        )
        baseline = flight.baseline or Window(())
        # A drop has no gain to prove; nor has a shield, whose gain is the index it lets
        # back in (verified on its own when it is tried again): both only must not slow.
        shield = flight.action.kind is ActionKind.CREATE_INDEX and isinstance(
            self._data_of(flight.action.id).get("shields"), str
        )
        verdict = verify.verify(
            baseline, after, flight.watch, self.policy, flight.extensions, bounds=bounds,
            gain_needed=flight.action.kind is ActionKind.CREATE_INDEX and not shield,
            samples=flight.samples, look=look, previous=flight.looks,
        )  # fmt: skip
        if look is not None:
            flight.looks = look
            if verdict.outcome is Outcome.UNDECIDED:
                return f"{self._verifying_text(flight)}; {verdict.reason}"
        self.metrics.verifications.labels(verdict.outcome.value).inc()
        if verdict.outcome is not Outcome.UNDECIDED and flight.started is not None:
            taken = (self.now() - flight.started).total_seconds()
            self.metrics.verdict_seconds.labels(verdict.outcome.value).observe(taken)
        figures = verdict.figures()
        action = flight.action
        if verdict.outcome is Outcome.UNDECIDED:
            if verdict.discarded:
                flight.start, flight.started = snapshot, self.now()
            else:
                flight.extensions += 1
            self.emit(
                "transition",
                verdict.reason,
                action_id=action.id,
                state="verifying",
                figures=figures,
            )
            return f"VERIFYING: {self._describe(action)}: {verdict.reason}"
        if verdict.outcome is Outcome.KEEP:
            self._journal(ActionState.KEPT, action, verdict.reason, figures=figures)
            with self._lock:
                self.flight = None
            self._refresh_action_metrics()
            return f"KEPT: {self._describe(action)}: {verdict.reason}"
        return self._roll_back(flight, verdict.reason, figures)

    def _roll_back(self, flight: Flight, reason: str, figures: dict[str, Any]) -> str:
        action = flight.action
        result = flight.result or ActionResult(
            action.id,
            action.kind,
            ActionState.APPLIED,
            index_name=action.index_name,
            index_definition=action.index_definition,
            tuner_made=action.kind is ActionKind.CREATE_INDEX,
        )
        undone = self.executor.undo(action, result)
        self._changed()
        waits = undone.state is ActionState.REJECTED or (
            undone.state is ActionState.FAILED and undone.transient
        )
        if waits and flight.undo_pending is None and "outcome" in figures:
            # A verdict decided: on record now (with how it was decided), not decided anew
            # at each retry — the undo may wait long (a twin that makes it refuse, a lock).
            self._journal(ActionState.VERIFYING, action,
                          f"rollback decided; it waits: {undone.reason}. {reason}",
                          figures=figures)  # fmt: skip
            flight.undo_pending = (reason, figures)
        if undone.state is ActionState.REJECTED:  # not the leader, or busy: try again later
            return f"VERIFYING: rollback of {self._describe(action)} waits: {undone.reason}"
        if undone.state is ActionState.FAILED and undone.transient:
            # DROP INDEX CONCURRENTLY waits for every transaction that may use the index;
            # behind long queries that can outlast concurrent_lock_timeout. The index must
            # still go: the action stays in flight and the rollback is tried at each verify.
            flight.phase, flight.undo_pending = "verify", (reason, figures)
            with self._lock:
                self.flight = flight
            self.emit("transition", f"rollback waits: {undone.reason}", action_id=action.id,
                      state="verifying", figures=figures)  # fmt: skip
            return f"VERIFYING: rollback of {self._describe(action)} waits: {undone.reason}"
        with self._lock:
            self.flight = None
        if undone.state is ActionState.ROLLED_BACK:
            self.metrics.rollbacks.inc()
            self._journal(
                ActionState.ROLLED_BACK,
                action,
                reason,
                figures={**figures, "undo": undone.statement or undone.reason},
            )
            self._refresh_action_metrics()
            return f"ROLLED BACK: {self._describe(action)}: {reason}"
        self._journal(
            ActionState.FAILED, action, f"rollback failed: {undone.reason}", figures=figures
        )
        self._refresh_action_metrics()
        return f"FAILED: rollback of {self._describe(action)}: {undone.reason}"

    def _rollback_requests(self) -> str | None:
        """Carry out an operator's `pg-tuner rollback ID` on an applied or kept action."""
        statuses = journal.replay(self.journal.read())
        undoable = (ActionState.APPLIED, ActionState.VERIFYING, ActionState.KEPT)
        for status in statuses.values():
            if status.rollback_requested is None or status.state not in undoable:
                continue
            action = status.to_action()
            if action is None:
                continue
            # The CLI tells the operator a frozen rollback waits for the window: so it does.
            calendar, now = Calendar.from_policy(self.policy), self.now()
            may, _ = calendar.allowed(now)
            if not may:
                self.metrics.frozen.set(1 if calendar.frozen_until(now) else 0)
                return f"{calendar.verdict(now)}; holding rollback of {self._describe(action)}"
            with self._lock:
                flight = self.flight
            if flight is None or flight.action.id != action.id:
                flight = Flight(action, "verify", None, self.now())
            who = status.rollback_requested.actor
            return self._roll_back(flight, f"rollback requested by {who}", {"requested_by": who})
        return None

    def _verifying_text(self, flight: Flight) -> str:
        due = flight.due(self.policy.resolved.verification_window)
        return f"VERIFYING: {self._describe(flight.action)} until {self._when(due)}"

    # --- housekeeping --------------------------------------------------------------------------

    def housekeeping(self) -> str:
        """Propose dropping the tuner's own indexes unused for the level's drop_unused_after."""
        policy, snapshot = self.policy, self.latest
        after = policy.resolved.drop_unused_after
        if not self.leader or policy.mode is Mode.OBSERVE or snapshot is None:
            return "OBSERVE: no housekeeping"
        gone = self._kept_but_gone(snapshot)
        if after is None:
            return gone or f"IDLE: level {policy.level.value} keeps its indexes"
        statuses = journal.replay(self.journal.read())
        kept = {
            s.index_name: datetime.fromisoformat(s.since)
            for s in statuses.values()
            if s.state is ActionState.KEPT and s.index_name
        }
        candidates = []
        for index in snapshot.indexes:
            if not is_tuner_index(index.comment) or index.idx_scan > 0 or index.name not in kept:
                continue
            unused = self.now() - kept[index.name]
            proposal = Proposal(
                ProposalKind.DROP_UNUSED_INDEX,
                index.table,
                f"DROP INDEX CONCURRENTLY {index.ref}",
                f"Index {index.ref} made by pg-tuner has not been scanned in "
                f"{format_duration(unused)} since it was kept.",
                index_name=index.name,
                estimated_size_bytes=index.size_bytes,
            )
            candidate = Candidate(
                proposal, ActionKind.DROP_INDEX, index.name, index.definition, unused_for=unused
            )
            if not self._known(candidate, statuses):
                candidates.append(candidate)
        decisions = decide(candidates, policy, self._history(statuses), snapshot)
        queued = 0
        for decision in decisions:
            if not decision.rejected:
                self._journal(decision.state, decision.action, decision.action.reason)
                queued += 1
        if gone:
            return gone
        return (
            f"HOUSEKEEPING: {queued} unused tuner index(es) to drop"
            if queued
            else ("IDLE: no unused tuner indexes")
        )

    def _kept_but_gone(self, snapshot: Snapshot) -> str | None:
        """Journal the kept indexes someone dropped (or replaced) outside the tuner: `failed`,
        so that advice may propose them again; the verdict, or None when all are there."""
        gone: list[str] = []
        for status in journal.replay(self.journal.read()).values():
            action = status.to_action()
            if status.state is not ActionState.KEPT or action is None or not action.index_name:
                continue
            if action.kind is not ActionKind.CREATE_INDEX or action.index is None:
                continue
            if any(i.name == action.index_name for i in snapshot.indexes_of(action.table)):
                continue
            if self.executor.own_index(action) is not None:  # the snapshot may lag the catalog
                continue
            reason = (
                f"index {self._name(action)}, kept since {status.since}, is no longer in "
                "the catalog as pg-tuner made it: dropped or replaced outside pg-tuner"
            )
            self._journal(ActionState.FAILED, action, reason, figures={"catalog": "missing"})
            gone.append(self._describe(action))
        if not gone:
            return None
        self._refresh_action_metrics()
        return f"FAILED: dropped outside pg-tuner: {'; '.join(gone)}"

    # --- helpers -----------------------------------------------------------------------------

    def _journal(
        self,
        state: ActionState,
        action: Action,
        reason: str,
        *,
        figures: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.journal.append(state, action=action, reason=reason, figures=figures or {}, data=data)
        _log.info("action.transition", action=action.id, state=state.value, reason=reason)
        self.emit(
            "transition",
            reason,
            action_id=action.id,
            state=state.value,
            figures=dict(figures or {}),
        )

    def _refresh_action_metrics(self) -> None:
        counts = {state: 0 for state in ActionState}
        records = self.journal.read()
        for status in journal.replay(records).values():
            counts[status.state] += 1
        for state, count in counts.items():
            self.metrics.actions.labels(state.value).set(count)
        held = history_from(records).index_sizes.values()
        self.metrics.storage(sum(held), self.policy.limits.index_storage_budget)

    def _describe(self, action: Action | None) -> str:
        if action is None:
            return "(unknown action)"
        return f"{action.kind.value} {self._name(action)} [{action.id}]"

    @staticmethod
    def _name(action: Action) -> str:
        if action.index_name:
            return f"{action.table.schema}.{action.index_name}"
        if action.index is not None:
            return f"{action.table.schema}.{index_name(action.index)}"
        return str(action.table)

    def _when(self, moment: datetime) -> str:
        local = moment.astimezone(self.policy.tz)
        return f"{local:%Y-%m-%d %H:%M:%S} {self.policy.timezone}"


def _parsed(window: Any) -> list[Parsed]:
    """The window's statements that sqlinfo reads, with the tables each reads or writes:
    parsed once for both the action's table queries and the load's controls."""
    found = []
    for q in window.valid_queries:
        info = sqlinfo.analyze(q.query)
        if not isinstance(info, sqlinfo.Unparsed):
            found.append((q, (*info.reads, *info.writes)))
    return found


def _is(name: sqlinfo.TableName, table: TableRef) -> bool:
    return name.name == table.name and name.schema in (None, table.schema)


def _queued(statuses: dict[str, ActionStatus]) -> int:
    """Approved actions not started yet, and the one in flight."""
    return sum(1 for s in statuses.values() if s.state is ActionState.APPROVED or s.in_flight)


def _rolled_back(statuses: dict[str, ActionStatus], shielded: Counter[str]) -> list[IndexSpec]:
    """The indexes verification rolled back that may not be tried again (`may_retry`): the
    advisor proposes the next-best index for their queries instead. Not one that trapped a
    read: its shield lets it back in (`Advisor.shields`), and an index like it would trap
    the read again."""
    found = []
    for status in statuses.values():
        data = status.action or {}
        name = status.index_name
        if (status.state is not ActionState.ROLLED_BACK or not data.get("columns")
                or str(status.figures.get("trapped", "")).strip()
                or data.get("kind") != ActionKind.CREATE_INDEX.value
                or may_retry(status, statuses, shielded[name] if name else 0)):  # fmt: skip
            continue
        table = TableRef(data["table"]["schema"], data["table"]["name"])
        found.append(spec_of(table, data))
    return found
