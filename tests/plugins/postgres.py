"""A real PostgreSQL for the tests: a sandbox cluster per session, a fresh database per test.

TUNER_TEST_DSN points the tests at an existing server (a superuser DSN; databases are created
and dropped there). TUNER_TEST_BACKEND=docker starts one with testcontainers instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
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
    else:
        with Sandbox() as sandbox:
            yield Server(admin_dsn=sandbox.dsn(), sandbox=sandbox, has_hypopg=sandbox.has_hypopg)


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
