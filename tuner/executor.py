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
identity, and one the whitelist could not recreate (`policy.drop_refusal`). The session,
its statements and the cleanups are `fenced.FencedSession`'s; the lock is `leader`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from tuner import db, log, queries
from tuner.errors import RefusedStatement
from tuner.fenced import FencedSession
from tuner.indexinfo import IndexInfo, is_ours, same_index, shape
from tuner.models import Action, ActionKind, ActionResult, ActionState, IndexSpec, TableRef
from tuner.policy import DropTarget, drop_refusal
from tuner.statements import (
    index_name,
    index_names,
    marker,
    recreate_problem,
    spec_from_definition,
)
from tuner.templates import comment_sql, create_sql, drop_sql, render

_log = log.get("executor")


# --- the executor ----------------------------------------------------------------------------


class _Invalid(Exception):
    """The build returned but left an index that is not valid."""


class Executor(FencedSession):
    """Apply, undo and recover actions on one database, as its only leader, one at a time."""

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
            if info is None or is_ours(info, action, unmarked=not info.valid):
                return name
            if info.tuner_made and same_index(info, action.index):  # the tuner's: "built"
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
        return info if info is not None and is_ours(info, action, unmarked=True) else None

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
            if existing is not None and not same_index(existing, spec):
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

    def _equivalent(self, spec: IndexSpec, name: str) -> str | None:
        """The name of another valid index with the same columns, order and INCLUDE list."""
        rows = db.fetch(
            self.session(),
            queries.get("exec_table_indexes"),
            {"schema": spec.table.schema, "table": spec.table.name},
        )
        want = shape(spec)
        for row in rows:
            if row["name"] == name or not row["valid"]:
                continue
            try:
                _, other = spec_from_definition(row["definition"], spec.table.schema)
            except RefusedStatement:
                continue
            if shape(other) == want:
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
            if not is_ours(info, action, unmarked=False):
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
        if info is not None and not is_ours(info, action, unmarked=True):
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


def _marker(action_id: str) -> str:
    return marker(action_id, datetime.now(UTC))
