"""Freeze and maintenance windows: may an action start now, and if not, when? (pure)

Windows come from the policy (`config.WindowRule`): weekly (days + from/to times; `to <= from`
runs over midnight and belongs to the day it starts on), absolute (naive date-times in the
policy's zone), or cron (`CronTrigger.from_crontab` in the zone; each match starts a window
of `duration` elapsed time). A window covers [start, end): it ends at the instant `to`.

Wall-clock times that do not exist or happen twice (DST), decided once for every kind:

- A time in the spring-forward gap (02:30 on the day Europe/Berlin jumps 02:00 → 03:00)
  means the instant the clock jumps (03:00 CEST): a window [02:30, 04:00) that day opens at
  03:00, and one inside the gap, [02:00, 02:45), does not happen that day.
- A time that happens twice (02:30 when autumn repeats 02:00-03:00) means its first
  occurrence, as Python and APScheduler do, except for the end of a freeze window, which
  means the second: a freeze covers every instant its wall-clock range could mean and never
  ends early. A cron window that APScheduler fires twice that night starts once.

Everything is compared in UTC; results are aware UTC datetimes, rendered in the zone.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from tuner.config import Policy, WindowRule, as_datetime

HORIZON = timedelta(days=400)  # next_open searches this far ahead, then gives up (None)
MAX_STEPS = 2000  # and takes at most this many hops from window to window
# A chain of freezes (08-20 then 20-08, an hourly cron lasting an hour) is followed this far;
# a chain still unbroken there is "frozen, no opening found", never "open".
CHAIN_HORIZON = timedelta(days=35)
_CRON_MARGIN = timedelta(hours=3)  # a DST shift moves a cron start by at most this


@dataclass(frozen=True, slots=True)
class Interval:
    """One occurrence of a window: [start, end) in UTC."""

    name: str
    start: datetime
    end: datetime

    def __contains__(self, instant: object) -> bool:
        return isinstance(instant, datetime) and self.start <= instant < self.end


def _local_wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def to_instant(wall: datetime, tz: ZoneInfo, later: bool = False) -> datetime:
    """The UTC instant of a naive wall-clock time in `tz`, by the rules in the module doc."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return first
    if _local_wall(first, tz) == wall:  # shown twice: fold picks the pass
        return max(first, second) if later else min(first, second)
    # In a gap: the first instant whose wall clock is past `wall` is when the clock jumped.
    lo, hi = min(first, second), max(first, second)
    while hi - lo > timedelta(microseconds=1):
        mid = lo + (hi - lo) / 2
        if _local_wall(mid, tz) > wall:
            hi = mid
        else:
            lo = mid
    return hi


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("windows need an aware datetime (e.g. datetime.now(UTC))")
    return instant.astimezone(UTC)


