"""When a shipment's personal data is destroyed: the one rule retention runs by and the subjects are told.

Whole days of China Standard Time: a shipment whose contract ended on day E is due at the start of day
E + days + 1 and destroyed by the first retention run from then on (the daily run starts at 08:00 CST); with
0 days, by the first run after it ended.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from waybill.crypto.subject_keys import CST, day_of


def cutoff(now: datetime, days: int) -> datetime:
    """Shipments that ended before this are due at ``now`` (``days`` 0: everything that ended until now)."""
    if days == 0:
        return now
    return datetime.combine(day_of(now) - timedelta(days=days), time(0), CST).astimezone(UTC)


def destroyed_by(ended_at: datetime, days: int) -> datetime:
    """From when a shipment that ended at ``ended_at`` is due (the first run after this destroys it)."""
    if days == 0:
        return ended_at
    return datetime.combine(day_of(ended_at) + timedelta(days=days + 1), time(0), CST).astimezone(UTC)
