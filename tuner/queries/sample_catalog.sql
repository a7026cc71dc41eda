/* pg-tuner: sample catalog */
-- One round trip for everything but pg_stat_statements: the server, the current database,
-- its user tables and indexes, sessions, locks, standbys, index builds and long statements.
-- Parameter: long_query (seconds). Every part is readable by a role
-- with pg_monitor. Sizes come from pg_class.relpages (as of the last VACUUM, ANALYZE or
-- CREATE INDEX), not from pg_relation_size: that would lock every relation until the end of
-- the statement, and a catalog of many thousand relations would fill the lock table. Only
-- the indexes pg-tuner made (comment 'pg-tuner: ...') are measured exactly. Index
-- definitions do not change while `version` (the xmin of the index's and its table's
-- pg_class rows) stays the same, so the sampler reads them once (sample_index_definitions).
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
    (SELECT coalesce(json_agg(t), '[]') FROM (
        SELECT s.relid::bigint AS relid, s.schemaname AS schema, s.relname AS name,
               (c.relpages::bigint + coalesce(toast.relpages, 0)) * current_setting('block_size')::bigint AS size_bytes,
               c.reltuples::float8 AS reltuples,
               s.n_live_tup, s.n_dead_tup, coalesce(s.seq_scan, 0) AS seq_scan,
               coalesce(s.seq_tup_read, 0) AS seq_tup_read, coalesce(s.idx_scan, 0) AS idx_scan,
               coalesce(s.idx_tup_fetch, 0) AS idx_tup_fetch,
               s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_tup_hot_upd, s.n_mod_since_analyze,
               s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
               pg_stat_get_blocks_hit(s.relid) AS heap_blks_hit,
               pg_stat_get_blocks_fetched(s.relid) - pg_stat_get_blocks_hit(s.relid)
                   AS heap_blks_read
          FROM pg_stat_user_tables s
          JOIN pg_class c ON c.oid = s.relid
          LEFT JOIN pg_class toast ON toast.oid = c.reltoastrelid) t) AS tables,
    (SELECT coalesce(json_agg(x), '[]') FROM (
        SELECT s.indexrelid::bigint AS indexrelid, s.schemaname AS table_schema,
               s.relname AS table_name, ins.nspname AS schema, s.indexrelname AS name,
               ic.xmin::text || ':' || t.xmin::text AS version,
               CASE WHEN descr.description LIKE 'pg-tuner: %%'
                    THEN coalesce(pg_relation_size(s.indexrelid), 0)
                    ELSE ic.relpages::bigint * current_setting('block_size')::bigint
               END AS size_bytes,
               coalesce(s.idx_scan, 0) AS idx_scan, coalesce(s.idx_tup_read, 0) AS idx_tup_read,
               coalesce(s.idx_tup_fetch, 0) AS idx_tup_fetch,
               i.indisvalid AS is_valid, i.indisready AS is_ready, i.indisunique AS is_unique,
               i.indisprimary AS is_primary,
               EXISTS (SELECT 1 FROM pg_constraint con
                        WHERE con.conindid = s.indexrelid AND con.conrelid = i.indrelid
                          AND con.contype IN ('p', 'u', 'x')) AS backs_constraint,
               i.indisreplident AS is_replica_identity,
               descr.description AS comment
          FROM pg_stat_user_indexes s
          JOIN pg_index i ON i.indexrelid = s.indexrelid
          JOIN pg_class ic ON ic.oid = s.indexrelid
          JOIN pg_class t ON t.oid = s.relid
          JOIN pg_namespace ins ON ins.oid = ic.relnamespace
          LEFT JOIN pg_description descr ON descr.objoid = s.indexrelid
               AND descr.classoid = 'pg_class'::regclass AND descr.objsubid = 0) x) AS indexes
FROM pg_database d
WHERE d.datname = current_database()
