/* pg-tuner: search paths */
-- The search_path each role's sessions in this database start with, as PostgreSQL picks
-- it: the role's setting for this database, else the role's own, else the database's,
-- else the server's. Role 0 stands for "no setting of its own" (the database's or the
-- server's; when the tuner's role has a setting of its own, the session's reset value is
-- that one, so the server's built-in default is taken instead).
WITH s AS (
    SELECT d.setrole, d.setdatabase, substr(c.c, length('search_path=') + 1) AS path
      FROM pg_db_role_setting d
     CROSS JOIN LATERAL unnest(d.setconfig) c(c)
     WHERE c.c LIKE 'search\_path=%'
       AND d.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
)
SELECT r.oid::bigint AS role, r.rolname AS name,
       (SELECT s.path FROM s WHERE s.setrole = r.oid ORDER BY s.setdatabase DESC LIMIT 1) AS path
  FROM pg_roles r
UNION ALL
SELECT 0, '', coalesce(
         (SELECT s.path FROM s WHERE s.setrole = 0),
         (SELECT CASE WHEN EXISTS (SELECT 1 FROM s JOIN pg_roles o ON o.oid = s.setrole
                                    WHERE o.rolname = current_user)
                      THEN boot_val ELSE reset_val END
            FROM pg_settings WHERE name = 'search_path'))
