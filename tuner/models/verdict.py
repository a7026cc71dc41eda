"""Decisions: a proposal accepted or rejected, whether an action may start, and the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tuner.models.action import Action, ActionState

# --- decisions ---
# What policy.py, guards.py and verify.py produce: a proposal accepted or rejected, whether an
# action may start now, and whether an applied change is kept, with the figures behind it.


@dataclass(frozen=True, slots=True)
class Decision:
    """A proposal turned into an action (proposed or approved) or rejected with its reason.

    `rule` is a stable code (e.g. `below_bar`, `budget_spent`) for metrics and tests; `reason`
    says the same in words with the figures, for the journal and for a person.
    """

    action: Action
    state: ActionState
    rule: str = ""
    reason: str = ""

    @property
    def rejected(self) -> bool:
        return self.state is ActionState.REJECTED


class GuardReason(StrEnum):
    """Why an action may not start now; stable values, used as a metrics label."""

    STANDBY = "standby"
    FROZEN = "frozen"
    OUTSIDE_MAINTENANCE = "outside_maintenance"
    IN_FLIGHT = "in_flight"
    ACTIVE_SESSIONS = "active_sessions"
    REPLICATION_LAG = "replication_lag"
    OLD_TRANSACTION = "old_transaction"
    WAITING_LOCKS = "waiting_locks"


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """May an action start now? `reason` is None when it may; `detail` says why in words."""

    reason: GuardReason | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None

    def __str__(self) -> str:
        return "OK" if self.reason is None else f"{self.reason.value.upper()}: {self.detail}"


class Outcome(StrEnum):
    KEEP = "keep"
    ROLLBACK = "rollback"
    UNDECIDED = "undecided"


@dataclass(frozen=True, slots=True)
class QueryFigures:
    """One query (or the table's pooled writes) compared across baseline and verification.

    Times in milliseconds; `change` is (after - before) / before, positive when slower;
    `p_value` from Welch's t-test, None when either window had fewer than `min_calls` calls;
    `effect` the change in calls' standard deviations (the two windows' averaged variance),
    and `small` when it is under the policy's `schedule.min_effect`: thousands of calls make
    a shift of a fifth of a call's spread significant, yet no slowdown worth a rollback.
    """

    queryid: int | None  # None for the pooled write path
    role: str  # "read", "write", or "bound" (a read whose baseline is a lower bound)
    calls_before: int
    calls_after: int
    mean_before: float
    mean_after: float
    change: float | None
    p_value: float | None
    significant: bool = False
    effect: float | None = None
    small: bool = False

    @property
    def measured(self) -> bool:
        return self.p_value is not None

    def describe(self) -> str:
        what = "writes" if self.queryid is None else f"query {self.queryid}"
        if not self.measured or self.change is None:
            return f"{what}: too few calls ({self.calls_before} before, {self.calls_after} after)"
        return (
            f"{what}: {self.mean_before:.3f} → {self.mean_after:.3f} ms ({self.change:+.1%}, "
            f"p={self.p_value:.3g}, {self.calls_before}/{self.calls_after} calls)"
        )


@dataclass(frozen=True, slots=True)
class Method:
    """How a verdict was reached: the test, the look at the window, the level spent there,
    the corrected threshold and the noise floors a slowdown had to clear."""

    test: str  # "Welch t, Holm over 14 tests"
    look: int  # 1-based; `looks` is the window's end (an extension looks again at it)
    looks: int
    level: float  # the share of the significance level this look tested at
    threshold: float | None  # the corrected p threshold that decided (None: no test did)
    read_floor_ms: float | None  # the largest floor of the deciding reads (else of all)
    write_floor_ms: float | None
    floor_source: str  # "measured" (the baseline's noise), "policy", or "none"
    # whose baselines a slower machine scales (`evidence.load_change`): "guards", or "every
    # query" for a change that adds no index (a drop)
    load_scales: str = "guards"

    def describe(self) -> str:
        """One line a DBA can read: `Welch t, Holm over 14 tests, look 2/4 at level 0.0021
        (threshold 0.00015); noise floor reads up to 0.042 ms, writes 0.010 ms (measured)`
        (the largest floor of the reads that decided, or of all watched reads)."""
        look = f"look {self.look}/{self.looks}" if self.looks > 1 else "at the window's end"
        threshold = "" if self.threshold is None else f" (threshold {self.threshold:.2g})"
        floors = ", ".join(
            f"{what} {ms:.3f} ms"
            for what, ms in (("reads up to", self.read_floor_ms), ("writes", self.write_floor_ms))
            if ms is not None
        )
        floor = f"noise floor {floors} ({self.floor_source})" if floors else "no noise floor"
        load = "" if self.load_scales == "guards" else f"; the load scales {self.load_scales}"
        return f"{self.test}, {look} at level {self.level:.2g}{threshold}; {floor}{load}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """keep | rollback | undecided for an applied change, and the figures that decided it.

    `net_change` is the change in the measured queries' time (reads and writes), relative to
    what they would have cost at baseline speed: -0.25 means a quarter of that time saved.
    A `discarded` verdict means the verification window was invalid (statistics reset).
    `trapped` names the reads a rolled-back index slowed beyond the bound while it made
    another read significantly faster: the planner chose it where it should not have.
    """

    outcome: Outcome
    reason: str
    queries: tuple[QueryFigures, ...] = ()
    writes: QueryFigures | None = None
    net_change: float | None = None
    extensions: int = 0
    discarded: bool = False
    trapped: tuple[int, ...] = ()
    load_change: float | None = None  # how much the statements on other tables slowed
    method: Method | None = None

    def figures(self) -> dict[str, float | int | str]:
        """Flat figures for the journal and `pg-tuner audit`."""
        out: dict[str, float | int | str] = {"outcome": self.outcome.value, "reason": self.reason}
        if (d := self.method) is not None:
            out["decided"] = d.describe()
            out.update(
                test=d.test, look=d.look, looks=d.looks, level=d.level, load_scales=d.load_scales
            )
            for key, value in (("threshold", d.threshold), ("read_floor_ms", d.read_floor_ms),
                               ("write_floor_ms", d.write_floor_ms)):  # fmt: skip
                if value is not None:
                    out[key] = value
        if self.net_change is not None:
            out["net_change"] = round(self.net_change, 6)
        if self.writes is not None and self.writes.change is not None:
            out["write_change"] = round(self.writes.change, 6)
        if self.load_change is not None:
            out["load_change"] = round(self.load_change, 6)
        out["extensions"] = self.extensions
        if self.trapped:
            out["trapped"] = " ".join(str(q) for q in self.trapped)
        for q in (*self.queries, *((self.writes,) if self.writes else ())):
            out[f"{'writes' if q.queryid is None else q.queryid}"] = q.describe()
        return out
