"""`pg-tuner audit`: what the tuner did and why, from its journal; `--verify` checks the chain."""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tuner.commands import policy_arg, terminal_width
from tuner.config import JournalSettings, Policy
from tuner.journal import EntryKind, Journal, Record, VerifyResult, check, operator_actor
from tuner.labels import label, shorten
from tuner.ledger import replay
from tuner.models import ActionData, ActionKind, ActionState
from tuner.models.records import AcknowledgedData, TransitionData
from tuner.units import format_size, parse_duration

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
_MAX_FIGURES = 6
_NO_WRAP = 1 << 20
_MAX_STATEMENTS = 8  # statements listed under an action; --json has every text
_UNDOABLE = (ActionState.APPLIED, ActionState.VERIFYING, ActionState.KEPT)
_STATE_WORDS = {
    EntryKind.ROLLBACK_REQUESTED.value: "rollback requested",
    EntryKind.JOURNAL_REPAIR.value: "journal repaired",
    EntryKind.JOURNAL_RESUMED.value: "journal writable again",
    EntryKind.CHAIN_ACKNOWLEDGED.value: "chain problems acknowledged",
}


def journal_for(args: argparse.Namespace) -> tuple[Journal, Policy | None]:
    """The journal from --journal, else the policy's `journal.path` (else the default path)."""
    policy = policy_arg(args) if getattr(args, "policy", None) or not args.journal else None
    if args.journal:
        return Journal(Path(args.journal)), policy
    path = policy.journal.path if policy else JournalSettings().path
    return Journal(path), policy


def describe_action(action: ActionData | None) -> str:
    """`create index ix on public.orders (customer_id) include (total)` from journaled data."""
    if action is None:
        return "(no action data)"
    where, name = str(action.table), action.index_name or "(unnamed)"
    if action.kind is ActionKind.CREATE_INDEX:
        columns, include = (
            (action.index.columns, action.index.include) if action.index else ((), ())
        )
        text = f"create index {name} on {where} ({', '.join(columns)})"
        if include:
            text += f" include ({', '.join(include)})"
        return text
    if action.kind is ActionKind.DROP_INDEX:
        return f"drop index {name} on {where}"
    if action.kind is ActionKind.REINDEX:
        return f"reindex {name} on {where}"
    return f"{action.kind.value} {where}"


def texts_of(record: Record) -> Mapping[int, str]:
    """queryid → statement text that the record kept (the `baselined` records do)."""
    payload = record.payload
    return payload.texts if isinstance(payload, TransitionData) else {}


_QUERYID = re.compile(r"(?<![\w.#-])-?\d{4,20}(?![\w.])")


def statement_names(records: list[Record]) -> dict[str, str]:
    """queryid (as text) → the statement's label, from the texts the journal kept (the
    `baselined` records keep each watched statement's text)."""
    names: dict[str, str] = {}
    for record in records:
        for queryid, text in texts_of(record).items():
            if str(queryid) not in names:
                names[str(queryid)] = label(text)
    return names


def relabel(text: str, names: dict[str, str]) -> str:
    """`query -2011910912755315913` → `query select orders #3fa2c1` where the text is known."""
    if not names:
        return text
    return _QUERYID.sub(lambda m: names.get(m.group(0), m.group(0)), text)


def _figure(key: str, value: Any, names: dict[str, str] | None = None) -> str | None:
    if names is not None and _QUERYID.fullmatch(key) and isinstance(value, str):
        return relabel(value, names)  # a query's figures: the value names the query itself
    if isinstance(value, bool | str):
        return f"{key} {value}"
    if isinstance(value, int) and ("bytes" in key or "size" in key):
        return f"{key} {format_size(value)}"
    if isinstance(value, int):
        return f"{key} {value}"
    if isinstance(value, float):
        return f"{key} {value:.3g}"
    return None  # nested figures: --json shows them


# How a verdict was decided (`models.Method`): shown on its own line, `decided by ...`.
_METHOD = frozenset({"decided", "test", "look", "looks", "level", "threshold", "read_floor_ms",
                     "write_floor_ms", "load_scales"})  # fmt: skip


def key_figures(figures: dict[str, Any], names: dict[str, str] | None = None) -> str:
    figures = {k: v for k, v in figures.items() if k not in _METHOD}
    shown = [f for k, v in figures.items() if (f := _figure(k, v, names)) is not None]
    text = " · ".join(shown[:_MAX_FIGURES])
    hidden = len(figures) - min(len(shown), _MAX_FIGURES)
    return text + (f" · (+{hidden} more, see --json)" if hidden else "")


