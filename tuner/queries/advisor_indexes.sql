-- Indexes of user tables: key and INCLUDE columns (an expression as NULL), validity, use.
SELECT n.nspname AS schema, t.relname AS table_name, i.relname AS name,
       pg_get_indexdef(x.indexrelid) AS definition,
       am.amname AS method,
       array(SELECT CASE WHEN k.attnum = 0 THEN NULL ELSE a.attname END
             FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS all_columns,
       x.indnkeyatts AS key_count,
       x.indpred IS NOT NULL AS partial,
       pg_relation_size(x.indexrelid) AS size_bytes,
       coalesce(st.idx_scan, 0) AS idx_scan,
       x.indisvalid AS is_valid, x.indisunique AS is_unique, x.indisprimary AS is_primary,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid
               AND k.contype IN ('p', 'u', 'x')) AS backs_constraint,
       x.indisreplident AS is_replica_identity
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = i.relam
LEFT JOIN pg_stat_user_indexes st ON st.indexrelid = x.indexrelid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'
ORDER BY n.nspname, t.relname, i.relname
