"""sd_notify against a real AF_UNIX datagram socket the test binds, as systemd would."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_support import DaemonProcess, write_policy
from tuner.notify import Notifier

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "pg-tuner@.service"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(0.2)
    yield sock, path
    sock.close()


def receive_all(sock: socket.socket, until: float) -> list[str]:
    """Every datagram until `until` (monotonic), one string per datagram."""
    got: list[str] = []
    while time.monotonic() < until:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return got


def receive_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    """Datagrams until one contains the line `wanted` (inclusive); AssertionError if never."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if wanted in got[-1].split("\n"):
            return got
    raise AssertionError(f"{wanted} not received in {timeout}s; got {got}")


def test_messages_reach_a_path_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    assert notifier.ready("OBSERVE: 3 queries sampled")
    assert notifier.watchdog()
    assert notifier.reloading()
    assert notifier.stopping()
    messages = [sock.recv(4096).decode() for _ in range(4)]
    assert messages[0] == "READY=1\nSTATUS=OBSERVE: 3 queries sampled"
    assert messages[1] == "WATCHDOG=1"
    assert messages[2].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert int(messages[2].split("=")[-1]) > 0
    assert messages[3] == "STOPPING=1"


def test_abstract_namespace_socket() -> None:
    name = f"pg-tuner-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        notifier = Notifier(environ={"NOTIFY_SOCKET": "@" + name})
        assert notifier.status("a status\nwith a newline")
        # a newline would start a new KEY=value line; it is flattened to a space
        assert sock.recv(4096) == b"STATUS=a status with a newline"


def test_no_socket_is_a_silent_no_op() -> None:
    notifier = Notifier(environ={})
    assert not notifier.enabled
    assert notifier.ready() is False


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    # tried: NOTIFY_SOCKET naming a path nobody listens on (systemd restarted, socket gone)
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.watchdog() is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert Notifier(environ={"WATCHDOG_USEC": "4000000"}).watchdog_interval == 2.0
    mine = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(environ=mine).watchdog_interval == 2.0
    # tried: a WATCHDOG_PID of another process (the variables leaked from a parent)
    other = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(environ=other).watchdog_interval is None
    assert Notifier(environ={"WATCHDOG_USEC": "junk"}).watchdog_interval is None


def test_daemon_speaks_the_protocol(
    dsn: str, tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    policy = write_policy(tmp_path / "policy.yaml", dsn)
    daemon = DaemonProcess(policy, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    try:
        got = receive_until(sock, "READY=1", timeout=30)
        ready = got[-1].split("\n")
        assert any(line.startswith("STATUS=") for line in ready), ready
        got += receive_all(sock, until=time.monotonic() + 3.5)
        statuses = [m for m in got if m.startswith("STATUS=")]
        assert any("queries sampled" in s for s in statuses), got
        # WatchdogSec=2s: pinged every second from the loop, so at least two in 3.5s
        assert sum(m == "WATCHDOG=1" for m in got) >= 2, got
        daemon.signal(signal.SIGTERM)
        stopping = receive_until(sock, "STOPPING=1", timeout=15)
        assert stopping
        assert daemon.proc.wait(30) == 0
    finally:
        daemon.kill()


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here")
    # The unit names /opt/pg-tuner's venv; verify checks that ExecStart exists, so the copy
    # points at this checkout's entry point instead. Nothing else is changed.
    entry = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "pg-tuner"
    if not entry.exists():
        pytest.skip(f"{entry} is not installed")
    text = UNIT.read_text().replace("/opt/pg-tuner/.venv/bin/pg-tuner", str(entry))
    assert str(entry) in text
    unit = tmp_path / "pg-tuner@.service"
    unit.write_text(text)
    proc = subprocess.run(
        [tool, "verify", f"{unit.parent}/pg-tuner@app.service"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    if proc.returncode != 0 and "Failed to" in proc.stderr and "bus" in proc.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    assert "pg-tuner@" not in proc.stderr, proc.stderr  # no warnings about our unit


def test_unit_declares_what_the_operator_relies_on() -> None:
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in
             UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")}  # fmt: skip
    assert lines["Type"] == "notify"
    assert lines["NotifyAccess"] == "main"
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert lines["Restart"] == "on-failure"
    assert lines["User"] == "pg-tuner"
    assert lines["ProtectSystem"] == "strict"
    assert lines["ReadWritePaths"] == "/var/lib/pg-tuner"
    assert lines["LoadCredential"] == "password:/etc/pg-tuner/%i.password"
    assert "--policy /etc/pg-tuner/%i.yaml" in lines["ExecStart"]
    # TimeoutStopSec must outlast the default shutdown_grace (60s) plus the cleanup
    assert int(lines["TimeoutStopSec"].removesuffix("s")) > 60
    assert int(lines["WatchdogSec"].removesuffix("s")) > 0
