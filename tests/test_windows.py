"""Freeze and maintenance windows: DST both ways, midnight, New Year, overlaps, cron."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tuner.config import WindowRule, load_policy
from tuner.windows import Calendar, format_instant, to_instant

BERLIN = ZoneInfo("Europe/Berlin")


def window(**fields: Any) -> WindowRule:
    return WindowRule.model_validate(fields)


def weekly(name: str, days: list[str] | None, start: str, end: str) -> WindowRule:
    fields: dict[str, Any] = {"name": name, "from": start, "to": end}
    if days is not None:
        fields["days"] = days
    return window(**fields)


def absolute(name: str, start: str, end: str) -> WindowRule:
    return window(name=name, **{"from": datetime.fromisoformat(start)},
                  to=datetime.fromisoformat(end))  # fmt: skip


def berlin(text: str, fold: int = 0) -> datetime:
    """An instant given as Berlin wall-clock time (fold=1: the second pass in autumn), in UTC:
    Python never finds an ambiguous local time equal to one in another zone (PEP 495)."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN, fold=fold).astimezone(UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- DST: spring forward (2026-03-29, 02:00 CET → 03:00 CEST) ---------------------------------


def test_spring_forward_a_window_starting_in_the_gap_opens_when_the_clock_jumps() -> None:
    cal = Calendar([weekly("sunday-early", ["sun"], "02:30", "04:00")], tz=BERLIN)
    assert cal.is_frozen(utc("2026-03-29 00:59:59")) is None  # 01:59:59 CET
    assert cal.is_frozen(utc("2026-03-29 01:00")) == "sunday-early"  # 03:00 CEST
    assert cal.next_open(utc("2026-03-29 01:30")) == utc("2026-03-29 02:00")  # 04:00 CEST
    assert cal.verdict(utc("2026-03-29 01:30")) == (
        "FROZEN: sunday-early until 2026-03-29 04:00 Europe/Berlin"
    )
    # a normal Sunday: 02:30 CEST is 00:30 UTC
    assert cal.is_frozen(utc("2026-04-05 00:30")) == "sunday-early"


def test_spring_forward_a_window_wholly_inside_the_gap_does_not_happen_that_day() -> None:
    cal = Calendar([weekly("gap", ["sun"], "02:00", "02:45")], tz=BERLIN)
    day = utc("2026-03-28 22:00")  # Sunday 00:00 CET
    assert all(cal.is_frozen(day + timedelta(minutes=m)) is None for m in range(0, 24 * 60, 5))
    assert cal.is_frozen(berlin("2026-04-05 02:10")) == "gap"


def test_spring_forward_a_freeze_over_the_gap_lasts_one_hour_less() -> None:
    cal = Calendar([weekly("night", ["sun"], "01:00", "05:00")], tz=BERLIN)
    frozen_at = cal.freeze_at(berlin("2026-03-29 01:30"))
    assert frozen_at is not None
    assert frozen_at.end - frozen_at.start == timedelta(hours=3)
    assert to_instant(datetime(2026, 3, 29, 2, 30), BERLIN) == utc("2026-03-29 01:00")


def test_spring_forward_cron_match_in_the_gap_starts_when_the_clock_jumps() -> None:
    # APScheduler alone would say 02:30+01:00, i.e. 03:30 CEST; we start at the jump, 03:00
    cal = Calendar([window(name="nightly", cron="30 2 * * *", duration="1h")], tz=BERLIN)
    found = cal.freeze_at(utc("2026-03-29 01:00"))
    assert found is not None and (found.start, found.end) == (
        utc("2026-03-29 01:00"), utc("2026-03-29 02:00"),
    )  # fmt: skip
    assert cal.is_frozen(utc("2026-03-29 00:59")) is None


# --- DST: fall back (2026-10-25, 03:00 CEST → 02:00 CET; 02:00-03:00 happens twice) ---------


def test_fall_back_a_freeze_ending_in_the_repeated_hour_ends_at_its_second_pass() -> None:
    cal = Calendar([weekly("late", ["sun"], "01:00", "02:30")], tz=BERLIN)
    second_pass = berlin("2026-10-25 02:15", fold=1)  # 02:15 CET = 01:15 UTC
    assert second_pass == utc("2026-10-25 01:15")
    assert cal.is_frozen(second_pass) == "late"
    assert cal.is_frozen(utc("2026-10-25 01:30")) is None  # 02:30 CET
    assert cal.verdict(utc("2026-10-25 00:00")) == (
        "FROZEN: late until 2026-10-25 02:30 Europe/Berlin (CET)"
    )


