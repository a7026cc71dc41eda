"""The journal's records as typed values, read back from their lines; replay (each action's
latest state); and the check of the hash chain over a scanned file.

Pure: nothing here reads or writes the file (tuner.journal does, under its lock). A record's
`action` and `data` are kept as the JSON they were written as, since the hash chain covers
exactly those bytes; `Record.typed_action` and `Record.payload` map them into frozen models.
Mapping back is tolerant, so journals written by older versions still replay: a key that is
missing takes its default, a key this version does not know is ignored.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tuner.models import Action, ActionState
from tuner.models.records import (
    ActionData,
    EntryKind,
    Payload,
    RepairData,
    TransitionData,
    payload_of,
)

GENESIS = "0" * 64
FIELDS = ("seq", "time", "actor", "action_id", "state", "action", "reason", "figures", "undo",
           "data", "prev", "hash")  # fmt: skip
IN_FLIGHT = (ActionState.BASELINED, ActionState.APPLYING, ActionState.APPLIED,
             ActionState.VERIFYING)  # fmt: skip


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One journal line. `line` and `offset` say where it is in the file (not serialized)."""

    seq: int
    time: str
    actor: str
    action_id: str | None
    state: str
    action: dict[str, Any] | None
    reason: str
    figures: dict[str, Any]
    undo: str | None
    data: dict[str, Any]
    prev: str
    hash: str
    line: int = field(default=0, compare=False)
    offset: int = field(default=0, compare=False)

    @property
    def action_state(self) -> ActionState | None:
        """The ActionState this record moves its action to; None for an EntryKind."""
        try:
            return ActionState(self.state)
        except ValueError:
            return None

    @property
    def is_rollback_request(self) -> bool:
        """An operator's request to undo the action (EntryKind.ROLLBACK_REQUESTED)."""
        return self.state == EntryKind.ROLLBACK_REQUESTED.value

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.time)

    @property
    def typed_action(self) -> ActionData | None:
        """The record's action as a model; None when it has none (the journal checked it)."""
        return ActionData.from_data(self.action) if self.action else None

    @property
    def payload(self) -> Payload:
        """The record's `data` as the typed model its state writes."""
        return payload_of(self.state, self.data)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    def to_public(self) -> dict[str, Any]:
        """`to_dict` for readers in other languages: integers beyond ±2^53 (queryids are
        int8) as strings, since a JSON number that large loses digits in JavaScript and jq."""
        return {name: _exact(getattr(self, name)) for name in FIELDS}


_EXACT_LIMIT = 2**53


def _exact(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > _EXACT_LIMIT else value
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return value


# --- reading a line back ---------------------------------------------------------------------


def _canonical(body: Mapping[str, Any]) -> bytes:
    content = {k: v for k, v in body.items() if k != "hash"}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 of the record's canonical JSON without its `hash` field."""
    return hashlib.sha256(_canonical(body)).hexdigest()


def parse_line(raw: bytes, line: int, offset: int) -> Record:
    """A record from one line (without its newline); ValueError says why it is not one."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    missing = [name for name in FIELDS if name not in body]
    if missing:
        raise ValueError(f"missing fields {', '.join(missing)}")
    if not isinstance(body["seq"], int) or not isinstance(body["hash"], str):
        raise ValueError("seq or hash has the wrong type")
    wrong = [name for name, kinds in _TYPES.items() if not isinstance(body[name], kinds)]
    if wrong or isinstance(body["seq"], bool):
        raise ValueError(f"fields of the wrong type: {', '.join(wrong) or 'seq'}")
    _check_time(body["time"])
    if body["action"] is not None:
        _check_action(body["action"])
    if body["state"] == EntryKind.JOURNAL_REPAIR.value and not _fragments_ok(body["data"]):
        raise ValueError("a journal_repair whose fragments are malformed")
    return Record(**{name: body[name] for name in FIELDS}, line=line, offset=offset)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "time": str, "actor": str, "action_id": (str, type(None)), "state": str,
    "action": (dict, type(None)), "reason": str, "figures": dict, "undo": (str, type(None)),
    "data": dict, "prev": str,
}  # fmt: skip


def _fragments_ok(data: dict[str, Any]) -> bool:
    """A repair's fragments: a list of {offset: int, base64: str, ...}, each one typed."""
    fragments = data.get("fragments")
    return isinstance(fragments, list) and len(RepairData.from_data(data).fragments) == len(
        fragments
    )


def _check_time(text: str) -> None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text[:40]!r} is not an ISO date-time") from None
    if when.tzinfo is None:
        raise ValueError(f"time {text[:40]!r} has no time zone")


def _check_action(data: dict[str, Any]) -> None:
    """The action data must build the typed Action back (`ActionData.from_data`)."""
    try:
        ActionData.from_data(data)
    except ValueError as exc:
        raise ValueError(f"its action data is malformed ({exc!s:.60})") from None


def hash_ok(record: Record) -> bool:
    return record_hash(record.to_dict()) == record.hash


