"""Constant SQL, one statement per `*.sql` file, loaded by name."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def get(name: str) -> str:
    """Return the text of `queries/<name>.sql`."""
    return resources.files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
