"""Whether the journal lets a job run: a broken hash chain holds what changes the database,
and nothing acts while the journal cannot be written (a full disk)."""

from __future__ import annotations

from tuner import journal, log
from tuner.config import Mode
from tuner.errors import JournalError
from tuner.jobs.context import Context
from tuner.jobs.resume import recover

_log = log.get("jobs.gate")


def held(ctx: Context, job: str = "act") -> str | None:
    """The verdict when the journal holds `job` back, else None.

    A broken chain no operator acknowledged holds what changes the database in apply
    mode (act, verify's rollbacks), checked again each time. While the journal cannot be
    written: try once (a `journal_resumed` record); on success settle what the failure
    interrupted, as a restart would; else DEGRADED. Nothing acts without its record."""
    with ctx.lock:
        ctx.move_journal()
    if ctx.chain_problems:
        ctx.chain_problems = ctx.journal.standing_problems()
        if ctx.chain_problems and ctx.policy.mode is Mode.APPLY and job in ("act", "verify"):
            return f"HELD: {ctx.chain_text()}"
    fault = ctx.journal_fault
    if fault is None:
        return None
    try:
        ctx.append(journal.EntryKind.JOURNAL_RESUMED,
                   reason=f"the journal is written again after: {fault}")  # fmt: skip
    except JournalError as exc:
        ctx.journal_fault = str(exc)
        return f"DEGRADED: {exc}; not acting until the journal can be written"
    ctx.journal_fault = None
    _log.warning("journal.resumed", after=fault)
    if ctx.leader:
        with ctx.lock:
            ctx.flight = None  # whatever was in flight, the journal now settles it
        ctx.fresh()  # what the failure left half-written is read again
        recover(ctx)
        ctx.refresh_action_metrics()
    return None
