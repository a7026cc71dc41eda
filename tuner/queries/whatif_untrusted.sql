/* pg-tuner: untrusted code a statement reaches */
-- The functions the planner could call while planning a statement, owned by a role the
-- tuner does not trust. The statement is the body of a probe function (pgtuner_probe), whose
-- dependencies PostgreSQL recorded when it parsed it: every function, operator, cast,
-- type and relation as the parser resolved them. From there: what a relation brings
-- into a plan (view and rule bodies, row security policies, column defaults, constraints,
-- its indexes' expressions and predicates, extended statistics, inheritance children), an
-- operator's functions and its commutator and negator, a range type's functions, and the
-- dependencies of all of those in turn. Trusted: pg_catalog and information_schema,
-- superusers, the tuner's own role, and the roles named in %(trusted)s.
WITH RECURSIVE reach(classid, objid) AS (
    SELECT refclassid, refobjid
      FROM pg_depend
     WHERE classid = 'pg_proc'::regclass AND objid = 'pg_temp.pgtuner_probe'::regproc
  UNION
    SELECT n.classid, n.objid
      FROM reach r
     CROSS JOIN LATERAL (
        SELECT d.refclassid, d.refobjid FROM pg_depend d
         WHERE d.classid = r.classid AND d.objid = r.objid
           AND d.refclassid <> 'pg_extension'::regclass
        UNION ALL
        SELECT 'pg_rewrite'::regclass, w.oid FROM pg_rewrite w
         WHERE r.classid = 'pg_class'::regclass AND w.ev_class = r.objid
        UNION ALL
        SELECT 'pg_policy'::regclass, p.oid FROM pg_policy p
         WHERE r.classid = 'pg_class'::regclass AND p.polrelid = r.objid
        UNION ALL
        SELECT 'pg_attrdef'::regclass, a.oid FROM pg_attrdef a
         WHERE r.classid = 'pg_class'::regclass AND a.adrelid = r.objid
        UNION ALL
        SELECT 'pg_constraint'::regclass, c.oid FROM pg_constraint c
         WHERE (r.classid = 'pg_class'::regclass AND c.conrelid = r.objid)
            OR (r.classid = 'pg_type'::regclass AND c.contypid = r.objid)
        UNION ALL
        SELECT 'pg_class'::regclass, i.indexrelid FROM pg_index i
         WHERE r.classid = 'pg_class'::regclass AND i.indrelid = r.objid
        UNION ALL
        SELECT 'pg_statistic_ext'::regclass, s.oid FROM pg_statistic_ext s
         WHERE r.classid = 'pg_class'::regclass AND s.stxrelid = r.objid
        UNION ALL
        SELECT 'pg_class'::regclass, h.inhrelid FROM pg_inherits h
         WHERE r.classid = 'pg_class'::regclass AND h.inhparent = r.objid
        UNION ALL
        SELECT 'pg_proc'::regclass, f.f FROM pg_operator o
         CROSS JOIN LATERAL unnest(ARRAY[o.oprcode::oid, o.oprrest::oid, o.oprjoin::oid]) f(f)
         WHERE r.classid = 'pg_operator'::regclass AND o.oid = r.objid AND f.f <> 0
        UNION ALL
        SELECT 'pg_operator'::regclass, x.x FROM pg_operator o
         CROSS JOIN LATERAL unnest(ARRAY[o.oprcom, o.oprnegate]) x(x)
         WHERE r.classid = 'pg_operator'::regclass AND o.oid = r.objid AND x.x <> 0
        UNION ALL
        SELECT 'pg_proc'::regclass, f.f FROM pg_range g
         CROSS JOIN LATERAL unnest(ARRAY[g.rngcanonical::oid, g.rngsubdiff::oid]) f(f)
         WHERE r.classid = 'pg_type'::regclass AND g.rngtypid = r.objid AND f.f <> 0
     ) n(classid, objid)
)
SELECT DISTINCT p.oid::regprocedure::text AS function, o.rolname AS owner
  FROM reach r
  JOIN pg_proc p ON r.classid = 'pg_proc'::regclass AND p.oid = r.objid
  JOIN pg_roles o ON o.oid = p.proowner
 WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
   AND NOT o.rolsuper
   AND o.rolname <> current_user
   AND o.rolname <> ALL (%(trusted)s::text[])
 ORDER BY 1
