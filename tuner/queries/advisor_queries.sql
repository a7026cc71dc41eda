-- The workload of the current database since pg_stat_statements was last reset, top-level
-- statements only, busiest first.
SELECT queryid, query, calls, total_exec_time
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND toplevel
  AND queryid IS NOT NULL
  AND calls > 0
ORDER BY total_exec_time DESC
LIMIT %(limit)s
