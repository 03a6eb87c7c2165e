"""Provinces, cities and districts checked against the administrative divisions (GB/T 2260).

The list is data: ``waybill/data/regions.csv`` (source, date and licence in ``waybill/data/README.md``),
one row per county-level unit with the columns
``province_code,province,city_code,city,district_code,district`` (codes are the 6 digits of GB/T 2260;
Hong Kong, Macau and Taiwan carry their province code only). ``WAYBILL_REGIONS_EXTRA_FILE`` names a CSV of
the same shape read after it: a row whose ``district_code`` is already listed replaces that unit (a renamed
district), any other row adds one (a new district), so a change of the divisions needs no release.

Accepted spellings (after NFKC and whitespace removal): a province by its full or short name (``广东``,
``内蒙古``, ``香港``); a city with or without its ``市``; a municipality's city as the municipality itself
(``北京``/``北京市``), ``市辖区``, ``县`` or empty; a county-level city directly under its province
(``仙桃市``) as its own city or as ``省直辖县级行政区划``; a district by its name or without its ``区``/``县``/
``市``/``旗`` when that is unambiguous in its city; a city without districts (``东莞市``) by its own name.
Everything else, and a district not in the given city, is :class:`~waybill.errors.InvalidRegion` naming the
field. The canonical names (municipality: ``北京市``, ``北京市``, ``朝阳区``) and the codes are what is stored.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from waybill.datafiles import read_data_text
from waybill.errors import InvalidRegion

__all__ = ["HEADER", "Region", "RegionTable"]

HEADER = ("province_code", "province", "city_code", "city", "district_code", "district")

# Longest first: 广西壮族自治区 must lose 壮族自治区, not just 自治区.
_PROVINCE_SUFFIXES = ("维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "省", "市")
# The list's placeholders for "no prefecture level": a municipality's districts and counties, and
# county-level units directly under a province or autonomous region.
_MUNICIPAL_GROUPS = frozenset({"市辖区", "县"})
_DIRECT_GROUPS = frozenset({"省直辖县级行政区划", "自治区直辖县级行政区划"})
_DIRECT_ALIASES = _DIRECT_GROUPS | {"省直辖县", "省直管县", "自治区直辖县"}
_DISTRICT_SUFFIXES = ("区", "县", "市", "旗")
_CODE_RE = re.compile(r"[1-9][0-9]{5}")
_NAME_MAX = 30
_NAME_PUNCTUATION = str.maketrans("", "", "·()")  # 嘉模堂区(氹仔), minority names with a middle dot


@dataclass(frozen=True, slots=True)
class Region:
    """A checked region: canonical names and GB/T 2260 codes (``None`` where the standard gives none)."""

    province: str
    city: str
    district: str
    province_code: str
    city_code: str | None
    district_code: str | None

    def as_json(self) -> dict[str, str]:
        """The stored form (``shipments.*_region``): names as printed, the codes the standard gives beside them."""
        stored = {"province": self.province, "city": self.city, "district": self.district,
                  "province_code": self.province_code}
        if self.city_code:
            stored["city_code"] = self.city_code
        if self.district_code:
            stored["district_code"] = self.district_code
        return stored


def _clean(text: str) -> str:
    """NFKC and no whitespace at all: ``广 东 省`` and full-width forms compare equal to ``广东省``."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def _short_province(name: str) -> str:
    for suffix in _PROVINCE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _without_suffix(name: str, suffixes: tuple[str, ...]) -> str | None:
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix)]
    return None


@dataclass(frozen=True)
class RegionTable:
    """The validated division list with its spelling indexes. Build it with :meth:`load`."""

    # cleaned province spelling -> canonical province
    provinces: Mapping[str, str] = field(hash=False)
    # (canonical province, cleaned city spelling) -> canonical cities it may mean
    cities: Mapping[tuple[str, str], frozenset[str]] = field(hash=False, repr=False)
    # (canonical province, canonical city, cleaned district spelling) -> Region
    districts: Mapping[tuple[str, str, str], Region] = field(hash=False, repr=False)
    # canonical province -> its code; (canonical province, canonical city) -> its code (None: none or several)
    province_codes: Mapping[str, str] = field(hash=False, repr=False, default_factory=dict)
    city_codes: Mapping[tuple[str, str], str | None] = field(hash=False, repr=False, default_factory=dict)

    @classmethod
    def load(cls, extra: Path | None = None) -> RegionTable:
        """The packaged list, plus the rows of ``extra`` (``WAYBILL_REGIONS_EXTRA_FILE``) when given.

        Raises ValueError naming the file and line of the first malformed row, OSError when ``extra`` cannot
        be read. The packaged list is parsed once per process (the table is immutable).
        """
        if extra is None:
            return _packaged()
        rows = _merge(_packaged_rows(), _parse(read_data_text("", extra), str(extra)))
        return cls.from_rows(rows)

    @classmethod
    def from_rows(cls, rows: Sequence[Region]) -> RegionTable:
        """Build the indexes from list rows (names as the list writes them)."""
        provinces: dict[str, str] = {}
        cities: dict[tuple[str, str], set[str]] = defaultdict(set)
        districts: dict[tuple[str, str, str], Region] = {}
        shorts: dict[tuple[str, str, str], list[Region]] = defaultdict(list)
        city_codes: dict[tuple[str, str], set[str | None]] = defaultdict(set)
        province_codes: dict[str, str] = {}
        for row in rows:
            region = _canonical(row)
            p, c, d = region.province, region.city, region.district
            province_codes.setdefault(p, region.province_code)
            city_codes[p, c].add(region.city_code)
            for spelling in (p, _short_province(p)):
                if provinces.setdefault(spelling, p) != p:
                    raise ValueError("行政区划表：省份简称冲突")
            for spelling in _city_spellings(row, region):
                cities[p, spelling].add(c)
            names = {d, d.split("(")[0]}
            if c == d:  # a city without districts, or a county-level city under its province
                names.add("")
            for name in names:
                if districts.setdefault((p, c, name), region) != region:
                    raise ValueError("行政区划表：同一城市内区县重名")
            short = _without_suffix(d.split("(")[0], _DISTRICT_SUFFIXES)
            if short is not None:
                shorts[p, c, short].append(region)
        for key, found in shorts.items():
            if len(found) == 1:  # "南山" for 南山区 only where it cannot mean two districts
                districts.setdefault(key, found[0])
        return cls(provinces=MappingProxyType(provinces),
                   cities=MappingProxyType({k: frozenset(v) for k, v in cities.items()}),
                   districts=MappingProxyType(districts), province_codes=MappingProxyType(province_codes),
                   city_codes=MappingProxyType({k: next(iter(v)) if len(v) == 1 else None
                                                for k, v in city_codes.items()}))

    def resolve(self, province: str, city: str, district: str, *, field_prefix: str) -> Region:
        """The canonical region for a submitted spelling, or :class:`InvalidRegion` naming the first bad
        field (``<field_prefix>.province``, ``.city`` or ``.district``). Messages never repeat the input."""
        canonical = self.provinces.get(_clean(province))
        if canonical is None:
            raise InvalidRegion("省份不在行政区划（GB/T 2260）中", field=f"{field_prefix}.province")
        city_key = _clean(city)
        candidates = self.cities.get((canonical, city_key))
        if candidates is None and city_key.endswith("市"):
            candidates = self.cities.get((canonical, city_key[:-1]))
        if candidates is None:
            raise InvalidRegion("城市不在该省份的行政区划中", field=f"{field_prefix}.city")
        district_key = _clean(district)
        found = {self.districts[(canonical, c, district_key)] for c in candidates
                 if (canonical, c, district_key) in self.districts}
        if len(found) != 1:
            raise InvalidRegion("区县不在该城市的行政区划中", field=f"{field_prefix}.district")
        return found.pop()

    def best_effort(self, province: str, city: str, district: str) -> dict[str, str]:
        """What of a region stored before the check can be kept: each level that resolves, in its canonical
        name with its code; an empty name for the first level that does not and those below it.

        For migration 0009: a city or district that is not a division may hold a phone number or a name, so
        it must not stay in clear."""
        try:
            return self.resolve(province, city, district, field_prefix="").as_json()
        except InvalidRegion as exc:
            failed = exc.field
        canonical = self.provinces.get(_clean(province))
        if canonical is None:
            return {"province": "", "city": "", "district": ""}
        kept = {"province": canonical, "province_code": self.province_codes[canonical], "city": "", "district": ""}
        if failed == ".district":
            city_key = _clean(city)
            cities = self.cities.get((canonical, city_key)) or self.cities.get((canonical, city_key[:-1]))
            if cities is not None and len(cities) == 1:
                kept["city"] = next(iter(cities))
                if code := self.city_codes.get((canonical, kept["city"])):
                    kept["city_code"] = code
        return kept


