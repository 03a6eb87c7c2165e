"""Due dates of data subjects' requests: calendar days, and working days on the Chinese holiday calendar.

GB/T 35273-2020 8.7 a: a request is answered within 30 days (``WAYBILL_SUBJECT_REQUEST_DAYS``); 8.5 b: some
requests (deregistration, deletion needing manual work) within 15 *working* days. The due date of a request is
the earlier of the two rules that apply to its type. Days are counted in China Standard Time (the calendar the
rule speaks of); a request received on a day is due at the end of its last day.

Working days come from the ``chinese-calendar`` package (the State Council's yearly holiday schedule, with the
weekend days that become working days). The schedule is published a year at a time; for a year the package has
no data for, weekends-only counting is used instead and the result says so (``fallback``), so the queue can show
that the date may move once the schedule is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

CHINA = ZoneInfo("Asia/Shanghai")
MAX_CALENDAR_DAYS = 30


@dataclass(frozen=True)
class Deadline:
    """When a request is due (UTC), and whether the weekends-only fallback decided it."""

    due_at: datetime
    fallback: bool


def is_working_day(day: date) -> tuple[bool, bool]:
    """``(working, fallback)``: whether ``day`` is a working day in mainland China; ``fallback`` when the
    holiday schedule of its year is unknown and only weekends were considered."""
    try:
        return bool(chinese_calendar.is_workday(day)), False
    except NotImplementedError:  # the package has no schedule for that year (yet)
        return day.weekday() < 5, True


def add_working_days(start: date, days: int) -> tuple[date, bool]:
    """The ``days``-th working day after ``start`` (``start`` itself does not count), and whether the fallback
    was used for any day counted."""
    if days < 1:
        raise ValueError("days must be at least 1")
    current, counted, fallback = start, 0, False
    while counted < days:
        current += timedelta(days=1)
        working, guessed = is_working_day(current)
        fallback = fallback or guessed
        counted += working
    return current, fallback


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=CHINA).astimezone(UTC)


def due_date(received_at: datetime, request_type: str, *, calendar_days: int = MAX_CALENDAR_DAYS,
             working_days: Mapping[str, int] | None = None) -> Deadline:
    """The due date of a request of ``request_type`` received at ``received_at`` (aware): the end of the
    ``calendar_days``-th day after it, or of the working-day deadline for that type if earlier; never more
    than 30 days after ``received_at``."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    calendar_days = min(calendar_days, MAX_CALENDAR_DAYS)
    local_day = received_at.astimezone(CHINA).date()
    # The end of the last day, but never past 30 * 24 h after receipt (the contract's bound is exact).
    due = min(_end_of(local_day + timedelta(days=calendar_days)), received_at + timedelta(days=MAX_CALENDAR_DAYS))
    fallback = False
    limit = (working_days or {}).get(request_type)
    if limit:
        day, fallback = add_working_days(local_day, limit)
        by_working = _end_of(day)
        if by_working < due:
            due = by_working
        else:
            fallback = False  # the calendar rule decided: the guess did not matter
    return Deadline(due_at=due.astimezone(UTC), fallback=fallback)


def days_left(due_at: datetime, now: datetime) -> int:
    """Whole days from ``now`` until ``due_at`` (China Standard Time dates); negative once overdue."""
    return (due_at.astimezone(CHINA).date() - now.astimezone(CHINA).date()).days
