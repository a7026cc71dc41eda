"""The audit journal: an append-only, fsync'd, hash-chained JSON Lines file.

One line per state transition of an action (models.ActionState) or per operator/journal
event (Event). Each record carries `prev`, the hash of the record before it, and `hash`, the
SHA-256 of its own canonical JSON (sorted keys, no `hash` field), so an edited, deleted or
reordered record breaks the chain and `verify()` says where.

Writing: under an exclusive `fcntl.flock` on `<journal>.lock` (the CLI and the daemon never
interleave), the writer reads the tail to find the previous record, opens the file with
O_APPEND, writes the whole line with one `write`, and fsyncs before `append` returns: the
caller's next step starts only once its record is on disk.

A crash mid-write leaves a partial last line. Readers report it with its byte offset and
still return every record before it. The next writer does not glue onto it: it ends the
fragment with a newline and journals a `journal_repair` record that keeps the fragment's
bytes (base64) and offset, chained to the last intact record. `verify()` then lists the
repair as a note instead of a problem, so a journal that survived a crash stays verifiable
while the fragment itself is never hidden. Only a line without its newline is a torn write:
a whole line that is not a record, wherever it is (the last one included), was edited or
damaged, stays a problem for `verify()`, and the next record chains past it to the last
intact one. The file is never rewritten or shortened.

What the chain cannot detect: removing whole records from the end (there is no later record
to notice). `audit` prints the last seq and hash so an operator can anchor them elsewhere.

Reading the records back into each action's state (`replay`) and settling what a restart
interrupted (`recover`) live in tuner.recovery.
"""

from __future__ import annotations

import base64
import fcntl
import getpass
import hashlib
import json
import math
import os
import pwd
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from tuner import log
from tuner.errors import JournalError
from tuner.labels import label
from tuner.models import Action, ActionKind, ActionState, TableRef

# `append(expect=...)` replays; all three are also re-exported (callers use `journal.replay`).
from tuner.recovery import IndexHealth as IndexHealth
from tuner.recovery import recover as recover
from tuner.recovery import replay as replay
from tuner.recovery import spec_of
from tuner.statements import quote_ref

TUNER_ACTOR = "pg-tuner"
GENESIS = "0" * 64
_FIELDS = ("seq", "time", "actor", "action_id", "state", "action", "reason", "figures", "undo",
           "data", "prev", "hash")  # fmt: skip
_TAIL_CHUNK = 65536


class Event(StrEnum):
    """Journal records that are not a state transition of an action."""

    ROLLBACK_REQUESTED = "rollback_requested"  # an operator asked; the daemon/executor undoes
    JOURNAL_REPAIR = "journal_repair"  # a partial line left by a crash, acknowledged
    JOURNAL_RESUMED = "journal_resumed"  # the daemon could write again after a write failed
    CHAIN_ACKNOWLEDGED = "chain_acknowledged"  # an operator saw the chain's problems (audit)


class TransitionRefused(JournalError):
    """The action is unknown or not in a state that allows the requested transition."""


def operator_actor() -> str:
    """`operator:<OS user>` for records written by a person through the CLI."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = pwd.getpwuid(os.getuid()).pw_name
    return f"operator:{name}"


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
        """The ActionState this record moves its action to; None for an Event."""
        try:
            return ActionState(self.state)
        except ValueError:
            return None

    @property
    def is_rollback_request(self) -> bool:
        """An operator's request to undo the action (Event.ROLLBACK_REQUESTED)."""
        return self.state == Event.ROLLBACK_REQUESTED.value

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.time)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    def to_public(self) -> dict[str, Any]:
        """`to_dict` for readers in other languages: integers beyond ±2^53 (queryids are
        int8) as strings, since a JSON number that large loses digits in JavaScript and jq."""
        return {name: _exact(getattr(self, name)) for name in _FIELDS}


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


# --- serialization ---------------------------------------------------------------------------


def _scrub_text(text: str) -> str:
    """db.redact plus every secret registered with log.register_secret."""
    scrubbed: str = log.redact_processor(None, "journal", {"text": text})["text"]
    return scrubbed


