"""guards.may_start with plain values: every reason, its words, and the order they are checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.test_policy import ORDERS, policy, snapshot
from tuner.guards import may_start
from tuner.models import Action, ActionKind, GuardReason, GuardVerdict, ReplicaLag

NOW = datetime(2026, 12, 21, 9, 30, tzinfo=UTC)
ACTION = Action(id="a1", kind=ActionKind.CREATE_INDEX, table=ORDERS)


@dataclass(frozen=True)
class Freeze:
    name: str
    until: datetime | None


@dataclass(frozen=True)
class Calendar:
    """A fixed calendar: the window arithmetic itself is tested in test_windows.py."""

    frozen: Freeze | None = None
    maintenance_open: bool = True
    opens: datetime | None = None

    def is_frozen(self, now: datetime) -> Freeze | None:
        return self.frozen

    def in_maintenance(self, now: datetime) -> bool:
        return self.maintenance_open

    def next_open(self, now: datetime) -> datetime | None:
        return self.opens


MAINTENANCE = [{"name": "nightly", "from": "01:00", "to": "05:00"}]


def check(calendar: Calendar = Calendar(), in_flight: tuple[Action, ...] = (), *,
          pol: Any = None, **server: Any) -> GuardVerdict:  # fmt: skip
    return may_start(ACTION, snapshot(**server), pol or policy(), calendar, NOW, in_flight)


def test_an_idle_primary_with_no_window_rules_may_start() -> None:
    verdict = check()
    assert verdict.ok and verdict.reason is None and str(verdict) == "OK"


def test_invariant_2_nothing_starts_inside_a_freeze_window() -> None:
    calendar = Calendar(Freeze("year-end", datetime(2027, 1, 4, tzinfo=UTC)))
    verdict = check(calendar, pol=policy(timezone="Europe/Berlin"))
    assert not verdict.ok and verdict.reason is GuardReason.FROZEN
    # The name and the end, in the policy's time zone.
    assert verdict.detail == "freeze window 'year-end' until 2027-01-04 01:00 CET"
    assert str(verdict).startswith("FROZEN: ")


def test_invariant_2_nothing_starts_outside_maintenance_windows_when_set() -> None:
    closed = Calendar(maintenance_open=False, opens=datetime(2026, 12, 22, 1, 0, tzinfo=UTC))
    verdict = check(closed, pol=policy(maintenance=MAINTENANCE))
    assert verdict.reason is GuardReason.OUTSIDE_MAINTENANCE
    assert "next opens 2026-12-22 01:00 UTC" in verdict.detail
    assert check(Calendar(maintenance_open=True), pol=policy(maintenance=MAINTENANCE)).ok


def test_invariant_2_without_maintenance_windows_any_unfrozen_time_is_open() -> None:
    # The calendar reports no maintenance window open, but the policy defines none.
    assert check(Calendar(maintenance_open=False)).ok


def test_a_standby_never_starts_anything_and_says_so_first() -> None:
    frozen = Calendar(Freeze("year-end", None))
    verdict = check(frozen, in_recovery=True)
    assert verdict.reason is GuardReason.STANDBY and "standby" in verdict.detail


def test_another_action_in_flight_blocks_but_the_action_itself_does_not() -> None:
    other = Action(id="b2", kind=ActionKind.ANALYZE, table=ORDERS)
    verdict = check(in_flight=(other,))
    assert verdict.reason is GuardReason.IN_FLIGHT and "b2" in verdict.detail
    assert check(in_flight=(ACTION,)).ok


def test_invariant_9_active_sessions_over_the_bound() -> None:
    assert check(active_sessions=64).ok  # the bound itself is allowed
    verdict = check(active_sessions=65)
    assert verdict.reason is GuardReason.ACTIVE_SESSIONS
    assert verdict.detail == "65 active sessions (limit 64)"


def test_invariant_9_replication_lag_over_the_bound() -> None:
    def replica(lag: float | None) -> ReplicaLag:
        return ReplicaLag("r1", "10.0.0.2", "streaming", lag, lag, lag)

    assert check(replicas=(replica(59.0), replica(None))).ok
    verdict = check(replicas=(replica(5.0), replica(90.0)))
    assert verdict.reason is GuardReason.REPLICATION_LAG
    assert verdict.detail == "replication lag 90s (limit 1m)"


def test_invariant_9_oldest_open_transaction_over_the_bound() -> None:
    assert check(oldest_xact_age=29 * 60.0).ok
    verdict = check(oldest_xact_age=3600.0)
    assert verdict.reason is GuardReason.OLD_TRANSACTION
    assert verdict.detail == "a transaction has been open 1h (limit 30m)"


def test_invariant_9_waiting_locks_over_the_bound() -> None:
    assert check(waiting_locks=5).ok
    verdict = check(waiting_locks=6)
    assert verdict.reason is GuardReason.WAITING_LOCKS
    assert verdict.detail == "6 sessions wait for locks (limit 5)"


def test_invariant_9_load_bounds_come_from_the_policy() -> None:
    strict = policy(load={"max_active_sessions": 2, "max_transaction_age": "1m"})
    assert check(pol=strict, active_sessions=3).reason is GuardReason.ACTIVE_SESSIONS
    assert check(pol=strict, oldest_xact_age=61.0).reason is GuardReason.OLD_TRANSACTION


def test_reasons_are_distinct_stable_labels() -> None:
    # A metrics label counts rejections by reason: the values must not drift.
    assert [r.value for r in GuardReason] == [
        "standby", "frozen", "outside_maintenance", "in_flight", "active_sessions",
        "replication_lag", "old_transaction", "waiting_locks",
    ]  # fmt: skip
    now_plus = NOW + timedelta(hours=1)
    verdicts = [
        check(in_recovery=True),
        check(Calendar(Freeze("f", now_plus))),
        check(Calendar(maintenance_open=False), pol=policy(maintenance=MAINTENANCE)),
        check(in_flight=(Action(id="z", kind=ActionKind.VACUUM, table=ORDERS),)),
        check(active_sessions=100),
        check(replicas=(ReplicaLag("r", None, "streaming", 999.0, None, None),)),
        check(oldest_xact_age=1e6),
        check(waiting_locks=100),
    ]
    assert [v.reason for v in verdicts] == list(GuardReason)
