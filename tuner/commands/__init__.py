"""One module per CLI command, each with `run(args) -> exit status`; helpers they share."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass

from tuner import db
from tuner.config import Policy, Timeouts, load_policy, policy_from_env_path
from tuner.db import find_password
from tuner.errors import PolicyError
from tuner.log import register_secret


@dataclass(frozen=True)
class Target:
    """Where a command connects, and the policy it came from (if any)."""

    dsn: str
    password: str | None
    policy: Policy | None


def policy_arg(
    args: argparse.Namespace, required: bool = False, check_port: bool = False
) -> Policy | None:
    """The policy from --policy or TUNER_POLICY; None when neither is given and not required.
    `check_port`: the metrics port must be free too (the daemon's start)."""
    path = getattr(args, "policy", None) or policy_from_env_path()
    if path is None:
        if required:
            raise PolicyError(["(policy): no policy given; pass --policy FILE or set TUNER_POLICY"])
        return None
    return load_policy(path, check_port=check_port)


def target_arg(args: argparse.Namespace) -> Target:
    """The database from --dsn, else from the policy's target; the password never from either."""
    policy = policy_arg(args, required=not getattr(args, "dsn", None))
    dsn = getattr(args, "dsn", None) or (policy.target.dsn if policy else "")
    password = find_password(policy.target.password_file if policy else None)
    register_secret(password)
    return Target(dsn=dsn, password=password, policy=policy)


def terminal_width(default: int = 100) -> int:
    """Columns to fit lines to: $COLUMNS, else the terminal's, else (a pipe, a file)
    `default`; never fewer than 60."""
    if os.environ.get("COLUMNS", "").isdigit() or sys.stdout.isatty():
        return max(shutil.get_terminal_size((default, 24)).columns, 60)
    return default


def connect(target: Target, timeouts: Timeouts) -> db.Connection:
    """A fenced session on the target: the policy's lock and statement timeouts."""
    return db.connect(
        target.dsn,
        password=target.password,
        lock_timeout=timeouts.lock_timeout,
        statement_timeout=timeouts.query_timeout,
    )
