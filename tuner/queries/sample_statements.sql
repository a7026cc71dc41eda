/* pg-tuner: sample statements */
-- pg_stat_statements of the current database, with pg_stat_statements_info on every row
-- (one row of NULL statement columns when there are none). pg-tuner's own statements,
-- which start with a `/* pg-tuner` comment, are left out.
SELECT i.stats_reset, i.dealloc, s.userid::bigint AS userid, s.dbid::bigint AS dbid,
       s.queryid, s.toplevel, s.query, s.calls, s.total_exec_time, s.mean_exec_time,
       s.stddev_exec_time, s.min_exec_time, s.max_exec_time, s.rows,
       s.shared_blks_hit, s.shared_blks_read
  FROM pg_stat_statements_info i
  LEFT JOIN pg_stat_statements(true) s
    ON s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND s.queryid IS NOT NULL
   AND s.query NOT LIKE '/* pg-tuner%'
