"""The action in flight and what the jobs remember between runs (no I/O).

`Flight`: the one action being baselined, applied or verified (its `Phase`), with its
windows reduced to the table's queries (`Measured`, journaled and replayed). `Recent`: the
samples of the last baseline window and the changes of the tables' indexes (a baseline
needs no wait when no change of its tables came within the window), and the long
statements the samples caught, which pg_stat_statements may never count.
`may_retry`: when a rolled-back index may be proposed again; `shield_history`: the reads a
rolled-back index trapped, and the shields kept for each index.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tuner import verify, workload
from tuner.ledger import ActionStatus
from tuner.models import (
    Action,
    ActionKind,
    ActionResult,
    ActionState,
    LongRunning,
    LongRunningGroup,
    QueryWindow,
    Snapshot,
    TableRef,
    Trap,
)
from tuner.models.records import TransitionData

MAX_ATTEMPTS = 2  # a new index rolled back is tried again at most once (see may_retry)


@dataclass(frozen=True, slots=True)
class Entry:
    """One query's figures inside a window, as verify.EntryLike (journaled and replayed)."""

    queryid: int
    calls: int
    mean_ms: float
    m2: float
    valid: bool = True


def entries(queries: Iterable[QueryWindow], ids: Collection[int]) -> tuple[Entry, ...]:
    """The window's figures of the queries `ids`, as verification reads them.

    With pg_stat_statements.track = all, every EXPLAIN the tuner runs of a client's query
    (thousands when it advises) counts as a nested call of that query taking no time. Where
    a query also ran at top level, its nested entries are left out: they are the tuner's
    own EXPLAINs, or calls from functions, and would dilute the clients' mean.
    """
    chosen = [q for q in queries if q.queryid in ids]
    top = {q.queryid for q in chosen if q.key[3]}
    return tuple(
        Entry(q.queryid, q.calls, q.mean_ms, q.m2, q.valid)
        for q in chosen
        if q.key[3] or q.queryid not in top
    )


