-- One index by schema and name: what the executor must know before it builds, drops or undoes.
SELECT n.nspname AS schema,
       c.relname AS name,
       t.relname AS table_name,
       pg_get_indexdef(i.indexrelid) AS definition,
       i.indisvalid AS valid,
       i.indisunique AS is_unique,
       i.indisreplident AS replica_identity,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) AS backs_constraint,
       (c.relkind = 'I' OR t.relispartition) AS partitioned,
       obj_description(i.indexrelid, 'pg_class') AS comment,
       pg_relation_size(i.indexrelid) AS size_bytes
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class t ON t.oid = i.indrelid
WHERE n.nspname = %(schema)s AND c.relname = %(name)s
