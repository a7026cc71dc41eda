-- The shape of every user table for `pg-tuner explain`'s anti-pattern rules: each column
-- with its type and NOT NULL, and the key columns of each valid index (NULL for an
-- expression column), in index order.
SELECT n.nspname AS schema,
       c.relname AS table_name,
       (SELECT coalesce(json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod),
                                                  a.attnotnull) ORDER BY a.attnum), '[]')
        FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
       (SELECT coalesce(json_agg(
                   (SELECT json_agg(a.attname ORDER BY k.ord)
                    FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                    WHERE k.ord <= i.indnkeyatts)), '[]')
        FROM pg_index i
        WHERE i.indrelid = c.oid AND i.indisvalid) AS indexes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'
  AND n.nspname NOT LIKE 'pg\_temp%'