@lru_cache(maxsize=1)
def _packaged_rows() -> tuple[Region, ...]:
    text = read_data_text("regions.csv")
    return tuple(_parse(text, "regions.csv"))


@lru_cache(maxsize=1)
def _packaged() -> RegionTable:
    return RegionTable.from_rows(_packaged_rows())


def _canonical(row: Region) -> Region:
    """Names as stored and printed: a municipality is its own city, a directly administered county-level
    city is its own city (the list's placeholders are not names)."""
    if row.city in _MUNICIPAL_GROUPS and row.province.endswith("市"):
        return Region(row.province, row.province, row.district, row.province_code, row.city_code,
                      row.district_code)
    if row.city in _DIRECT_GROUPS:
        return Region(row.province, row.district, row.district, row.province_code, row.city_code,
                      row.district_code)
    return row


def _city_spellings(row: Region, region: Region) -> set[str]:
    spellings = {region.city}
    short = _without_suffix(region.city, ("市",))
    if short is not None:
        spellings.add(short)
    if region.city == region.province:  # a municipality
        spellings |= {"", _short_province(region.province)} | _MUNICIPAL_GROUPS
    if row.city in _DIRECT_GROUPS:
        spellings |= _DIRECT_ALIASES
    return spellings


def _parse(text: str, source: str) -> list[Region]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise ValueError(f"{source}：表头必须是 {','.join(HEADER)}")
    rows: list[Region] = []
    for line_no, raw in enumerate(reader, start=2):
        if not raw or all(not cell.strip() for cell in raw):
            continue
        if len(raw) != len(HEADER):
            raise ValueError(f"{source} 第 {line_no} 行：应有 {len(HEADER)} 列")
        p_code, province, c_code, city, d_code, district = (_clean(cell) for cell in raw)
        problem = _row_problem(p_code, province, c_code, city, d_code, district)
        if problem:
            raise ValueError(f"{source} 第 {line_no} 行：{problem}")
        rows.append(Region(province, city, district, p_code, c_code or None, d_code or None))
    return rows


def _row_problem(p_code: str, province: str, c_code: str, city: str, d_code: str, district: str) -> str | None:
    for name in (province, city, district):
        # str.isalpha: letters only (category L), so no digit, Roman numeral or symbol of any script.
        if not name or len(name) > _NAME_MAX or not name.translate(_NAME_PUNCTUATION).isalpha():
            return "名称须为 1-30 个文字"
    if _CODE_RE.fullmatch(p_code) is None or not p_code.endswith("0000"):
        return "province_code 须为 6 位省级代码（如 440000）"
    if c_code and (_CODE_RE.fullmatch(c_code) is None or c_code[:2] != p_code[:2] or not c_code.endswith("00")):
        return "city_code 须为该省的 6 位地级代码（如 440300）"
    if d_code and (_CODE_RE.fullmatch(d_code) is None or not c_code or d_code[:4] != c_code[:4]):
        return "district_code 须为该城市的 6 位县级代码（如 440305）"
    return None


def _merge(base: Sequence[Region], extra: Sequence[Region]) -> list[Region]:
    """``extra`` rows replace base rows with the same district code (renamed) and add the others."""
    replaced = {row.district_code: row for row in extra if row.district_code}
    kept = [replaced.pop(row.district_code, row) if row.district_code else row for row in base]
    return kept + [row for row in extra if not row.district_code or row.district_code in replaced]
