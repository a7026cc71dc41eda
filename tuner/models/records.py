"""What the journal keeps, as typed values: the action a record is about and each record's
`data`, by the kind of record that writes it.

Mapping back is tolerant, so journals written by older versions still replay: a key that is
missing takes its default, a key this version does not know is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tuner.models.action import Action, ActionKind, IndexSpec, TableRef


class EntryKind(StrEnum):
    """Journal records that are not a state transition of an action."""

    ROLLBACK_REQUESTED = "rollback_requested"  # an operator asked; the daemon/executor undoes
    JOURNAL_REPAIR = "journal_repair"  # a partial line left by a crash, acknowledged
    JOURNAL_RESUMED = "journal_resumed"  # the daemon could write again after a write failed
    CHAIN_ACKNOWLEDGED = "chain_acknowledged"  # an operator saw the chain's problems (audit)


# --- the action a record is about --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionData:
    """What the journal keeps of an action (a record's `action`): enough for a person and for
    the typed Action back. `kind` stays text for a reader; `action_kind` is the enum."""

    kind: ActionKind
    table: TableRef
    index_name: str | None = None
    index: IndexSpec | None = None
    index_definition: str | None = None
    ddl: str | None = None

    @classmethod
    def of(cls, action: Action, ddl: str | None = None) -> ActionData:
        return cls(action.kind, action.table, action.index_name, action.index,
                   action.index_definition, ddl)  # fmt: skip

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "table": {"schema": self.table.schema, "name": self.table.name},
            "index_name": self.index_name,
        }
        if self.index is not None:
            data["columns"] = list(self.index.columns)
            data["include"] = list(self.index.include)
            data["descending"] = list(self.index.descending)
            if self.index.method != "btree":
                data["method"] = self.index.method
            if self.index.expressions:
                data["expressions"] = list(self.index.expressions)
            if self.index.predicate:
                data["predicate"] = [list(term) for term in self.index.predicate]
        if self.index_definition is not None:
            data["index_definition"] = self.index_definition
        if self.ddl is not None:
            data["ddl"] = self.ddl
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ActionData:
        """ValueError when the table or the kind is missing or a name is not text."""
        try:
            table = TableRef(str(data["table"]["schema"]), str(data["table"]["name"]))
            kind = ActionKind(data["kind"])
            index = spec_of(table, data) if data.get("columns") else None
            if index is not None:
                texts = [*index.columns, *index.include, index.method]
                if not all(isinstance(t, str) for t in texts) or not all(
                    isinstance(d, bool) for d in index.descending
                ):
                    raise TypeError("names must be text")
            names = [data.get(key) for key in ("index_name", "index_definition", "ddl")]
            for key, value in zip(("index_name", "index_definition", "ddl"), names, strict=True):
                if not isinstance(value, str | None):
                    raise TypeError(f"{key} must be text")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return cls(kind, table, names[0], index, names[1], names[2])

    def to_action(self, action_id: str, reason: str, figures: Mapping[str, Any]) -> Action:
        kept = {k: v for k, v in figures.items() if isinstance(v, int | float | str)}
        return Action(
            id=action_id, kind=self.kind, table=self.table, index=self.index,
            index_name=self.index_name, index_definition=self.index_definition,
            reason=reason, figures=kept,
        )  # fmt: skip


def spec_of(table: TableRef, data: Mapping[str, Any]) -> IndexSpec:
    """The IndexSpec of a journaled action's data (`ActionData.to_data`); records written
    before hash indexes existed have no method and were btree, before expression and
    partial indexes no expressions and no predicate."""
    predicate = tuple((c, op, v) for c, op, v in data.get("predicate", ()))
    return IndexSpec(table, tuple(data["columns"]), tuple(data.get("include", ())),
                     tuple(data.get("descending", ())), data.get("method", "btree"),
                     tuple(data.get("expressions", ())), predicate)  # fmt: skip


def action_data(action: Action, ddl: str | None = None) -> dict[str, Any]:
    """What the journal keeps of an action, as JSON (`ActionData.of(...).to_data()`)."""
    return ActionData.of(action, ddl).to_data()


# --- each record's `data` ----------------------------------------------------------------------


def _queryid_map(value: Any) -> dict[int, str]:
    """queryid → text from JSON (`{"123": "select ..."}`); entries that are not skipped."""
    if not isinstance(value, Mapping):
        return {}
    return {int(k): v for k, v in value.items()
            if isinstance(v, str) and str(k).lstrip("-").isdigit()}  # fmt: skip


def _int_list(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(v for v in value if isinstance(v, int) and not isinstance(v, bool))


def _ints(value: Any) -> frozenset[int]:
    return frozenset(_int_list(value))


@dataclass(frozen=True, slots=True)
class WatchData:
    """The statements a verification watches (`watch.Watch` as the journal keeps it)."""

    reads: frozenset[int] = frozenset()
    writes: frozenset[int] = frozenset()
    guards: frozenset[int] = frozenset()
    controls: frozenset[int] = frozenset()

    def to_data(self) -> dict[str, list[int]]:
        return {"reads": sorted(self.reads), "writes": sorted(self.writes),
                "guards": sorted(self.guards), "controls": sorted(self.controls)}  # fmt: skip

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> WatchData:
        return cls(*(_ints(data.get(key)) for key in ("reads", "writes", "guards", "controls")))


@dataclass(frozen=True, slots=True)
class TransitionData:
    """The `data` of an action's state transition; every key is optional.

    proposed/approved: `ddl`, `expected` (the queryids the proposal should speed up),
    `shields`; baselined: `baseline` (the window, `flight.Window.to_data`), `texts`, `labels`,
    `captured` (fingerprint → calls, mean, m2 of captured long runs); verifying: `watch`;
    applied after a drop: `index_definition`.
    """

    ddl: str | None = None
    expected: tuple[int, ...] = ()
    shields: str | None = None
    baseline: Mapping[str, Any] | None = None
    texts: Mapping[int, str] = field(default_factory=dict)
    labels: Mapping[int, str] = field(default_factory=dict)
    captured: Mapping[str, tuple[int, float, float]] = field(default_factory=dict)
    watch: WatchData | None = None
    index_definition: str | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.ddl is not None:
            data["ddl"] = self.ddl
        if self.expected:
            data["expected"] = list(self.expected)
        if self.shields is not None:
            data["shields"] = self.shields
        if self.baseline is not None:
            data["baseline"] = dict(self.baseline)
        if self.texts:
            data["texts"] = {str(k): v for k, v in self.texts.items()}
        if self.labels:
            data["labels"] = {str(k): v for k, v in self.labels.items()}
        if self.captured:
            data["captured"] = {k: list(v) for k, v in self.captured.items()}
        if self.watch is not None:
            data["watch"] = self.watch.to_data()
        if self.index_definition is not None:
            data["index_definition"] = self.index_definition
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TransitionData:
        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        captured = data.get("captured")
        baseline, watch = data.get("baseline"), data.get("watch")
        return cls(
            ddl=text("ddl"),
            expected=_int_list(data.get("expected")),
            shields=text("shields"),
            baseline=baseline if isinstance(baseline, Mapping) else None,
            texts=_queryid_map(data.get("texts")),
            labels=_queryid_map(data.get("labels")),
            captured={
                str(fp): (int(v[0]), float(v[1]), float(v[2]))
                for fp, v in (captured.items() if isinstance(captured, Mapping) else ())
                if isinstance(v, list | tuple) and len(v) == 3
            },
            watch=WatchData.from_data(watch) if isinstance(watch, Mapping) else None,
            index_definition=text("index_definition"),
        )


@dataclass(frozen=True, slots=True)
class Fragment:
    """Bytes an interrupted write left, as a `journal_repair` record keeps them."""

    offset: int
    base64: str
    line: int = 0
    bytes: int = 0

    def to_data(self) -> dict[str, Any]:
        return {"line": self.line, "offset": self.offset, "bytes": self.bytes,
                "base64": self.base64}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RepairData:
    """The `data` of a `journal_repair` record: the fragments it acknowledges."""

    fragments: tuple[Fragment, ...] = ()

    def to_data(self) -> dict[str, Any]:
        return {"fragments": [f.to_data() for f in self.fragments]}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RepairData:
        found = data.get("fragments")
        return cls(tuple(
            Fragment(f["offset"], f["base64"], _int(f.get("line")), _int(f.get("bytes")))
            for f in (found if isinstance(found, list) else ())
            if isinstance(f, dict) and type(f.get("offset")) is int
            and isinstance(f.get("base64"), str)
        ))  # fmt: skip


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class AcknowledgedData:
    """The `data` of a `chain_acknowledged` record: the problems the operator saw."""

    problems: tuple[str, ...] = ()

    def to_data(self) -> dict[str, Any]:
        return {"problems": list(self.problems)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> AcknowledgedData:
        found = data.get("problems")
        return cls(
            tuple(p for p in (found if isinstance(found, list) else ()) if isinstance(p, str))
        )


@dataclass(frozen=True, slots=True)
class NoData:
    """The `data` of a record that carries none (`rollback_requested`, `journal_resumed`)."""

    def to_data(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> NoData:
        return cls()


Payload = TransitionData | RepairData | AcknowledgedData | NoData

_PAYLOADS: dict[str, type[RepairData | AcknowledgedData | NoData]] = {
    EntryKind.JOURNAL_REPAIR.value: RepairData,
    EntryKind.CHAIN_ACKNOWLEDGED.value: AcknowledgedData,
    EntryKind.ROLLBACK_REQUESTED.value: NoData,
    EntryKind.JOURNAL_RESUMED.value: NoData,
}


def payload_of(state: str, data: Mapping[str, Any]) -> Payload:
    """A record's `data` as the typed model its state writes."""
    return _PAYLOADS.get(state, TransitionData).from_data(data)
