"""The leader lock: one pg-tuner acts on a database, the others only observe."""

from __future__ import annotations

import hashlib

from tuner import db, log, queries
from tuner.config import Policy
from tuner.errors import DatabaseUnavailable

LEADER_KEY = int.from_bytes(hashlib.sha256(b"pg-tuner").digest()[:8], "big") >> 1

_log = log.get("executor")


class Leadership:
    """The leader lock: `pg_try_advisory_lock` on a session of its own, held until `release`.

    Advisory locks are scoped to one database, so one tuner leads per database; the others
    get False and only observe. A lost session (server restart) loses the lock with it.
    """

    def __init__(self, dsn: str, password: str | None, policy: Policy) -> None:
        self._dsn, self._password, self._policy = dsn, password, policy
        self._conn: db.Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def acquire(self) -> bool:
        """True when this process leads: the lock is still held, or was just taken."""
        if self._conn is not None:
            try:
                db.fetch(self._conn, queries.get("exec_backend_pid"))
                return True
            except db.STATEMENT_ERRORS:
                _log.warning("leader.lost", reason="the leader session went away")
                self.release()
        t = self._policy.timeouts
        try:
            conn = db.connect(self._dsn, password=self._password, lock_timeout=t.lock_timeout,
                              statement_timeout=t.query_timeout)  # fmt: skip
        except DatabaseUnavailable as exc:
            _log.warning("leader.unavailable", reason=str(exc))
            return False
        try:
            rows = db.fetch(conn, queries.get("exec_try_advisory_lock"), {"key": LEADER_KEY})
            held = bool(rows[0]["held"])
        except db.STATEMENT_ERRORS as exc:
            _log.warning("leader.unavailable", reason=db.failure_reason(exc))
            held = False
        if not held:
            conn.close()
            _log.info("leader.busy", reason="another pg-tuner holds the advisory lock")
            return False
        self._conn = conn
        _log.info("leader.acquired", key=LEADER_KEY)
        return True

    def release(self) -> None:
        """Give the lock up by closing its session (which releases every lock it held)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def cancel(self, pid: int) -> bool:
        """pg_cancel_backend(pid) from the leader session (or a short one of its own)."""
        try:
            if self._conn is not None and not self._conn.closed:
                rows = db.fetch(self._conn, queries.get("exec_cancel_backend"), {"pid": pid})
            else:
                with db.connect(self._dsn, password=self._password) as conn:
                    rows = db.fetch(conn, queries.get("exec_cancel_backend"), {"pid": pid})
        except db.STATEMENT_ERRORS:
            return False
        return bool(rows and rows[0]["cancelled"])
