"""When agents are there: LEXDESK_BUSINESS_HOURS, LEXDESK_BUSINESS_TIMEZONE and LEXDESK_HOLIDAYS,
parsed, and asked "is it open at this instant?" and "when does it next open?". Pure: no I/O, no clock
(the caller passes the instant), so the same answer comes from every worker and every test.

Windows are wall-clock times in the business's zone, so "09:00" is 09:00 on both sides of a DST
change: instants are converted to local time with zoneinfo before they are compared. A window that
starts inside a spring-forward gap opens when the clock jumps past its start (a 02:30 start opens at
03:00 on that day); one that lies wholly inside the gap does not open that day. In the autumn's
repeated hour a window opens at the first time the clock shows its start.

Grammar (case-insensitive; commas, semicolons and spaces separate):
    mon-fri 09:00-12:00 13:00-17:00, sat 10:00-14:00, sun 00:00-24:00
One or more day specs (a day `mon`..`sun` or `monday`..`sunday`, a range `mon-fri`, which may wrap
like `fri-mon`) followed by one or more time ranges `HH:MM-HH:MM`. The end must be after the start;
`24:00` is the end of the day. A window may not run past midnight: an overnight shift is written as
two windows (`fri 22:00-24:00, sat 00:00-02:00`), which meet, so it is open straight through. Windows
of one day may not overlap. Days not named are closed; holidays (local dates) are closed all day. No
hours at all means always open, holidays apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAY_WORDS = {**{d: i for i, d in enumerate(DAYS)}, **{n.lower(): i for i, n in enumerate(DAY_NAMES)}}
MINUTES_PER_DAY = 24 * 60

_TIME_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_SEPARATORS = re.compile(r"[\s,;]+")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December")


@dataclass(frozen=True, order=True)
class Window:
    """One opening on a day: [start, end) in minutes after local midnight (end at most 24:00)."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


Week = tuple[tuple[Window, ...], ...]  # seven days, Monday first, each day's windows in order


@dataclass(frozen=True)
class BusinessHours:
    """The schedule. `week` None: always open (holidays apart)."""

    week: Week | None
    zone: tzinfo
    zone_name: str
    holidays: frozenset[date] = frozenset()

    def is_open(self, instant: datetime) -> bool:
        local = _aware(instant).astimezone(self.zone)
        if local.date() in self.holidays:
            return False
        if self.week is None:
            return True
        seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        return any(w.start * 60 <= seconds < w.end * 60 for w in self.week[local.weekday()])

    def is_holiday(self, instant: datetime) -> bool:
        return _aware(instant).astimezone(self.zone).date() in self.holidays

    def next_opening(self, instant: datetime) -> datetime:
        """The first instant at or after `instant` at which it is open (`instant` itself if open), in UTC."""
        instant = _aware(instant).astimezone(UTC)
        if self.is_open(instant):
            return instant
        first_day = instant.astimezone(self.zone).date()
        # Every week has an open day (the hours name one at least), so this many days always reach it:
        # a week per holiday, and one for a window swallowed by a DST gap.
        for offset in range(7 * (len(self.holidays) + 2)):
            day = first_day + timedelta(days=offset)
            if day in self.holidays:
                continue
            windows = self.week[day.weekday()] if self.week is not None else (Window(0, MINUTES_PER_DAY),)
            for window in windows:
                opens = _opening_instant(day, window, self.zone)
                if opens is not None and opens >= instant:
                    return opens
        raise AssertionError("business hours without an opening")  # unreachable: see above

    def describe(self) -> str:
        """The hours in words: "Monday to Friday 09:00-17:00, Saturday 10:00-14:00"."""
        if self.week is None:
            return "at any time" + (" except on holidays" if self.holidays else "")
        groups: list[tuple[int, int, tuple[Window, ...]]] = []  # first day, last day, windows
        for day, windows in enumerate(self.week):
            if not windows:
                continue
            if groups and groups[-1][1] == day - 1 and groups[-1][2] == windows:
                groups[-1] = (groups[-1][0], day, windows)
            else:
                groups.append((day, day, windows))
        parts = []
        for first, last, windows in groups:
            if last - first >= 2:
                days = f"{DAY_NAMES[first]} to {DAY_NAMES[last]}"
            elif last == first + 1:
                days = f"{DAY_NAMES[first]} and {DAY_NAMES[last]}"
            else:
                days = DAY_NAMES[first]
            parts.append(f"{days} {' and '.join(str(w) for w in windows)}")
        return ", ".join(parts) + (", except on holidays" if self.holidays else "")

    def opening_in_words(self, opens_at: datetime, now: datetime) -> str:
        """When `opens_at` is, for a customer at `now`, in the business's zone: "today at 13:00",
        "tomorrow at 09:00", "on Monday at 09:00", or beyond a week "on Monday 4 January at 09:00"."""
        local, today = _aware(opens_at).astimezone(self.zone), _aware(now).astimezone(self.zone).date()
        clock = f"{local.hour:02d}:{local.minute:02d}"
        days = (local.date() - today).days
        if days <= 0:
            return f"today at {clock}"
        if days == 1:
            return f"tomorrow at {clock}"
        name = DAY_NAMES[local.weekday()]
        if days < 7:
            return f"on {name} at {clock}"
        return f"on {name} {local.day} {MONTH_NAMES[local.month - 1]} at {clock}"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _aware(instant: datetime) -> datetime:
    # Naive datetimes are UTC everywhere in lexdesk (SQLite hands them back so; see shared/models.py).
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant


def _opening_instant(day: date, window: Window, zone: tzinfo) -> datetime | None:
    """The UTC instant the window opens on `day`: the first at which the local clock reads its start or
    later (still within the window). None if a DST gap swallows the whole window."""
    wall = datetime.combine(day, time(window.start // 60, window.start % 60))
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # the earlier of a repeated hour
    if _wall(first, zone) == wall:
        return first
    # `wall` does not exist (a spring-forward gap): the opening is the jump itself, which lies between
    # the two readings zoneinfo gives a missing time (fold=1 uses the offset after it, fold=0 before).
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    if low > high:
        low, high = high, low
    while (high - low) > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if _wall(middle, zone) >= wall:
            high = middle
        else:
            low = middle
    opens = high.replace(microsecond=0)
    if _wall(opens, zone) < wall:
        opens += timedelta(seconds=1)
    local = _wall(opens, zone)
    end = datetime.combine(day, time()) + timedelta(minutes=window.end)
    return opens if local.date() == day and local < end else None


def _wall(instant: datetime, zone: tzinfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def parse_hours(text: str) -> Week:
    """LEXDESK_BUSINESS_HOURS as a week of windows; ValueError saying what is wrong and how to write it."""
    tokens = [t for t in _SEPARATORS.split(text.strip().lower()) if t]
    if not tokens:
        raise ValueError("names no days; write for example 'mon-fri 09:00-17:00, sat 10:00-14:00', "
                         "or leave it unset for always open")
    week: list[list[Window]] = [[] for _ in DAYS]
    days: list[int] = []
    windows_of_group = 0
    for token in tokens:
        match = _TIME_RANGE.match(token)
        if match is None:
            if windows_of_group:  # a new group starts
                days, windows_of_group = [], 0
            days.extend(_days(token))
            continue
        if not days:
            raise ValueError(f"{token!r} comes before any day; write the days first, as in 'mon-fri {token}'")
        window = _window(token, match)
        windows_of_group += 1
        for day in days:
            for other in week[day]:
                if window.start < other.end and other.start < window.end:
                    raise ValueError(f"{window} overlaps {other} on {DAYS[day]}")
            week[day].append(window)
    if days and not windows_of_group:
        raise ValueError(f"{', '.join(DAYS[d] for d in days)} has no hours; add a time range such as 09:00-17:00")
    return tuple(tuple(sorted(day)) for day in week)


def _days(token: str) -> list[int]:
    first, dash, last = token.partition("-")
    if first not in _DAY_WORDS or (dash and last not in _DAY_WORDS):
        raise ValueError(f"{token!r} is not a day or a time range; days are mon, tue, wed, thu, fri, sat, sun "
                         "(or ranges such as mon-fri), times are HH:MM-HH:MM")
    if not dash:
        return [_DAY_WORDS[first]]
    start, end = _DAY_WORDS[first], _DAY_WORDS[last]
    return [(start + i) % 7 for i in range((end - start) % 7 + 1)]


def _window(token: str, match: re.Match[str]) -> Window:
    start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
    if start_h > 23 or start_m > 59:
        raise ValueError(f"{token!r}: the start is not a time of day (00:00 to 23:59)")
    if end_m > 59 or end_h > 24 or (end_h == 24 and end_m):
        raise ValueError(f"{token!r}: the end is not a time of day (00:01 to 24:00)")
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if end == start:
        raise ValueError(f"{token!r} is empty: the end must be after the start")
    if end < start:
        raise ValueError(f"{token!r} ends before it starts: a window may not run past midnight; write an "
                         f"overnight shift as two, for example 'fri {_clock(start)}-24:00, sat 00:00-{_clock(end)}'")
    return Window(start, end)


def parse_zone(name: str) -> tzinfo:
    """An IANA zone name (Europe/Lisbon); ValueError for anything zoneinfo does not know."""
    if name == "UTC":
        return UTC  # needs no time zone database
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if not available_timezones():
            raise ValueError(f"{name!r}: no time zone database is installed (install the tzdata package, or "
                             "use UTC)") from None
        raise ValueError(f"{name!r} is not an IANA time zone name such as Europe/Lisbon or America/New_York"
                         ) from None


def parse_holidays(text: str) -> frozenset[date]:
    """LEXDESK_HOLIDAYS: ISO dates (YYYY-MM-DD), separated by commas or spaces."""
    holidays = set()
    for token in (t for t in _SEPARATORS.split(text.strip()) if t):
        try:
            if not _ISO_DATE.match(token):
                raise ValueError(token)
            holidays.add(date.fromisoformat(token))
        except ValueError:
            raise ValueError(f"{token!r} is not a date; write ISO dates such as 2026-12-25, separated by commas"
                             ) from None
    return frozenset(holidays)


@lru_cache(maxsize=8)
def schedule(hours: str | None, zone_name: str, holidays: str | None) -> BusinessHours:
    """The schedule for the three settings (each validated by shared/settings.py already)."""
    week = parse_hours(hours) if hours and hours.strip() else None
    return BusinessHours(week=week, zone=parse_zone(zone_name), zone_name=zone_name,
                         holidays=parse_holidays(holidays) if holidays else frozenset())