class _Rule:
    """One configured window, able to list its occurrences from a given instant on."""

    def __init__(self, window: WindowRule, tz: ZoneInfo, freeze: bool) -> None:
        self.window, self.tz, self.freeze = window, tz, freeze
        self.trigger: Any = (
            CronTrigger.from_crontab(window.cron, timezone=tz) if window.cron else None
        )

    def occurrences(self, since: datetime) -> Iterator[Interval]:
        """Occurrences in ascending start, from one that may contain `since` on (unbounded)."""
        kind = self.window.kind
        if kind == "weekly":
            yield from self._weekly(since)
        elif kind == "absolute":
            yield from self._absolute()
        else:
            yield from self._cron(since)

    def _interval(self, start_wall: datetime, end_wall: datetime) -> Interval | None:
        start = to_instant(start_wall, self.tz)
        end = to_instant(end_wall, self.tz, later=self.freeze)
        return Interval(self.window.name, start, end) if end > start else None

    def _weekly(self, since: datetime) -> Iterator[Interval]:
        start_t, end_t = self.window.start, self.window.end
        assert isinstance(start_t, time) and isinstance(end_t, time)
        days = {d.number for d in self.window.days} if self.window.days else set(range(7))
        day = _local_wall(since, self.tz).date() - timedelta(days=1)
        while True:
            if day.weekday() in days:
                end_day = day + timedelta(days=1) if end_t <= start_t else day
                found = self._interval(
                    datetime.combine(day, start_t), datetime.combine(end_day, end_t)
                )
                if found is not None:
                    yield found
            day += timedelta(days=1)

    def _absolute(self) -> Iterator[Interval]:
        start, end = self.window.start, self.window.end
        assert start is not None and end is not None and not isinstance(start, time)
        assert not isinstance(end, time)
        start_dt, end_dt = as_datetime(start), as_datetime(end)
        if start_dt.tzinfo is not None and end_dt.tzinfo is not None:
            yield Interval(self.window.name, _aware(start_dt), _aware(end_dt))
            return
        found = self._interval(start_dt.replace(tzinfo=None), end_dt.replace(tzinfo=None))
        if found is not None:
            yield found

    def _cron(self, since: datetime) -> Iterator[Interval]:
        duration = self.window.duration
        assert duration is not None
        cursor = (since - duration - _CRON_MARGIN).astimezone(self.tz)
        fire = self.trigger.get_next_fire_time(None, cursor)
        last_wall: datetime | None = None
        while fire is not None:
            wall = fire.replace(tzinfo=None)
            if wall != last_wall:  # APScheduler fires twice in the repeated autumn hour
                start = to_instant(wall, self.tz)
                yield Interval(self.window.name, start, start + duration)
            last_wall = wall
            fire = self.trigger.get_next_fire_time(fire, fire)

    def containing(self, instant: datetime) -> Interval | None:
        """The occurrence that contains `instant`, the one ending last if several do."""
        best: Interval | None = None
        for found in self.occurrences(instant):
            if found.start > instant:
                break
            if instant in found and (best is None or found.end > best.end):
                best = found
        return best

    def next_start(self, instant: datetime, limit: datetime) -> Interval | None:
        """The first occurrence starting after `instant` and before `limit`."""
        for found in self.occurrences(instant):
            if found.start > limit:
                return None
            if found.start > instant:
                return found
        return None


