/* pg-tuner: sample index definitions */
-- Name, definition, access method, key and INCLUDE columns (an expression as its text) and the
-- predicate of the given indexes: what does not change while the xmin of the index's and its
-- table's pg_class rows stay the same. Parameter: oids (bigint[]).
SELECT i.indexrelid::bigint AS indexrelid, ic.relname::text AS name,
       pg_get_indexdef(i.indexrelid) AS definition, am.amname AS method, i.indnkeyatts AS nkeys,
       ARRAY(SELECT CASE WHEN i.indkey[k - 1] = 0
                         THEN pg_get_indexdef(i.indexrelid, k, true)
                         ELSE (SELECT attname FROM pg_attribute
                                WHERE attrelid = i.indrelid AND attnum = i.indkey[k - 1])
                    END
               FROM generate_series(1, i.indnatts) AS k ORDER BY k) AS all_columns,
       pg_get_expr(i.indpred, i.indrelid, true) AS predicate
  FROM unnest(%(oids)s::bigint[]) AS wanted(oid)
  JOIN pg_index i ON i.indexrelid = wanted.oid::oid
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam
