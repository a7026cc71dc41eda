"""The throwaway cluster: starts, has the extensions, runs as root and as a normal user."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from tests.plugins.postgres import Server
from tuner import db
from tuner.errors import Canceled, SandboxError
from tuner.sandbox import Sandbox, find_bindir, server_major

ROOT = Path(__file__).resolve().parent.parent


def test_each_test_database_has_pg_stat_statements_preloaded(conn: db.Connection) -> None:
    names = {r["extname"] for r in db.fetch(conn, "SELECT extname FROM pg_extension")}
    assert "pg_stat_statements" in names
    rows = db.fetch(conn, "SELECT count(*) AS n FROM pg_stat_statements")
    assert rows[0]["n"] >= 0  # readable: the library is preloaded


@pytest.mark.hypopg
def test_each_test_database_has_hypopg(conn: db.Connection) -> None:
    names = {r["extname"] for r in db.fetch(conn, "SELECT extname FROM pg_extension")}
    assert "hypopg" in names


def test_server_is_the_chosen_postgresql_on_loopback(conn: db.Connection) -> None:
    row = db.fetch(
        conn,
        "SELECT current_setting('server_version_num')::int AS v, inet_server_addr()::text AS addr",
    )[0]
    bindir = os.environ.get("TUNER_TEST_PG_BIN")
    expected = server_major(Path(bindir)) if bindir else server_major(find_bindir())
    assert expected is not None and 14 <= expected <= 18
    assert row["v"] // 10000 == expected
    assert row["addr"].startswith("127.0.0.1")


def test_without_a_version_the_newest_server_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNER_PG_BINDIR", raising=False)
    installed = [m for d in Path("/usr/lib/postgresql").glob("*/bin") if (m := server_major(d))]
    if not installed:
        pytest.skip("no Debian PostgreSQL server package installed")
    assert server_major(find_bindir()) == max(installed)
    assert find_bindir(version=max(installed)).is_dir()


def test_a_bindir_without_initdb_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tried: TUNER_PG_BINDIR pointing at an empty directory.
    monkeypatch.setenv("TUNER_PG_BINDIR", str(tmp_path))
    with pytest.raises(SandboxError, match=f"TUNER_PG_BINDIR={tmp_path} has no initdb"):
        find_bindir()


def test_sandbox_removes_its_directory(pg_server: Server) -> None:
    if pg_server.sandbox is None:
        pytest.skip("tests run against TUNER_TEST_DSN or Docker, not a sandbox")
    bindir = os.environ.get("TUNER_TEST_PG_BIN")
    sandbox = Sandbox(bindir=Path(bindir) if bindir else None, require_hypopg=False).start()
    root = sandbox.root
    assert root is not None and (root / "data" / "PG_VERSION").exists()
    sandbox.stop()
    assert not root.exists()
    sandbox.stop()  # twice is harmless


def test_missing_binaries_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tried: a PostgreSQL version whose server packages are not installed.
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("TUNER_PG_BINDIR", raising=False)
    with pytest.raises(SandboxError, match="apt-get install -y postgresql-15"):
        find_bindir(version=99)


def _python_for_others() -> str | None:
    """An interpreter of our minor version that an unprivileged user may execute."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def _readable_copy(into: Path) -> Path:
    """The sandbox's code and the driver it needs, where an unprivileged user can read them.

    The checkout (and the venv in it) may sit in a directory only root may enter, e.g. a
    `mktemp -d` clone; the user under test must not depend on that.
    """
    shutil.copytree(ROOT / "tuner", into / "tuner")
    site = Path(sysconfig.get_paths()["platlib"])
    for entry in site.iterdir():
        if entry.name.startswith(("psycopg", "typing_extensions")):
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, into / entry.name)
    for path in (into, *into.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return into


def test_sandbox_runs_as_a_normal_user() -> None:
    """As root the sandbox runs the server as `postgres`; here a non-root caller starts one."""
    user = pwd.getpwnam("nobody")
    python = _python_for_others()
    if python is None:
        pytest.skip("no system Python of this version that user 'nobody' may run")
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch).chmod(0o755)
        paths = [str(_readable_copy(Path(scratch) / "code"))]
        _run_as_nobody(user, python, paths)


def _run_as_nobody(user: pwd.struct_passwd, python: str, paths: list[str]) -> None:
    script = (
        "from tuner.sandbox import Sandbox\n"
        "from tuner import db\n"
        "with Sandbox(require_hypopg=False) as sb:\n"
        "    with db.connect(sb.create_database('u')) as c:\n"
        "        print(db.fetch(c, 'SELECT current_user AS u')[0]['u'])\n"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": ":".join(paths), "HOME": "/tmp"}
    if bindir := os.environ.get("TUNER_TEST_PG_BIN"):
        env["TUNER_PG_BINDIR"] = bindir
    proc = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, timeout=120,
        user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/tmp", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "postgres"


def test_statement_timeout_is_not_reported_as_an_outage(dsn: str) -> None:
    # Tried: a statement cancelled by statement_timeout; the database is still there.
    from datetime import timedelta

    with db.connect(dsn, statement_timeout=timedelta(milliseconds=50)) as conn:
        with pytest.raises(Canceled):
            db.fetch(conn, "SELECT pg_sleep(2)")
        assert db.fetch(conn, "SELECT 1 AS one") == [{"one": 1}]


def test_terminated_session_is_reported_as_unavailable(dsn: str) -> None:
    # Tried: the server kills our backend mid-session (as a restart or an admin would).
    from tuner.errors import DatabaseUnavailable

    with db.connect(dsn) as victim, db.connect(dsn) as admin:
        pid = db.fetch(victim, "SELECT pg_backend_pid() AS pid")[0]["pid"]
        db.execute(admin, "SELECT pg_terminate_backend(%s)", [pid])
        with pytest.raises(DatabaseUnavailable):
            db.fetch(victim, "SELECT 1")
