"""The tuning loop's work, one method per scheduled job, each returning a one-line verdict.

(Skeleton: sampling and leadership only; the layers are wired in as they land.)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tuner import db, log
from tuner.config import Policy
from tuner.errors import DatabaseUnavailable
from tuner.metrics import Metrics

if TYPE_CHECKING:
    from tuner.daemon import Event

_log = log.get("loop")


class Loop:
    """Sample → advise → act → verify, plus housekeeping; state shared by the jobs."""

    def __init__(
        self,
        policy: Policy,
        *,
        password: str | None,
        metrics: Metrics,
        emit: Callable[[Event], None],
    ) -> None:
        self.policy = policy
        self.password = password
        self.metrics = metrics
        self.emit = emit
        self._lock = threading.RLock()
        self._conn: db.Connection | None = None

    def set_policy(self, policy: Policy) -> None:
        with self._lock:
            self.policy = policy

    # --- connections ----------------------------------------------------------------------

    def _connection(self) -> db.Connection:
        if self._conn is None or self._conn.closed:
            t = self.policy.timeouts
            self._conn = db.connect(
                self.policy.target.dsn, password=self.password,
                lock_timeout=t.lock_timeout, statement_timeout=t.query_timeout,
            )  # fmt: skip
        return self._conn

    def disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                conn.close()

    def close(self) -> None:
        self.disconnect()

    def cancel(self) -> None:
        """Cancel a running statement (SIGTERM after the grace)."""

    # --- jobs -------------------------------------------------------------------------------

    def resume(self) -> str:
        """Connect; replay the journal. Raises DatabaseUnavailable when the database is down."""
        self._connection()
        return f"OBSERVE: connected to {self.policy.target.redacted}"

    def sample(self) -> str:
        rows = self._fetch(
            "SELECT count(*) AS n FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        self.metrics.sampled()
        return f"OBSERVE: {rows[0]['n']} queries sampled"

    def advise(self) -> str:
        return "OBSERVE: nothing to advise yet"

    def act(self) -> str:
        return "OBSERVE: nothing to do"

    def verify(self) -> str:
        return "OBSERVE: nothing in flight"

    def housekeeping(self) -> str:
        return "OBSERVE: no housekeeping due"

    def _fetch(self, query: str, params: Any = ()) -> list[db.Row]:
        try:
            return db.fetch(self._connection(), query, params)
        except DatabaseUnavailable:
            self.disconnect()
            raise