def test_fall_back_a_window_starting_in_the_repeated_hour_starts_at_its_first_pass() -> None:
    cal = Calendar([], [weekly("maint", ["sun"], "02:30", "04:00")], tz=BERLIN)
    assert cal.allowed(utc("2026-10-25 00:29"))[0] is False  # 02:29 CEST
    assert cal.allowed(utc("2026-10-25 00:30"))[0] is True  # 02:30 CEST, first pass
    assert cal.allowed(utc("2026-10-25 02:59"))[0] is True  # 03:59 CET
    assert cal.allowed(utc("2026-10-25 03:00"))[0] is False  # 04:00 CET
    # a maintenance window ends at the first pass: it never runs longer than it may
    short = Calendar([], [weekly("m", ["sun"], "01:00", "02:30")], tz=BERLIN)
    assert short.allowed(utc("2026-10-25 00:29"))[0] is True
    assert short.allowed(utc("2026-10-25 00:30"))[0] is False


def test_fall_back_a_cron_window_fired_twice_by_apscheduler_starts_once() -> None:
    cal = Calendar([window(name="nightly", cron="30 2 * * *", duration="30m")], tz=BERLIN)
    assert cal.is_frozen(utc("2026-10-25 00:45")) == "nightly"  # 02:45 CEST
    assert cal.is_frozen(utc("2026-10-25 01:45")) is None  # 02:45 CET: no second window
    assert cal.is_frozen(utc("2026-10-26 01:45")) == "nightly"  # the next night, 02:45 CET


def test_an_ambiguous_time_is_rendered_with_its_abbreviation() -> None:
    assert format_instant(utc("2026-10-25 00:30"), BERLIN) == (
        "2026-10-25 02:30 Europe/Berlin (CEST)"
    )
    assert format_instant(utc("2026-10-25 01:30"), BERLIN) == "2026-10-25 02:30 Europe/Berlin (CET)"
    assert format_instant(utc("2026-10-25 03:30"), BERLIN) == "2026-10-25 04:30 Europe/Berlin"


# --- midnight and New Year -------------------------------------------------------------------


def test_a_weekly_range_over_midnight_belongs_to_the_day_it_starts() -> None:
    cal = Calendar([weekly("friday-night", ["fri"], "22:00", "06:00")], tz=BERLIN)
    assert cal.is_frozen(berlin("2026-11-27 21:59")) is None  # Friday
    assert cal.is_frozen(berlin("2026-11-27 22:00")) == "friday-night"
    assert cal.is_frozen(berlin("2026-11-28 05:59")) == "friday-night"  # Saturday morning
    assert cal.is_frozen(berlin("2026-11-28 06:00")) is None  # half-open: ends at `to`
    assert cal.is_frozen(berlin("2026-11-27 03:00")) is None  # Thursday night: not a Friday
    assert cal.next_open(berlin("2026-11-28 01:00")) == berlin("2026-11-28 06:00")


def test_a_weekly_sunday_to_monday_range_over_new_year() -> None:
    cal = Calendar([weekly("sunday-night", ["sun"], "22:00", "06:00")], tz=BERLIN)
    assert datetime(2028, 12, 31).weekday() == 6  # a Sunday
    assert cal.is_frozen(berlin("2028-12-31 23:59")) == "sunday-night"
    assert cal.is_frozen(berlin("2029-01-01 05:00")) == "sunday-night"
    assert cal.verdict(berlin("2029-01-01 00:30")) == (
        "FROZEN: sunday-night until 2029-01-01 06:00 Europe/Berlin"
    )


def test_an_absolute_range_over_new_year_in_the_policy_zone() -> None:
    cal = Calendar([absolute("year-end", "2026-12-20 00:00", "2027-01-04 00:00")], tz=BERLIN)
    assert cal.is_frozen(berlin("2026-12-19 23:59")) is None
    assert cal.is_frozen(utc("2026-12-19 23:00")) == "year-end"  # 00:00 CET on the 20th
    assert cal.is_frozen(berlin("2026-12-31 23:59")) == "year-end"
    assert cal.is_frozen(berlin("2027-01-01 00:30")) == "year-end"
    assert cal.next_open(berlin("2027-01-01 00:30")) == berlin("2027-01-04 00:00")
    assert cal.is_frozen(berlin("2027-01-04 00:00")) is None


