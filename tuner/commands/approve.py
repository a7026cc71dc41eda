"""`pg-tuner approve ID`: an operator approves a proposed action (recommend mode)."""

from __future__ import annotations

import argparse
import sys

from tuner.commands.audit import describe_action, journal_for
from tuner.journal import TransitionRefused, operator_actor
from tuner.ledger import replay
from tuner.models import ActionState

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def decide(args: argparse.Namespace, state: ActionState, verb: str, after: str = "") -> int:
    """Journal an operator's decision on a proposed action; exit 2 for an unknown or decided ID."""
    journal, _ = journal_for(args)
    actor = operator_actor()
    try:
        record = journal.append(
            state,
            action_id=args.id,
            actor=actor,
            reason=args.reason or f"{state.value} by {actor}",
            expect={ActionState.PROPOSED},
        )
    except TransitionRefused as exc:  # unknown ID, or not proposed (already decided)
        print(f"pg-tuner {verb}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    status = replay(journal.read()).get(args.id)
    what = describe_action(status.typed_action if status else None)
    print(f"{state.value} {args.id}: {what} (journal seq {record.seq}, {actor})")
    if after:
        print(after)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    return decide(
        args, ActionState.APPROVED, "approve",
        "the tuner applies it at its next cycle, when its guards and windows allow",
    )  # fmt: skip
