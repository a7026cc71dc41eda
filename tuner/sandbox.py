"""A throwaway PostgreSQL cluster (14-18) on a free loopback port, for the tests and the demo.

It runs `initdb` and `pg_ctl` from a bin directory (TUNER_PG_BINDIR, else the newest server
of Debian's packages or on PATH) in a temporary directory, with
pg_stat_statements preloaded and HypoPG created where it is installed, and removes
everything on exit. PostgreSQL refuses to run as root, so as root the server runs as
the unprivileged `postgres` (or `nobody`) OS user.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tuner import db
from tuner.errors import SandboxError

INSTALL_HINT = (
    "install the server with: apt-get update && apt-get install -y "
    "postgresql-15 postgresql-contrib postgresql-15-hypopg"
)
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.max": "10000",
    "track_io_timing": "on",
    "compute_query_id": "on",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "unix_socket_permissions": "0777",
}


def find_bindir(version: int | None = None) -> Path:
    """The directory of `initdb` and `pg_ctl`: TUNER_PG_BINDIR, else PostgreSQL `version` (by
    default the newest) of Debian's /usr/lib/postgresql/N/bin or on PATH; else a clear error."""
    if env := os.environ.get("TUNER_PG_BINDIR"):
        if not (Path(env) / "initdb").is_file():
            raise SandboxError(f"TUNER_PG_BINDIR={env} has no initdb")
        return Path(env)
    found: dict[Path, int] = {}
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    on_path = shutil.which("initdb")
    for initdb in [*debian, *([Path(on_path)] if on_path else [])]:
        major = server_major(initdb.parent)
        if major is not None and (version is None or major == version):
            found.setdefault(initdb.parent, major)
    if found:
        return max(found, key=lambda bindir: found[bindir])
    wanted = f"PostgreSQL {version}" if version else "PostgreSQL"
    raise SandboxError(f"{wanted} server binaries (initdb) not found; {INSTALL_HINT}")


def server_major(bindir: Path) -> int | None:
    """The major version of the server in `bindir` (`initdb --version`), None if unreadable."""
    try:
        out = subprocess.run(
            [str(bindir / "initdb"), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """The OS user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise SandboxError("running as root and neither a 'postgres' nor a 'nobody' user exists")


@dataclass
class Sandbox:
    """A private cluster: `with Sandbox() as sb: dsn = sb.create_database("app")`."""

    bindir: Path | None = None  # None: find_bindir()
    version: int = 0  # the server's major version, read from its binaries on start
    superuser: str = "postgres"
    settings: dict[str, str] = field(default_factory=dict)
    require_hypopg: bool = True
    port: int = 0
    root: Path | None = None
    has_hypopg: bool = False
    _run_as: pwd.struct_passwd | None = None

    @property
    def datadir(self) -> Path:
        assert self.root is not None, "sandbox not started"
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        assert self.root is not None, "sandbox not started"
        return self.root / "server.log"

    def dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        """A password-less DSN for `dbname` (loopback trust authentication)."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user or self.superuser}"

    def _run(self, *args: str | Path, timeout: float = 120) -> str:
        user = self._run_as
        proc = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            timeout=timeout,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
        )
        if proc.returncode != 0:
            raise SandboxError(
                f"{Path(str(args[0])).name} failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        return proc.stdout

    def start(self) -> Sandbox:
        """initdb, configure and start the server; seconds on a warm machine."""
        self.bindir = bindir = self.bindir or find_bindir()
        self.version = server_major(bindir) or 0
        self._run_as = _server_user()
        self.root = Path(tempfile.mkdtemp(prefix="pg-tuner-sandbox-"))
        atexit.register(self.stop)
        if self._run_as:
            os.chown(self.root, self._run_as.pw_uid, self._run_as.pw_gid)
        self._run(
            bindir / "initdb", "-D", self.datadir, "-U", self.superuser, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        for attempt in range(3):
            self.port = self.port or free_port()
            conf = {**SERVER_SETTINGS, **self.settings, "port": str(self.port)}
            conf["unix_socket_directories"] = f"'{self.root}'"
            with (self.datadir / "postgresql.auto.conf").open("w") as out:
                out.writelines(f"{key} = {value}\n" for key, value in conf.items())
            try:
                self._run(
                    bindir / "pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w", "-t", "60",
                    "start",
                )  # fmt: skip
                break
            except SandboxError:
                if attempt == 2:
                    raise SandboxError(f"server did not start: {self.server_log_tail()}") from None
                self.port = 0  # the port was taken between probing and binding: try another
        self._prepare_template()
        return self

    def server_log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log, for error messages."""
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def _prepare_template(self) -> None:
        with db.connect(self.dsn("template1")) as conn:
            available = {
                row["name"] for row in db.fetch(conn, "SELECT name FROM pg_available_extensions")
            }
            if "pg_stat_statements" not in available:
                raise SandboxError(f"pg_stat_statements is not available; {INSTALL_HINT}")
            db.execute(conn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            self.has_hypopg = "hypopg" in available
            if self.has_hypopg:
                db.execute(conn, "CREATE EXTENSION IF NOT EXISTS hypopg")
            elif self.require_hypopg:
                raise SandboxError(
                    f"HypoPG is not installed for PostgreSQL {self.version} in {self.bindir}; "
                    f"apt-get install -y postgresql-{self.version}-hypopg"
                )

    def create_database(self, name: str) -> str:
        """Create `name` (with pg_stat_statements and HypoPG) and return its DSN."""
        with db.connect(self.dsn("postgres")) as conn:
            db.execute(
                conn, db.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db.Identifier(name))
            )
            db.execute(
                conn, db.SQL("CREATE DATABASE {} TEMPLATE template1").format(db.Identifier(name))
            )
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop `name`, disconnecting whoever is still in it."""
        with db.connect(self.dsn("postgres")) as conn:
            db.execute(
                conn, db.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db.Identifier(name))
            )

    def restart(self, mode: str = "fast") -> None:
        """Restart the server (for fault tests); connections are cut."""
        bindir = self.bindir or find_bindir()
        self._run(bindir / "pg_ctl", "-D", self.datadir, "-m", mode, "-w", "-t", "60", "restart",
                  "-l", self.logfile)  # fmt: skip

    def stop(self) -> None:
        """Stop the server immediately and remove its directory; safe to call twice."""
        if self.root is None:
            return
        root, self.root = self.root, None
        datadir = root / "data"
        if (datadir / "postmaster.pid").exists():
            bindir = self.bindir or find_bindir()
            self.root = root
            try:
                self._run(bindir / "pg_ctl", "-D", datadir, "-m", "immediate", "-w", "stop")
            except (SandboxError, subprocess.TimeoutExpired):
                _kill_postmaster(datadir)
            self.root = None
        shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _kill_postmaster(datadir: Path) -> None:
    """Last resort when pg_ctl cannot stop the server: SIGKILL the postmaster by its pid file."""
    try:
        pid = int((datadir / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 9)
        time.sleep(0.5)
    except (OSError, ValueError, IndexError):
        pass
