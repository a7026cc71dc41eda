"""guards.may_start with plain values: every reason, its words, and the order they are checked."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from tests.test_policy import ORDERS, policy, snapshot
from tuner import db
from tuner.guards import may_start
from tuner.models import Action, ActionKind, GuardReason, GuardVerdict, ReplicaLag
from tuner.sampler import Sampler
from tuner.windows import Calendar

NOW = datetime(2026, 12, 21, 9, 30, tzinfo=UTC)  # a Monday
YEAR_END = [{"name": "year-end", "from": "2026-12-20 00:00", "to": "2027-01-04 00:00"}]
BUSINESS = [{"name": "business-hours", "days": ["mon", "tue", "wed", "thu", "fri"],
             "from": "08:00", "to": "18:00"}]  # fmt: skip
MAINTENANCE = [{"name": "nightly", "from": "01:00", "to": "05:00"}]
ACTION = Action(id="a1", kind=ActionKind.CREATE_INDEX, table=ORDERS)


def check(in_flight: tuple[Action, ...] = (), *, pol: Any = None, now: datetime = NOW,
          **server: Any) -> GuardVerdict:  # fmt: skip
    pol = pol or policy()
    return may_start(ACTION, snapshot(**server), pol, Calendar.from_policy(pol), now, in_flight)


def test_an_idle_primary_with_no_window_rules_may_start() -> None:
    verdict = check()
    assert verdict.ok and verdict.reason is None and str(verdict) == "OK"


def test_invariant_2_nothing_starts_inside_a_freeze_window() -> None:
    verdict = check(pol=policy(timezone="Europe/Berlin", freeze=YEAR_END))
    assert not verdict.ok and verdict.reason is GuardReason.FROZEN
    # The name and the end, in the policy's time zone.
    assert verdict.detail == "freeze window 'year-end' until 2027-01-04 00:00 Europe/Berlin"
    assert str(verdict).startswith("FROZEN: ")
    after = datetime(2027, 1, 3, 23, 0, tzinfo=UTC)  # 00:00 on the 4th in Berlin: open
    assert check(pol=policy(timezone="Europe/Berlin", freeze=YEAR_END), now=after).ok


def test_invariant_2_overlapping_freezes_report_when_the_last_ends() -> None:
    # Business hours end at 18:00, but year-end began and runs on to January.
    both = policy(freeze=[*BUSINESS, *YEAR_END])
    verdict = check(pol=both)
    assert verdict.reason is GuardReason.FROZEN and "2027-01-04 00:00 UTC" in verdict.detail


def test_invariant_2_nothing_starts_outside_maintenance_windows_when_set() -> None:
    verdict = check(pol=policy(maintenance=MAINTENANCE))  # 09:30 is outside 01:00-05:00
    assert verdict.reason is GuardReason.OUTSIDE_MAINTENANCE
    assert verdict.detail == "outside maintenance windows; next opens 2026-12-22 01:00 UTC"
    inside = datetime(2026, 12, 22, 2, 0, tzinfo=UTC)
    assert check(pol=policy(maintenance=MAINTENANCE), now=inside).ok


def test_invariant_2_a_freeze_wins_over_an_open_maintenance_window() -> None:
    night = policy(maintenance=MAINTENANCE, freeze=YEAR_END)
    inside = datetime(2026, 12, 22, 2, 0, tzinfo=UTC)
    assert check(pol=night, now=inside).reason is GuardReason.FROZEN


def test_invariant_2_without_any_window_every_moment_is_open() -> None:
    assert check().ok


def test_a_standby_never_starts_anything_and_says_so_first() -> None:
    verdict = check(pol=policy(freeze=YEAR_END), in_recovery=True)
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
    verdicts = [
        check(in_recovery=True),
        check(pol=policy(freeze=YEAR_END)),
        check(pol=policy(maintenance=MAINTENANCE)),
        check(in_flight=(Action(id="z", kind=ActionKind.VACUUM, table=ORDERS),)),
        check(active_sessions=100),
        check(replicas=(ReplicaLag("r", None, "streaming", 999.0, None, None),)),
        check(oldest_xact_age=1e6),
        check(waiting_locks=100),
    ]
    assert [v.reason for v in verdicts] == list(GuardReason)


# --- on a real server: the Snapshot the sampler reads ----------------------------------------


def test_invariant_9_live_waiting_locks_and_an_old_transaction_hold_the_action(dsn: str) -> None:
    with db.connect(dsn) as setup:
        db.execute(setup, "CREATE TABLE busy (id int)")
        db.execute(setup, "INSERT INTO busy VALUES (1)")
    holder = db.connect(dsn, autocommit=False)
    waiter = db.connect(dsn)
    blocked = threading.Thread(target=lambda: db.execute(waiter, "UPDATE busy SET id = 2"))
    try:
        db.fetch(holder, "SELECT id FROM busy FOR UPDATE")  # a row lock, held open
        blocked.start()
        time.sleep(1.2)  # the writer queues behind the row lock; the holder's transaction ages
        with Sampler.from_dsn(dsn) as sampler:
            snap = sampler.sample()
        now = datetime.now(UTC)
        strict_locks = policy(load={"max_waiting_locks": 0})
        verdict = may_start(ACTION, snap, strict_locks, Calendar(), now)
        assert verdict.reason is GuardReason.WAITING_LOCKS, verdict
        strict_age = policy(load={"max_transaction_age": "1s"})
        verdict = may_start(ACTION, snap, strict_age, Calendar(), now)
        assert verdict.reason is GuardReason.OLD_TRANSACTION, verdict
        assert verdict.detail.endswith("(limit 1s)")
        assert may_start(ACTION, snap, policy(), Calendar(), now).ok  # the default bounds
    finally:
        holder.rollback()
        blocked.join(timeout=10)
        holder.close()
        waiter.close()
    with Sampler.from_dsn(dsn) as sampler:
        calm = sampler.sample()
    assert may_start(ACTION, calm, strict_locks, Calendar(), datetime.now(UTC)).ok
