"""Constant SQL, one statement per `*.sql` file, loaded by name."""

from __future__ import annotations

from functools import cache
from importlib import resources

# Leads every statement pg-tuner sends, so that its readers of pg_stat_statements and
# pg_stat_activity leave the tuner's own statements out of the workload (sampler.OWN_MARK).
MARK = "/* pg-tuner */"


@cache
def get(name: str) -> str:
    """Return the text of `queries/<name>.sql`, led by MARK (unless it has its own)."""
    text = resources.files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
    return text if text.startswith("/* pg-tuner") else f"{MARK}\n{text}"
