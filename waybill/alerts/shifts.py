"""Working hours for the ``off_hours`` rule: a default shift and per-station shifts, Asia/Shanghai time.

``WAYBILL_ALERT_OFF_HOURS_SHIFTS`` lists entries separated by ``;``, each ``KEY=HH:MM-HH:MM[,HH:MM-HH:MM...]``
where ``KEY`` is a station (``021-A001``), a hub (``021``, its transit centre's staff) or ``default``. A shift
whose end is not after its start runs past midnight (``22:00-06:00``); ``24:00`` may end a shift. Staff of a
station without an entry, and staff without a station (privacy officers), work the default shift: the
``default`` entry, else ``WAYBILL_ALERT_OFF_HOURS_START_HOUR``-``_END_HOUR`` (07-21). Setting both a ``default``
entry and those hours is refused (two answers to one question).

Kept apart from the station register's ``shifts`` on purpose: those say when a station operates (some run
round the clock), these say when reading personal data is expected, which security staff tune on their own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

VARIABLE = "WAYBILL_ALERT_OFF_HOURS_SHIFTS"
MAX_ENTRIES = 500
MAX_SHIFTS = 6
_KEY_RE = re.compile(r"default|[0-9]{3}(?:-[A-Z][0-9]{3})?")
_SHIFT_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]|24):([0-5][0-9])")
# Asia/Shanghai has had no daylight saving since 1991: a fixed offset is exact and cheaper than a zone lookup.
SHANGHAI = timezone(timedelta(hours=8))
_DAY = 24 * 60

Range = tuple[int, int]  # minutes after local midnight: [start, end), end > start (a night shift is two ranges)


class ShiftError(ValueError):
    """The shifts setting is malformed; the message names the variable."""


@dataclass(frozen=True)
class ShiftTable:
    """The default shift and the per-station (or per-hub) ones, as minute ranges."""

    default: tuple[Range, ...] = ((7 * 60, 21 * 60),)
    stations: Mapping[str, tuple[Range, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def ranges(self, station: str | None) -> tuple[Range, ...]:
        """The working ranges of ``station`` (its own entry, its hub's, or the default)."""
        if station is None:
            return self.default
        found = self.stations.get(station)
        if found is None and len(station) > 3:
            found = self.stations.get(station[:3])
        return found if found is not None else self.default

    def off_hours(self, station: str | None, at: datetime) -> bool:
        """Whether ``at`` (aware) falls outside every working range of ``station``."""
        local = at.astimezone(SHANGHAI)
        minute = local.hour * 60 + local.minute
        return not any(start <= minute < end for start, end in self.ranges(station))


def _ranges(text: str, where: str) -> tuple[Range, ...]:
    parts = text.split(",")
    if len(parts) > MAX_SHIFTS:
        raise ShiftError(f"{VARIABLE}: {where}: at most {MAX_SHIFTS} shifts per entry")
    out: list[Range] = []
    for part in parts:
        m = _SHIFT_RE.fullmatch(part.strip())
        if m is None or (m[3] == "24" and m[4] != "00"):
            raise ShiftError(f"{VARIABLE}: {where}: shifts are HH:MM-HH:MM (e.g. 07:00-21:00)")
        start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
        if start == end:
            raise ShiftError(f"{VARIABLE}: {where}: a shift's start and end must differ")
        out.extend([(start, end)] if end > start else [(start, _DAY), (0, end)])
    return tuple(out)


def hours(start_hour: int, end_hour: int) -> tuple[Range, ...]:
    """The default shift from the start/end hour thresholds (``end <= start``: past midnight)."""
    start, end = start_hour * 60, end_hour * 60
    if start == end:
        raise ShiftError("WAYBILL_ALERT_OFF_HOURS_START_HOUR and _END_HOUR must differ")
    return ((start, end),) if end > start else ((start, _DAY), (0, end))


def parse(raw: str | None, *, default: tuple[Range, ...], default_hours_set: bool) -> ShiftTable:
    """Parse ``WAYBILL_ALERT_OFF_HOURS_SHIFTS`` (``None``: the default shift for everyone)."""
    if raw is None or not raw.strip():
        return ShiftTable(default=default)
    entries = [e.strip() for e in raw.split(";") if e.strip()]
    if len(entries) > MAX_ENTRIES:
        raise ShiftError(f"{VARIABLE}: at most {MAX_ENTRIES} entries")
    table: dict[str, tuple[Range, ...]] = {}
    # Errors name the entry by position, never echo it: a mistyped value could be anything.
    for number, entry in enumerate(entries, 1):
        key, sep, value = entry.partition("=")
        key = key.strip()
        if not sep or _KEY_RE.fullmatch(key) is None:
            raise ShiftError(f"{VARIABLE}: entry {number}: entries are STATION=HH:MM-HH:MM (a station such as "
                             "021-A001, a hub such as 021, or default)")
        if key in table:
            raise ShiftError(f"{VARIABLE}: entry {number}: {key} is given twice")
        table[key] = _ranges(value, f"entry {number} ({key})")
    own_default = table.pop("default", None)
    if own_default is not None and default_hours_set:
        raise ShiftError(f"{VARIABLE}: a default= entry and WAYBILL_ALERT_OFF_HOURS_START_HOUR/_END_HOUR "
                         "both set the default shift; keep one")
    return ShiftTable(default=own_default or default, stations=MappingProxyType(table))
