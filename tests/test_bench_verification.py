"""bench/verification.py's A/A: the index the daemon drops is one the reads use, so their
plans change and the verdict judges them on figures; the index they move to is as good."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bench.verification import AA_READS, load_aa
from tuner import db, watch
from tuner.candidates import maintenance_proposals
from tuner.models import ProposalKind
from tuner.sampler import Sampler
from tuner.statements import recreate_problem


def plans(conn: Any) -> dict[int, Any]:
    """Each A/A read's plan for one region, by its position in AA_READS."""
    return {
        n: db.fetch_plan(
            conn, "EXPLAIN (FORMAT JSON) " + text.replace("%s", "5").replace("%%", "%")
        )
        for n, text in enumerate(AA_READS)
    }


def indexes(plan: Any) -> set[str]:
    """The index names a plan (or any part of it) reads."""
    if isinstance(plan, list):
        return set().union(*map(indexes, plan))
    if not isinstance(plan, dict):
        return set()
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    return found.union(*map(indexes, plan.values()))


def test_the_aa_drop_moves_every_read_to_the_index_that_stays(dsn: str, conn: Any) -> None:
    load_aa(conn)
    with Sampler.from_dsn(dsn) as sampler:
        shot = sampler.sample()
    proposals = maintenance_proposals(
        shot.tables, shot.indexes, stats_age=0.0, unused_after=timedelta(days=30),
        stale_ratio=0.1, dead_ratio=0.2,
    )  # fmt: skip
    drops = [(p.kind, p.index_name, p.duplicate_of) for p in proposals if p.index_name]
    assert drops == [
        (ProposalKind.DROP_DUPLICATE_INDEX, "accounts_region", "accounts_region_score")
    ]
    [row] = db.fetch(conn, "SELECT pg_get_indexdef('accounts_region'::regclass) AS d, "
                           "pg_relation_size('accounts_region') AS dropped, "
                           "pg_relation_size('accounts_region_score') AS kept")  # fmt: skip
    assert recreate_problem(row["d"], "public") is None  # else the policy refuses the drop
    assert row["kept"] < 1.25 * row["dropped"]  # the reads move to an index of about its size
    before = plans(conn)
    assert all(indexes(p) == {"accounts_region"} for p in before.values()), before
    db.execute(conn, "DROP INDEX accounts_region")
    after = plans(conn)
    assert all(indexes(p) == {"accounts_region_score"} for p in after.values()), after
    assert watch.affected(before, after) == set(before)
