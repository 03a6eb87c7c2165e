"""What the service puts on a label besides the parties: carrier, order tail, pieces, 集包地, zoned time."""

from __future__ import annotations

import pymupdf
import pytest

from tests.conftest import make_merchant, shipment_body
from waybill.labels import order_tail
from waybill.models import Shipment
from waybill.routing import RoutingTable
from waybill.settings import SettingsError, load_settings
from waybill.web.app import create_app


def _label_text(client, merchant, sid: str, size: str = "100x150") -> str:
    r = client.get(f"/v1/shipments/{sid}/label?format=pdf&size={size}", headers=merchant.headers)
    assert r.status_code == 200
    return pymupdf.open(stream=r.data, filetype="pdf")[0].get_text()


def _create(client, merchant, order: str, **parcel) -> dict:
    body = shipment_body(order, parcel={"weight_g": 1500, **parcel})
    r = client.post("/v1/shipments", json=body, headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


@pytest.mark.parametrize("order_id, tail", [
    ("ORD-2026-A61207", "A61207"),
    ("A1", "A1"),
    ("3712345678901234567", "234567"),  # a Taobao-style 19-digit order number is not a phone
    ("JD123456789012", "789012"),
    ("13812345678", None),  # a mobile number as order number
    ("138-1234-5678", None),
    ("TB:8613812345678", None),
    ("021-64321234", None),  # landline with area code
    ("Z.64321234", None),  # a local landline number
    ("13812345678-1", None),  # a phone with a suffix: the run as written is the phone
])
def test_order_tail_never_completes_a_phone(order_id, tail):
    assert order_tail(order_id) == tail


def test_label_shows_carrier_order_tail_pieces_consolidation(client, merchant):
    shp = _create(client, merchant, "ORD-2026-A61207", pieces=2)
    assert shp["parcel"]["pieces"] == 2
    for size in ("100x150", "100x180", "76x130"):
        text = _label_text(client, merchant, shp["id"], size)
        for expected in ("隐私快递", "订单尾号 A61207", "件数: 2", "集包地 深圳转运中心", "UTC+8"):
            assert expected in text, (size, expected)
        # The sender is in 上海市 (a municipality): printed once.
        assert "上海市徐汇区" in text and "上海市上海市" not in text


def test_phone_shaped_order_number_prints_no_tail(client, merchant):
    shp = _create(client, merchant, "13912345678")
    text = _label_text(client, merchant, shp["id"])
    assert "订单尾号" not in text and "345678" not in text


def test_carrier_name_is_configurable(fresh_env):
    env = fresh_env(carrier_name="顺丰速运")
    services = env.services()
    client = create_app(env.settings, services_override=services).test_client()
    creds = make_merchant(services)
    shp = _create(client, creds, "C-1")
    assert "顺丰速运" in _label_text(client, creds, shp["id"])


@pytest.mark.parametrize("value", ["", "x" * 17, "A^XZ", "名\n字", "~DG"])
def test_carrier_name_validated(value):
    if value == "":
        assert load_settings({}, carrier_name=value).carrier_name == "隐私快递"  # unset: the default
        return
    with pytest.raises(SettingsError, match="WAYBILL_CARRIER_NAME"):
        load_settings({"WAYBILL_CARRIER_NAME": value})


@pytest.mark.parametrize("pieces", [0, 100, -1, "2", 1.5, True, None])
def test_bad_piece_count_names_the_field(client, merchant, pieces):
    body = shipment_body("BAD-P", parcel={"weight_g": 1500, "pieces": pieces})
    r = client.post("/v1/shipments", json=body, headers=merchant.headers)
    assert r.status_code in (400, 422)
    assert r.get_json()["error"]["field"] == "parcel.pieces"


def test_single_piece_keeps_the_idempotency_fingerprint(client, merchant):
    """A body without ``pieces`` and the same body with ``pieces: 1`` are the same request (retries across
    the upgrade that added the field find their shipment)."""
    headers = {**merchant.headers, "Idempotency-Key": "idem-pieces-1"}
    a = client.post("/v1/shipments", json=shipment_body("IDEM-P"), headers=headers)
    body = shipment_body("IDEM-P")
    body["parcel"] = {**body["parcel"], "pieces": 1}
    b = client.post("/v1/shipments", json=body, headers=headers)
    assert a.status_code == 201 and b.status_code in (200, 201)
    assert a.get_json()["id"] == b.get_json()["id"]
    body["parcel"]["pieces"] = 2
    assert client.post("/v1/shipments", json=body, headers=headers).status_code == 409


def test_shipment_routed_before_consolidation_is_routed_at_print(client, merchant, services):
    shp = _create(client, merchant, "OLD-1")
    with services.session_factory() as s:
        row = s.get(Shipment, shp["id"])
        assert row.consolidation == "深圳转运中心"
        row.consolidation = None  # as a shipment created before migration 0007 has it
        s.commit()
    assert "集包地 深圳转运中心" in _label_text(client, merchant, shp["id"])


def test_routing_table_consolidation_column():
    old = RoutingTable.from_csv_text("province,city,district,hub,station,area\n广东省,*,*,020,P001,00\n")
    assert old.route("广东省", "深圳市", "南山区").consolidation is None
    new = RoutingTable.from_csv_text("province,city,district,hub,station,area,consolidation\n"
                                     "广东省,*,*,020,P001,00,广州转运中心\n广东省,深圳市,*,755,C001,00,深圳转运中心\n")
    assert new.route("广东", "深圳", "南山区").consolidation == "深圳转运中心"
    assert new.route("广东省", "佛山市", "禅城区").consolidation == "广州转运中心"
    for bad in ("广州^XZ", "广", "广州 转运"[:1], "A" * 17):
        with pytest.raises(ValueError, match="集包地"):
            RoutingTable.from_csv_text(f"province,city,district,hub,station,area,consolidation\n"
                                       f"广东省,*,*,020,P001,00,{bad}\n")
    with pytest.raises(ValueError, match="列"):
        RoutingTable.from_csv_text("province,city,district,hub,station,area,consolidation\n广东省,*,*,020,P001,00\n")
    packaged = RoutingTable.load()
    assert all(route.consolidation for route in packaged.routes.values())


@pytest.mark.parametrize("order_id", ["X138123456789", "ORD913812345678", "A0216432123499"])
def test_order_number_spelling_a_party_phone_prints_no_tail(client, merchant, order_id):
    """Digits that contain the recipient's (13812345678) or sender's (021-64321234) phone, though not
    phone-shaped as a whole, are caught through the blind index (nothing is decrypted)."""
    shp = _create(client, merchant, order_id)
    text = _label_text(client, merchant, shp["id"])
    assert "订单尾号" not in text


def test_long_order_number_of_other_digits_keeps_its_tail(client, merchant):
    shp = _create(client, merchant, "JD202612019876543210")
    assert "订单尾号 543210" in _label_text(client, merchant, shp["id"])
