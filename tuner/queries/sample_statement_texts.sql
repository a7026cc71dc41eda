/* pg-tuner: sample statement texts */
-- The texts of the given pg_stat_statements entries of the current database. Parameter:
-- queryids (bigint[]).
SELECT s.userid::bigint AS userid, s.dbid::bigint AS dbid, s.queryid, s.toplevel, s.query
  FROM pg_stat_statements(true) s
  JOIN (SELECT DISTINCT unnest(%(queryids)s::bigint[])) AS wanted(queryid)
    ON wanted.queryid = s.queryid
 WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
