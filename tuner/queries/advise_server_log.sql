-- The tail of the server's current log file (logging_collector on), for the statements a
-- timeout cancelled. Needs pg_read_server_files (or superuser); NULL path: no collector.
SELECT f.path,
       pg_read_file(f.path, greatest((pg_stat_file(f.path)).size - %(bytes)s, 0), %(bytes)s) AS tail
FROM (SELECT pg_current_logfile() AS path) f
WHERE f.path IS NOT NULL
