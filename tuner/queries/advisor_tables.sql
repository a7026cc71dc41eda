-- User tables: tuples, writes and maintenance figures (cumulative since the stats reset).
SELECT s.schemaname AS schema, s.relname AS table_name,
       greatest(c.reltuples, 0)::float8 AS reltuples,
       s.n_live_tup, s.n_dead_tup, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_tup_hot_upd,
       s.n_mod_since_analyze,
       greatest(s.last_analyze, s.last_autoanalyze) AS last_analyzed
FROM pg_stat_user_tables s
JOIN pg_class c ON c.oid = s.relid
