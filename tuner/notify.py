"""systemd's notify protocol (sd_notify): datagrams of `KEY=value` lines to $NOTIFY_SOCKET.

Written by hand rather than through a library: the protocol is one `sendto` per message.
A path starting with '@' names a socket in the abstract namespace (a leading NUL byte).
Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the daemon calls them freely.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from tuner import log

_log = log.get("notify")


class Notifier:
    """Tells the service manager READY, STATUS, WATCHDOG, RELOADING and STOPPING."""

    def __init__(self, address: str | None = None, *, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.address = address if address is not None else env.get("NOTIFY_SOCKET") or None
        self.watchdog_usec = _watchdog_usec(env)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of systemd's WatchdogSec), or None."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def send(self, *fields: str) -> bool:
        """Send one datagram of `KEY=value` lines; False when not under systemd or it failed."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        payload = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._sock.sendto(payload, target)
            except OSError as exc:
                if not self._warned:  # a gone socket is not worth a log line every ping
                    _log.warning("notify.failed", socket=self.address, error=str(exc))
                    self._warned = True
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        """Before re-reading the policy; MONOTONIC_USEC is what Type=notify-reload expects."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _watchdog_usec(env: os._Environ[str] | dict[str, str]) -> int | None:
    """WATCHDOG_USEC when it is meant for this process (WATCHDOG_PID absent or ours)."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    value = env.get("WATCHDOG_USEC", "")
    return int(value) if value.isdigit() and int(value) > 0 else None
