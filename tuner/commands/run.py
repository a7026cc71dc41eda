"""`pg-tuner run --policy FILE [--once]`: the daemon, or one full cycle for cron and tests.

A bad policy raises PolicyError before anything connects (exit 2, nothing applied).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tuner import db, log
from tuner.commands import policy_arg
from tuner.config import policy_from_env_path
from tuner.daemon import Daemon
from tuner.db import find_password
from tuner.errors import DatabaseUnavailable, MissingExtension, QueryFailed
from tuner.log import register_secret
from tuner.sampler import MIN_VERSION, version_warning


def run(args: argparse.Namespace) -> int:
    policy = policy_arg(args, required=True, check_port=not args.once)
    assert policy is not None
    path = Path(args.policy) if args.policy else policy_from_env_path()
    password = find_password(policy.target.password_file)
    register_secret(password)
    refuse_old_server(policy.target.dsn, password)
    daemon = Daemon(policy, policy_path=path, password=password)
    if args.once:
        verdict = daemon.run_once()
        daemon.close()
        print(verdict)
        return 1 if verdict.startswith(("DEGRADED", "ERROR")) else 0
    log.get("run").info("daemon.starting", policy=str(path), mode=policy.mode.value)
    return daemon.run()


def refuse_old_server(dsn: str, password: str | None) -> None:
    """Raise MissingExtension on a server older than 14. An unreachable one is left to the
    daemon, which starts degraded and retries."""
    try:
        with db.connect(dsn, password=password) as conn:
            row = db.fetch(conn, "SELECT current_setting('server_version_num')::int AS v")[0]
    except (DatabaseUnavailable, QueryFailed):
        return
    if row["v"] < MIN_VERSION:
        raise MissingExtension(version_warning(row["v"]) or "server too old")