class Calendar:
    """The policy's freeze and maintenance windows in its time zone."""

    def __init__(
        self,
        freeze: Sequence[WindowRule] = (),
        maintenance: Sequence[WindowRule] = (),
        tz: ZoneInfo | str = "UTC",
    ) -> None:
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        self._freeze = [_Rule(w, self.tz, freeze=True) for w in freeze]
        self._maintenance = [_Rule(w, self.tz, freeze=False) for w in maintenance]
        # a guard, the verdict and next_open ask about the same instant: walk a chain once
        self._chains: dict[datetime, tuple[list[str], datetime | None] | None] = {}

    @classmethod
    def from_policy(cls, policy: Policy) -> Calendar:
        return cls(policy.freeze, policy.maintenance, policy.tz)

    @staticmethod
    def _at(rules: list[_Rule], instant: datetime) -> Interval | None:
        found = [i for r in rules if (i := r.containing(instant)) is not None]
        return max(found, key=lambda i: i.end) if found else None

    def freeze_at(self, now: datetime) -> Interval | None:
        """The freeze window `now` is in (the one ending last), or None."""
        return self._at(self._freeze, _aware(now))

    def maintenance_at(self, now: datetime) -> Interval | None:
        return self._at(self._maintenance, _aware(now))

    def is_frozen(self, now: datetime) -> str | None:
        """The name of the freeze window `now` is in, or None."""
        found = self.freeze_at(now)
        return found.name if found else None

    def frozen_until(self, now: datetime) -> tuple[list[str], datetime | None] | None:
        """The freezes chained from `now` (overlapping or adjacent) and when the last ends;
        None when `now` is not frozen. The end is None when the chain does not break within
        CHAIN_HORIZON: a calendar that cannot find the end of a freeze answers "frozen".

        The windows' occurrences are merged in order of start in one pass, so a chain of
        many short windows costs one walk, not one search per window."""
        instant = _aware(now)
        if instant not in self._chains:
            if len(self._chains) > 64:
                self._chains.clear()
            self._chains[instant] = self._chain(instant)
        found = self._chains[instant]
        return (list(found[0]), found[1]) if found else None

    def _chain(self, instant: datetime) -> tuple[list[str], datetime | None] | None:
        first = self.freeze_at(instant)
        if first is None:
            return None
        names, end = [first.name], first.end
        limit = instant + CHAIN_HORIZON
        merged = heapq.merge(*(r.occurrences(instant) for r in self._freeze),
                             key=lambda i: i.start)  # fmt: skip
        for found in merged:
            if found.start > end:  # a gap: the chain ends at `end`
                return names, end
            if found.start > limit:  # still chained this far: no end found
                return names, None
            if found.end > end:
                end = found.end
                if found.name not in names:
                    names.append(found.name)
        return names, end

    def next_open(self, now: datetime) -> datetime | None:
        """When an action may next start: `now` if it may now; None if not within HORIZON."""
        instant = _aware(now)
        limit = instant + HORIZON
        for _ in range(MAX_STEPS):
            if instant > limit:
                return None
            chain = self.frozen_until(instant)
            if chain is not None:
                if chain[1] is None:
                    return None
                instant = chain[1]
                continue
            if self._maintenance and self.maintenance_at(instant) is None:
                starts = [s for r in self._maintenance if (s := r.next_start(instant, limit))]
                if not starts:
                    return None
                instant = min(s.start for s in starts)
                continue
            return instant
        return None

    def allowed(self, now: datetime) -> tuple[bool, str]:
        """May an action start at `now`, and why (or why not), in words."""
        chain = self.frozen_until(now)
        if chain is not None:
            names, until = chain
            return False, f"frozen by {names[0]} until {self.until(until)}"
        if self._maintenance:
            inside = self.maintenance_at(now)
            if inside is None:
                opens = self.next_open(now)
                when = self.format(opens) if opens else "not within the next 400 days"
                return False, f"outside the maintenance windows; the next opens {when}"
            return True, f"inside maintenance window {inside.name} until {self.format(inside.end)}"
        return True, "no freeze window applies"

    def verdict(self, now: datetime) -> str:
        """The daemon's one-line verdict on the calendar, e.g.
        `FROZEN: saturday-weddings until 2026-11-29 00:00 Europe/Berlin`."""
        chain = self.frozen_until(now)
        if chain is not None:
            names, until = chain
            text = f"FROZEN: {names[0]} until {self.until(until)}"
            if len(names) > 1:
                text += f" (then {', '.join(names[1:])})"
            opens = self.next_open(now) if until is not None else None
            if opens is None and until is not None:
                text += "; no opening within 400 days"
            elif opens is not None and opens != until:
                text += f"; next action {self.format(opens)}"
            return text
        may, reason = self.allowed(now)
        if may:
            return f"OPEN: {reason}"
        opens = self.next_open(now)
        if opens is None:
            return "CLOSED: no maintenance window opens within 400 days"
        name = self.maintenance_at(opens)
        return f"CLOSED: outside maintenance windows; {name.name if name else 'the next'} " + (
            f"opens {self.format(opens)}"
        )

    def format(self, instant: datetime) -> str:
        return format_instant(instant, self.tz)

    def until(self, end: datetime | None) -> str:
        """The end of a freeze chain in words (`frozen_until`'s None: none found)."""
        if end is None:
            days = CHAIN_HORIZON.days
            return f"no opening within {days} days (chained freeze windows)"
        return self.format(end)


def format_instant(instant: datetime, tz: ZoneInfo) -> str:
    """`2026-11-29 00:00 Europe/Berlin`; a wall time that happens twice adds its abbreviation."""
    local = instant.astimezone(tz)
    text = f"{local:%Y-%m-%d %H:%M} {tz.key}"
    if local.second or local.microsecond:
        text = f"{local:%Y-%m-%d %H:%M:%S} {tz.key}"
    wall = local.replace(tzinfo=None)
    if to_instant(wall, tz) != to_instant(wall, tz, later=True):
        text += f" ({local.tzname()})"
    return text