def scrub(value: Any) -> Any:
    """Every string (keys too) without passwords; non-finite floats as text; JSON types only."""
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        cleaned = log.redact_processor(None, "journal", {str(k): v for k, v in value.items()})
        return {_scrub_text(k): scrub(v) for k, v in cleaned.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return _scrub_text(value.value)
    return _scrub_text(str(value))


def _with_labels(data: dict[str, Any]) -> dict[str, Any]:
    """Beside statement texts (`texts`: queryid → text), each one's label for a reader."""
    texts = data.get("texts")
    if isinstance(texts, Mapping) and "labels" not in data:
        data["labels"] = {str(k): label(v) for k, v in texts.items() if isinstance(v, str)}
    return data


def _canonical(body: Mapping[str, Any]) -> bytes:
    content = {k: v for k, v in body.items() if k != "hash"}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 of the record's canonical JSON without its `hash` field."""
    return hashlib.sha256(_canonical(body)).hexdigest()


def _line(body: Mapping[str, Any]) -> bytes:
    ordered = {name: body[name] for name in _FIELDS}
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _parse(raw: bytes, line: int, offset: int) -> Record:
    """A record from one line (without its newline); ValueError says why it is not one."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    missing = [name for name in _FIELDS if name not in body]
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
    if body["state"] == Event.JOURNAL_REPAIR.value and not _fragments_ok(body["data"]):
        raise ValueError("a journal_repair whose fragments are malformed")
    return Record(**{name: body[name] for name in _FIELDS}, line=line, offset=offset)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "time": str, "actor": str, "action_id": (str, type(None)), "state": str,
    "action": (dict, type(None)), "reason": str, "figures": dict, "undo": (str, type(None)),
    "data": dict, "prev": str,
}  # fmt: skip


def _fragments_ok(data: dict[str, Any]) -> bool:
    """A repair's fragments: a list of {offset: int, base64: str, ...}."""
    fragments = data.get("fragments")
    return isinstance(fragments, list) and all(
        isinstance(f, dict) and type(f.get("offset")) is int and isinstance(f.get("base64"), str)
        for f in fragments
    )


def _check_time(text: str) -> None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text[:40]!r} is not an ISO date-time") from None
    if when.tzinfo is None:
        raise ValueError(f"time {text[:40]!r} has no time zone")


def _check_action(data: dict[str, Any]) -> None:
    """The action data must build the typed Action back (`ActionStatus.to_action`)."""
    try:
        table = TableRef(str(data["table"]["schema"]), str(data["table"]["name"]))
        ActionKind(data["kind"])
        if data.get("columns"):
            spec = spec_of(table, data)
            texts = [*spec.columns, *spec.include, spec.method]
            if not all(isinstance(t, str) for t in texts) or not all(
                isinstance(d, bool) for d in spec.descending
            ):
                raise TypeError("names must be text")
        for key in ("index_name", "index_definition", "ddl"):
            if not isinstance(data.get(key), str | None):
                raise TypeError(f"{key} must be text")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"its action data is malformed ({exc!s:.60})") from None


def _body_hash_ok(record: Record) -> bool:
    return record_hash(record.to_dict()) == record.hash


def _whole_record(raw: bytes) -> Record | None:
    """The record in `raw` if it is one, intact to its hash; else None."""
    try:
        record = _parse(raw, 0, 0)
    except ValueError:
        return None
    return record if _body_hash_ok(record) else None


def action_data(action: Action, ddl: str | None = None) -> dict[str, Any]:
    """What the journal keeps of an action: enough for a person and for `to_action`."""
    data: dict[str, Any] = {
        "kind": action.kind.value,
        "table": {"schema": action.table.schema, "name": action.table.name},
        "index_name": action.index_name,
    }
    if action.index is not None:
        data["columns"] = list(action.index.columns)
        data["include"] = list(action.index.include)
        data["descending"] = list(action.index.descending)
        if action.index.method != "btree":
            data["method"] = action.index.method
        if action.index.expressions:
            data["expressions"] = list(action.index.expressions)
        if action.index.predicate:
            data["predicate"] = [list(term) for term in action.index.predicate]
    if action.index_definition is not None:
        data["index_definition"] = action.index_definition
    if ddl is not None:
        data["ddl"] = ddl
    return data


def undo_command(action: Action) -> str | None:
    """The statement that would undo `action`, as a person would read it; None if none exists."""
    if action.kind is ActionKind.CREATE_INDEX and action.index_name:
        return f"DROP INDEX CONCURRENTLY {quote_ref(action.table.schema, action.index_name)}"
    if action.kind is ActionKind.DROP_INDEX and action.index_definition:
        definition = action.index_definition
        for head in ("CREATE UNIQUE INDEX ", "CREATE INDEX "):
            if definition.startswith(head):
                return head + "CONCURRENTLY " + definition[len(head) :]
        return definition
    return None


# --- the file ---------------------------------------------------------------------------------


