-- Seconds the cumulative statistics cover: since the database's stats reset, else since start.
SELECT extract(epoch FROM now() - coalesce(d.stats_reset, pg_postmaster_start_time()))::float8
           AS stats_age,
       extract(epoch FROM now() - coalesce(
           (SELECT stats_reset FROM pg_stat_statements_info),
           pg_postmaster_start_time()))::float8 AS statements_age
FROM pg_stat_database d
WHERE d.datname = current_database()
