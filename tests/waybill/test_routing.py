"""Tests for waybill.routing: the 三段码 routing table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from waybill.routing import WILDCARD, RoutingTable, UnknownProvince

CODE_RE = re.compile(r"[0-9]{3}-[A-Z][0-9]{3}-[0-9]{2}")
HEADER = "province,city,district,hub,station,area\n"

# All 34 provincial-level divisions: (canonical name, short name).
PROVINCES = [
    ("北京市", "北京"), ("天津市", "天津"), ("上海市", "上海"), ("重庆市", "重庆"),
    ("河北省", "河北"), ("山西省", "山西"), ("辽宁省", "辽宁"), ("吉林省", "吉林"), ("黑龙江省", "黑龙江"),
    ("江苏省", "江苏"), ("浙江省", "浙江"), ("安徽省", "安徽"), ("福建省", "福建"), ("江西省", "江西"),
    ("山东省", "山东"), ("河南省", "河南"), ("湖北省", "湖北"), ("湖南省", "湖南"), ("广东省", "广东"),
    ("海南省", "海南"), ("四川省", "四川"), ("贵州省", "贵州"), ("云南省", "云南"), ("陕西省", "陕西"),
    ("甘肃省", "甘肃"), ("青海省", "青海"), ("台湾省", "台湾"),
    ("内蒙古自治区", "内蒙古"), ("广西壮族自治区", "广西"), ("西藏自治区", "西藏"),
    ("宁夏回族自治区", "宁夏"), ("新疆维吾尔自治区", "新疆"),
    ("香港特别行政区", "香港"), ("澳门特别行政区", "澳门"),
]
MAJOR_CITIES = [
    ("北京市", "北京市"), ("上海市", "上海市"), ("天津市", "天津市"), ("重庆市", "重庆市"),
    ("广东省", "广州市"), ("广东省", "深圳市"), ("浙江省", "杭州市"), ("江苏省", "南京市"),
    ("江苏省", "苏州市"), ("四川省", "成都市"), ("湖北省", "武汉市"), ("陕西省", "西安市"),
]


@pytest.fixture(scope="module")
def table() -> RoutingTable:
    return RoutingTable.load()


def write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "routing.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_packaged_table_has_all_34_provinces(table: RoutingTable) -> None:
    assert len(PROVINCES) == 34
    assert sorted(table.provinces) == sorted(name for name, _ in PROVINCES)


@pytest.mark.parametrize(("canonical", "short"), PROVINCES)
def test_every_province_resolves_by_full_and_short_name(
    table: RoutingTable, canonical: str, short: str
) -> None:
    assert table.canonical_province(canonical) == canonical
    assert table.canonical_province(short) == canonical
    assert table.canonical_province(f" {short} ") == canonical
    code = table.sorting_code(short, "", "")
    assert CODE_RE.fullmatch(code)
    assert table.sorting_code(canonical, "", "") == code


@pytest.mark.parametrize(("province", "city"), MAJOR_CITIES)
def test_major_cities_have_their_own_row(table: RoutingTable, province: str, city: str) -> None:
    city_code = table.sorting_code(province, city, "")
    assert CODE_RE.fullmatch(city_code)
    assert table.sorting_code(province, city.removesuffix("市"), "") == city_code
    assert table.route(province, city, "") != table.routes[(province, WILDCARD, WILDCARD)]


@pytest.mark.parametrize(
    ("province", "city", "district", "code"),
    [
        ("广东省", "深圳市", "南山区", "755-W012-03"),
        ("广东", "深圳", "南山区", "755-W012-03"),
        ("广东省", "深圳市", "福田区", "755-W021-01"),
        ("上海市", "上海市", "浦东新区", "021-W101-05"),
        ("上海", "上海", "徐汇区", "021-W112-02"),
        ("上海市", "市辖区", "徐汇区", "021-W112-02"),  # GB/T 2260 style city for a municipality
        ("北京市", "", "朝阳区", "010-W201-04"),
        ("北京", "北京市", "海淀区", "010-W215-06"),
        ("浙江省", "杭州市", "西湖区", "571-W301-02"),
        ("浙 江", "杭州", " 西湖区 ", "571-W301-02"),
    ],
)
def test_district_rows(table: RoutingTable, province: str, city: str, district: str, code: str) -> None:
    assert table.sorting_code(province, city, district) == code


def test_most_specific_match_wins(table: RoutingTable) -> None:
    district = table.sorting_code("广东省", "深圳市", "南山区")
    city = table.sorting_code("广东省", "深圳市", "龙岗区")  # no district row: the city row
    province = table.sorting_code("广东省", "佛山市", "禅城区")  # no city row: the province row
    assert len({district, city, province}) == 3
    assert city == table.sorting_code("广东省", "深圳市", "")
    assert province == table.sorting_code("广东省", "", "")
    # The same district name under another city does not borrow Shenzhen's row.
    assert table.sorting_code("广东省", "广州市", "南山区") == table.sorting_code("广东省", "广州市", "")
    # A literal "*" is not a wildcard match for a whole level.
    assert table.sorting_code("广东省", "*", "*") == province


@pytest.mark.parametrize("name", ["", "火星", "广东省省", "广", "Guangdong", "*"])
def test_unknown_province(table: RoutingTable, name: str) -> None:
    assert table.canonical_province(name) is None
    with pytest.raises(UnknownProvince) as info:
        table.sorting_code(name, "深圳市", "南山区")
    message = str(info.value)
    assert re.search(r"[\u4e00-\u9fff]", message)
    if name:
        assert name not in message
    assert isinstance(info.value, ValueError)


def test_load_from_a_path(tmp_path: Path) -> None:
    path = write(tmp_path, "广东省,*,*,020,P001,00\n\n广东省,深圳,*,755,C001,00\n")
    custom = RoutingTable.load(path)
    assert custom.sorting_code("广东", "深圳市", "南山区") == "755-C001-00"
    assert custom.provinces == ("广东省",)
    with pytest.raises(UnknownProvince):
        custom.sorting_code("上海", "", "")


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "广东省,*,*,020,P001,00\n", header="\ufeff" + HEADER)
    assert RoutingTable.load(path).sorting_code("广东", "", "") == "020-P001-00"


@pytest.mark.parametrize(
    ("header", "body"),
    [
        ("", ""),  # empty file
        (HEADER, ""),  # header only: empty table
        ("province,city,hub,station,area\n", "广东省,*,020,P001,00\n"),
        (HEADER, "广东省,*,*,020,P001\n"),  # missing column
        (HEADER, "广东省,*,*,020,P001,00,extra\n"),
        (HEADER, "广东省,*,*,20,P001,00\n"),  # hub not 3 digits
        (HEADER, "广东省,*,*,020,p001,00\n"),  # station lower case
        (HEADER, "广东省,*,*,020,P001,0\n"),  # area not 2 digits
        (HEADER, "广东省,*,*,020,P001,00\n广东省,*,*,020,P002,00\n"),  # duplicate
        (HEADER, "广东省,*,*,020,P001,00\n广东省,深圳市,*,755,C001,00\n广东省,深圳,*,755,C002,00\n"),
        (HEADER, "广东省,*,南山区,755,W012,03\n"),  # district without city
        (HEADER, "广东省,深圳市,南山区,755,W012,03\n"),  # no province default row
        (HEADER, "*,*,*,020,P001,00\n"),
        (HEADER, "广东,*,*,020,P001,00\n"),  # short name instead of canonical
        (HEADER, "广东省,,*,020,P001,00\n"),
    ],
)
def test_malformed_csv_is_a_value_error(tmp_path: Path, header: str, body: str) -> None:
    with pytest.raises(ValueError):
        RoutingTable.load(write(tmp_path, body, header=header))


def test_non_str_arguments(table: RoutingTable) -> None:
    with pytest.raises(TypeError):
        table.sorting_code(None, "", "")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        table.sorting_code("广东", None, "")  # type: ignore[arg-type]
