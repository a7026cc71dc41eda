"""Helpers for the daemon tests: a fast policy file, and `pg-tuner run` as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def write_policy(path: Path, dsn: str, **overrides: Any) -> Path:
    """A policy with windows of seconds; `overrides` replace top-level keys or sections."""
    policy: dict[str, Any] = {
        "target": {"dsn": dsn},
        "mode": "observe",
        "level": "aggressive",
        "schedule": {"sample_interval": "1s", "advise_interval": "3s", "min_calls": 5},
        "timeouts": {"shutdown_grace": "5s", "lock_timeout": "2s", "query_timeout": "10s"},
        "journal": {"path": str(path.parent / "journal.jsonl")},
        "metrics": {"listen": None},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(policy.get(key), dict):
            policy[key] = {**policy[key], **value}
        else:
            policy[key] = value
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


class DaemonProcess:
    """`python -m tuner run --policy FILE` with its stderr (JSON log lines) collected."""

    def __init__(self, policy: Path, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TUNER_")}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tuner", "run", "--policy", str(policy), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> str:
        """The first log line matching `predicate`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if predicate(line):
                    return line
            seen = len(self.lines)
            if self.proc.poll() is not None and seen == len(self.lines):
                time.sleep(0.2)
                if seen == len(self.lines):
                    break
            time.sleep(0.05)
        raise AssertionError(f"no matching log line in {timeout}s; log:\n" + self.log_tail())

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(timeout=5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
