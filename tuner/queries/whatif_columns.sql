-- Columns of user tables with what the advisor needs to index and size them: whether the
-- type has a default btree operator class, whether that class allows deduplication
-- (an equalimage support function, amprocnum 4), whether it has a default hash operator
-- class, and the planner's statistics (correlation: how the heap's order follows the
-- column's, near 0 for a random key; null fraction and most common values: how many rows
-- a partial index keeps).
SELECT n.nspname AS schema,
       c.relname AS table_name,
       greatest(c.reltuples, 0)::float8 AS reltuples,
       c.relpages::int AS relpages,
       a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS type_name,
       t.typlen,
       t.typalign,
       opc.oid IS NOT NULL AS btree,
       coalesce(opc.equalimage, false) AS equalimage,
       EXISTS (SELECT 1 FROM pg_opclass h
               WHERE h.opcmethod = (SELECT oid FROM pg_am WHERE amname = 'hash')
                 AND h.opcdefault
                 AND (h.opcintype = t.oid
                      OR EXISTS (SELECT 1 FROM pg_cast k WHERE k.castsource = t.oid
                                 AND k.casttarget = h.opcintype AND k.castmethod = 'b'))
       ) AS hash,
       s.n_distinct::float8 AS n_distinct,
       s.avg_width,
       s.correlation::float8 AS correlation,
       s.null_frac::float8 AS null_frac,
       s.most_common_vals::text::text[] AS common_values,
       s.most_common_freqs::float8[] AS common_freqs
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN LATERAL (
    SELECT o.oid,
           EXISTS (SELECT 1 FROM pg_amproc p
                   WHERE p.amprocfamily = o.opcfamily AND p.amproclefttype = o.opcintype
                     AND p.amprocrighttype = o.opcintype AND p.amprocnum = 4) AS equalimage
    FROM pg_opclass o
    WHERE o.opcmethod = (SELECT oid FROM pg_am WHERE amname = 'btree')
      AND o.opcdefault
      AND (o.opcintype = t.oid
           OR o.opcintype = t.typbasetype
           OR (o.opcintype = 'anyenum'::regtype AND t.typtype = 'e')
           OR (o.opcintype = 'anyarray'::regtype AND t.typcategory = 'A')
           OR EXISTS (SELECT 1 FROM pg_cast k WHERE k.castsource = t.oid
                      AND k.casttarget = o.opcintype AND k.castmethod = 'b'))
    ORDER BY o.opcintype = t.oid DESC
    LIMIT 1
) opc ON true
LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname
                    AND s.attname = a.attname AND NOT s.inherited
WHERE c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'
  AND n.nspname NOT LIKE 'pg\_temp%'
ORDER BY n.nspname, c.relname, a.attnum
