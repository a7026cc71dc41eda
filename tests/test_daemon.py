"""The daemon: verdicts, signals, reload, backoff; `pg-tuner run` as a user starts it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.daemon_support import DaemonProcess, write_policy
from tests.plugins.postgres import Server
from tuner.config import load_policy
from tuner.daemon import Backoff, Daemon, Event, most_important


def event(line: str) -> dict[str, object]:
    try:
        parsed = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def is_event(name: str, **fields: object) -> Callable[[str], bool]:
    def check(line: str) -> bool:
        e = event(line)
        return e.get("event") == name and all(e.get(k) == v for k, v in fields.items())

    return check


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(first=1, cap=10)
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_the_most_important_verdict_wins() -> None:
    assert most_important(["OBSERVE: 3 queries sampled", "PROPOSED: 1 (awaiting approval)"]) == (
        "PROPOSED: 1 (awaiting approval)"
    )
    assert most_important(["KEPT: x", "DEGRADED: database unreachable, retry in 2s"]).startswith(
        "DEGRADED"
    )
    assert most_important(["OBSERVE: a", "OBSERVE: b"]) == "OBSERVE: b"


def test_invariant_11_bad_policy_exit_2(dsn: str, tmp_path: Path) -> None:
    # tried: an apply-mode policy with a misspelt key and an out-of-range threshold
    good = write_policy(tmp_path / "p.yaml", dsn, mode="apply")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        good.read_text().replace("level: aggressive", "level: aggressive\nthreshold:\n  x: 1")
        + "limits:\n  max_index_width: 99\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "run", "--policy", str(bad), "--once"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}:" in proc.stderr and "threshold" in proc.stderr
    assert "limits.max_index_width" in proc.stderr
    assert not (tmp_path / "journal.jsonl").exists()  # nothing journaled, so nothing applied


def test_once_runs_one_cycle_and_exits(dsn: str, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml", dsn)
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "run", "--policy", str(policy), "--once"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    verdict = proc.stdout.strip().splitlines()[-1]
    assert verdict.startswith("OBSERVE: "), proc.stdout
    jobs = [event(line).get("job") for line in proc.stderr.splitlines()]
    assert jobs.count("sample") == 2 and "advise" in jobs, proc.stderr


def test_sigterm_exits_0_after_stopping(dsn: str, tmp_path: Path) -> None:
    daemon = DaemonProcess(write_policy(tmp_path / "p.yaml", dsn))
    try:
        daemon.wait_for(is_event("cycle.verdict", job="sample"))
        daemon.signal(signal.SIGTERM)
        assert daemon.stop() == 0
        daemon.wait_for(is_event("daemon.stopped"), timeout=5)
    finally:
        daemon.kill()


def test_invariant_11_sighup_bad_policy_keeps_old(dsn: str, tmp_path: Path) -> None:
    path = write_policy(tmp_path / "p.yaml", dsn, mode="observe")
    daemon = DaemonProcess(path)
    try:
        daemon.wait_for(is_event("daemon.started", mode="observe"))
        # tried: switching to apply mode in a file with a negative duration and a bad zone
        text = path.read_text()
        path.write_text(text.replace("mode: observe", "mode: apply\ntimezone: Mars/Olympus")
                        .replace("sample_interval: 1s", "sample_interval: -5s"))  # fmt: skip
        daemon.signal(signal.SIGHUP)
        refused = daemon.wait_for(is_event("policy.refused"))
        assert f"{path}:" in str(event(refused)["problem"])
        seen = len(daemon.lines)
        daemon.wait_for(lambda line: daemon.lines.index(line) > seen and
                        is_event("cycle.verdict", job="sample")(line))  # fmt: skip
        assert daemon.proc.poll() is None  # still running, on the old policy
        assert not any(is_event("policy.reloaded")(line) for line in daemon.lines)
        # a good file is then taken, which shows the refusal above was a real decision
        path.write_text(text.replace("mode: observe", "mode: recommend"))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(is_event("policy.reloaded", mode="recommend"))
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_degraded_with_backoff_then_resumes(pg_server: Server, tmp_path: Path) -> None:
    # tried: a database that does not exist yet; it is created while the daemon retries
    name = "t_daemon_appears_later"
    pg_server.drop_database(name)
    policy = load_policy(write_policy(tmp_path / "p.yaml", pg_server.dsn(name)))
    events: list[Event] = []
    daemon = Daemon(policy, on_event=events.append)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len([e for e in events if "retry in" in e.text]) < 3:
            time.sleep(0.1)
        degraded = [e.text for e in events if e.text.startswith("DEGRADED")]
        assert degraded and all("database unreachable, retry in" in t for t in degraded)
        assert any(e.kind == "degraded" for e in events)
        assert daemon.health.check()[0] is False
        pg_server.create_database(name)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not daemon.last_verdict.endswith("queries sampled"):
            time.sleep(0.2)
        assert daemon.last_verdict.endswith("queries sampled"), daemon.last_verdict
        assert not daemon.degraded and daemon.health.check() == (True, "ok")
        assert any(e.job == "reconnect" for e in events if e.kind == "verdict")
    finally:
        daemon.request_stop()
        thread.join(30)
        pg_server.drop_database(name)
