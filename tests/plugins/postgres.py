"""A real PostgreSQL for the tests: a sandbox cluster per session, a fresh database per test.

TUNER_TEST_PG_BIN names the server's bin directory (e.g. `scripts/pg-binaries 18`); without
it the sandbox takes the newest of Debian's packages or the one on PATH, and must have HypoPG.
With TUNER_TEST_PG_BIN a server without HypoPG is accepted: the tests marked `hypopg` skip,
saying why. TUNER_TEST_DSN points the tests at an existing server (a superuser DSN;
databases are created and dropped there). TUNER_TEST_BACKEND=docker starts one with
testcontainers instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tuner import db
from tuner.sandbox import Sandbox


@dataclass
class Server:
    """What a test needs of the server: a DSN per database, and a way to make databases."""

    admin_dsn: str
    sandbox: Sandbox | None
    has_hypopg: bool
    no_hypopg_reason: str = "HypoPG is not available on the test server"

    def dsn(self, dbname: str, user: str | None = None) -> str:
        params = db.conninfo_to_dict(self.admin_dsn)
        params["dbname"] = dbname
        if user:
            params["user"] = user
        return db.make_conninfo("", **params)

    def create_database(self, name: str) -> str:
        with db.connect(self.admin_dsn) as conn:
            db.execute(
                conn, db.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db.Identifier(name))
            )
            db.execute(conn, db.SQL("CREATE DATABASE {}").format(db.Identifier(name)))
        dsn = self.dsn(name)
        with db.connect(dsn) as conn:
            db.execute(conn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            if self.has_hypopg:
                db.execute(conn, "CREATE EXTENSION IF NOT EXISTS hypopg")
        return dsn

    def drop_database(self, name: str) -> None:
        with db.connect(self.admin_dsn) as conn:
            db.execute(
                conn, db.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db.Identifier(name))
            )


def _docker_server() -> Iterator[Server]:
    from testcontainers.postgres import PostgresContainer

    image = os.environ.get("TUNER_TEST_IMAGE", "postgres:15")
    container = PostgresContainer(image, username="postgres", password="postgres")
    container.with_command("postgres -c shared_preload_libraries=pg_stat_statements")
    with container as running:
        host, port = running.get_container_host_ip(), running.get_exposed_port(5432)
        os.environ.setdefault("TUNER_PASSWORD", "postgres")
        dsn = f"host={host} port={port} dbname=postgres user=postgres password=postgres"
        with db.connect(dsn) as conn:
            names = {r["name"] for r in db.fetch(conn, "SELECT name FROM pg_available_extensions")}
        yield Server(admin_dsn=dsn, sandbox=None, has_hypopg="hypopg" in names)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """The session's server: TUNER_TEST_DSN, a Docker container, or a private sandbox."""
    if dsn := os.environ.get("TUNER_TEST_DSN"):
        with db.connect(dsn) as conn:
            names = {r["name"] for r in db.fetch(conn, "SELECT name FROM pg_available_extensions")}
        yield Server(admin_dsn=dsn, sandbox=None, has_hypopg="hypopg" in names)
    elif os.environ.get("TUNER_TEST_BACKEND") == "docker":
        yield from _docker_server()
    elif bindir := os.environ.get("TUNER_TEST_PG_BIN"):
        os.environ["TUNER_PG_BINDIR"] = bindir  # the sandboxes tests start themselves, too
        with Sandbox(bindir=Path(bindir), require_hypopg=False) as sandbox:
            note = Path(bindir).parent / "NO-HYPOPG"  # left by scripts/pg-binaries
            why = note.read_text().strip() if note.is_file() else "not installed there"
            reason = f"needs HypoPG, which PostgreSQL {sandbox.version} in {bindir} lacks: {why}"
            if sandbox.version == 14:
                _flush_for_14(sandbox.dsn("template1"))
            yield Server(sandbox.dsn(), sandbox, sandbox.has_hypopg, reason)
    else:
        with Sandbox() as sandbox:
            yield Server(admin_dsn=sandbox.dsn(), sandbox=sandbox, has_hypopg=sandbox.has_hypopg)


def _flush_for_14(template_dsn: str) -> None:
    """The tests call pg_stat_force_next_flush() (15+) before reading table counters. 14's
    backends send their counters to the statistics collector at a transaction's end once
    500 ms passed since the last send: a function that waits that long stands in for it.

    And a reader takes the collector's statistics file when it is at most 500 ms old; an
    autovacuum worker asks for a new one (10 ms old at most) as it starts, and the
    launcher starts one for each database a test creates. A file it had written just
    before the flush then answered test_sampler's read without the test's 2,000 inserts
    (CI, once). The suite's server runs without autovacuum on 14: no test relies on it."""
    with db.connect(template_dsn) as conn:
        db.execute(
            conn,
            "CREATE FUNCTION public.pg_stat_force_next_flush() RETURNS void LANGUAGE sql"
            " AS 'SELECT pg_sleep(0.55)'",
        )
        db.execute(conn, "ALTER SYSTEM SET autovacuum = off")
        db.fetch(conn, "SELECT pg_reload_conf()")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hypopg: needs the HypoPG extension; skipped without it")


@pytest.fixture(autouse=True)
def _needs_hypopg(request: pytest.FixtureRequest) -> None:
    """Skip a test marked `hypopg` on a server without HypoPG, with the reason in the report."""
    if request.node.get_closest_marker("hypopg") is None:
        return
    server: Server = request.getfixturevalue("pg_server")
    if not server.has_hypopg:
        pytest.skip(server.no_hypopg_reason)


def _dbname(nodeid: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", nodeid.lower().split("::")[-1])
    return ("t_" + name)[:50]


@pytest.fixture
def dsn(pg_server: Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for this test, with pg_stat_statements and HypoPG; dropped after."""
    name = _dbname(request.node.nodeid)
    yield pg_server.create_database(name)
    pg_server.drop_database(name)


@pytest.fixture
def conn(dsn: str) -> Iterator[Any]:
    """An autocommit connection to this test's database."""
    with db.connect(dsn) as connection:
        yield connection
