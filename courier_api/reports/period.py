"""The month a privacy report covers: an Asia/Shanghai calendar month, as UTC bounds and its days."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from waybill.errors import ValidationFailed

CST = ZoneInfo("Asia/Shanghai")
MONTH_PATTERN = r"^20[0-9]{2}-(0[1-9]|1[0-2])$"
_MONTH = re.compile(MONTH_PATTERN)


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in UTC; ``until`` is where the data ends (``end``, or now for the current month)."""

    month: str
    start: datetime
    end: datetime
    until: datetime
    days: tuple[date, ...]
    day_starts: tuple[datetime, ...]  # UTC instant each day begins (Asia/Shanghai midnight)

    @property
    def complete(self) -> bool:
        return self.until >= self.end


def _midnight(day: date) -> datetime:
    """The UTC instant ``day`` begins in Asia/Shanghai."""
    return datetime(day.year, day.month, day.day, tzinfo=CST).astimezone(UTC)


def month_period(month: str, now: datetime) -> Period:
    """The period of ``month`` (``YYYY-MM``) as of ``now``; a malformed or future month is refused (field
    ``month``)."""
    if not _MONTH.fullmatch(month):
        raise ValidationFailed("month 须为 YYYY-MM 格式的年月（如 2026-05）", field="month")
    first = date(int(month[:4]), int(month[5:]), 1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    start, end = _midnight(first), _midnight(following)
    if start > now:
        raise ValidationFailed("month 不能晚于本月（北京时间）", field="month")
    days = tuple(first + timedelta(days=i) for i in range((following - first).days))
    return Period(month=month, start=start, end=end, until=min(end, now), days=days,
                  day_starts=tuple(_midnight(d) for d in days))
