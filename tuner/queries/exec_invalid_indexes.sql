-- INVALID indexes whose name starts with a prefix (the tuner's leftovers after a crash).
SELECT n.nspname AS schema, c.relname AS name, t.relname AS table_name
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class t ON t.oid = i.indrelid
WHERE NOT i.indisvalid
  AND left(c.relname, length(%(prefix)s)) = %(prefix)s
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(table)s::text IS NULL OR t.relname = %(table)s)
ORDER BY n.nspname, c.relname
