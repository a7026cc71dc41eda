"""May this action start now? Pure, given a Snapshot, the policy and the calendar.

Checked in this order, the first "no" wins: the server is a standby; a freeze window is
open (its name and until when); maintenance windows are set and none is open (when the
next opens); another action is in flight; active sessions, replication lag, the oldest
open transaction or waiting locks over the policy's `load` bounds. Each "no" carries a
stable `GuardReason` (a metrics label) and a sentence with the figures.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from tuner.config import Policy
from tuner.models import Action, GuardReason, GuardVerdict, Snapshot
from tuner.units import format_duration
from tuner.windows import Calendar


def _seconds(value: float) -> str:
    return format_duration(timedelta(seconds=round(value)))


def may_start(
    action: Action,
    snapshot: Snapshot,
    policy: Policy,
    calendar: Calendar,
    now: datetime,
    in_flight: Collection[Action] = (),
) -> GuardVerdict:
    """GuardVerdict() when `action` may start at `now` (aware), else the first reason it may not.

    `calendar` is `Calendar.from_policy(policy)`: a chain of overlapping freezes reports
    when the last of them ends.
    """
    server, load = snapshot.server, policy.load
    if server.in_recovery:
        return GuardVerdict(GuardReason.STANDBY, "the server is a standby (in recovery)")
    if (chain := calendar.frozen_until(now)) is not None:
        names, until = chain
        return GuardVerdict(
            GuardReason.FROZEN, f"freeze window {names[0]!r} until {calendar.until(until)}"
        )
    opens = calendar.next_open(now)
    if opens != now:  # not frozen, yet not open now: outside every maintenance window
        when = calendar.format(opens) if opens else "not within 400 days"
        return GuardVerdict(
            GuardReason.OUTSIDE_MAINTENANCE, f"outside maintenance windows; next opens {when}"
        )
    others = [a.id for a in in_flight if a.id != action.id]
    if others:
        return GuardVerdict(GuardReason.IN_FLIGHT, f"action {others[0]} is in flight")
    if server.active_sessions > load.max_active_sessions:
        return GuardVerdict(
            GuardReason.ACTIVE_SESSIONS,
            f"{server.active_sessions} active sessions (limit {load.max_active_sessions})",
        )
    lag = server.max_replica_lag
    if lag is not None and lag > load.max_replication_lag.total_seconds():
        return GuardVerdict(
            GuardReason.REPLICATION_LAG,
            f"replication lag {_seconds(lag)} (limit {format_duration(load.max_replication_lag)})",
        )
    age = server.oldest_xact_age
    if age is not None and age > load.max_transaction_age.total_seconds():
        return GuardVerdict(
            GuardReason.OLD_TRANSACTION,
            f"a transaction has been open {_seconds(age)} "
            f"(limit {format_duration(load.max_transaction_age)})",
        )
    if server.waiting_locks > load.max_waiting_locks:
        return GuardVerdict(
            GuardReason.WAITING_LOCKS,
            f"{server.waiting_locks} sessions wait for locks (limit {load.max_waiting_locks})",
        )
    return GuardVerdict()
