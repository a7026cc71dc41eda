"""Sample: a snapshot every `sample_interval`; the latest one feeds every other job. A
follower that finds the advisory lock free takes the lead and settles the journal."""

from __future__ import annotations

from tuner.jobs.context import Context
from tuner.jobs.resume import lead, recover


def run(ctx: Context) -> str:
    snapshot = ctx.sample()
    if not ctx.leader and lead(ctx):
        # The previous leader may have died mid-action: settle the journal as a start does.
        settled = recover(ctx)
        ctx.refresh_action_metrics()
        return "LEADER: took the lead; " + ("; ".join(settled) or "nothing to recover")
    role = "" if ctx.leader else "; another pg-tuner leads, observing only"
    return f"OBSERVE: {len(snapshot.queries)} queries sampled{role}"
