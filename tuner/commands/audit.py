"""`pg-tuner audit`: what the tuner did and why, from its journal; `--verify` checks the chain."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tuner.commands import policy_arg
from tuner.config import Journal as JournalSection
from tuner.config import Policy, format_size, parse_duration
from tuner.journal import Event, Journal, Record, VerifyResult, check
from tuner.models import ActionState
from tuner.recovery import replay

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
_MAX_FIGURES = 6
_UNDOABLE = (ActionState.APPLIED, ActionState.VERIFYING, ActionState.KEPT)
_STATE_WORDS = {
    Event.ROLLBACK_REQUESTED.value: "rollback requested",
    Event.JOURNAL_REPAIR.value: "journal repaired",
}


def journal_for(args: argparse.Namespace) -> tuple[Journal, Policy | None]:
    """The journal from --journal, else the policy's `journal.path` (else the default path)."""
    policy = policy_arg(args) if getattr(args, "policy", None) or not args.journal else None
    if args.journal:
        return Journal(Path(args.journal)), policy
    path = policy.journal.path if policy else JournalSection().path
    return Journal(path), policy


def describe_action(data: dict[str, Any] | None) -> str:
    """`create index ix on public.orders (customer_id) include (total)` from journaled data."""
    if not data:
        return "(no action data)"
    table = data.get("table") or {}
    where = f"{table.get('schema', '?')}.{table.get('name', '?')}"
    kind, name = str(data.get("kind", "?")), data.get("index_name") or "(unnamed)"
    if kind == "create_index":
        text = f"create index {name} on {where} ({', '.join(data.get('columns') or [])})"
        if data.get("include"):
            text += f" include ({', '.join(data['include'])})"
        return text
    if kind == "drop_index":
        return f"drop index {name} on {where}"
    if kind == "reindex":
        return f"reindex {name} on {where}"
    return f"{kind} {where}"


def _figure(key: str, value: Any) -> str | None:
    if isinstance(value, bool | str):
        return f"{key} {value}"
    if isinstance(value, int) and ("bytes" in key or "size" in key):
        return f"{key} {format_size(value)}"
    if isinstance(value, int):
        return f"{key} {value}"
    if isinstance(value, float):
        return f"{key} {value:.3g}"
    return None  # nested figures: --json shows them


def key_figures(figures: dict[str, Any]) -> str:
    shown = [f for k, v in figures.items() if (f := _figure(k, v)) is not None]
    text = " · ".join(shown[:_MAX_FIGURES])
    hidden = len(figures) - min(len(shown), _MAX_FIGURES)
    return text + (f" · (+{hidden} more, see --json)" if hidden else "")


def _when(record: Record, tz: ZoneInfo) -> str:
    return f"{record.when.astimezone(tz):%Y-%m-%d %H:%M:%S} {tz.key}"


def render(records: list[Record], tz: ZoneInfo) -> list[str]:
    """The history grouped by action, in the order actions first appear; journal events last."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.action_id or "", []).append(record)
    statuses = replay(records)
    actor_width = max(len(r.actor) for r in records)
    out: list[str] = []
    for action_id, group in groups.items():
        status = statuses.get(action_id)
        if action_id:
            data = next((r.action for r in reversed(group) if r.action), None)
            now = f" — now {status.state.value}" if status else ""
            out.append(f"action {action_id}: {describe_action(data)}{now}")
        else:
            out.append("journal")
        shown: dict[str, Any] = {}
        for record in group:
            state = _STATE_WORDS.get(record.state, record.state)
            head = f"  {_when(record, tz)}  {record.actor:<{actor_width}}  {state:<12}"
            out.append(f"{head}  {record.reason}".rstrip())
            fresh = record.figures and record.figures != shown  # a repeat says nothing new
            if fresh and (figures := key_figures(record.figures)):
                out.append(" " * (len(head) + 2) + figures)
            shown = record.figures or shown
        undo = next((r.undo for r in reversed(group) if r.undo), None)
        if undo and status and status.state in _UNDOABLE:
            out.append(f"  undo: {undo}   (or: pg-tuner rollback {action_id})")
        if status and status.rollback_requested is not None:
            by = status.rollback_requested.actor
            out.append(f"  rollback requested by {by}; not carried out yet")
        out.append("")
    return out


def parse_since(text: str, tz: ZoneInfo, now: datetime) -> datetime:
    """`2d`, `90m` (an age) or an ISO date-time (naive means the display zone)."""
    try:
        age: timedelta = parse_duration(text)
        return now - age
    except ValueError as exc:
        age_problem = str(exc)
    try:
        since = datetime.fromisoformat(text)
    except ValueError:
        if not age_problem.startswith("expected a duration"):  # an age, out of range
            raise ValueError(f"--since {text!r}: {age_problem}") from None
        raise ValueError(
            f"--since {text!r}: expected an age such as 2d or 12h, or an ISO date-time "
            "such as 2026-11-28 or 2026-11-28T14:00"
        ) from None
    return since if since.tzinfo else since.replace(tzinfo=tz)


def print_verification(journal: Journal, result: VerifyResult) -> int:
    if result.ok:
        print(
            f"journal {journal.path}: intact — {result.records} records, "
            f"last seq {result.last_seq}, hash {result.last_hash}"
        )
        for note in result.notes:
            print(f"  note: {note}")
        return EXIT_OK
    print(f"journal {journal.path}: FAILED verification — {len(result.problems)} problem(s):")
    for problem in result.problems:
        print(f"  - {problem}")
    for note in result.notes:
        print(f"  note: {note}")
    return EXIT_FAILURE


def run(args: argparse.Namespace) -> int:
    journal, policy = journal_for(args)
    tz = policy.tz if policy else ZoneInfo("UTC")
    if args.verify:
        return print_verification(journal, journal.verify())
    try:
        since = parse_since(args.since, tz, datetime.now(UTC)) if args.since else None
    except ValueError as exc:  # e.g. --since yesterday
        print(f"pg-tuner audit: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not journal.path.exists():
        print(f"no journal at {journal.path} yet: the tuner has recorded nothing")
        return EXIT_OK
    scan = journal.scan()
    records = [
        r
        for r in scan.records
        if (since is None or r.when >= since) and (not args.action or r.action_id == args.action)
    ]
    if args.action and not records:
        print(f"pg-tuner audit: no records for action {args.action!r}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        for record in records:
            print(json.dumps(record.to_dict(), ensure_ascii=False))
    elif records:
        print("\n".join(render(records, tz)).rstrip())
    else:
        print("no records match")
    result = check(scan)
    if not result.ok:
        print(
            f"warning: the journal fails verification ({len(result.problems)} problem(s)); "
            "run `pg-tuner audit --verify` for details",
            file=sys.stderr,
        )
    return EXIT_OK