# --- overlaps, cron, maintenance ---------------------------------------------------------------


def test_overlapping_and_adjacent_freezes_chain_in_next_open_and_the_verdict() -> None:
    cal = Calendar(
        [
            weekly("saturday-weddings", ["sat"], "08:00", "00:00"),
            absolute("deploy", "2026-11-28 22:00", "2026-11-29 03:00"),  # overlaps the end
            weekly("sunday-backup", ["sun"], "03:00", "05:00"),  # adjacent to it
        ],
        tz=BERLIN,
    )
    now = berlin("2026-11-28 12:00")
    assert cal.is_frozen(now) == "saturday-weddings"
    assert cal.next_open(now) == berlin("2026-11-29 05:00")
    assert cal.verdict(now) == (
        "FROZEN: saturday-weddings until 2026-11-29 05:00 Europe/Berlin "
        "(then deploy, sunday-backup)"
    )
    assert cal.is_frozen(berlin("2026-11-28 23:00")) == "deploy"  # the one ending last


def test_the_daemons_verdict_for_a_single_freeze() -> None:
    cal = Calendar([weekly("saturday-weddings", ["sat"], "08:00", "00:00")], tz=BERLIN)
    assert cal.verdict(berlin("2026-11-28 12:00")) == (
        "FROZEN: saturday-weddings until 2026-11-29 00:00 Europe/Berlin"
    )
    assert cal.allowed(berlin("2026-11-28 12:00")) == (
        False, "frozen by saturday-weddings until 2026-11-29 00:00 Europe/Berlin",
    )  # fmt: skip
    assert cal.verdict(berlin("2026-11-29 00:00")) == "OPEN: no freeze window applies"


def test_a_cron_window_lasts_its_duration() -> None:
    cal = Calendar([window(name="backup", cron="0 2 * * sat", duration="4h")], tz=BERLIN)
    assert cal.is_frozen(berlin("2026-11-28 01:59")) is None
    assert cal.is_frozen(berlin("2026-11-28 02:00")) == "backup"
    assert cal.is_frozen(berlin("2026-11-28 05:59")) == "backup"
    assert cal.is_frozen(berlin("2026-11-28 06:00")) is None
    assert cal.is_frozen(berlin("2026-12-05 03:00")) == "backup"  # next Saturday
    assert cal.is_frozen(berlin("2026-12-04 03:00")) is None  # a Friday


def test_with_maintenance_windows_actions_start_only_inside_one() -> None:
    cal = Calendar([], [weekly("nightly", None, "01:00", "05:00")], tz=BERLIN)
    assert cal.allowed(berlin("2026-11-28 03:00")) == (
        True, "inside maintenance window nightly until 2026-11-28 05:00 Europe/Berlin",
    )  # fmt: skip
    assert cal.allowed(berlin("2026-11-28 12:00")) == (
        False,
        "outside the maintenance windows; the next opens 2026-11-29 01:00 Europe/Berlin",
    )
    assert cal.next_open(berlin("2026-11-28 12:00")) == berlin("2026-11-29 01:00")
    assert cal.verdict(berlin("2026-11-28 12:00")) == (
        "CLOSED: outside maintenance windows; nightly opens 2026-11-29 01:00 Europe/Berlin"
    )


def test_a_freeze_inside_maintenance_wins_and_next_open_skips_it() -> None:
    maintenance = [weekly("nightly", None, "01:00", "05:00")]
    partial = Calendar([absolute("deploy", "2026-11-29 00:00", "2026-11-29 02:00")],
                       maintenance, tz=BERLIN)  # fmt: skip
    assert partial.next_open(berlin("2026-11-28 12:00")) == berlin("2026-11-29 02:00")
    assert partial.allowed(berlin("2026-11-29 01:30"))[0] is False
    whole = Calendar([weekly("sunday", ["sun"], "00:00", "23:00")], maintenance, tz=BERLIN)
    assert whole.next_open(berlin("2026-11-28 12:00")) == berlin("2026-11-30 01:00")
    assert whole.verdict(berlin("2026-11-29 12:00")) == (
        "FROZEN: sunday until 2026-11-29 23:00 Europe/Berlin; "
        "next action 2026-11-30 01:00 Europe/Berlin"
    )


