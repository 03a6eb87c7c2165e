"""The station register: every station and hub (transit centre) of the network, kept as data.

A CSV file (``waybill/data/stations.csv`` by default, ``WAYBILL_STATIONS_FILE`` to replace it) with the columns
``code,name,hub,time_zone,shifts``:

- ``code``: a station ``HUB-STATION`` (``755-W012``: the first two segments of the sorting code
  ``HUB-STATION-AREA``, see :mod:`waybill.routing`) or a hub ``HUB`` (``755``: its transit centre);
- ``name``: what people call it (1-32 characters);
- ``hub``: the hub it belongs to. A station's hub is the first segment of its code (the register states it and
  is checked against it); a hub row names itself. Every station's hub has a row of its own;
- ``time_zone``: an IANA zone (``Asia/Shanghai``);
- ``shifts``: working hours in the station's local time, ``HH:MM-HH:MM`` separated by ``;``
  (``08:00-20:00;20:00-08:00``); a shift may run past midnight.

Staff accounts of station roles name one of these codes. Every station the routing table routes to must be in
the register (:meth:`StationRegister.check_routing`, run when the services start).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from waybill.datafiles import read_data_text
from waybill.routing import Route, RoutingTable

__all__ = ["COLUMNS", "HUB_RE", "STATION_RE", "Shift", "Station", "StationRegister", "station_code"]

COLUMNS = ("code", "name", "hub", "time_zone", "shifts")
HUB_RE = re.compile(r"[0-9]{3}")
STATION_RE = re.compile(r"([0-9]{3})-[A-Z][0-9]{3}")
_SHIFT_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")
_NAME_RE = re.compile(r"[\u4e00-\u9fffA-Za-z0-9 ()（）·-]{1,32}")
_ZONE_RE = re.compile(r"[A-Za-z]+(?:/[A-Za-z0-9_+-]+){0,2}|UTC")
MAX_SHIFTS = 6


def station_code(route: Route) -> str:
    """The station a route ends at: ``HUB-STATION`` (the sorting code without its area)."""
    return f"{route.hub}-{route.station}"


@dataclass(frozen=True, slots=True)
class Shift:
    """Working hours in the station's local time; ``end <= start`` means the shift runs past midnight."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class Station:
    """One row of the register: a station, or a hub's transit centre (``is_hub``)."""

    code: str
    name: str
    hub: str
    time_zone: str
    shifts: tuple[Shift, ...]

    @property
    def is_hub(self) -> bool:
        return self.code == self.hub

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "hub": self.hub, "kind": "hub" if self.is_hub else "station",
                "time_zone": self.time_zone, "shifts": [str(s) for s in self.shifts]}


def _shifts(line_no: int, raw: str) -> tuple[Shift, ...]:
    parts = [p.strip() for p in raw.split(";")]
    if not raw.strip() or not 1 <= len(parts) <= MAX_SHIFTS:
        raise ValueError(f"站点表第 {line_no} 行：shifts 须为 1-{MAX_SHIFTS} 个 HH:MM-HH:MM，以 ; 分隔")
    shifts = []
    for part in parts:
        m = _SHIFT_RE.fullmatch(part)
        if m is None:
            raise ValueError(f"站点表第 {line_no} 行：班次须写作 HH:MM-HH:MM（如 08:00-20:00）")
        start, end = time(int(m[1]), int(m[2])), time(int(m[3]), int(m[4]))
        if start == end:
            raise ValueError(f"站点表第 {line_no} 行：班次的开始与结束不能相同")
        shifts.append(Shift(start, end))
    if len(set(shifts)) != len(shifts):
        raise ValueError(f"站点表第 {line_no} 行：班次重复")
    return tuple(shifts)


def _zone(line_no: int, raw: str) -> str:
    # The pattern first: ZoneInfo would otherwise also accept a file path.
    if _ZONE_RE.fullmatch(raw) is None:
        raise ValueError(f"站点表第 {line_no} 行：time_zone 须为 IANA 时区名（如 Asia/Shanghai）")
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"站点表第 {line_no} 行：未知的时区") from None
    return raw


def _row(line_no: int, row: list[str]) -> Station:
    if len(row) != len(COLUMNS):
        raise ValueError(f"站点表第 {line_no} 行：应有 {len(COLUMNS)} 列，实际 {len(row)} 列")
    code, name, hub, zone, shifts = (cell.strip() for cell in row)
    station = STATION_RE.fullmatch(code)
    if station is None and HUB_RE.fullmatch(code) is None:
        raise ValueError(f"站点表第 {line_no} 行：code 须为站点 HUB-X999（如 755-W012）或枢纽 HUB（3 位数字）")
    if HUB_RE.fullmatch(hub) is None:
        raise ValueError(f"站点表第 {line_no} 行：hub 必须是 3 位数字")
    if hub != (station[1] if station is not None else code):
        raise ValueError(f"站点表第 {line_no} 行：hub 须为编码的第一段（枢纽行须为其本身）")
    if _NAME_RE.fullmatch(name) is None:
        raise ValueError(f"站点表第 {line_no} 行：name 须为 1-32 个汉字、字母或数字")
    return Station(code, name, hub, _zone(line_no, zone), _shifts(line_no, shifts))


@dataclass(frozen=True)
class StationRegister:
    """An immutable, validated station register. Build it with :meth:`load`."""

    stations: Mapping[str, Station] = field(hash=False)

    @classmethod
    def load(cls, path: Path | None = None) -> StationRegister:
        """Read and validate a register (default: the packaged ``waybill/data/stations.csv``).

        Raises ValueError naming the first bad line.
        """
        return cls.from_csv_text(read_data_text("stations.csv", path))

    @classmethod
    def from_csv_text(cls, text: str) -> StationRegister:
        """Build a register from CSV text (same format and checks as :meth:`load`)."""
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COLUMNS:
            raise ValueError(f"站点表表头必须是 {','.join(COLUMNS)}")
        stations: dict[str, Station] = {}
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            station = _row(line_no, row)
            if station.code in stations:
                raise ValueError(f"站点表第 {line_no} 行：编码与前面的行重复")
            stations[station.code] = station
        if not stations:
            raise ValueError("站点表为空")
        hubs = {s.code for s in stations.values() if s.is_hub}
        orphans = sorted({s.hub for s in stations.values()} - hubs)
        if orphans:
            raise ValueError(f"站点表缺少枢纽行：{'、'.join(orphans)}")
        return cls(MappingProxyType(stations))

    def __iter__(self) -> Iterator[Station]:
        return iter(self.stations.values())

    def __contains__(self, code: object) -> bool:
        return code in self.stations

    def get(self, code: str) -> Station | None:
        return self.stations.get(code)

    def check_routing(self, routing: RoutingTable) -> None:
        """Every station (and hub) the routing table routes to must be registered; ValueError names the missing."""
        routed = {station_code(route) for route in routing.routes.values()}
        missing = sorted(routed - set(self.stations))
        if missing:
            raise ValueError(f"路由表中的站点不在站点表中：{'、'.join(missing)}")
