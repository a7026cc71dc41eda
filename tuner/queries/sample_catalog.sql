/* pg-tuner: sample catalog */
-- One round trip for everything but pg_stat_statements: the server, the current database,
-- its user tables and indexes, sessions, locks, standbys, index builds and long statements.
-- Tables and indexes come as one array per column (t_* and i_*, in the same row order), read
-- in binary: the sampler zips them into rows, much cheaper than decoding JSON. They are read
-- from pg_class/pg_index with the pg_stat_get_*(oid) functions, as the pg_stat_user_tables
-- and pg_stat_user_indexes views do (same rows, same values), without the views' overhead;
-- the sampler sums a table's idx_scan and idx_tup_fetch over its indexes' rows, as
-- pg_stat_all_tables does. Parameter: long_query (seconds). Every part is readable by a role
-- with pg_monitor. Sizes come from pg_class.relpages (as of the last VACUUM, ANALYZE or
-- CREATE INDEX), not from pg_relation_size: that would lock every relation until the end of
-- the statement, and a catalog of many thousand relations would fill the lock table. Only
-- the indexes pg-tuner made (comment 'pg-tuner: ...') are measured exactly. An index's name
-- and definition do not change while the xmin of its and its table's pg_class rows stay the
-- same (i_xmin, i_table_xmin), so the sampler reads them once (sample_index_definitions); its
-- table's schema and name come from the t_* arrays (an index lives in its table's schema).
SELECT
    now() AS taken_at,
    current_setting('server_version_num')::int AS version_num,
    version() AS version,
    current_database() AS database,
    d.oid::bigint AS dbid,
    pg_is_in_recovery() AS in_recovery,
    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
    pg_has_role('pg_read_all_stats', 'USAGE') AS read_all_stats,
    (SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements') AS pss_version,
    (SELECT json_object_agg(name, setting) FROM pg_settings
      WHERE name IN ('max_connections', 'shared_buffers', 'work_mem', 'maintenance_work_mem',
                     'effective_cache_size', 'random_page_cost', 'seq_page_cost',
                     'effective_io_concurrency', 'max_parallel_maintenance_workers',
                     'max_parallel_workers_per_gather', 'autovacuum', 'track_io_timing',
                     'track_activity_query_size', 'compute_query_id',
                     'shared_preload_libraries', 'pg_stat_statements.max',
                     'pg_stat_statements.track', 'server_version', 'block_size',
                     'default_statistics_target', 'jit', 'statement_timeout',
                     'lock_timeout', 'idle_in_transaction_session_timeout')) AS settings,
    (SELECT row_to_json(s) FROM (
        SELECT coalesce(blks_hit, 0) AS blks_hit, coalesce(blks_read, 0) AS blks_read,
               coalesce(xact_commit, 0) AS xact_commit,
               coalesce(xact_rollback, 0) AS xact_rollback,
               coalesce(deadlocks, 0) AS deadlocks, coalesce(temp_bytes, 0) AS temp_bytes
          FROM pg_stat_database WHERE datid = d.oid) s) AS database_stats,
    (SELECT coalesce(json_object_agg(state, n), '{}') FROM (
        SELECT coalesce(state, 'unknown') AS state, count(*) AS n
          FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1) s) AS sessions,
    (SELECT greatest(extract(epoch FROM now() - min(xact_start)), 0)::float8 FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) AS oldest_xact_age,
    (SELECT count(*) FROM pg_locks WHERE NOT granted) AS waiting_locks,
    (SELECT coalesce(json_agg(r), '[]') FROM (
        SELECT application_name AS name, client_addr::text AS client, state,
               extract(epoch FROM replay_lag)::float8 AS replay_lag,
               extract(epoch FROM write_lag)::float8 AS write_lag,
               extract(epoch FROM flush_lag)::float8 AS flush_lag
          FROM pg_stat_replication) r) AS replicas,
    (SELECT coalesce(json_agg(b), '[]') FROM (
        SELECT p.pid, tn.nspname AS table_schema, t.relname AS table_name,
               CASE WHEN i.oid IS NOT NULL THEN quote_ident(inn.nspname) || '.' ||
                    quote_ident(i.relname) END AS index,
               p.command, p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total
          FROM pg_stat_progress_create_index p
          LEFT JOIN pg_class t ON t.oid = p.relid
          LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
          LEFT JOIN pg_class i ON i.oid = p.index_relid AND p.index_relid <> 0
          LEFT JOIN pg_namespace inn ON inn.oid = i.relnamespace
         WHERE p.datid = d.oid) b) AS index_builds,
    (SELECT coalesce(json_agg(a), '[]') FROM (
        SELECT pid, usename AS user, query, query_start AS started_at,
               extract(epoch FROM now() - query_start)::float8 AS duration,
               state, wait_event
          FROM pg_stat_activity
         WHERE datid = d.oid AND pid <> pg_backend_pid() AND backend_type = 'client backend'
           AND state = 'active' AND query_start < now() - make_interval(secs => %(long_query)s)
           AND query NOT LIKE '/* pg-tuner%%'
         ORDER BY query_start) a) AS long_running,
    t.*, x.*
FROM pg_database d
CROSS JOIN LATERAL (
    SELECT array_agg(c.oid::bigint) AS t_relid, array_agg(n.nspname::text) AS t_schema,
           array_agg(c.relname::text) AS t_name,
           array_agg((c.relpages::bigint + coalesce(toast.relpages, 0))
                     * current_setting('block_size')::bigint) AS t_size_bytes,
           array_agg(c.reltuples::float8) AS t_reltuples,
           array_agg(pg_stat_get_live_tuples(c.oid)) AS t_n_live_tup,
           array_agg(pg_stat_get_dead_tuples(c.oid)) AS t_n_dead_tup,
           array_agg(pg_stat_get_numscans(c.oid)) AS t_seq_scan,
           array_agg(pg_stat_get_tuples_returned(c.oid)) AS t_seq_tup_read,
           array_agg(pg_stat_get_tuples_fetched(c.oid)) AS t_tup_fetched,
           array_agg(pg_stat_get_tuples_inserted(c.oid)) AS t_n_tup_ins,
           array_agg(pg_stat_get_tuples_updated(c.oid)) AS t_n_tup_upd,
           array_agg(pg_stat_get_tuples_deleted(c.oid)) AS t_n_tup_del,
           array_agg(pg_stat_get_tuples_hot_updated(c.oid)) AS t_n_tup_hot_upd,
           array_agg(pg_stat_get_mod_since_analyze(c.oid)) AS t_n_mod_since_analyze,
           array_agg(pg_stat_get_last_vacuum_time(c.oid)) AS t_last_vacuum,
           array_agg(pg_stat_get_last_autovacuum_time(c.oid)) AS t_last_autovacuum,
           array_agg(pg_stat_get_last_analyze_time(c.oid)) AS t_last_analyze,
           array_agg(pg_stat_get_last_autoanalyze_time(c.oid)) AS t_last_autoanalyze,
           array_agg(pg_stat_get_blocks_hit(c.oid)) AS t_heap_blks_hit,
           array_agg(pg_stat_get_blocks_fetched(c.oid) - pg_stat_get_blocks_hit(c.oid))
               AS t_heap_blks_read
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_class toast ON toast.oid = c.reltoastrelid
     WHERE c.relkind IN ('r', 't', 'm', 'p')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
) t
CROSS JOIN LATERAL (
    SELECT array_agg(i.indexrelid::bigint) AS i_indexrelid,
           array_agg(i.indrelid::bigint) AS i_indrelid,
           array_agg(ic.xmin) AS i_xmin, array_agg(tc.xmin) AS i_table_xmin,
           array_agg(CASE WHEN descr.description LIKE 'pg-tuner: %%'
                          THEN coalesce(pg_relation_size(i.indexrelid), 0)
                          ELSE ic.relpages::bigint * current_setting('block_size')::bigint
                     END) AS i_size_bytes,
           array_agg(pg_stat_get_numscans(i.indexrelid)) AS i_idx_scan,
           array_agg(pg_stat_get_tuples_returned(i.indexrelid)) AS i_idx_tup_read,
           array_agg(pg_stat_get_tuples_fetched(i.indexrelid)) AS i_idx_tup_fetch,
           array_agg(i.indisvalid) AS i_is_valid, array_agg(i.indisready) AS i_is_ready,
           array_agg(i.indisunique) AS i_is_unique, array_agg(i.indisprimary) AS i_is_primary,
           array_agg((i.indrelid, i.indexrelid) IN (
               SELECT con.conrelid, con.conindid FROM pg_constraint con
                WHERE con.contype IN ('p', 'u', 'x'))) AS i_backs_constraint,
           array_agg(i.indisreplident) AS i_is_replica_identity,
           array_agg(descr.description) AS i_comment
      FROM pg_index i
      JOIN pg_class tc ON tc.oid = i.indrelid
      JOIN pg_namespace tn ON tn.oid = tc.relnamespace
      JOIN pg_class ic ON ic.oid = i.indexrelid
      LEFT JOIN pg_description descr ON descr.objoid = i.indexrelid
           AND descr.classoid = 'pg_class'::regclass AND descr.objsubid = 0
     WHERE tc.relkind IN ('r', 't', 'm')
       AND tn.nspname NOT IN ('pg_catalog', 'information_schema') AND tn.nspname !~ '^pg_toast'
) x
WHERE d.datname = current_database()
