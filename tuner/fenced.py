"""The executor's own session, fenced by the policy's timeouts, and the cleanups it runs.

Every statement goes through `_run_statement`: rendered, re-parsed by the whitelist
(`statements.check`), run on a dedicated autocommit session whose CONCURRENTLY statements
wait for older transactions at most `concurrent_lock_timeout`. What a failed build, drop or
REINDEX leaves (an INVALID index) is dropped again until none is left or `recovery_wait`
runs out; a build a killed tuner left running is cancelled first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Self

from tuner import db, log, queries
from tuner.config import Policy
from tuner.errors import Canceled, DatabaseUnavailable, LockTimeout
from tuner.indexinfo import IndexInfo
from tuner.leader import Leadership
from tuner.models import Action
from tuner.statements import MAX_NAME_BYTES, NAME_PREFIX, check, clip
from tuner.templates import drop_sql

_log = log.get("executor")


def _timed_out(exc: BaseException) -> bool:
    """A lock or statement timeout (the driver's error, or ours wrapping it)."""
    timeouts = (LockTimeout, Canceled)
    return isinstance(exc, timeouts) or isinstance(exc.__cause__, timeouts)


class FencedSession:
    """The leader lock, the work session and its statements, and the cleanups: what
    `Executor`'s verbs run on."""

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

    def __enter__(self) -> Self:
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
