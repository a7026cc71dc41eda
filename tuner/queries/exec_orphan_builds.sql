-- Other pg-tuner sessions of this database still running a statement that names an index
-- (a build orphaned by a killed tuner process).
SELECT pid
FROM pg_stat_activity
WHERE datname = current_database()
  AND application_name = %(application_name)s
  AND pid <> pg_backend_pid()
  AND state <> 'idle'
  AND position(%(needle)s IN query) > 0