def test_no_windows_means_open_now_and_a_window_that_never_opens_gives_none() -> None:
    now = berlin("2026-11-28 12:00")
    assert Calendar(tz=BERLIN).next_open(now) == now
    assert Calendar(tz=BERLIN).allowed(now) == (True, "no freeze window applies")
    past = Calendar([], [absolute("once", "2020-01-01 00:00", "2020-01-02 00:00")], tz=BERLIN)
    assert past.next_open(now) is None
    assert past.verdict(now) == "CLOSED: no maintenance window opens within 400 days"
    forever = Calendar([absolute("moratorium", "2026-01-01 00:00", "2099-01-01 00:00")], tz="UTC")
    assert forever.next_open(now) is None


def test_a_naive_now_is_refused() -> None:
    # tried: a datetime without a zone, which would silently mean the machine's local time
    with pytest.raises(ValueError, match="aware datetime"):
        Calendar(tz=BERLIN).is_frozen(datetime(2026, 11, 28, 12, 0))


def test_the_calendar_from_a_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        'target:\n  dsn: "host=127.0.0.1 dbname=app"\ntimezone: Europe/Berlin\n'
        "freeze:\n"
        "  - name: saturday-weddings\n    days: [Sat]\n    from: '08:00'\n    to: '00:00'\n"
        "  - name: year-end\n    from: 2026-12-20 00:00:00\n    to: 2027-01-04 00:00:00\n"
        "maintenance:\n  - name: backup-night\n    cron: '0 2 * * *'\n    duration: 4h\n",
        encoding="utf-8",
    )
    cal = Calendar.from_policy(load_policy(path))
    assert cal.verdict(berlin("2026-11-28 12:00")) == (
        "FROZEN: saturday-weddings until 2026-11-29 00:00 Europe/Berlin; "
        "next action 2026-11-29 02:00 Europe/Berlin"
    )
    assert cal.is_frozen(berlin("2026-12-24 03:00")) == "year-end"
    assert cal.next_open(berlin("2026-12-24 03:00")) == berlin("2027-01-04 02:00")


# --- chained freezes: a calendar that cannot find the end answers "frozen" ----------------------


def test_a_day_and_a_night_window_that_chain_forever_read_frozen_not_open() -> None:
    # tried: 08-20 plus 20-08 every day, which once exceeded the step limit and read "OPEN"
    cal = Calendar([weekly("day", None, "08:00", "20:00"), weekly("night", None, "20:00", "08:00")],
                   tz=BERLIN)  # fmt: skip
    now = berlin("2026-11-28 21:00")
    assert cal.is_frozen(now) == "night"
    may, why = cal.allowed(now)
    assert may is False
    assert why == "frozen by night until no opening within 35 days (chained freeze windows)"
    assert cal.verdict(now).startswith("FROZEN: night")
    assert "OPEN" not in cal.verdict(now)
    assert cal.next_open(now) is None


def test_an_hourly_cron_of_one_hour_reads_frozen_and_decides_quickly() -> None:
    import time

    cal = Calendar([window(name="hourly", cron="0 * * * *", duration="1h")], tz=BERLIN)
    now = berlin("2026-11-28 03:30")
    started = time.monotonic()
    assert cal.allowed(now)[0] is False
    assert cal.verdict(now).startswith("FROZEN: hourly")
    assert time.monotonic() - started < 5.0


def test_chained_windows_with_a_gap_name_the_gap_as_the_next_opening() -> None:
    # hourly 50-minute windows chained with a second rule covering minutes 50-60 on weekdays
    # only: the chain ends on Saturday 00:00, when the filler stops
    cal = Calendar(
        [window(name="hourly", cron="0 * * * *", duration="50m"),
         window(name="filler", cron="50 * * * mon-fri", duration="10m")],
        tz=BERLIN,
    )  # fmt: skip
    now = berlin("2026-11-25 12:10")  # a Wednesday
    assert cal.allowed(now) == (False, "frozen by hourly until 2026-11-28 00:50 Europe/Berlin")
    assert cal.next_open(now) == berlin("2026-11-28 00:50")