class Journal:
    """The journal at `path`. Cheap to construct; every call opens, locks and closes the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        if exclusive:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError:
            if exclusive:
                raise
            fd = -1  # a read-only reader without access to the lock file reads unlocked
        try:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            if fd >= 0:
                os.close(fd)  # closing releases the lock

    # --- reading ---

    def scan(self) -> Scan:
        """Every record and every line that is not one, with line numbers and byte offsets."""
        with self._locked(exclusive=False):
            return self._scan_unlocked()

    def _scan_unlocked(self) -> Scan:
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return Scan([], [], 0)
        except OSError as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}") from None
        records: list[Record] = []
        bad: list[BadLine] = []
        offset, number = 0, 0
        while offset < len(content):
            end = content.find(b"\n", offset)
            partial = end < 0
            stop = len(content) if partial else end
            raw = content[offset:stop]
            number += 1
            try:
                if partial:
                    raise ValueError("no newline at the end: the last write did not finish")
                records.append(_parse(raw, number, offset))
            except ValueError as exc:
                bad.append(BadLine(number, offset, raw, str(exc), partial))
            offset = stop + 1
        return Scan(records, bad, len(content))

    def read(self) -> list[Record]:
        """All intact records in file order. Damaged lines are logged, and skipped only here."""
        scan = self.scan()
        repaired = _repaired_offsets(scan.records)
        for bad in (b for b in scan.bad if b.offset not in repaired):
            log.get("journal").warning(
                "journal.bad_line", path=str(self.path), line=bad.line, offset=bad.offset,
                partial=bad.partial, error=bad.error,
            )  # fmt: skip
        return scan.records

    def verify(self) -> VerifyResult:
        """Check every line, hash and link of the chain; problems name the line and byte."""
        if not self.path.exists():
            return VerifyResult(False, [f"no journal at {self.path}"], [], 0, 0, GENESIS)
        return check(self.scan())

    def standing_problems(self) -> list[str]:
        """The chain's problems that no `chain_acknowledged` record names; a torn last line
        (the next append repairs it) is not one. Empty when there is no journal yet."""
        if not self.path.exists():
            return []
        scan = self.scan()
        whole = Scan(scan.records, [b for b in scan.bad if not b.partial], scan.size)
        seen = {p for r in scan.records if r.state == Event.CHAIN_ACKNOWLEDGED.value
                for p in r.data.get("problems", []) if isinstance(p, str)}  # fmt: skip
        return [p for p in check(whole).problems if p not in seen]

    # --- writing ---

    def append(
        self,
        state: ActionState | Event | str,
        *,
        action: Action | None = None,
        action_id: str | None = None,
        actor: str = TUNER_ACTOR,
        reason: str | None = None,
        figures: Mapping[str, Any] | None = None,
        undo: str | None = None,
        ddl: str | None = None,
        data: Mapping[str, Any] | None = None,
        expect: Collection[ActionState] | None = None,
    ) -> Record:
        """Write one record and fsync it; returns it. With `expect`, the action's current state
        (replayed under the same lock) must be one of those, else TransitionRefused.

        From `action` come the id, the action data, and defaults for reason, figures, undo.
        """
        if action is not None:
            action_id = action_id or action.id
            reason = action.reason if reason is None else reason
            figures = dict(action.figures) if figures is None else figures
            undo = undo_command(action) if undo is None else undo
        body: dict[str, Any] = {
            "actor": actor,
            "action_id": action_id,
            "state": str(state.value if isinstance(state, StrEnum) else state),
            "action": action_data(action, ddl) if action is not None else None,
            "reason": reason or "",
            "figures": dict(figures or {}),
            "undo": undo,
            "data": _with_labels(dict(data or {})),
        }
        body = scrub(body)
        with self._locked(exclusive=True):
            last_seq, last_hash, garbage = self._tail()
            if expect is not None:
                self._check_expected(action_id, expect)
            chunks = b""
            whole = _whole_record(garbage[-1].raw) if len(garbage) == 1 else None
            if whole is not None and whole.seq == last_seq + 1 and whole.prev == last_hash:
                # only the newline was lost (a write cut just before it): end the record
                chunks, garbage, last_seq, last_hash = b"\n", [], whole.seq, whole.hash
            if garbage:
                repair, last_seq, last_hash = self._repair_body(garbage, last_seq, last_hash)
                chunks += b"\n" if garbage[-1].partial else b""
                chunks += _line(repair)
            body["seq"], body["prev"] = last_seq + 1, last_hash
            body["time"] = datetime.now(UTC).isoformat(timespec="microseconds")
            body["hash"] = record_hash(body)
            self._write(chunks + _line(body))
        return _parse(_line(body)[:-1], 0, 0)

    def _check_expected(self, action_id: str | None, expect: Collection[ActionState]) -> None:
        statuses = replay(self._scan_unlocked().records)
        status = statuses.get(action_id or "")
        if status is None:
            raise TransitionRefused(f"no action {action_id!r} in the journal {self.path}")
        if status.state not in expect:
            allowed = ", ".join(s.value for s in expect)
            raise TransitionRefused(
                f"action {action_id} is {status.state.value}; this needs it to be {allowed}"
            )

    def _repair_body(
        self, garbage: list[BadLine], last_seq: int, last_hash: str
    ) -> tuple[dict[str, Any], int, str]:
        fragments = [
            {"line": g.line, "offset": g.offset, "bytes": len(g.raw),
             "base64": base64.b64encode(g.raw).decode("ascii")}
            for g in garbage
        ]  # fmt: skip
        total = sum(len(g.raw) for g in garbage)
        body: dict[str, Any] = {
            "seq": last_seq + 1,
            "time": datetime.now(UTC).isoformat(timespec="microseconds"),
            "actor": TUNER_ACTOR,
            "action_id": None,
            "state": Event.JOURNAL_REPAIR.value,
            "action": None,
            "reason": (
                f"{len(garbage)} incomplete line(s), {total} bytes from byte {garbage[0].offset}, "
                "left by an interrupted write; kept as they are, chain continued after "
                f"seq {last_seq}"
            ),
            "figures": {"fragment_bytes": total},
            "undo": None,
            "data": {"fragments": fragments},
            "prev": last_hash,
        }
        body["hash"] = record_hash(body)
        log.get("journal").warning("journal.repaired", path=str(self.path), bytes=total,
                                   offset=garbage[0].offset, after_seq=last_seq)  # fmt: skip
        return body, last_seq + 1, body["hash"]

    def _tail(self) -> tuple[int, str, list[BadLine]]:
        """(seq, hash) of the last intact record and the unparseable lines after it."""
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size == 0:
                    return 0, GENESIS, []
                start = max(0, size - _TAIL_CHUNK)
                while True:
                    fh.seek(start)
                    chunk = fh.read(size - start)
                    body = chunk[:-1] if chunk.endswith(b"\n") else chunk
                    cut = body.rfind(b"\n")
                    if cut >= 0 or start == 0:
                        break
                    start = max(0, start - _TAIL_CHUNK)
        except FileNotFoundError:
            return 0, GENESIS, []
        if chunk.endswith(b"\n"):
            try:
                last = _parse(body[cut + 1 :], 0, start + cut + 1)
                return last.seq, last.hash, []
            except ValueError:
                pass
        # Slow path: a partial or damaged tail. Find the last record and what follows it.
        scan = self._scan_unlocked()
        if not scan.records:
            return 0, GENESIS, [b for b in scan.bad if b.partial]
        last = scan.records[-1]
        return last.seq, last.hash, [b for b in scan.bad if b.offset > last.offset and b.partial]

    def _write(self, payload: bytes) -> None:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as exc:
            raise JournalError(f"cannot write the journal {self.path}: {exc}") from None
        finally:
            os.close(fd)
        if created:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


# --- verification ----------------------------------------------------------------------------


def _repaired_offsets(records: list[Record]) -> set[int]:
    """Byte offsets of the fragments that journal_repair records acknowledge."""
    offsets: set[int] = set()
    for record in records:
        if record.state == Event.JOURNAL_REPAIR.value:
            for frag in record.data.get("fragments", []):
                if isinstance(frag, dict) and isinstance(frag.get("offset"), int):
                    offsets.add(frag["offset"])
    return offsets


def check(scan: Scan) -> VerifyResult:
    """The hash chain of a scanned journal: every problem, and the acknowledged repairs."""
    problems: list[str] = []
    notes: list[str] = []
    repaired = _repaired_offsets(scan.records)
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
        if not _body_hash_ok(record):
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
        if record.state == Event.JOURNAL_REPAIR.value:
            for frag in record.data.get("fragments", []):
                named = (
                    by_offset.get(int(frag.get("offset", -1))) if isinstance(frag, dict) else None
                )
                if named is None or base64.b64encode(named.raw).decode() != frag.get("base64"):
                    problems.append(f"{where}: the repair names a fragment that is not in the file")
                else:
                    notes.append(
                        f"line {named.line} (byte {named.offset}): {len(named.raw)}-byte fragment"
                        f" of an interrupted write, acknowledged by seq {record.seq}"
                    )
        prev_hash, prev_seq = record.hash, record.seq
    return VerifyResult(not problems, problems, notes, len(scan.records), prev_seq, prev_hash)