# --- replay ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionStatus:
    """An action as the journal last left it."""

    action_id: str
    state: ActionState
    action: dict[str, Any] | None
    reason: str
    figures: dict[str, Any]
    undo: str | None
    since: str
    seq: int
    history: tuple[ActionState, ...]
    rollback_requested: Record | None = None  # an operator's request not yet carried out

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT

    @property
    def typed_action(self) -> ActionData | None:
        return ActionData.from_data(self.action) if self.action else None

    @property
    def index_name(self) -> str | None:
        name = (self.action or {}).get("index_name")  # tolerant: no need of the table here
        return name if isinstance(name, str) else None

    def to_action(self) -> Action | None:
        """The typed Action back from its journaled data; None if the record had none."""
        typed = self.typed_action
        return typed.to_action(self.action_id, self.reason, self.figures) if typed else None


def replay(records: list[Record]) -> dict[str, ActionStatus]:
    """Each action's latest state and data, in the order actions first appeared."""
    statuses: dict[str, ActionStatus] = {}
    for record in records:
        if record.action_id is None:
            continue
        current = statuses.get(record.action_id)
        state = record.action_state
        if state is None:
            if record.is_rollback_request and current is not None:
                statuses[record.action_id] = replace(current, rollback_requested=record)
            continue
        if current is None:
            statuses[record.action_id] = ActionStatus(
                record.action_id, state, record.action, record.reason, record.figures,
                record.undo, record.time, record.seq, (state,),
            )  # fmt: skip
            continue
        pending = None if state in (ActionState.ROLLED_BACK, ActionState.FAILED) else (
            current.rollback_requested
        )  # fmt: skip
        statuses[record.action_id] = ActionStatus(
            record.action_id, state, record.action or current.action,
            record.reason or current.reason, record.figures or current.figures,
            record.undo or current.undo, record.time, record.seq, (*current.history, state),
            pending,
        )  # fmt: skip
    return statuses


def transition_data(records: list[Record], action_id: str) -> TransitionData:
    """The `data` of every record of this action merged, later records winning, typed."""
    merged: dict[str, Any] = {}
    for record in records:
        if record.action_id == action_id:
            merged.update(record.data)
    return TransitionData.from_data(merged)


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is not a record: damaged, edited, or cut by a crash (then `partial`)."""

    line: int
    offset: int
    raw: bytes
    error: str
    partial: bool  # no newline at its end: the last write did not finish


@dataclass(frozen=True, slots=True)
class Scan:
    """Everything in the file: the records, and the lines that are not records."""

    records: list[Record]
    bad: list[BadLine]
    size: int


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    problems: list[str]
    notes: list[str]
    records: int
    last_seq: int
    last_hash: str


# --- verification ----------------------------------------------------------------------------


def repaired_offsets(records: list[Record]) -> set[int]:
    """Byte offsets of the fragments that journal_repair records acknowledge."""
    offsets: set[int] = set()
    for record in records:
        if record.state == EntryKind.JOURNAL_REPAIR.value:
            offsets.update(f.offset for f in RepairData.from_data(record.data).fragments)
    return offsets


def check(scan: Scan) -> VerifyResult:
    """The hash chain of a scanned journal: every problem, and the acknowledged repairs."""
    problems: list[str] = []
    notes: list[str] = []
    repaired = repaired_offsets(scan.records)
    by_offset = {b.offset: b for b in scan.bad}
    for bad in scan.bad:
        where = f"line {bad.line} (byte {bad.offset})"
        if bad.offset in repaired:
            continue
        if bad.partial:
            problems.append(
                f"{where}: truncated last line, {len(bad.raw)} bytes without a newline: a crash "
                f"mid-write or a cut file; the {len(scan.records)} records before it are intact"
            )
        else:
            problems.append(f"{where}: not a valid record: {bad.error}; edited or damaged")
    prev_hash, prev_seq = GENESIS, 0
    for record in scan.records:
        where = f"line {record.line} (byte {record.offset}), seq {record.seq}"
        found: list[str] = []
        if not hash_ok(record):
            found.append("its content does not match its hash: the record was modified")
        if record.seq != prev_seq + 1:
            found.append(
                f"expected seq {prev_seq + 1}: a record before it is missing or out of order"
            )
        if record.prev != prev_hash:
            before = f"seq {prev_seq}" if prev_seq else "the start of the journal"
            found.append(f"its prev does not match the hash of {before}: the chain is broken")
        if found:
            problems.append(f"{where}: " + "; ".join(found))
        if record.state == EntryKind.JOURNAL_REPAIR.value:
            for frag in RepairData.from_data(record.data).fragments:
                named = by_offset.get(frag.offset)
                if named is None or base64.b64encode(named.raw).decode() != frag.base64:
                    problems.append(f"{where}: the repair names a fragment that is not in the file")
                else:
                    notes.append(
                        f"line {named.line} (byte {named.offset}): {len(named.raw)}-byte fragment"
                        f" of an interrupted write, acknowledged by seq {record.seq}"
                    )
        prev_hash, prev_seq = record.hash, record.seq
    return VerifyResult(not problems, problems, notes, len(scan.records), prev_seq, prev_hash)
