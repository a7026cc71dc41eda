"""The audit journal: an append-only, fsync'd, hash-chained JSON Lines file.

One line per state transition of an action (models.ActionState) or per operator/journal
event (EntryKind). Each record carries `prev`, the hash of the record before it, and `hash`, the
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

The records as typed values and reading them back into each action's state (`replay`) live
in tuner.ledger (pure); settling what a restart interrupted (`recover`) in tuner.recovery.
"""

from __future__ import annotations

import base64
import fcntl
import getpass
import json
import math
import os
import pwd
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from tuner import log
from tuner.errors import JournalError
from tuner.labels import label
from tuner.ledger import FIELDS, hash_ok, parse_line, repaired_offsets

# The pure part lives in tuner.ledger and tuner.models.records; re-exported for the callers
# of `journal.replay`, `journal.Record` and friends.
from tuner.ledger import GENESIS as GENESIS
from tuner.ledger import ActionStatus as ActionStatus
from tuner.ledger import BadLine as BadLine
from tuner.ledger import Record as Record
from tuner.ledger import Scan as Scan
from tuner.ledger import VerifyResult as VerifyResult
from tuner.ledger import check as check
from tuner.ledger import record_hash as record_hash
from tuner.ledger import replay as replay
from tuner.models import Action, ActionState
from tuner.models.records import AcknowledgedData, ActionData, Fragment, RepairData
from tuner.models.records import EntryKind as EntryKind
from tuner.models.records import action_data as action_data
from tuner.recovery import IndexHealth as IndexHealth
from tuner.recovery import recover as recover
from tuner.statements import undo_command as undo_command

TUNER_ACTOR = "pg-tuner"
_TAIL_CHUNK = 65536


class TransitionRefused(JournalError):
    """The action is unknown or not in a state that allows the requested transition."""


def operator_actor() -> str:
    """`operator:<OS user>` for records written by a person through the CLI."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = pwd.getpwuid(os.getuid()).pw_name
    return f"operator:{name}"


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


def _line(body: Mapping[str, Any]) -> bytes:
    ordered = {name: body[name] for name in FIELDS}
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _whole_record(raw: bytes) -> Record | None:
    """The record in `raw` if it is one, intact to its hash; else None."""
    try:
        record = parse_line(raw, 0, 0)
    except ValueError:
        return None
    return record if hash_ok(record) else None


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
                records.append(parse_line(raw, number, offset))
            except ValueError as exc:
                bad.append(BadLine(number, offset, raw, str(exc), partial))
            offset = stop + 1
        return Scan(records, bad, len(content))

    def read(self) -> list[Record]:
        """All intact records in file order. Damaged lines are logged, and skipped only here."""
        scan = self.scan()
        repaired = repaired_offsets(scan.records)
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
        seen = {p for r in scan.records if r.state == EntryKind.CHAIN_ACKNOWLEDGED.value
                for p in AcknowledgedData.from_data(r.data).problems}  # fmt: skip
        return [p for p in check(whole).problems if p not in seen]

    # --- writing ---

    def append(
        self,
        state: ActionState | EntryKind | str,
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
            "action": ActionData.of(action, ddl).to_data() if action is not None else None,
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
        return parse_line(_line(body)[:-1], 0, 0)

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
        repair = RepairData(tuple(
            Fragment(g.offset, base64.b64encode(g.raw).decode("ascii"), g.line, len(g.raw))
            for g in garbage
        ))  # fmt: skip
        total = sum(len(g.raw) for g in garbage)
        body: dict[str, Any] = {
            "seq": last_seq + 1,
            "time": datetime.now(UTC).isoformat(timespec="microseconds"),
            "actor": TUNER_ACTOR,
            "action_id": None,
            "state": EntryKind.JOURNAL_REPAIR.value,
            "action": None,
            "reason": (
                f"{len(garbage)} incomplete line(s), {total} bytes from byte {garbage[0].offset}, "
                "left by an interrupted write; kept as they are, chain continued after "
                f"seq {last_seq}"
            ),
            "figures": {"fragment_bytes": total},
            "undo": None,
            "data": repair.to_data(),
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
                last = parse_line(body[cut + 1 :], 0, start + cut + 1)
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
