-- The session's lock_timeout until set again: the CONCURRENTLY statements wait longer.
SELECT set_config('lock_timeout', %(timeout)s, false) AS lock_timeout
