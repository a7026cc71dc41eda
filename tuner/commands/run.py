"""`pg-tuner run --policy FILE [--once]`: the daemon, or one full cycle for cron and tests.

A bad policy raises PolicyError before anything connects (exit 2, nothing applied).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tuner import log
from tuner.commands import policy_arg
from tuner.config import policy_from_env_path
from tuner.daemon import Daemon
from tuner.db import find_password
from tuner.log import register_secret


def run(args: argparse.Namespace) -> int:
    policy = policy_arg(args, required=True, check_port=not args.once)
    assert policy is not None
    path = Path(args.policy) if args.policy else policy_from_env_path()
    password = find_password(policy.target.password_file)
    register_secret(password)
    daemon = Daemon(policy, policy_path=path, password=password)
    if args.once:
        verdict = daemon.run_once()
        daemon.close()
        print(verdict)
        return 1 if verdict.startswith(("DEGRADED", "ERROR")) else 0
    log.get("run").info("daemon.starting", policy=str(path), mode=policy.mode.value)
    return daemon.run()
