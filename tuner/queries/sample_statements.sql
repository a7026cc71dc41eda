/* pg-tuner: sample statements */
-- pg_stat_statements of the current database without the texts (showtext => false reads
-- no query file; the sampler fetches texts once per entry with sample_statement_texts),
-- with pg_stat_statements_info on every row (one row of NULL statement columns when there
-- are none).
SELECT i.stats_reset, i.dealloc, s.userid::bigint AS userid, s.dbid::bigint AS dbid,
       s.queryid, s.toplevel, s.calls, s.total_exec_time, s.mean_exec_time,
       s.stddev_exec_time, s.min_exec_time, s.max_exec_time, s.rows,
       s.shared_blks_hit, s.shared_blks_read
  FROM pg_stat_statements_info i
  LEFT JOIN pg_stat_statements(false) s
    ON s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND s.queryid IS NOT NULL
