"""shared/business_hours.py: the hours as written, open or closed at an instant, the next opening (across
weekends, holidays and DST changes, Europe/Lisbon and America/New_York), the hours in words, and bad
input refused with a message that says what is wrong; and the three settings naming their variable."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shared.business_hours import BusinessHours, Window, parse_holidays, parse_hours, parse_zone, schedule
from shared.settings import SettingsError, load_settings

WEEKDAYS = "mon-fri 09:00-17:00, sat 10:00-14:00"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def hours(text: str | None = WEEKDAYS, zone: str = "UTC", holidays: str | None = None) -> BusinessHours:
    return schedule(text, zone, holidays)


# The hours as written.

def test_days_ranges_lists_and_several_windows_a_day() -> None:
    week = parse_hours("Mon-Wed 09:00-12:00 13:00-17:00; thu,fri 9:00-12:00, saturday 10:00-24:00")
    assert week[0] == week[2] == (Window(540, 720), Window(780, 1020))
    assert week[3] == week[4] == (Window(540, 720),)
    assert week[5] == (Window(600, 1440),)
    assert week[6] == ()


def test_a_day_range_may_wrap_round_the_week_and_windows_of_a_day_are_sorted() -> None:
    week = parse_hours("fri-mon 13:00-14:00, mon 08:00-09:00")
    assert [bool(day) for day in week] == [True, False, False, False, True, True, True]
    assert week[0] == (Window(480, 540), Window(780, 840))


def test_windows_that_meet_at_midnight_run_straight_through() -> None:
    shift = hours("fri 22:00-24:00, sat 00:00-02:00")
    assert not shift.is_open(utc(2026, 12, 4, 21, 59))  # Friday 4 December 2026
    assert shift.is_open(utc(2026, 12, 4, 22, 0)) and shift.is_open(utc(2026, 12, 4, 23, 59, 59))
    assert shift.is_open(utc(2026, 12, 5, 0, 0)) and shift.is_open(utc(2026, 12, 5, 1, 59))
    assert not shift.is_open(utc(2026, 12, 5, 2, 0))


# Open or closed, and the next opening.

def test_open_from_the_start_up_to_but_not_at_the_end() -> None:
    lisbon = hours(zone="Europe/Lisbon")  # winter: Lisbon is on UTC
    assert not lisbon.is_open(utc(2026, 12, 7, 8, 59, 59))
    assert lisbon.is_open(utc(2026, 12, 7, 9, 0))
    assert lisbon.is_open(utc(2026, 12, 7, 16, 59, 59))
    assert not lisbon.is_open(utc(2026, 12, 7, 17, 0))
    assert not lisbon.is_open(utc(2026, 12, 6, 12, 0))  # Sunday: not named, closed


def test_naive_instants_are_utc() -> None:
    assert hours(zone="America/New_York").is_open(datetime(2026, 12, 7, 15, 0))  # 10:00 in New York


def test_without_hours_it_is_always_open_but_holidays_still_close() -> None:
    always = hours(None, holidays="2026-12-25")
    assert always.is_open(utc(2026, 12, 6, 3, 0))
    assert not always.is_open(utc(2026, 12, 25, 12, 0))
    assert always.next_opening(utc(2026, 12, 25, 12, 0)) == utc(2026, 12, 26, 0, 0)
    assert always.next_opening(utc(2026, 12, 6, 3, 0)) == utc(2026, 12, 6, 3, 0)  # open: now


def test_the_next_opening_later_today_after_a_break_and_at_once_when_open() -> None:
    split = hours("mon-fri 09:00-12:00 13:00-17:00")
    assert split.next_opening(utc(2026, 12, 7, 12, 30)) == utc(2026, 12, 7, 13, 0)
    assert split.next_opening(utc(2026, 12, 7, 7, 0)) == utc(2026, 12, 7, 9, 0)
    assert split.next_opening(utc(2026, 12, 7, 10, 0)) == utc(2026, 12, 7, 10, 0)


def test_the_next_opening_across_a_weekend_and_a_holiday() -> None:
    # Friday 25 December 2026 and Monday 28 are holidays; Saturday has hours, Sunday none.
    christmas = hours(holidays="2026-12-25, 2026-12-28", zone="Europe/Lisbon")
    assert not christmas.is_open(utc(2026, 12, 25, 10, 0))
    assert christmas.is_holiday(utc(2026, 12, 25, 10, 0))
    assert christmas.next_opening(utc(2026, 12, 24, 17, 30)) == utc(2026, 12, 26, 10, 0)  # Saturday
    assert christmas.next_opening(utc(2026, 12, 26, 14, 0)) == utc(2026, 12, 29, 9, 0)  # Tuesday
    weekdays_only = hours("mon-fri 09:00-17:00", holidays="2026-12-28")
    assert weekdays_only.next_opening(utc(2026, 12, 25, 17, 0)) == utc(2026, 12, 29, 9, 0)


def test_holidays_are_local_dates() -> None:
    new_york = hours(zone="America/New_York", holidays="2026-12-24")
    # 23:30 UTC on the 24th is 18:30 in New York, still the 24th there (closed anyway); 03:00 UTC on the
    # 25th is 22:00 on the 24th in New York: the holiday, not Christmas Day.
    assert new_york.is_holiday(utc(2026, 12, 25, 3, 0))
    assert not new_york.is_holiday(utc(2026, 12, 25, 6, 0))


def test_lisbon_spring_forward_keeps_the_wall_clock() -> None:
    # Lisbon goes from WET (UTC) to WEST (UTC+1) at 01:00 UTC on Sunday 29 March 2026.
    lisbon = hours(zone="Europe/Lisbon")
    assert lisbon.next_opening(utc(2026, 3, 27, 18, 0)) == utc(2026, 3, 28, 10, 0)  # Saturday, still WET
    assert lisbon.next_opening(utc(2026, 3, 28, 14, 0)) == utc(2026, 3, 30, 8, 0)  # Monday 09:00 WEST
    assert lisbon.is_open(utc(2026, 3, 30, 8, 0)) and not lisbon.is_open(utc(2026, 3, 30, 7, 59))
    assert lisbon.is_open(utc(2026, 3, 30, 15, 59)) and not lisbon.is_open(utc(2026, 3, 30, 16, 0))


def test_lisbon_fall_back_keeps_the_wall_clock() -> None:
    # Back to WET at 01:00 UTC on Sunday 25 October 2026.
    lisbon = hours(zone="Europe/Lisbon")
    assert lisbon.next_opening(utc(2026, 10, 23, 18, 0)) == utc(2026, 10, 24, 9, 0)  # Saturday 10:00 WEST
    assert lisbon.next_opening(utc(2026, 10, 24, 14, 0)) == utc(2026, 10, 26, 9, 0)  # Monday 09:00 WET


def test_new_york_fall_back_and_its_repeated_hour() -> None:
    # EDT (UTC-4) to EST (UTC-5) at 06:00 UTC on Sunday 1 November 2026: 01:00-02:00 happens twice.
    new_york = hours("mon-fri 09:00-17:00, sun 01:30-03:00", zone="America/New_York")
    assert new_york.next_opening(utc(2026, 10, 30, 22, 0)) == utc(2026, 11, 1, 5, 30)  # the first 01:30
    assert new_york.is_open(utc(2026, 11, 1, 5, 45))  # 01:45 EDT
    assert not new_york.is_open(utc(2026, 11, 1, 6, 15))  # 01:15 EST: the clock is before 01:30 again
    assert new_york.is_open(utc(2026, 11, 1, 7, 59)) and not new_york.is_open(utc(2026, 11, 1, 8, 0))
    assert new_york.next_opening(utc(2026, 11, 1, 8, 0)) == utc(2026, 11, 2, 14, 0)  # Monday 09:00 EST


def test_new_york_spring_forward_gap() -> None:
    # EST to EDT at 07:00 UTC on Sunday 8 March 2026: the clock jumps from 02:00 to 03:00.
    starts_in_gap = hours("sun 02:30-09:00", zone="America/New_York")
    assert starts_in_gap.next_opening(utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 7, 0)  # opens as it jumps
    assert starts_in_gap.is_open(utc(2026, 3, 8, 7, 0)) and not starts_in_gap.is_open(utc(2026, 3, 8, 6, 59))
    swallowed = hours("sun 02:00-02:45", zone="America/New_York")
    assert swallowed.next_opening(utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 15, 6, 0)  # next Sunday, 02:00 EDT
    weekdays = hours("mon-fri 09:00-17:00", zone="America/New_York")
    assert weekdays.next_opening(utc(2026, 3, 6, 23, 0)) == utc(2026, 3, 9, 13, 0)  # Monday 09:00 EDT


# In words.

def test_the_hours_in_words() -> None:
    assert hours().describe() == "Monday to Friday 09:00-17:00, Saturday 10:00-14:00"
    assert hours("sat-sun 10:00-12:00 13:00-16:00").describe() == "Saturday and Sunday 10:00-12:00 and 13:00-16:00"
    assert hours("mon 09:00-17:00, wed 09:00-17:00").describe() == "Monday 09:00-17:00, Wednesday 09:00-17:00"
    assert hours(holidays="2026-12-25").describe().endswith(", except on holidays")
    assert hours(None).describe() == "at any time"


def test_the_opening_in_words_in_the_local_zone() -> None:
    lisbon = hours(zone="Europe/Lisbon")
    friday_evening = utc(2026, 3, 27, 18, 0)
    assert lisbon.opening_in_words(utc(2026, 3, 28, 10, 0), friday_evening) == "tomorrow at 10:00"
    assert lisbon.opening_in_words(utc(2026, 3, 30, 8, 0), friday_evening) == "on Monday at 09:00"
    assert lisbon.opening_in_words(utc(2026, 3, 27, 19, 0), friday_evening) == "today at 19:00"
    assert lisbon.opening_in_words(utc(2026, 4, 6, 8, 0), friday_evening) == "on Monday 6 April at 09:00"


# Bad input.

@pytest.mark.parametrize(("text", "says"), [
    ("mon-fri 22:00-02:00", "may not run past midnight"),
    ("mon 09:00-09:00", "is empty"),
    ("mon 25:00-26:00", "the start is not a time of day"),
    ("mon 09:00-24:30", "the end is not a time of day"),
    ("mon 09:60-10:00", "the start is not a time of day"),
    ("09:00-17:00 mon", "comes before any day"),
    ("mon-fri", "has no hours"),
    ("mon 09:00-17:00, sat", "sat has no hours"),
    ("mon-fry 09:00-17:00", "'mon-fry' is not a day"),
    ("tuseday 09:00-17:00", "'tuseday' is not a day"),
    ("mon 9am-5pm", "'9am-5pm' is not a day or a time range"),
    ("mon 09:00-12:00 11:00-13:00", "11:00-13:00 overlaps 09:00-12:00 on mon"),
    ("mon-fri 09:00-17:00, fri 16:00-18:00", "overlaps"),
    ("  ,  ", "names no days"),
])
def test_bad_hours_are_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_hours(text)


@pytest.mark.parametrize("name", ["Europe/Lisbn", "Mars/Olympus", "../etc/passwd", ""])
def test_bad_time_zones_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not an IANA time zone name"):
        parse_zone(name)


def test_utc_needs_no_time_zone_database() -> None:
    assert parse_zone("UTC") is UTC


@pytest.mark.parametrize("text", ["2026-02-30", "25/12/2026", "20261225", "2026-12-25T00:00", "christmas"])
def test_bad_holidays_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a date; write ISO dates such as 2026-12-25"):
        parse_holidays(f"2026-12-24, {text}")


def test_holidays_take_commas_or_spaces() -> None:
    assert parse_holidays("2026-12-25,2027-01-01  2026-12-31") == {date(2026, 12, 25), date(2027, 1, 1),
                                                                    date(2026, 12, 31)}


# The settings.

def test_the_settings_default_to_always_open_in_utc() -> None:
    settings = load_settings({})
    assert (settings.business_hours, settings.business_timezone, settings.holidays) == (None, "UTC", None)
    assert settings.business_schedule.is_open(utc(2026, 12, 6, 3, 0))


def test_the_settings_build_the_schedule() -> None:
    settings = load_settings({"LEXDESK_BUSINESS_HOURS": WEEKDAYS, "LEXDESK_BUSINESS_TIMEZONE": "America/New_York",
                              "LEXDESK_HOLIDAYS": "2026-12-25"})
    assert settings.business_schedule.zone_name == "America/New_York"
    assert settings.business_schedule.next_opening(utc(2026, 12, 24, 23, 0)) == utc(2026, 12, 26, 15, 0)


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("LEXDESK_BUSINESS_HOURS", "mon-fri 18:00-08:00", "may not run past midnight"),
    ("LEXDESK_BUSINESS_TIMEZONE", "Europe/Lisbn", "is not an IANA time zone name"),
    ("LEXDESK_HOLIDAYS", "2026-13-01", "is not a date"),
])
def test_bad_settings_name_the_variable_and_the_value(variable: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value})
    message = str(caught.value)
    assert f"{variable}: " in message and says in message and repr(value) in message
