"""Fixtures live in plugins; see tests/plugins/postgres.py for the real-PostgreSQL harness."""

pytest_plugins = ["tests.plugins.postgres"]
