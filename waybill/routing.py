"""The 三段码 (three-segment sorting code) of a destination, looked up in a routing table kept as data.

The table is a CSV file (`waybill/data/routing.csv` by default) with the columns
``province,city,district,hub,station,area`` and optionally ``consolidation``: the 集包地, the transit centre a
parcel's bag is built for (``深圳转运中心``), printed on the label under the sorting code; a table without
that column prints none. ``city`` and ``district`` may be ``*``: a ``*,*`` row is the
province-wide default, a ``<city>,*`` row covers a whole city. Provinces are written with their full
canonical name (``广东省``, ``广西壮族自治区``, ``香港特别行政区`` ...); every province mentioned must have
its ``*,*`` row. The sorting code is ``HUB-STATION-AREA``, e.g. ``755-W012-03``: hub 3 digits (by
convention the telephone area code of the hub city without its trunk 0 when that gives 3 digits), station a
capital letter and 3 digits, area 2 digits.

Lookup: the most specific row wins (district, else city, else province). Names are compared after NFKC and
whitespace removal; a province also matches its short name (``广东``, ``广西``, ``内蒙古``); a city matches
with or without its trailing ``市``; districts match as given. For the four municipalities the city may also
be given as the municipality itself, ``市辖区``, ``县`` or left empty.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from waybill.datafiles import read_data_text

__all__ = ["COLUMNS", "WILDCARD", "Route", "RoutingTable", "UnknownProvince"]

COLUMNS = ("province", "city", "district", "hub", "station", "area")
OPTIONAL_COLUMNS = ("consolidation",)
WILDCARD = "*"

# Longest first: 广西壮族自治区 must lose 壮族自治区, not just 自治区.
_PROVINCE_SUFFIXES = ("维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "省", "市")
_MUNICIPALITY_CITY_ALIASES = frozenset({"", "市辖区", "县"})
_HUB_RE = re.compile(r"[0-9]{3}")
_STATION_RE = re.compile(r"[A-Z][0-9]{3}")
_AREA_RE = re.compile(r"[0-9]{2}")
# Printed on labels and sent in printer commands: Chinese characters, letters, digits, 2-16 of them.
_CONSOLIDATION_RE = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]{2,16}")


class UnknownProvince(ValueError):
    """The province is not in the routing table. The message never repeats the input."""

    code = "unknown_province"

    def __init__(self) -> None:
        super().__init__("未知的省份，无法分配分拣码")


@dataclass(frozen=True, slots=True)
class Route:
    """One routing row's target."""

    hub: str
    station: str
    area: str
    consolidation: str | None = None  # 集包地, when the table names one

    @property
    def sorting_code(self) -> str:
        """``HUB-STATION-AREA``."""
        return f"{self.hub}-{self.station}-{self.area}"


