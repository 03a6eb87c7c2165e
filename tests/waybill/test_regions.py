"""Provinces, cities and districts are checked against the divisions list (GB/T 2260): canonical names and
codes are stored and printed; anything else, or a district not in its city, is 422 ``invalid_region``."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pymupdf
import pytest

from printing import samples
from tests.conftest import make_merchant, shipment_body
from tests.waybill.test_validation_api import assert_error_shape, list_ids, with_value
from waybill.errors import InvalidRegion
from waybill.models import Shipment
from waybill.regions import HEADER, Region, RegionTable
from waybill.routing import WILDCARD, RoutingTable
from waybill.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table() -> RegionTable:
    return RegionTable.load()


def _resolve(table: RegionTable, province: str, city: str, district: str) -> Region:
    return table.resolve(province, city, district, field_prefix="recipient")


# ---------------------------------------------------------------------------------------- the list


def test_the_list_is_the_whole_country(table: RegionTable) -> None:
    """Not a hand list of a few cities: every province-level unit, and some 2,900 county-level units."""
    canonical = set(table.provinces.values())
    assert len(canonical) == 34  # 31 mainland, Hong Kong, Macau, Taiwan
    with (REPO / "waybill/data/regions.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    coded = [r for r in rows if r["district_code"]]
    assert len(coded) > 2800
    assert len({r["city_code"] for r in coded}) > 330
    # Codes are GB/T 2260's 6 digits and nest: the district's code starts with its city's and province's.
    for r in coded:
        assert r["district_code"][:4] == r["city_code"][:4] and r["city_code"][:2] == r["province_code"][:2]


@pytest.mark.parametrize(("spelling", "expected"), [
    (("广东省", "深圳市", "南山区"), ("广东省", "深圳市", "南山区", "440000", "440300", "440305")),
    (("广东", "深圳", "南山"), ("广东省", "深圳市", "南山区", "440000", "440300", "440305")),
    ((" 广 东 ", "深圳市", "南山区"), ("广东省", "深圳市", "南山区", "440000", "440300", "440305")),
    (("北京", "北京", "朝阳区"), ("北京市", "北京市", "朝阳区", "110000", "110100", "110105")),
    (("北京市", "市辖区", "朝阳区"), ("北京市", "北京市", "朝阳区", "110000", "110100", "110105")),
    (("重庆市", "县", "城口县"), ("重庆市", "重庆市", "城口县", "500000", "500200", "500229")),
    (("上海市", "上海市", "浦东新区"), ("上海市", "上海市", "浦东新区", "310000", "310100", "310115")),
    (("湖北省", "仙桃市", "仙桃市"), ("湖北省", "仙桃市", "仙桃市", "420000", "429000", "429004")),
    (("湖北省", "省直辖县级行政区划", "仙桃市"), ("湖北省", "仙桃市", "仙桃市", "420000", "429000", "429004")),
    (("广东省", "东莞市", "东莞市"), ("广东省", "东莞市", "东莞市", "440000", "441900", "441900")),
    (("内蒙古", "锡林郭勒盟", "太仆寺旗"), ("内蒙古自治区", "锡林郭勒盟", "太仆寺旗", "150000", "152500", "152527")),
    (("新疆", "石河子市", "石河子市"), ("新疆维吾尔自治区", "石河子市", "石河子市", "650000", "659000", "659001")),
    (("浙江省", "杭州市", "临安区"), ("浙江省", "杭州市", "临安区", "330000", "330100", "330112")),
    (("香港", "九龙", "油尖旺区"), ("香港特别行政区", "九龙", "油尖旺区", "810000", None, None)),
    (("台湾省", "台北市", "大安区"), ("台湾省", "台北市", "大安区", "710000", None, None)),
])
def test_common_spellings_resolve_to_canonical_names_and_codes(
        table: RegionTable, spelling: tuple[str, str, str], expected: tuple[str | None, ...]) -> None:
    region = _resolve(table, *spelling)
    assert (region.province, region.city, region.district, region.province_code, region.city_code,
            region.district_code) == expected


@pytest.mark.parametrize(("spelling", "field"), [
    (("火星省", "深圳市", "南山区"), "recipient.province"),
    (("广东省", "张三丰市", "南山区"), "recipient.city"),  # any text ending in 市 passed before
    (("广东省", "一三八一二三四五六七八区", "南山区"), "recipient.city"),
    (("广东省", "深圳市", "一三八一二三四五六七八区"), "recipient.district"),  # a phone as a "district"
    (("广东省", "深圳市", "张三丰区"), "recipient.district"),
    (("广东省", "广州市", "南山区"), "recipient.district"),  # a real district, but not in that city
    (("浙江省", "深圳市", "南山区"), "recipient.city"),  # a real city, but not in that province
    (("北京市", "上海市", "徐汇区"), "recipient.city"),
    (("广东省", "深圳市", "*"), "recipient.district"),
    (("广东省", "深圳市", ""), "recipient.district"),
])
def test_unknown_or_inconsistent_regions_name_the_field(
        table: RegionTable, spelling: tuple[str, str, str], field: str) -> None:
    with pytest.raises(InvalidRegion) as info:
        _resolve(table, *spelling)
    assert info.value.field == field
    assert not any(part and part in info.value.message for part in spelling[1:])


def test_a_short_district_name_is_accepted_only_when_unambiguous(table: RegionTable) -> None:
    assert _resolve(table, "北京市", "北京市", "朝阳").district == "朝阳区"
    # Two units of one city that share the short form: it is refused, never guessed.
    twins = RegionTable.from_rows([Region("某省", "甲市", "东城区", "990000", "990100", "990101"),
                                   Region("某省", "甲市", "东城县", "990000", "990100", "990121")])
    assert twins.resolve("某省", "甲市", "东城县", field_prefix="r").district_code == "990121"
    with pytest.raises(InvalidRegion):
        twins.resolve("某省", "甲市", "东城", field_prefix="r")


def test_every_routing_row_names_a_real_region_and_routes_by_its_canonical_names(table: RegionTable) -> None:
    routing = RoutingTable.load()
    for (province, city, district), route in routing.routes.items():
        assert table.provinces.get(province) == province
        if city == WILDCARD:
            continue
        assert (province, city) in table.cities, (province, city)
        if district != WILDCARD:
            region = _resolve(table, province, city, district)
            assert routing.route(region.province, region.city, region.district) == route


def test_fixtures_demo_samples_and_bench_use_real_regions(table: RegionTable) -> None:
    from tests.conftest import RECIPIENT, SENDER
    places = [tuple(p) for p in samples._PLACES]
    places += [(p["province"], p["city"], p["district"]) for p in (RECIPIENT, SENDER)]
    spec = importlib.util.spec_from_file_location("bench_env", REPO / "bench/_env.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    places += list(bench.PROVINCES)
    for place in places:
        region = _resolve(table, *place)
        assert (region.province, region.city, region.district) == place, place


# ------------------------------------------------------------------------------ extra rows as data


def _extra(tmp_path: Path, rows: list[tuple[str, ...]]) -> Path:
    path = tmp_path / "extra.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def test_a_renamed_or_new_district_is_added_as_data(tmp_path: Path) -> None:
    path = _extra(tmp_path, [
        ("440000", "广东省", "440300", "深圳市", "440305", "南山新区"),  # same code: a rename
        ("440000", "广东省", "440300", "深圳市", "440312", "前海区"),  # a new code: a new district
    ])
    table = RegionTable.load(path)
    renamed = table.resolve("广东省", "深圳市", "南山新区", field_prefix="recipient")
    assert (renamed.district, renamed.district_code) == ("南山新区", "440305")
    with pytest.raises(InvalidRegion):
        table.resolve("广东省", "深圳市", "南山区", field_prefix="recipient")
    assert table.resolve("广东", "深圳", "前海区", field_prefix="recipient").district_code == "440312"
    assert load_settings(environ={"WAYBILL_REGIONS_EXTRA_FILE": str(path)}).regions_extra_file == path


@pytest.mark.parametrize("row", [
    ("440000", "广东省", "450300", "深圳市", "440312", "前海区"),  # city code of another province
    ("440000", "广东省", "440300", "深圳市", "450312", "前海区"),  # district code of another city
    ("44", "广东省", "440300", "深圳市", "440312", "前海区"),
    ("440000", "广东省", "440300", "深圳市", "440312", "13812345678"),  # a name must be letters
])
def test_a_malformed_extra_file_stops_the_start(tmp_path: Path, row: tuple[str, ...]) -> None:
    path = _extra(tmp_path, [row])
    with pytest.raises(SettingsError, match="WAYBILL_REGIONS_EXTRA_FILE"):
        load_settings(environ={"WAYBILL_REGIONS_EXTRA_FILE": str(path)})
    with pytest.raises(SettingsError, match="WAYBILL_REGIONS_EXTRA_FILE"):
        load_settings(environ={"WAYBILL_REGIONS_EXTRA_FILE": str(tmp_path / "missing.csv")})


# ------------------------------------------------------------------------------------------- the API


@pytest.mark.parametrize(("path", "value"), [
    ("recipient.district", "一三八一二三四五六七八区"),
    ("recipient.city", "一三八一二三四五六七八市"),
    ("recipient.city", "张三丰市"),
    ("sender.district", "张三丰区"),
    ("recipient.district", "天河区"),  # in 广州, not in the body's 深圳
    ("sender.city", "深圳市"),  # the sender is in 上海市
])
def test_a_name_or_phone_in_a_region_field_is_refused(client, merchant, path: str, value: str) -> None:
    """The attack of issue 11 item 9: these were stored in clear and printed in full on every label."""
    r = client.post("/v1/shipments", json=with_value(path, value), headers=merchant.headers)
    assert r.status_code == 422, r.get_data(as_text=True)
    err = assert_error_shape(r)
    assert (err["code"], err["field"]) == ("invalid_region", path)
    assert value not in r.get_data(as_text=True)
    assert list_ids(client, merchant) == []


def test_batch_items_with_a_bad_region_fail_alone(client, merchant) -> None:
    good = shipment_body("B-1")
    bad = with_value("recipient.district", "一三八一二三四五六七八区", base=shipment_body("B-2"))
    r = client.post("/v1/shipments/batch", json={"shipments": [good, bad]}, headers=merchant.headers)
    assert r.status_code == 200, r.get_json()
    results = r.get_json()["results"]
    assert results[0]["status"] == "created"
    assert (results[1]["error"]["code"], results[1]["error"]["field"]) == ("invalid_region", "recipient.district")


def test_canonical_names_are_stored_answered_and_printed(client, merchant, services) -> None:
    body = shipment_body("CANON-1")
    body["recipient"].update(province="广东", city="深圳", district="南山")
    body["sender"].update(province="上海", city="市辖区", district="徐汇")
    r = client.post("/v1/shipments", json=body, headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    shp = r.get_json()
    assert {k: shp["recipient"][k] for k in ("province", "city", "district")} == {
        "province": "广东省", "city": "深圳市", "district": "南山区"}
    with services.session_factory() as s:
        row = s.get(Shipment, shp["id"])
        assert row is not None
        assert row.recipient_region == {"province": "广东省", "city": "深圳市", "district": "南山区",
                                        "province_code": "440000", "city_code": "440300",
                                        "district_code": "440305"}
        assert row.sender_region["district_code"] == "310104"
        assert row.sorting_code.startswith("755-W012-")  # routed by the canonical names
    label = client.get(f"/v1/shipments/{shp['id']}/label?format=pdf", headers=merchant.headers)
    assert label.status_code == 200
    text = pymupdf.open(stream=label.data, filetype="pdf")[0].get_text()
    assert "广东省深圳市南山区" in text and "上海市徐汇区" in text


def test_the_extra_file_reaches_the_api(fresh_env, tmp_path: Path) -> None:
    path = _extra(tmp_path, [("440000", "广东省", "440300", "深圳市", "440312", "前海区")])
    env = fresh_env(regions_extra_file=str(path))
    services = env.services()
    client = env.app().test_client()
    merchant = make_merchant(services)
    r = client.post("/v1/shipments", json=with_value("recipient.district", "前海区"), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["recipient"]["district"] == "前海区"
