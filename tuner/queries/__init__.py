"""Constant SQL, one statement per `*.sql` file, loaded by name."""

from __future__ import annotations

from functools import cache
from importlib import resources

# Leads every statement pg-tuner sends, so that its readers of pg_stat_statements and
# pg_stat_activity leave the tuner's own statements out of the workload (`own`).
MARK = "/* pg-tuner */"


@cache
def get(name: str) -> str:
    """Return the text of `queries/<name>.sql`, led by MARK (unless it has its own) and
    ended by it: PostgreSQL 18's pg_stat_statements drops a statement's leading comments."""
    text = resources.files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
    text = text.rstrip().removesuffix(";").rstrip()
    return (text if text.startswith("/* pg-tuner") else f"{MARK}\n{text}") + f"\n{MARK}"


def own(text: str) -> bool:
    """Is `text` (as pg_stat_statements or pg_stat_activity show it) one of pg-tuner's?"""
    return text.startswith("/* pg-tuner") or text.rstrip().endswith(MARK)
