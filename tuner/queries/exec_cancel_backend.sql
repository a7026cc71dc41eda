-- Cancel the statement a backend is running (the executor's own build session).
SELECT pg_cancel_backend(%(pid)s) AS cancelled
