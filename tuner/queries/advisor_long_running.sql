-- Statements of this database active for longer than %(long_query)s seconds right now, with
-- their literals: a statement_timeout may cancel them before pg_stat_statements counts them.
SELECT query, usesysid::bigint AS role, extract(epoch FROM now() - query_start)::float8 AS seconds
  FROM pg_stat_activity
 WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state = 'active'
   AND query_start < now() - make_interval(secs => %(long_query)s)
   AND query NOT LIKE '/* pg-tuner%%'
 ORDER BY query_start
