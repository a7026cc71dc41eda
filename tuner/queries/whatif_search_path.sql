SELECT current_schemas(false) AS schemas,
       current_setting('server_version_num')::int AS version_num,
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'hypopg') AS has_hypopg,
       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_trgm') AS trgm_schema
