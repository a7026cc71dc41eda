"""Run whitelisted actions on the database, fenced, one at a time, and clean up what fails.

The recipe for every action:
  1. Only the leader acts: a session-level advisory lock, held for the life of the Executor.
  2. One action at a time in this process (a threading lock); a second one is rejected.
  3. Render from the closed set of templates in `tuner.statements` (identifiers quoted).
  4. Parse the rendered text again (`check`): exactly one whitelisted statement, or refuse.
  5. Run it on a dedicated autocommit session fenced by the policy's timeouts (the waits of
     the CONCURRENTLY statements for older transactions by `concurrent_lock_timeout`).
  6. After a failed, cancelled or interrupted build, drop the INVALID index it left.
A drop first captures `pg_get_indexdef` (so undo can recreate it), and refuses an index the
tuner did not make (unless the policy allows it), one that backs a constraint or the replica
identity, and one the whitelist could not recreate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from tuner import db, log, queries
from tuner.config import Policy
from tuner.errors import Canceled, DatabaseUnavailable, LockTimeout, RefusedStatement
from tuner.leader import Leadership
from tuner.models import Action, ActionKind, ActionResult, ActionState, IndexSpec, TableRef
from tuner.policy import DropTarget, drop_refusal
from tuner.statements import (
    MAX_NAME_BYTES,
    NAME_PREFIX,
    check,
    clip,
    index_name,
    index_names,
    is_tuner_index,
    made_by,
    marker,
    quote_ident,
    recreate_problem,
    spec_from_definition,
)
from tuner.templates import comment_sql, create_sql, drop_sql, render

_log = log.get("executor")


# --- the executor ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """One index as the catalog describes it (exec_index_info.sql)."""

    schema: str
    name: str
    table_name: str
    definition: str
    valid: bool
    is_unique: bool
    replica_identity: bool
    backs_constraint: bool
    partitioned: bool
    comment: str | None
    size_bytes: int

    @property
    def tuner_made(self) -> bool:
        return is_tuner_index(self.comment)


class _Invalid(Exception):
    """The build returned but left an index that is not valid."""


def _timed_out(exc: BaseException) -> bool:
    """A lock or statement timeout (the driver's error, or ours wrapping it)."""
    timeouts = (LockTimeout, Canceled)
    return isinstance(exc, timeouts) or isinstance(exc.__cause__, timeouts)


class Executor:
    """Apply, undo and recover actions on one database, as its only leader, one at a time."""

    def __init__(
        self, dsn: str, password: str | None, policy: Policy, *, recovery_wait: float = 30.0
    ) -> None:
        self.dsn, self.password, self.policy = dsn, password, policy
        self.leadership = Leadership(dsn, password, policy)
        self.recovery_wait = recovery_wait
        self._conn: db.Connection | None = None
        self._fenced_with = policy.timeouts
        self._busy = threading.Lock()
        self._pid: int | None = None
        self._cancelled = False

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reload(self, policy: Policy) -> None:
        """Take a reloaded policy; the work session reopens with new timeouts before its next
        statement (assigning `.policy` does the same for the work session)."""
        self.policy = policy
        self.leadership._policy = policy

    def close(self) -> None:
        """Close the work session and give up the leader lock."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self.leadership.release()

    # -- sessions and statements --

    def session(self) -> db.Connection:
        """The dedicated autocommit session, fenced by the policy's timeouts; reopened if lost."""
        t = self.policy.timeouts
        if self._conn is not None and self._fenced_with != t:
            self._conn.close()  # the policy was reloaded with other timeouts
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._fenced_with = t
            self._conn = db.connect(
                self.dsn,
                password=self.password,
                lock_timeout=t.lock_timeout,
                statement_timeout=t.statement_timeout,
                options={
                    "maintenance_work_mem": f"{max(t.maintenance_work_mem // 1024, 1024)}kB",
                    # check() reads '...' literals with backslashes as plain characters
                    "standard_conforming_strings": "on",
                    # an orphaned build (tuner killed) notices its client is gone and stops
                    "client_connection_check_interval": "1000",
                },
            )
            self._pid = int(db.fetch(self._conn, queries.get("exec_backend_pid"))[0]["pid"])
        return self._conn

    def _run_statement(self, statement: db.Composed, action_id: str) -> str:
        """Render, re-parse (refuse unless whitelisted) and run exactly the checked text."""
        conn = self.session()
        text = db.render(conn, statement)
        concurrent = "CONCURRENTLY" in check(text).head
        _log.info("executor.statement", action=action_id, statement=text)
        try:
            if concurrent:
                self._lock_timeout(conn, self.policy.timeouts.concurrent_lock_timeout)
            try:
                db.execute(conn, text)
            finally:
                if concurrent and not conn.broken and not conn.closed:
                    self._lock_timeout(conn, self.policy.timeouts.lock_timeout)
        except DatabaseUnavailable:
            if conn.broken or conn.closed:  # lock and statement timeouts keep the session
                self._conn = None
            raise
        return text

    def _transient(self, exc: BaseException) -> bool:
        """A timeout that a later try may not meet; never the tuner's own cancellation."""
        return _timed_out(exc) and not self._cancelled

    @staticmethod
    def _lock_timeout(conn: db.Connection, timeout: timedelta) -> None:
        ms = f"{int(timeout.total_seconds() * 1000)}ms"
        db.fetch(conn, queries.get("exec_set_lock_timeout"), {"timeout": ms})

    def _info(self, schema: str, name: str) -> IndexInfo | None:
        rows = db.fetch(
            self.session(), queries.get("exec_index_info"), {"schema": schema, "name": name}
        )
        return IndexInfo(**rows[0]) if rows else None

    def cancel(self) -> bool:
        """Cancel the running statement (from another thread, e.g. on SIGTERM)."""
        if self._pid is None or not self._busy.locked():
            return False
        self._cancelled = True
        _log.warning("executor.cancel", pid=self._pid)
        return self.leadership.cancel(self._pid)

    # -- the public verbs --

    def apply(
        self, action: Action, *, before_drop: Callable[[str], None] | None = None
    ) -> ActionResult:
        """Run `action`. `before_drop(definition)` is called (to journal it) before any DROP;
        if it raises, nothing is dropped."""
        return self._guarded(action, lambda: self._apply(action, before_drop))

    def undo(self, action: Action, result: ActionResult) -> ActionResult:
        """Take back what `apply` did: drop a built index, recreate a dropped one."""
        return self._guarded(action, lambda: self._undo(action, result))

    def recover(self, action: Action) -> ActionResult:
        """Finish or clean an action a crash left in `applying`, from the catalog's state."""
        return self._guarded(action, lambda: self._recover(action))

    def free_name(self, action: Action) -> str | None:
        """The name a create_index action builds under: its journaled name or the spec's
        first name that no other index holds (anyone may name an index `pgt_...`); None when
        all are taken."""
        if action.index is None:
            return action.index_name
        names = index_names(action.index)
        preferred = [action.index_name] if action.index_name in names else []
        for name in dict.fromkeys([*preferred, *names]):
            assert name is not None
            info = self._info(action.table.schema, name)
            if info is None or self._ours(info, action, unmarked=not info.valid):
                return name
            if info.tuner_made and self._same(info, action.index):  # the tuner's: "built"
                return name
            _log.warning("index.name_taken", action=action.id, index=name,
                         table=info.table_name, comment=info.comment)  # fmt: skip
        return None

    def own_index(self, action: Action) -> IndexInfo | None:
        """The index this create_index action built under its journaled name, if that index
        is on its table, with its columns, and unmarked (a build cut before its COMMENT) or
        marked for this action; None otherwise (gone, or another's index of that name)."""
        name = action.index_name or (index_name(action.index) if action.index else None)
        if name is None:
            return None
        info = self._info(action.table.schema, name)
        return info if info is not None and self._ours(info, action, unmarked=True) else None

    @staticmethod
    def _ours(info: IndexInfo, action: Action, *, unmarked: bool) -> bool:
        """Is `info` the index `action` builds: its table, its definition, and its marker
        (or, with `unmarked`, no comment at all)?"""
        if action.index is None or not Executor._same(info, action.index):
            return False
        return made_by(info.comment, action.id) or (unmarked and info.comment is None)

    def cleanup_invalid(self, prefix: str = NAME_PREFIX) -> list[str]:
        """Drop every INVALID index whose name starts with `prefix` (the tuner's leftovers)."""
        if not self.leadership.acquire():
            return []
        with self._busy:
            rows = db.fetch(
                self.session(),
                queries.get("exec_invalid_indexes"),
                {"prefix": prefix, "schema": None, "table": None},
            )
            dropped: list[str] = []
            for row in rows:
                info = self._info(row["schema"], row["name"])
                if info is None or (info.comment is not None and not info.tuner_made):
                    continue  # named like ours, commented by someone else: not ours to drop
                self._stop_orphans(row["name"])
                dropped += self._drop_leftover(row["schema"], row["name"], "cleanup")
            return dropped

    def _guarded(self, action: Action, step: Callable[[], ActionResult]) -> ActionResult:
        if not self.leadership.acquire():
            return self._result(
                action,
                ActionState.REJECTED,
                reason="not the leader: another pg-tuner holds this database",
            )
        if not self._busy.acquire(blocking=False):
            return self._result(action, ActionState.REJECTED, reason="another action is in flight")
        self._cancelled = False
        try:
            return step()
        except RefusedStatement as exc:
            _log.error("executor.refused", action=action.id, reason=str(exc))
            return self._result(action, ActionState.REJECTED, reason=f"refused: {exc}")
        except db.STATEMENT_ERRORS as exc:  # a catalog read before any change
            return self._result(action, ActionState.FAILED, reason=db.failure_reason(exc))
        finally:
            self._busy.release()

    @staticmethod
    def _result(action: Action, state: ActionState, **fields: object) -> ActionResult:
        return ActionResult(action.id, action.kind, state, **fields)  # type: ignore[arg-type]

    # -- the steps --

    def _apply(self, action: Action, before_drop: Callable[[str], None] | None) -> ActionResult:
        if action.kind is ActionKind.CREATE_INDEX:
            return self._create(action)
        if action.kind is ActionKind.DROP_INDEX:
            return self._drop(action, before_drop)
        return self._maintain(action)

    def _create(self, action: Action) -> ActionResult:
        render(action)  # refuses an action without a spec, or with a name not the spec's
        assert action.index is not None
        name = self.free_name(action)
        if name is None:
            reason = (
                f"every name pg-tuner gives this index ({index_name(action.index)} and "
                f"{len(index_names(action.index)) - 1} more) is taken by another index"
            )
            return self._result(action, ActionState.REJECTED, reason=reason)  # fmt: skip
        statement = create_sql(action.index, name)
        return self._build(action, action.index, name, statement, action.id, mark=True)

    def _build(
        self, action: Action, spec: IndexSpec, name: str, statement: db.Composed, marker_id: str,
        *, mark: bool,
    ) -> ActionResult:  # fmt: skip
        """Build `name` (idempotent: an existing valid index is adopted), mark it if `mark`,
        check that it is valid; on any failure drop what the build left."""
        schema = spec.table.schema
        estimate = action.figures.get("estimated_size_bytes")
        base = self._result(
            action, ActionState.FAILED, index_name=name, tuner_made=mark,
            estimated_size_bytes=int(estimate) if isinstance(estimate, int | float) else None,
        )  # fmt: skip
        started, sent = time.monotonic(), False
        cleaned: tuple[str, ...] = ()
        try:
            existing = self._info(schema, name)
            if existing is not None and not self._same(existing, spec):
                reason = (f"the name {name} is taken by another index, on {existing.table_name}:"
                          f" {existing.definition}")  # fmt: skip
                return replace(base, reason=reason, tuner_made=False)
            if existing is not None and existing.valid:
                if mark and existing.comment is None:  # never over a comment it did not write
                    self._run_statement(comment_sql(schema, name, _marker(marker_id)), action.id)
                ours = existing.comment is None or existing.tuner_made
                return replace(base, state=ActionState.APPLIED, reason="already built",
                               index_definition=existing.definition, tuner_made=mark and ours,
                               size_bytes=existing.size_bytes)  # fmt: skip
            if existing is not None:
                cleaned = self._drop_leftover(schema, name, action.id)
            if twin := self._equivalent(spec, name):
                return replace(base, state=ActionState.REJECTED,
                               reason=f"an equivalent index {twin} already exists")  # fmt: skip
            sent = True
            text = self._run_statement(statement, action.id)
            if mark:
                self._run_statement(comment_sql(schema, name, _marker(marker_id)), action.id)
            info = self._info(schema, name)
            if info is None or not info.valid:
                raise _Invalid(f"index {name} is not valid after the build")
        except (*db.STATEMENT_ERRORS, _Invalid) as exc:
            reason = "cancelled by the tuner" if self._cancelled else db.failure_reason(exc)
            _log.warning("index.build_failed", action=action.id, index=name, reason=reason)
            if sent:
                cleaned += self._clean_after_failure(schema, name, action.id)
                if leftover := self._leftover(schema, name):
                    reason += f"; {leftover}"
            return replace(base, reason=reason, statement=statement.as_string(None),
                           seconds=time.monotonic() - started, cleaned_up=cleaned)  # fmt: skip
        seconds = time.monotonic() - started
        _log.info("index.built", action=action.id, index=name, seconds=round(seconds, 3),
                  size=info.size_bytes, estimate=base.estimated_size_bytes)  # fmt: skip
        return replace(base, state=ActionState.APPLIED, statement=text, seconds=seconds,
                       index_definition=info.definition, size_bytes=info.size_bytes,
                       cleaned_up=cleaned)  # fmt: skip

    @staticmethod
    def _same(info: IndexInfo, spec: IndexSpec) -> bool:
        """Is `info` on `spec`'s table with `spec`'s columns, order, INCLUDE and method?"""
        if info.table_name != spec.table.name:
            return False
        try:
            _, found = spec_from_definition(info.definition, info.schema)
        except RefusedStatement:
            # pg_get_indexdef writes expressions and predicates its own way (`lower((email)
            # ::text)`, `WHERE (status = 'open'::text)`), which the whitelist does not read
            # back: compare what both spell alike. The marker check still follows.
            return bool(spec.expressions or spec.predicate) and _alike(info.definition, spec)
        return _shape(found) == _shape(spec)

    def _equivalent(self, spec: IndexSpec, name: str) -> str | None:
        """The name of another valid index with the same columns, order and INCLUDE list."""
        rows = db.fetch(
            self.session(),
            queries.get("exec_table_indexes"),
            {"schema": spec.table.schema, "table": spec.table.name},
        )
        want = _shape(spec)
        for row in rows:
            if row["name"] == name or not row["valid"]:
                continue
            try:
                _, other = spec_from_definition(row["definition"], spec.table.schema)
            except RefusedStatement:
                continue
            if _shape(other) == want:
                return str(row["name"])
        return None

    def _drop(self, action: Action, before_drop: Callable[[str], None] | None) -> ActionResult:
        schema, name = action.table.schema, action.index_name or ""
        statement = render(action)
        base = self._result(action, ActionState.REJECTED, index_name=name)
        info = self._info(schema, name)
        if info is None:
            return replace(base, reason=f"no index {schema}.{name}")
        base = replace(base, index_definition=info.definition, tuner_made=info.tuner_made)
        if refusal := self._may_drop(info, action.table):
            _log.warning("index.drop_refused", action=action.id, index=name, reason=refusal)
            return replace(base, reason=refusal)
        if before_drop is not None:
            before_drop(info.definition)  # journaled first; if that fails, nothing is dropped
        started = time.monotonic()
        try:
            text = self._run_statement(statement, action.id)
        except db.STATEMENT_ERRORS as exc:
            reason = "cancelled by the tuner" if self._cancelled else db.failure_reason(exc)
            after = self._safe_info(schema, name)
            if after is not None and not after.valid:
                reason += "; the index was left INVALID (unused by the planner); drop it again"
            return replace(base, state=ActionState.FAILED, reason=reason,
                           seconds=time.monotonic() - started)  # fmt: skip
        _log.info("index.dropped", action=action.id, index=name, definition=info.definition)
        return replace(base, state=ActionState.APPLIED, statement=text, size_bytes=info.size_bytes,
                       seconds=time.monotonic() - started)  # fmt: skip

    def _may_drop(self, info: IndexInfo, table: TableRef) -> str | None:
        """None when the live index may be dropped, else the reason (`policy.drop_refusal`)."""
        target = DropTarget(
            ref=f"{info.schema}.{info.name}", table_name=info.table_name, own=info.tuner_made,
            backs_constraint=info.backs_constraint, replica_identity=info.replica_identity,
            unique=info.is_unique, partitioned=info.partitioned,
            recreate_problem=recreate_problem(info.definition, info.schema),
        )  # fmt: skip
        refusal = drop_refusal(target, table, self.policy)
        return None if refusal is None else refusal[1]

    def _maintain(self, action: Action) -> ActionResult:
        statement = render(action)
        base = self._result(action, ActionState.APPLIED, index_name=action.index_name)
        started = time.monotonic()
        try:
            text = self._run_statement(statement, action.id)
        except db.STATEMENT_ERRORS as exc:
            reason = "cancelled by the tuner" if self._cancelled else db.failure_reason(exc)
            cleaned = self._clean_reindex(action) if action.kind is ActionKind.REINDEX else ()
            return replace(base, state=ActionState.FAILED, reason=reason, cleaned_up=cleaned,
                           seconds=time.monotonic() - started)  # fmt: skip
        seconds = time.monotonic() - started
        _log.info("executor.done", action=action.id, kind=str(action.kind), seconds=seconds)
        return replace(base, statement=text, seconds=seconds)

    def _undo(self, action: Action, result: ActionResult) -> ActionResult:
        base = self._result(action, ActionState.ROLLED_BACK, index_name=result.index_name)
        if action.kind is ActionKind.CREATE_INDEX:
            name = result.index_name or (index_name(action.index) if action.index else "")
            schema, base = action.table.schema, replace(base, index_name=name)
            info = self._info(schema, name)
            if info is None:
                return replace(base, reason="the index is already gone")
            base = replace(base, index_definition=info.definition, tuner_made=info.tuner_made)
            if not self._ours(info, action, unmarked=False):
                reason = (
                    f"index {name} (on {info.table_name}, comment {info.comment!r}) is not "
                    f"the one action {action.id} built: not dropped"
                )
                return replace(base, state=ActionState.FAILED, reason=reason)
            try:
                return replace(
                    base, statement=self._run_statement(drop_sql(schema, name), action.id)
                )
            except db.STATEMENT_ERRORS as exc:
                return replace(base, state=ActionState.FAILED, reason=db.failure_reason(exc),
                               transient=self._transient(exc))  # fmt: skip
        if action.kind is ActionKind.DROP_INDEX:
            definition = result.index_definition or action.index_definition
            if not definition:
                reason = "no journaled definition to recreate the index from"
                return replace(base, state=ActionState.FAILED, reason=reason)
            name, spec = spec_from_definition(definition, action.table.schema)
            statement = create_sql(spec, name)
            built = self._build(action, spec, name, statement, action.id, mark=result.tuner_made)
            state = ActionState.ROLLED_BACK if built.state is ActionState.APPLIED else built.state
            return replace(built, state=state)
        return replace(base, reason=f"{action.kind} has nothing to undo")

    def _recover(self, action: Action) -> ActionResult:
        """A crash left `action` in `applying`: read the catalog, then finish or clean up."""
        name = action.index_name
        if action.index is not None and name not in index_names(action.index):
            name = index_name(action.index)
        schema = action.table.schema
        base = self._result(action, ActionState.FAILED, index_name=name)
        if action.kind not in (ActionKind.CREATE_INDEX, ActionKind.DROP_INDEX) or not name:
            cleaned = self._clean_reindex(action) if action.kind is ActionKind.REINDEX else ()
            reason = f"{action.kind} was interrupted; nothing was left behind"
            return replace(base, cleaned_up=cleaned, reason=reason)
        self._stop_orphans(name)
        info = self._info(schema, name)
        if action.kind is ActionKind.DROP_INDEX:
            if info is not None and info.valid:
                return replace(base, reason="interrupted before the drop; the index is intact")
            if info is not None:  # an interrupted DROP INDEX CONCURRENTLY leaves it INVALID
                self._clean_after_failure(schema, name, action.id)
            return replace(base, state=ActionState.APPLIED, reason="the drop was finished")
        if info is not None and not self._ours(info, action, unmarked=True):
            return replace(base, reason=f"interrupted before the index existed; {name} is "
                                        f"another index (on {info.table_name})")  # fmt: skip
        if info is None:
            return replace(base, reason="interrupted before the index existed")
        if info.valid:
            if not info.tuner_made:
                self._run_statement(comment_sql(schema, name, _marker(action.id)), action.id)
            return replace(base, state=ActionState.APPLIED, index_definition=info.definition,
                           tuner_made=True, size_bytes=info.size_bytes,
                           reason="the build finished before the interruption")  # fmt: skip
        cleaned = self._clean_after_failure(schema, name, action.id)
        leftover = self._leftover(schema, name) or "its INVALID index was dropped"
        return replace(base, reason=f"interrupted build; {leftover}", cleaned_up=cleaned)

    # -- cleaning up --

    def _drop_leftover(self, schema: str, name: str, action_id: str) -> tuple[str, ...]:
        """DROP INDEX CONCURRENTLY IF EXISTS one leftover; () when it could not be dropped."""
        try:
            self._run_statement(drop_sql(schema, name), action_id)
        except db.STATEMENT_ERRORS as exc:
            _log.warning("index.cleanup_failed", index=name, reason=db.failure_reason(exc))
            return ()
        _log.info("index.cleaned_up", action=action_id, index=name)
        return (name,)

    def _clean_after_failure(self, schema: str, name: str, action_id: str) -> tuple[str, ...]:
        """Drop what a failed build left (see `_retry_cleanup`)."""

        def leftovers() -> list[tuple[str, str]]:
            return [(schema, name)] if self._info(schema, name) is not None else []

        return self._retry_cleanup(leftovers, action_id)

    def _retry_cleanup(
        self, leftovers: Callable[[], list[tuple[str, str]]], action_id: str
    ) -> tuple[str, ...]:
        """Drop every (schema, name) `leftovers()` finds, retrying (and reconnecting after a
        restart) until none is left or `recovery_wait` runs out: the blocker that made a build
        time out blocks its cleanup too, until it ends."""
        deadline = time.monotonic() + self.recovery_wait
        cleaned: tuple[str, ...] = ()
        while True:
            try:
                found = leftovers()
                if not found:
                    return cleaned
                if self.leadership.acquire():
                    for schema, name in found:
                        cleaned += self._drop_leftover(schema, name, action_id)
            except db.STATEMENT_ERRORS as exc:
                self._conn = None
                _log.info("executor.reconnecting", reason=db.failure_reason(exc))
            if time.monotonic() >= deadline:
                return cleaned
            time.sleep(0.5)

    def _leftover(self, schema: str, name: str) -> str:
        info = self._safe_info(schema, name)
        if info is None:
            return ""
        state = "valid" if info.valid else "INVALID"
        return f"index {name} is still present ({state}); cleanup_invalid will retry"

    def _safe_info(self, schema: str, name: str) -> IndexInfo | None:
        try:
            return self._info(schema, name)
        except db.STATEMENT_ERRORS:
            self._conn = None
            return None

    def _clean_reindex(self, action: Action) -> tuple[str, ...]:
        """Drop the INVALID `<name>_ccnew*`/`_ccold*` copies a failed REINDEX CONCURRENTLY left."""
        prefixes = [
            clip(action.index_name or "", MAX_NAME_BYTES - len(suffix)) + suffix
            for suffix in ("_ccnew", "_ccold")
        ]

        def leftovers() -> list[tuple[str, str]]:
            found: list[tuple[str, str]] = []
            for prefix in prefixes:
                params = {"prefix": prefix, "schema": action.table.schema,
                          "table": action.table.name}  # fmt: skip
                rows = db.fetch(self.session(), queries.get("exec_invalid_indexes"), params)
                found += [(row["schema"], row["name"]) for row in rows]
            return found

        return self._retry_cleanup(leftovers, action.id)

    def _stop_orphans(self, name: str) -> None:
        """Cancel builds of `name` left running by a killed tuner, and wait until they end."""
        needle = db.render(self.session(), db.Identifier(name))
        params = {"application_name": db.APPLICATION_NAME, "needle": needle}
        deadline = time.monotonic() + self.recovery_wait
        while rows := db.fetch(self.session(), queries.get("exec_orphan_builds"), params):
            for row in rows:
                _log.warning("executor.orphan_cancelled", pid=row["pid"], index=name)
                self.leadership.cancel(int(row["pid"]))
            if time.monotonic() >= deadline:
                return
            time.sleep(0.2)


def _marker(action_id: str) -> str:
    return marker(action_id, datetime.now(UTC))


def _alike(definition: str, spec: IndexSpec) -> bool:
    """An expression or partial index's `pg_get_indexdef` text against `spec`: the method,
    each key and INCLUDE column named in order, a WHERE exactly when `spec` has one."""
    head, _, where = definition.partition(" WHERE ")
    method = f" USING {spec.method} ("
    if method not in head or bool(where) != bool(spec.predicate):
        return False
    keys, _, include = head.split(method, 1)[1].partition(" INCLUDE (")

    def at(text: str, column: str, start: int) -> int:  # bare, or quoted where it must be
        hits = [i for form in (column, quote_ident(column))
                if (i := text.find(form, start)) >= 0]  # fmt: skip
        return min(hits, default=-1)

    found = -1
    for column in spec.columns:
        found = at(keys, column, found + 1)
        if found < 0:
            return False
    return all(at(include, column, 0) >= 0 for column in spec.include)


def _shape(spec: IndexSpec) -> tuple[tuple[str, ...], tuple[str, ...], tuple[bool, ...], str]:
    desc = spec.descending or (False,) * len(spec.columns)  # keys: lower(email) is not email
    return spec.keys, spec.include, desc, f"{spec.method} {spec.where}".strip()
