"""`pg-tuner reject ID [--reason]`: an operator rejects a proposed action."""

from __future__ import annotations

import argparse
import sys

from tuner.commands.audit import describe_action, journal_for
from tuner.journal import TransitionRefused, operator_actor
from tuner.models import ActionState
from tuner.recovery import replay

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def run(args: argparse.Namespace) -> int:
    journal, _ = journal_for(args)
    actor = operator_actor()
    try:
        record = journal.append(
            ActionState.REJECTED,
            action_id=args.id,
            actor=actor,
            reason=args.reason or f"rejected by {actor}",
            expect={ActionState.PROPOSED},
        )
    except TransitionRefused as exc:  # unknown ID, or not proposed (already decided)
        print(f"pg-tuner reject: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    status = replay(journal.read()).get(args.id)
    what = describe_action(status.action if status else None)
    print(f"rejected {args.id}: {what} (journal seq {record.seq}, {actor})")
    return EXIT_OK