def _when(record: Record, tz: ZoneInfo) -> str:
    return f"{record.when.astimezone(tz):%Y-%m-%d %H:%M:%S} {tz.key}"


_INDENT = " " * 6  # where a wrapped reason and the figures continue


def _wrapped(head: str, text: str, width: int) -> list[str]:
    """`head` then `text`, wrapped to `width`; the rest of the lines indented by _INDENT."""
    if not text:
        return [head.rstrip()]
    lines = textwrap.wrap(text, max(width, len(head) + 40), initial_indent=head,
                          subsequent_indent=_INDENT, break_on_hyphens=False)  # fmt: skip
    return lines or [head.rstrip()]


def _statements(group: list[Record], names: dict[str, str], width: int) -> list[str]:
    """The statements the group's reasons and figures name, each label with its text once."""
    texts: dict[str, str] = {}
    for record in group:
        texts.update({str(k): v for k, v in texts_of(record).items()})
    seen = " ".join(
        [r.reason for r in group] + [f"{k} {v}" for r in group for k, v in r.figures.items()]
    )
    named = [q for q in dict.fromkeys(_QUERYID.findall(seen)) if q in texts and q in names]
    out = [f"    {names[q]}  {shorten(texts[q], max(width - len(names[q]) - 6, 32))}"
           for q in named[:_MAX_STATEMENTS]]  # fmt: skip
    if len(named) > _MAX_STATEMENTS:
        out.append(f"    … and {len(named) - _MAX_STATEMENTS} more (see --json)")
    return ["  statements:", *out] if out else []


def render(records: list[Record], tz: ZoneInfo, width: int = 100) -> list[str]:
    """The history grouped by action, in the order actions first appear; journal events last.
    Queryids read as the statements' labels where the journal kept their texts."""
    names = statement_names(records)
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.action_id or "", []).append(record)
    statuses = replay(records)
    actor_width = max(len(r.actor) for r in records)
    out: list[str] = []
    for action_id, group in groups.items():
        status = statuses.get(action_id)
        if action_id:
            data = next((r.typed_action for r in reversed(group) if r.action), None)
            now = f" — now {status.state.value}" if status else ""
            out += _wrapped("", f"action {action_id}: {describe_action(data)}{now}", width)
        else:
            out.append("journal")
        shown: dict[str, Any] = {}
        for record in group:
            state = _STATE_WORDS.get(record.state, record.state)
            head = f"  {_when(record, tz)}  {record.actor:<{actor_width}}  {state:<12}"
            out += _wrapped(f"{head}  ", relabel(record.reason, names), width)
            fresh = record.figures and record.figures != shown  # a repeat says nothing new
            if fresh and (figures := key_figures(record.figures, names)):
                out += _wrapped(_INDENT, figures, width)
            if fresh and isinstance(decided := record.figures.get("decided"), str):
                out += _wrapped(_INDENT, f"decided by {decided}", width)
            shown = record.figures or shown
        out += _statements(group, names, width)
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


def acknowledge(journal: Journal, reason: str) -> int:
    """`audit --acknowledge`: journal the chain's problems as seen by this operator, so that
    a daemon in apply mode acts again; the problems stay in `--verify`'s report."""
    problems = journal.standing_problems()
    if not problems:
        print(f"nothing to acknowledge: no unacknowledged problem in {journal.path}")
        return EXIT_OK
    actor = operator_actor()
    record = journal.append(
        EntryKind.CHAIN_ACKNOWLEDGED, actor=actor,
        data=AcknowledgedData(tuple(problems)).to_data(),
        reason=reason or f"{len(problems)} chain problem(s) acknowledged by {actor}",
    )  # fmt: skip
    for problem in problems:
        print(f"  {problem}")
    print(f"acknowledged {len(problems)} problem(s) (journal seq {record.seq}, {actor}); "
          "`audit --verify` still reports them")  # fmt: skip
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    journal, policy = journal_for(args)
    tz = policy.tz if policy else ZoneInfo("UTC")
    if args.verify:
        return print_verification(journal, journal.verify())
    if getattr(args, "acknowledge", False):
        return acknowledge(journal, args.reason)
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
            print(json.dumps(record.to_public(), ensure_ascii=False))
    elif records:
        # to a pipe or a file, one record a line (for grep); on a terminal, wrapped to it
        print("\n".join(render(records, tz, terminal_width(_NO_WRAP))).rstrip())
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
