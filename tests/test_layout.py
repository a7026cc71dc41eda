"""The package's layering, as the README's "How the code is laid out" draws it: no import
cycles, pure modules that import nothing that touches the world, and one module that
talks to the driver. Read from the source (module-level imports; `if TYPE_CHECKING:`
blocks are not imports at run time)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "tuner"

PURE = (
    "tuner.queue", "tuner.watch", "tuner.flight", "tuner.config", "tuner.settings",
    "tuner.policyfile", "tuner.units", "tuner.models", "tuner.errors", "tuner.log",
    "tuner.dsn", "tuner.workload", "tuner.sqlinfo", "tuner.findings", "tuner.policy",
    "tuner.guards", "tuner.windows", "tuner.statements", "tuner.evidence", "tuner.verify",
    "tuner.ledger", "tuner.labels", "tuner.antipatterns",
)  # fmt: skip
IO = (
    "tuner.db", "tuner.sampler", "tuner.observe", "tuner.whatif", "tuner.costing",
    "tuner.catalog", "tuner.executor", "tuner.fenced", "tuner.leader", "tuner.journal",
    "tuner.recovery", "tuner.daemon", "tuner.jobs", "tuner.api", "tuner.metrics",
    "tuner.notify", "tuner.serverlog", "tuner.sandbox", "tuner.advisor", "tuner.commands",
)  # fmt: skip
DRIVER = ("tuner.db", "tuner.dsn")  # dsn: psycopg.conninfo, libpq's parser (no connection)


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> Iterator[str]:
    """Absolute module names imported at run time by `path`'s top level."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {m for m in imports(path) if m in known and m != name} for name, path in known.items()
    }


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def reach(edges: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module `start` imports, directly or not, with one import chain to it."""
    paths = {start: [start]}
    todo = [start]
    while todo:
        current = todo.pop()
        for nxt in sorted(edges[current]):
            if nxt not in paths:
                paths[nxt] = [*paths[current], nxt]
                todo.append(nxt)
    return paths


def test_no_module_imports_itself_through_others() -> None:
    edges = graph()
    cycles = []
    for name in sorted(edges):
        for other, chain in reach(edges, name).items():
            # a package's __init__ re-exporting its own submodules is not a cycle
            if other != name and name in edges[other] and not other.startswith(name + "."):
                cycles.append(" -> ".join([*chain, name]))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_pure_modules_import_nothing_that_touches_the_world() -> None:
    edges = graph()
    bad = []
    for name in sorted(edges):
        if not within(name, PURE):
            continue
        for other, chain in reach(edges, name).items():
            if within(other, IO):
                bad.append(" -> ".join(chain))
    assert not bad, "pure modules reaching I/O ones:\n" + "\n".join(bad)


def test_only_db_talks_to_the_driver() -> None:
    users = sorted(
        name for name, path in modules().items()
        if any(m == "psycopg" or m.startswith("psycopg.") for m in imports(path))
        and not within(name, DRIVER)
    )  # fmt: skip
    assert not users, f"modules importing psycopg besides db: {users}"