@dataclass(frozen=True, slots=True)
class Measured:
    """A window reduced to the queries of one table (and the load's controls), as
    verify.WorkloadLike: what a baseline or a verification window measured."""

    queries: tuple[Entry, ...]
    stats_reset: bool = False
    seconds: float = 0.0

    def to_data(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "stats_reset": self.stats_reset,
            "queries": [[e.queryid, e.calls, e.mean_ms, e.m2, e.valid] for e in self.queries],
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Measured:
        entries = tuple(
            Entry(int(q), int(c), float(m), float(m2), bool(v))
            for q, c, m, m2, v in data.get("queries", [])
        )
        return cls(entries, bool(data.get("stats_reset")), float(data.get("seconds", 0.0)))


class Phase(StrEnum):
    """Where the action in flight stands (the values are the strings older code used)."""

    BASELINE = "baseline"  # its baseline window is being measured
    APPLYING = "applying"  # its statement runs
    VERIFY = "verify"  # applied; its verification window runs


@dataclass
class Flight:
    """The one action in flight and where it stands."""

    action: Action
    phase: Phase
    start: Snapshot | None  # the window's first snapshot
    started: datetime
    texts: dict[int, str] = field(default_factory=dict)  # queryid → text, the table's queries
    baseline: Measured | None = None
    plans_before: dict[int, Any] = field(default_factory=dict)
    watch: verify.Watch | None = None
    result: ActionResult | None = None
    extensions: int = 0
    expected: tuple[int, ...] = ()
    # fingerprint → the lower bound of statements that never finished in the baseline
    captured: dict[str, verify.Stats] = field(default_factory=dict)
    # a rollback decided but not carried out yet (reason, figures): retried at each verify
    undo_pending: tuple[str, dict[str, Any]] | None = None
    # the baseline's sample-to-sample figures of the table's queries (verify's noise floors)
    samples: tuple[dict[int, verify.Stats], ...] = ()
    looks: int = 0  # the last interim look taken at the verification window (0: none)
    # the baseline's end when queries the last change moved are measured again (None: the
    # window's end)
    ready: datetime | None = None
    # the table's queries the change left alone (`watch.unmoved`): its undo leaves them too
    unmoved: frozenset[int] = frozenset()

    def due(self, window: timedelta) -> datetime:
        if self.phase is Phase.BASELINE and self.ready is not None:
            return self.ready
        return self.started + window * (self.extensions + 1 if self.phase is Phase.VERIFY else 1)


def applied_result(action: Action) -> ActionResult:
    """The result of an applied action whose own result is lost (a restart, an operator's
    rollback of an earlier one): what undoing it needs to know."""
    return ActionResult(
        action.id,
        action.kind,
        ActionState.APPLIED,
        index_name=action.index_name,
        index_definition=action.index_definition,
        tuner_made=action.kind is ActionKind.CREATE_INDEX,
    )


@dataclass(frozen=True, slots=True)
class Change:
    """A change of one table's indexes, which came after the moment `at` (the last sample
    that still showed the table as it was, or the tuner's own note once it changed it)."""

    at: datetime
    table: TableRef
    what: str  # "the build of public.t_k", "public.t_k created (invalid)"
    ours: bool = False  # the tuner's own build or undo
    # the queries the tuner's action watches (its reads and writes); None when not known
    # (an operator's change, or not yet)
    watched: frozenset[int] | None = None
    # the queries of its own table the tuner EXPLAINed before and after it, whose plans it
    # left alone and which could not use it: their samples from before it still count
    unmoved: frozenset[int] = frozenset()
    index: str = ""  # the index's schema-qualified name, when one index changed


class Recent:
    """The samples of the last baseline window, the changes of the tables' indexes, and the
    long statements samples caught.

    A change restarts only the baselines of the actions it touches (`state_since`): the
    samples stay, whatever changed, until the statistics are reset.
    Not thread-safe: the jobs call it under the context's lock.
    """

    def __init__(self) -> None:
        # (our clock, snapshot) back to one baseline window, since the statistics' reset
        self.samples: deque[tuple[datetime, Snapshot]] = deque()
        self.changes: deque[Change] = deque()  # oldest first, back to `keep`
        # Long statements by (pid, start): when last seen, and their longest observation.
        self.captures: dict[tuple[int, datetime], tuple[datetime, LongRunning]] = {}

    def add(
        self, now: datetime, snapshot: Snapshot, baseline_window: timedelta, keep: timedelta
    ) -> None:
        """One more sample: `keep` is how long a long statement's observation (and a
        change, which a baseline's controls must leave out) may be needed."""
        samples = self.samples
        if samples:
            then, last = samples[-1]
            if statistics_of(last) != statistics_of(snapshot):
                samples.clear()  # the statistics were reset: every baseline starts again
            self.changes.extend(index_changes(then, last, snapshot))
        samples.append((now, snapshot))
        while len(samples) >= 2 and samples[1][0] <= now - baseline_window:
            samples.popleft()
        while self.changes and self.changes[0].at < now - keep:
            self.changes.popleft()
        for run in snapshot.long_running:
            key = (run.pid, run.started_at)
            seen = self.captures.get(key)
            longest = run if seen is None or run.duration > seen[1].duration else seen[1]
            self.captures[key] = (now, longest)
        for key in [k for k, (seen, _) in self.captures.items() if seen < now - keep]:
            del self.captures[key]

    def changed(
        self,
        now: datetime,
        table: TableRef,
        what: str,
        watched: Iterable[int] | None = None,
        unmoved: Iterable[int] = (),
        index: str = "",
    ) -> None:
        """The tuner changed `table` (`index`): known at once, before a sample shows it.
        What the samples see of that index is the tuner's change, not an operator's."""
        ids = frozenset(watched) if watched is not None else None
        self.changes.append(Change(now, table, what, True, ids, frozenset(unmoved), index))

    def watching(
        self, table: TableRef, watched: Iterable[int], unmoved: Iterable[int] = ()
    ) -> None:
        """The queries the tuner's last change of `table` is verified on, and those of the
        table it left alone, once known."""
        for i in range(len(self.changes) - 1, -1, -1):
            if self.changes[i].table == table and self.changes[i].ours:
                ids, left = frozenset(watched), frozenset(unmoved)
                self.changes[i] = replace(self.changes[i], watched=ids, unmoved=left)
                return

    def state_since(
        self, linked: Callable[[Change], bool] = lambda _: True
    ) -> tuple[datetime, Snapshot] | None:
        """The oldest sample (at most a baseline window old) taken after the last change
        `linked` says moves the action's figures."""
        last = max((c.at for c in self._moving() if linked(c)), default=None)
        return next(((t, s) for t, s in self.samples if last is None or t > last), None)

    def restarts(
        self, moved: Callable[[Change], Collection[int] | None], since: datetime
    ) -> dict[int, tuple[datetime, Snapshot] | None]:
        """Per query that a change after `since` moved (`moved`: the queries it moves, None
        for all, which `state_since` already waited out), the oldest sample taken after
        the last such change; None when no sample came after it yet."""
        last: dict[int, datetime] = {}
        for change in self._moving():
            if change.at >= since:
                for queryid in moved(change) or ():
                    last[queryid] = max(change.at, last.get(queryid, change.at))
        return {
            queryid: next(((t, s) for t, s in self.samples if t > at), None)
            for queryid, at in last.items()
        }

    def _moving(self) -> list[Change]:
        """The changes, less what the samples saw of the tuner's own (its note says which
        queries they moved; the samples cannot tell its build from an operator's)."""
        own = {(c.table, c.index) for c in self.changes if c.ours and c.index}
        return [c for c in self.changes if c.ours or (c.table, c.index) not in own]

    def spanned(self, since: datetime) -> list[Change]:
        """The changes a window opened at `since` spans, oldest first."""
        return [c for c in self._moving() if c.at >= since]

    def captured(self, since: datetime, finished: Iterable[str]) -> list[LongRunningGroup]:
        """Long statements seen since `since` whose texts did not finish in the window
        (`finished`: the texts pg_stat_statements counted), by fingerprint: a
        statement_timeout cancels them before they are counted."""
        known = {workload.fingerprint(text) for text in finished}
        runs = [run for seen, run in self.captures.values() if seen >= since]
        return [g for g in workload.fold_long_running(runs) if g.fingerprint not in known]


def statistics_of(snapshot: Snapshot) -> tuple[object, ...]:
    """What every baseline must not span: the statistics' reset, the database's identity."""
    return (snapshot.stats_reset, snapshot.server.dbid)


def index_changes(then: datetime, before: Snapshot, after: Snapshot) -> list[Change]:
    """Each index that appeared, disappeared or changed validity between two samples, as a
    change of its table after `then` (when `before` was taken)."""
    old = {(i.table, i.name): i.is_valid for i in before.indexes}
    new = {(i.table, i.name): i.is_valid for i in after.indexes}
    found = []
    for table, name in sorted(old.keys() | new.keys(), key=str):
        index = f"{table.schema}.{name}"
        valid = new.get((table, name))
        if valid is None:
            what = f"{index} dropped"
        elif (table, name) not in old:
            what = f"{index} created" + ("" if valid else " (invalid)")
        elif old[(table, name)] != valid:
            what = f"{index} turned {'valid' if valid else 'invalid'}"
        else:
            continue
        found.append(Change(then, table, what, index=index))
    return found


def may_retry(
    rolled_back: ActionStatus, statuses: dict[str, ActionStatus], shields: int = 0
) -> bool:
    """Whether a new index verification rolled back may be tried once more.

    An index that hurt may pay once the table's indexes have changed: another index kept
    on the same table since can take over the queries it slowed (bookings (created_at)
    slows `WHERE user_id = $1 ORDER BY created_at` until (user_id, created_at) exists).
    Never an operator's rollback, never a drop, and at most `MAX_ATTEMPTS` tries in all,
    plus one for each of the `shields` kept for it (`shield_history`).
    """
    typed = rolled_back.typed_action
    if typed is None or typed.kind is not ActionKind.CREATE_INDEX:
        return False
    if "requested_by" in rolled_back.figures:
        return False
    tries = sum(
        1
        for s in statuses.values()
        if s.state is ActionState.ROLLED_BACK and s.index_name == rolled_back.index_name
    )
    if tries >= MAX_ATTEMPTS + shields:
        return False
    return any(
        s.state is ActionState.KEPT
        and s.seq > rolled_back.seq
        and (other := s.typed_action) is not None
        and other.table == typed.table
        and other.kind is ActionKind.CREATE_INDEX
        for s in statuses.values()
    )


def shield_history(
    records: Iterable[Any], statuses: dict[str, ActionStatus]
) -> tuple[list[Trap], Counter[str]]:
    """From the journal: the reads rolled-back indexes trapped (`Verdict.trapped`, with the
    bar figures the index was proposed with), and per index the shields kept for it (the
    `shields` data of a shield's proposal)."""
    proposed: dict[str, dict[str, Any]] = {}
    shielding: dict[str, str] = {}
    for record in records:
        if record.action_id is None:
            continue
        if record.state in (ActionState.PROPOSED.value, ActionState.APPROVED.value):
            proposed.setdefault(record.action_id, record.figures)
        payload = record.payload
        if isinstance(payload, TransitionData) and payload.shields is not None:
            shielding[record.action_id] = payload.shields
    traps = []
    for status in statuses.values():
        typed, name = status.typed_action, status.index_name
        trapped = [q for q in str(status.figures.get("trapped", "")).split() if _integer(q)]
        if status.state is not ActionState.ROLLED_BACK or not trapped or name is None:
            continue
        if typed is None:
            continue
        figures = proposed.get(status.action_id, {})
        table = typed.table
        for queryid in trapped:
            share = float(figures.get("workload_share", 0.0))
            reduction = float(figures.get("cost_reduction", 0.0))
            traps.append(Trap(int(queryid), table, name, share, reduction))
    kept = Counter(
        shielding[s.action_id]
        for s in statuses.values()
        if s.action_id in shielding and s.state is ActionState.KEPT
    )
    return traps, kept


def _integer(text: str) -> bool:
    return text.removeprefix("-").isdigit()
