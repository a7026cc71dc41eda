/* pg-tuner: sample statements */
-- pg_stat_statements_info and the entries of the current database as one JSON array of
-- arrays (in the order of QUERY_COLUMNS in sampler.py; float8 prints exactly in JSON).
-- showtext => false reads no query file: the sampler fetches each entry's text once,
-- with sample_statement_texts.
SELECT i.stats_reset, i.dealloc,
       (SELECT coalesce(json_agg(json_build_array(
                   s.userid::bigint, s.dbid::bigint, s.queryid, s.toplevel, s.calls,
                   s.total_exec_time, s.mean_exec_time, s.stddev_exec_time, s.min_exec_time,
                   s.max_exec_time, s.rows, s.shared_blks_hit, s.shared_blks_read)), '[]')
          FROM pg_stat_statements(false) s
         WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND s.queryid IS NOT NULL) AS entries
  FROM pg_stat_statements_info i
