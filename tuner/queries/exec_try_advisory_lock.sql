-- The leader lock: session-level, scoped to the current database.
SELECT pg_try_advisory_lock(%(key)s) AS held
