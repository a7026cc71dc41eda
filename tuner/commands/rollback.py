"""`pg-tuner rollback ID`: an operator takes back an applied action.

The request is journaled first (`rollback_requested`, with the OS user), so it stands even
if nothing else happens: the running tuner carries it out at its next cycle. With a policy
(`--policy` or TUNER_POLICY) and no tuner leading the database, the undo runs now, through the
executor (same whitelist, timeouts and leader lock), unless a freeze window forbids it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from datetime import UTC, datetime

from tuner.commands import target_arg
from tuner.commands.audit import describe_action, journal_for
from tuner.config import Policy
from tuner.errors import DatabaseUnavailable
from tuner.journal import EntryKind, Journal, TransitionRefused, operator_actor
from tuner.ledger import ActionStatus, replay
from tuner.models import ActionKind, ActionResult, ActionState
from tuner.windows import Calendar

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
UNDOABLE = (ActionState.APPLIED, ActionState.VERIFYING, ActionState.KEPT)
LATER = "the running tuner carries it out at its next cycle"


def run(args: argparse.Namespace) -> int:
    journal, policy = journal_for(args)
    actor = operator_actor()
    pending = replay(journal.read()).get(args.id)
    if pending is not None and pending.rollback_requested is not None:
        earlier = pending.rollback_requested
        print(f"rollback of {args.id} was already requested by {earlier.actor} at "
              f"{earlier.time}; {LATER}")  # fmt: skip
        return EXIT_OK
    try:
        record = journal.append(
            EntryKind.ROLLBACK_REQUESTED,
            action_id=args.id,
            actor=actor,
            reason=args.reason or f"rollback requested by {actor}",
            expect=UNDOABLE,
        )
    except TransitionRefused as exc:  # unknown ID, or nothing applied to take back
        print(f"pg-tuner rollback: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    status = replay(journal.read())[args.id]
    print(f"rollback of {args.id} requested: {describe_action(status.typed_action)} "
          f"(journal seq {record.seq}, {actor})")  # fmt: skip
    if policy is None:
        print(f"no policy given, so nothing runs now; {LATER} (or pass --policy to undo now)")
        return EXIT_OK
    return undo_now(journal, policy, status, args, actor)


def undo_now(
    journal: Journal, policy: Policy, status: ActionStatus, args: argparse.Namespace, actor: str
) -> int:
    """Ask the executor to undo now; journal `rolled_back` while still holding the leader lock."""
    may, why = Calendar.from_policy(policy).allowed(datetime.now(UTC))
    if not may:
        print(f"not undone now: {why}; {LATER} when the window opens")
        return EXIT_OK
    action = status.to_action()
    if action is None or importlib.util.find_spec("tuner.executor") is None:
        print(f"this build cannot undo from the command line; {LATER}")
        return EXIT_OK
    from tuner.executor import Executor

    target = target_arg(args)
    applied = ActionResult(
        action.id, action.kind, ActionState.APPLIED, index_name=action.index_name,
        index_definition=action.index_definition, tuner_made=action.kind is ActionKind.CREATE_INDEX,
    )  # fmt: skip
    try:
        with Executor(target.dsn, target.password, policy) as executor:
            result = executor.undo(action, applied)
            if result.state is ActionState.ROLLED_BACK:
                journal.append(
                    ActionState.ROLLED_BACK,
                    action=action,
                    actor=actor,
                    reason=f"rolled back on request of {actor}"
                    + (f": {args.reason}" if args.reason else ""),
                    figures={"undo": result.statement or result.reason},
                )
    except DatabaseUnavailable as exc:
        print(f"not undone now: the database is unavailable ({exc}); {LATER}", file=sys.stderr)
        return EXIT_FAILURE
    if result.state is ActionState.ROLLED_BACK:
        print(f"rolled back: {result.statement or result.reason}")
        return EXIT_OK
    if result.state is ActionState.REJECTED:  # another tuner leads the database
        print(f"not undone now: {result.reason}; {LATER}")
        return EXIT_OK
    print(f"pg-tuner rollback: the undo failed: {result.reason}; the request stays in the "
          "journal", file=sys.stderr)  # fmt: skip
    return EXIT_FAILURE