def _clean(text: str) -> str:
    """NFKC and no whitespace at all: ``广 东 省`` and full-width forms compare equal to ``广东省``."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def _short_province(canonical: str) -> str | None:
    for suffix in _PROVINCE_SUFFIXES:
        if canonical.endswith(suffix) and len(canonical) > len(suffix):
            return canonical[: -len(suffix)]
    return None


def _city_key(city: str) -> str:
    cleaned = _clean(city)
    # "深圳" and "深圳市" are the same city; a bare "市" is not a name and is left as is.
    return cleaned[:-1] if cleaned.endswith("市") and len(cleaned) > 1 else cleaned


@dataclass(frozen=True)
class RoutingTable:
    """An immutable, validated routing table. Build it with `RoutingTable.load`."""

    # Keys: (canonical province, city key or "*", cleaned district or "*").
    routes: Mapping[tuple[str, str, str], Route] = field(hash=False)
    # Every accepted spelling of a province (full and short, cleaned) -> canonical name.
    aliases: Mapping[str, str] = field(hash=False, repr=False)

    @classmethod
    def load(cls, path: Path | None = None) -> RoutingTable:
        """Read and validate a routing CSV (default: the packaged ``waybill/data/routing.csv``).

        Raises ValueError naming the first bad line when the file is malformed.
        """
        return cls.from_csv_text(read_data_text("routing.csv", path))

    @classmethod
    def from_csv_text(cls, text: str) -> RoutingTable:
        """Build a table from CSV text (same format and checks as `load`)."""
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        names = None if header is None else tuple(h.strip() for h in header)
        if names not in (COLUMNS, COLUMNS + OPTIONAL_COLUMNS):
            raise ValueError(f"路由表表头必须是 {','.join(COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}]")
        width = len(names)
        routes: dict[tuple[str, str, str], Route] = {}
        aliases: dict[str, str] = {}
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue  # blank lines are allowed
            if len(row) != width:
                raise ValueError(f"路由表第 {line_no} 行：应有 {width} 列，实际 {len(row)} 列")
            province, city, district, hub, station, area, *rest = (_clean(cell) for cell in row)
            consolidation = rest[0] if rest else None
            if consolidation is not None and _CONSOLIDATION_RE.fullmatch(consolidation) is None:
                raise ValueError(f"路由表第 {line_no} 行：consolidation（集包地）须为 2-16 个汉字、字母或数字")
            key = _row_key(line_no, province, city, district)
            _check_codes(line_no, hub, station, area)
            if key in routes:
                raise ValueError(f"路由表第 {line_no} 行：与前面的行重复")
            routes[key] = Route(hub, station, area, consolidation)
            short = _short_province(province)
            if short is None:
                raise ValueError(f"路由表第 {line_no} 行：省份必须写全称（以省、市、自治区或特别行政区结尾）")
            for alias in (province, short):
                if aliases.setdefault(alias, province) != province:
                    raise ValueError(f"路由表第 {line_no} 行：省份简称与其他省份冲突")
        if not routes:
            raise ValueError("路由表为空")
        missing = sorted({p for p, _, _ in routes} - {p for p, c, _ in routes if c == WILDCARD})
        if missing:
            raise ValueError(f"路由表缺少省级默认行（城市和区县为 *）：{'、'.join(missing)}")
        return cls(routes=MappingProxyType(routes), aliases=MappingProxyType(aliases))

    @property
    def provinces(self) -> tuple[str, ...]:
        """Canonical names of every province in the table, in table order."""
        return tuple(dict.fromkeys(p for p, _, _ in self.routes))

    def canonical_province(self, name: str) -> str | None:
        """The canonical name of a province given by full or short name, or None when unknown."""
        if not isinstance(name, str):
            raise TypeError("province must be a str")
        return self.aliases.get(_clean(name))

    def route(self, province: str, city: str, district: str) -> Route:
        """The most specific route for a destination; `UnknownProvince` when the province is unknown."""
        for value in (city, district):
            if not isinstance(value, str):
                raise TypeError("city and district must be str")
        canonical = self.canonical_province(province)
        if canonical is None:
            raise UnknownProvince()
        # A literal "*" from the caller is not a wildcard: it must not select a row meant for a whole level.
        city_key = "" if _clean(city) == WILDCARD else _city_key(city)
        district_key = "" if _clean(district) == WILDCARD else _clean(district)
        if canonical.endswith("市") and city_key in _MUNICIPALITY_CITY_ALIASES:
            # Municipalities have no separate city level; addresses write it in several ways.
            city_key = _city_key(canonical)
        for key in (
            (canonical, city_key, district_key),
            (canonical, city_key, WILDCARD),
            (canonical, WILDCARD, WILDCARD),
        ):
            found = self.routes.get(key)
            if found is not None:
                return found
        raise UnknownProvince()  # unreachable for a validated table: every province has its default row

    def sorting_code(self, province: str, city: str, district: str) -> str:
        """The 三段码 ``HUB-STATION-AREA`` for a destination (most specific match wins)."""
        return self.route(province, city, district).sorting_code


def _row_key(line_no: int, province: str, city: str, district: str) -> tuple[str, str, str]:
    if not province or not city or not district:
        raise ValueError(f"路由表第 {line_no} 行：省份、城市、区县不能为空（不限请写 *）")
    if province == WILDCARD:
        raise ValueError(f"路由表第 {line_no} 行：省份不能是通配符")
    if city == WILDCARD and district != WILDCARD:
        raise ValueError(f"路由表第 {line_no} 行：城市为 * 时区县也必须为 *")
    return province, (WILDCARD if city == WILDCARD else _city_key(city)), district


def _check_codes(line_no: int, hub: str, station: str, area: str) -> None:
    if _HUB_RE.fullmatch(hub) is None:
        raise ValueError(f"路由表第 {line_no} 行：hub 必须是 3 位数字")
    if _STATION_RE.fullmatch(station) is None:
        raise ValueError(f"路由表第 {line_no} 行：station 必须是 1 个大写字母加 3 位数字")
    if _AREA_RE.fullmatch(area) is None:
        raise ValueError(f"路由表第 {line_no} 行：area 必须是 2 位数字")
