/* pg-tuner: sample statements */
-- pg_stat_statements_info and the entries of the current database, one array per column
-- (in the order of QueryStat's fields but the text; the sampler reads it in binary and zips
-- the arrays into rows: float8 arrives bit for bit). showtext => false reads no query file:
-- the sampler fetches each entry's text once, with sample_statement_texts.
SELECT i.stats_reset, i.dealloc, s.*
  FROM pg_stat_statements_info i
 CROSS JOIN LATERAL (
    SELECT array_agg(s.userid::bigint) AS userid, array_agg(s.dbid::bigint) AS dbid,
           array_agg(s.queryid) AS queryid, array_agg(s.toplevel) AS toplevel,
           array_agg(s.calls) AS calls, array_agg(s.total_exec_time) AS total_exec_time,
           array_agg(s.mean_exec_time) AS mean_exec_time,
           array_agg(s.stddev_exec_time) AS stddev_exec_time,
           array_agg(s.min_exec_time) AS min_exec_time,
           array_agg(s.max_exec_time) AS max_exec_time, array_agg(s.rows) AS rows,
           array_agg(s.shared_blks_hit) AS shared_blks_hit,
           array_agg(s.shared_blks_read) AS shared_blks_read
      FROM pg_stat_statements(false) s
     WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND s.queryid IS NOT NULL) s
