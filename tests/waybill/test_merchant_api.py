"""Merchant HTTP API against the contract (/work/shared/CONTRACT.md): create, idempotency, read, list,
search, cancel, batch, authentication, rate limiting, audit events and the OpenAPI document."""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from tests.conftest import RECIPIENT, SENDER, make_merchant, shipment_body
from waybill.models import AuditEvent, Merchant, Shipment
from waybill.services import build
from waybill.waybill_no import is_valid_waybill_no
from waybill.web.app import create_app

SHIPMENT_KEYS = {"id", "waybill_no", "status", "sorting_code", "merchant_order_id", "sender", "recipient",
                 "parcel", "created_at"}
PARTY_KEYS = {"name", "phone", "province", "city", "district", "address"}
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
UNSET = object()

# Every plaintext personal value the fixtures submit, raw and normalised.
PLAINTEXT = [RECIPIENT["name"], RECIPIENT["phone"], RECIPIENT["address"], SENDER["name"], SENDER["phone"],
             SENDER["address"], "64321234", "12345678", "+86 138-1234-5678", "书籍"]


def assert_error(r: Any, status: int, code: str, field: Any = UNSET) -> dict[str, Any]:
    """The contract's error shape: {"error": {"code", "message", "field"}}."""
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.is_json, r.content_type
    body = r.get_json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"code", "message", "field"} <= set(err), err
    assert err["code"] == code, err
    assert SNAKE.match(err["code"])
    assert isinstance(err["message"], str) and err["message"].strip()
    assert err["field"] is None or isinstance(err["field"], str)
    if field is not UNSET:
        assert err["field"] == field, err
    return err


def create(client: Any, creds: Any, order_id: str, headers: dict[str, str] | None = None, **changes: Any) -> Any:
    return client.post("/v1/shipments", json=shipment_body(order_id, **changes),
                       headers={**creds.headers, **(headers or {})})


def created(client: Any, creds: Any, order_id: str, **changes: Any) -> dict[str, Any]:
    r = create(client, creds, order_id, **changes)
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


def list_pages(client: Any, creds: Any, limit: int = 200) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    for _ in range(100):
        url = f"/v1/shipments?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = client.get(url, headers=creds.headers)
        assert r.status_code == 200, r.get_data(as_text=True)
        body = r.get_json()
        assert set(body) >= {"items", "next_cursor"}
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("pagination does not end")


def list_ids(client: Any, creds: Any) -> list[str]:
    return [s["id"] for page in list_pages(client, creds) for s in page]


def db_count(services: Any, model: Any, *where: Any) -> int:
    with services.session_factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def set_status(services: Any, shipment_id: str, status: str) -> None:
    with services.session_factory() as s:
        s.execute(update(Shipment).where(Shipment.id == shipment_id).values(status=status))
        s.commit()


# ------------------------------------------------------------------------------------------------ create


def test_create_returns_the_contract_shipment(client, merchant, services):
    before = datetime.now(UTC)
    r = create(client, merchant, "ORD-1")
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.is_json
    s = r.get_json()
    assert set(s) >= SHIPMENT_KEYS
    assert re.fullmatch(r"shp_[0-9A-Z]{26}", s["id"])
    assert is_valid_waybill_no(s["waybill_no"])
    assert s["status"] == "created"
    assert s["merchant_order_id"] == "ORD-1"
    assert s["sorting_code"] == services.routing.sorting_code(RECIPIENT["province"], RECIPIENT["city"],
                                                             RECIPIENT["district"])
    assert s["recipient"] == {"name": "欧***", "phone": "138******78", "province": "广东省", "city": "深圳市",
                              "district": "南山区", "address": "粤海街道****"}
    assert set(s["sender"]) == PARTY_KEYS
    assert s["sender"]["name"] == "诸***"
    assert s["sender"]["phone"] == "021-******34"
    assert s["sender"]["address"] == "漕溪北路****"
    assert (s["sender"]["province"], s["sender"]["city"], s["sender"]["district"]) == ("上海市", "上海市", "徐汇区")
    assert s["parcel"]["weight_g"] == 1500
    created_at = datetime.fromisoformat(s["created_at"].replace("Z", "+00:00"))
    assert created_at.tzinfo is not None
    assert before - timedelta(seconds=5) <= created_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert "no-store" in r.headers.get("Cache-Control", "")
    text = r.get_data(as_text=True)
    for value in PLAINTEXT:
        assert value not in text
    # GET answers the same shipment.
    g = client.get(f"/v1/shipments/{s['id']}", headers=merchant.headers)
    assert g.status_code == 200
    assert g.get_json() == s


def test_sorting_code_follows_the_recipient(client, merchant, services):
    recipient = dict(RECIPIENT, province="上海市", city="上海市", district="徐汇区")
    s = created(client, merchant, "ORD-SH", recipient=recipient)
    assert s["sorting_code"] == services.routing.sorting_code("上海市", "上海市", "徐汇区")
    assert s["sorting_code"] != services.routing.sorting_code(RECIPIENT["province"], RECIPIENT["city"],
                                                             RECIPIENT["district"])


def test_waybill_numbers_are_distinct(client, merchant):
    numbers = {created(client, merchant, f"WB-{i}")["waybill_no"] for i in range(5)}
    assert len(numbers) == 5
    assert all(is_valid_waybill_no(n) for n in numbers)


# ------------------------------------------------------------------------------------------- idempotency


def test_idempotency_same_key_same_body_returns_the_same_shipment(client, merchant):
    key = {"Idempotency-Key": "order-42-attempt"}
    r1 = create(client, merchant, "IK-1", headers=key)
    r2 = create(client, merchant, "IK-1", headers=key)
    assert r1.status_code == 201 and r2.status_code == 201, r2.get_data(as_text=True)
    assert r2.get_json()["id"] == r1.get_json()["id"]
    assert r2.get_json()["waybill_no"] == r1.get_json()["waybill_no"]
    assert list_ids(client, merchant) == [r1.get_json()["id"]]


def test_idempotency_same_key_different_body_conflicts(client, merchant):
    key = {"Idempotency-Key": "k-1"}
    first = create(client, merchant, "IK-1", headers=key).get_json()
    assert_error(create(client, merchant, "IK-2", headers=key), 409, "idempotency_conflict")
    # Same order id, different parcel: still a different body.
    assert_error(create(client, merchant, "IK-1", headers=key, parcel={"weight_g": 1501}), 409,
                 "idempotency_conflict")
    assert list_ids(client, merchant) == [first["id"]]


def test_idempotency_keys_are_per_merchant(client, merchant, other_merchant):
    key = {"Idempotency-Key": "shared-key"}
    a = create(client, merchant, "IK-1", headers=key)
    b = create(client, other_merchant, "IK-1", headers=key)
    assert a.status_code == 201 and b.status_code == 201, b.get_data(as_text=True)
    assert a.get_json()["id"] != b.get_json()["id"]
    # A different body under the same key is fine for the other merchant as well.
    c = create(client, other_merchant, "IK-2", headers={"Idempotency-Key": "only-mine"})
    assert c.status_code == 201
    assert list_ids(client, merchant) == [a.get_json()["id"]]
    assert sorted(list_ids(client, other_merchant)) == sorted([b.get_json()["id"], c.get_json()["id"]])


def test_idempotency_key_of_128_visible_ascii_chars_is_accepted(client, merchant):
    r = create(client, merchant, "IK-LONG", headers={"Idempotency-Key": "K" * 128})
    assert r.status_code == 201, r.get_data(as_text=True)


@pytest.mark.parametrize("bad_key", ["K" * 129, "clé", "a b", "", "tab\there"])
def test_invalid_idempotency_key_is_rejected(client, merchant, bad_key):
    r = create(client, merchant, "IK-BAD", headers={"Idempotency-Key": bad_key})
    assert_error(r, 422, "validation_error", "Idempotency-Key")
    assert list_ids(client, merchant) == []


# ------------------------------------------------------------------------------------ merchant order id


def test_merchant_order_id_is_unique_per_merchant(client, merchant, other_merchant):
    first = created(client, merchant, "ORD-DUP")
    assert_error(create(client, merchant, "ORD-DUP", recipient=dict(RECIPIENT, name="张三")), 409,
                 "duplicate_merchant_order_id", "merchant_order_id")
    # With an idempotency key it is a new request, but still the same order id.
    assert_error(create(client, merchant, "ORD-DUP", headers={"Idempotency-Key": "fresh"}), 409,
                 "duplicate_merchant_order_id")
    theirs = created(client, other_merchant, "ORD-DUP")
    assert theirs["id"] != first["id"]
    assert list_ids(client, merchant) == [first["id"]]
    assert list_ids(client, other_merchant) == [theirs["id"]]


# ----------------------------------------------------------------------------------- foreign / unknown


def test_foreign_unknown_and_malformed_ids_answer_the_same_404(client, merchant, other_merchant):
    mine = created(client, merchant, "ORD-MINE")
    ids = [mine["id"], "shp_" + "0" * 26, "shp_01ARZ3NDEKTSV4RRFFQ69G5FAV", "nope", "shp_123", "mch_" + "0" * 26,
           mine["id"].lower()]
    bodies = set()
    for sid in ids:
        for method, path in (("get", f"/v1/shipments/{sid}"), ("post", f"/v1/shipments/{sid}/cancel")):
            r = getattr(client, method)(path, headers=other_merchant.headers)
            assert_error(r, 404, "not_found", None)
            bodies.add(r.get_data())
    trailing = client.get("/v1/shipments/", headers=other_merchant.headers)
    assert_error(trailing, 404, "not_found", None)
    bodies.add(trailing.get_data())
    assert len(bodies) == 1, bodies
    # The owner's shipment was neither read nor cancelled by the other merchant.
    r = client.get(f"/v1/shipments/{mine['id']}", headers=merchant.headers)
    assert r.status_code == 200 and r.get_json()["status"] == "created"


def test_foreign_access_attempts_are_audited_as_denied(client, merchant, other_merchant, services):
    mine = created(client, merchant, "ORD-PROBE")
    actor = f"merchant:{other_merchant.id}"
    denied = (AuditEvent.actor == actor, AuditEvent.outcome == "denied")
    before = db_count(services, AuditEvent, *denied)
    assert client.get(f"/v1/shipments/{mine['id']}", headers=other_merchant.headers).status_code == 404
    assert client.post(f"/v1/shipments/{mine['id']}/cancel", headers=other_merchant.headers).status_code == 404
    assert db_count(services, AuditEvent, *denied) - before >= 2


def test_method_not_allowed_uses_the_error_shape(client, merchant):
    s = created(client, merchant, "ORD-405")
    r = client.delete(f"/v1/shipments/{s['id']}", headers=merchant.headers)
    assert_error(r, 405, "method_not_allowed")
    assert client.get(f"/v1/shipments/{s['id']}", headers=merchant.headers).status_code == 200


def test_list_and_search_never_show_other_merchants_shipments(client, merchant, other_merchant):
    mine = {created(client, merchant, f"M-{i}")["id"] for i in range(3)}
    theirs = {created(client, other_merchant, f"M-{i}")["id"] for i in range(2)}
    assert set(list_ids(client, merchant)) == mine
    assert set(list_ids(client, other_merchant)) == theirs
    r = client.post("/v1/shipments/search", json={"recipient_phone": RECIPIENT["phone"]},
                    headers=other_merchant.headers)
    assert r.status_code == 200
    assert {s["id"] for s in r.get_json()["items"]} == theirs


# ----------------------------------------------------------------------------------------------- list


def test_list_paginates_newest_first_without_gaps_or_duplicates(client, merchant, other_merchant):
    made = []
    for i in range(7):
        made.append(created(client, merchant, f"P-{i}")["id"])
        if i % 2:
            created(client, other_merchant, f"P-{i}")
        time.sleep(0.002)  # ids are time-ordered to the millisecond
    pages = list_pages(client, merchant, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [s["id"] for p in pages for s in p]
    assert seen == list(reversed(made))
    assert len(set(seen)) == 7
    for page in pages:
        for s in page:
            assert set(s) >= SHIPMENT_KEYS
            assert s["recipient"]["phone"] == "138******78"


def test_list_last_page_has_no_cursor_and_empty_list_is_fine(client, merchant):
    r = client.get("/v1/shipments", headers=merchant.headers)
    assert r.status_code == 200
    assert r.get_json() == {"items": [], "next_cursor": None}
    created(client, merchant, "ONE")
    time.sleep(0.002)
    created(client, merchant, "TWO")
    body = client.get("/v1/shipments?limit=2", headers=merchant.headers).get_json()
    assert len(body["items"]) == 2 and body["next_cursor"] is None
    body = client.get("/v1/shipments?limit=1", headers=merchant.headers).get_json()
    assert [s["merchant_order_id"] for s in body["items"]] == ["TWO"] and body["next_cursor"]
    body = client.get(f"/v1/shipments?limit=1&cursor={body['next_cursor']}", headers=merchant.headers).get_json()
    assert [s["merchant_order_id"] for s in body["items"]] == ["ONE"]


@pytest.mark.parametrize("cursor", ["!!!", "abc", "c2hwX2JhZA", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "%FF%FE",
                                    "5pys5ZOB"])
def test_bad_cursor_is_422(client, merchant, cursor):
    created(client, merchant, "C-1")
    assert_error(client.get(f"/v1/shipments?cursor={cursor}", headers=merchant.headers), 422,
                 "validation_error", "cursor")


@pytest.mark.parametrize("limit", ["0", "10000", "abc", "-1", "1.5", "", "201", " 5", "0x10"])
def test_bad_limit_is_422(client, merchant, limit):
    assert_error(client.get(f"/v1/shipments?limit={limit}", headers=merchant.headers), 422,
                 "validation_error", "limit")


@pytest.mark.parametrize("limit", ["²", "9" * 5000])
def test_unicode_digit_or_huge_limit_is_422_not_500(client, merchant, limit):
    assert_error(client.get("/v1/shipments", query_string={"limit": limit}, headers=merchant.headers), 422,
                 "validation_error", "limit")


@pytest.mark.parametrize("query, field", [("foo=1", "foo"), ("limit=3&offset=2", "offset"),
                                          ("merchant_id=x", "merchant_id")])
def test_unknown_query_parameter_is_422(client, merchant, query, field):
    assert_error(client.get(f"/v1/shipments?{query}", headers=merchant.headers), 422, "validation_error", field)


# --------------------------------------------------------------------------------------------- search


def test_search_by_recipient_phone_normalises_and_stays_within_the_merchant(client, merchant, other_merchant):
    hits = {created(client, merchant, "S-1")["id"],
            created(client, merchant, "S-2", recipient=dict(RECIPIENT, phone="+86 138 1234 5678"))["id"]}
    created(client, merchant, "S-3", recipient=dict(RECIPIENT, phone="13912345678"))
    created(client, merchant, "S-4", sender=dict(SENDER, phone="13812345678"),
            recipient=dict(RECIPIENT, phone="13712345678"))  # the phone as sender only: not a hit
    created(client, other_merchant, "S-1")
    r = client.post("/v1/shipments/search", json={"recipient_phone": "+86 138-1234-5678"},
                    headers=merchant.headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert {s["id"] for s in body["items"]} == hits
    assert len(body["items"]) == 2
    assert all(s["recipient"]["phone"] == "138******78" for s in body["items"])
    assert "13812345678" not in r.get_data(as_text=True)
    r = client.post("/v1/shipments/search", json={"recipient_phone": "13600000000"}, headers=merchant.headers)
    assert r.status_code == 200 and r.get_json()["items"] == []


def test_search_drops_blind_index_false_positives(base_env, session_factory):
    # With a 16-bit blind index a colliding number is quick to find; the search must still only answer exact
    # matches (candidates are decrypted and compared).
    settings = dataclasses.replace(base_env.settings, blind_index_bits=16)
    svc = build(settings, engine=base_env.engine, session_factory=session_factory)
    client = create_app(settings, services_override=svc).test_client()
    m = make_merchant(svc, "盲索引商户")
    from waybill.phone_index import phone_index

    target = phone_index(svc.codec, m.id, "recipient", "13812345678")
    collider = next(n for n in (f"139{i:08d}" for i in range(10**8))
                    if phone_index(svc.codec, m.id, "recipient", n) == target)
    hit = created(client, m, "BI-1")
    created(client, m, "BI-2", recipient=dict(RECIPIENT, phone=collider))
    r = client.post("/v1/shipments/search", json={"recipient_phone": "13812345678"}, headers=m.headers)
    assert r.status_code == 200
    assert [s["id"] for s in r.get_json()["items"]] == [hit["id"]]


@pytest.mark.parametrize("body, field", [
    ({"recipient_phone": "12345"}, "recipient_phone"),
    ({"recipient_phone": 13812345678}, "recipient_phone"),
    ({}, "recipient_phone"),
    ({"recipient_phone": "13812345678", "name": "x"}, "recipient_phone"),
    ({"recipient_phone": "13812345678", "limit": 0}, "limit"),
    ({"recipient_phone": "13812345678", "limit": True}, "limit"),
])
def test_search_rejects_bad_bodies(client, merchant, body, field):
    assert_error(client.post("/v1/shipments/search", json=body, headers=merchant.headers), 422,
                 "validation_error", field)


# --------------------------------------------------------------------------------------------- cancel


def test_cancel_created_shipment_and_cancel_again_is_idempotent(client, merchant):
    s = created(client, merchant, "X-1")
    r = client.post(f"/v1/shipments/{s['id']}/cancel", headers=merchant.headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    out = r.get_json()
    assert set(out) >= SHIPMENT_KEYS
    assert out["id"] == s["id"] and out["status"] == "cancelled"
    assert out["waybill_no"] == s["waybill_no"]
    assert client.get(f"/v1/shipments/{s['id']}", headers=merchant.headers).get_json()["status"] == "cancelled"
    again = client.post(f"/v1/shipments/{s['id']}/cancel", headers=merchant.headers)
    assert again.status_code == 200
    assert again.get_json()["status"] == "cancelled"


def test_cancel_printed_shipment_is_allowed(client, merchant, services):
    s = created(client, merchant, "X-P")
    set_status(services, s["id"], "printed")
    r = client.post(f"/v1/shipments/{s['id']}/cancel", headers=merchant.headers)
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"


@pytest.mark.parametrize("status", ["delivered", "in_transit", "out_for_delivery"])
def test_cancel_after_pickup_is_409(client, merchant, services, status):
    s = created(client, merchant, "X-D")
    set_status(services, s["id"], status)
    assert_error(client.post(f"/v1/shipments/{s['id']}/cancel", headers=merchant.headers), 409, "invalid_status")
    assert client.get(f"/v1/shipments/{s['id']}", headers=merchant.headers).get_json()["status"] == status


# ---------------------------------------------------------------------------------------------- batch


def post_batch(client: Any, creds: Any, items: Any) -> Any:
    return client.post("/v1/shipments/batch", json={"shipments": items}, headers=creds.headers)


def test_batch_items_stand_or_fail_alone_in_input_order(client, merchant):
    bad_phone = shipment_body("B-2", recipient=dict(RECIPIENT, phone="12345"))
    r = post_batch(client, merchant, [shipment_body("B-1"), shipment_body("B-1"), bad_phone])
    assert r.status_code == 200, r.get_data(as_text=True)
    results = r.get_json()["results"]
    assert [x["index"] for x in results] == [0, 1, 2]
    assert [x["status"] for x in results] == ["created", "error", "error"]
    assert set(results[0]["shipment"]) >= SHIPMENT_KEYS
    assert results[0]["shipment"]["merchant_order_id"] == "B-1"
    assert results[0]["shipment"]["recipient"]["phone"] == "138******78"
    assert is_valid_waybill_no(results[0]["shipment"]["waybill_no"])
    assert "error" not in results[0] or results[0]["error"] is None
    assert results[1]["error"]["code"] == "duplicate_merchant_order_id"
    assert results[1]["error"]["field"] == "merchant_order_id"
    assert results[2]["error"]["code"] == "validation_error"
    assert results[2]["error"]["field"] == "recipient.phone"
    assert "12345" not in results[2]["error"]["message"]
    for x in results[1:]:
        assert x.get("shipment") is None
        assert isinstance(x["error"]["message"], str) and x["error"]["message"]
    assert list_ids(client, merchant) == [results[0]["shipment"]["id"]]


def test_batch_failures_first_do_not_stop_later_items(client, merchant, other_merchant):
    existing = created(client, merchant, "EXIST")
    created(client, other_merchant, "B-OK-1")  # another merchant's order id does not collide
    items = [
        shipment_body("B-BAD", parcel={"weight_g": 0}),
        shipment_body("EXIST"),
        shipment_body("B-PROV", recipient=dict(RECIPIENT, province="火星省")),
        "not an object",
        shipment_body("B-OK-1"),
        shipment_body("B-OK-2", recipient=dict(RECIPIENT, phone="0086-13912345678")),
    ]
    r = post_batch(client, merchant, items)
    assert r.status_code == 200, r.get_data(as_text=True)
    results = r.get_json()["results"]
    assert [x["index"] for x in results] == list(range(6))
    assert [x["status"] for x in results] == ["error", "error", "error", "error", "created", "created"]
    assert [x["error"]["field"] for x in results[:3]] == ["parcel.weight_g", "merchant_order_id",
                                                           "recipient.province"]
    assert results[1]["error"]["code"] == "duplicate_merchant_order_id"
    assert results[3]["error"]["code"] == "validation_error"
    assert results[5]["shipment"]["recipient"]["phone"] == "139******78"
    ids = {x["shipment"]["id"] for x in results[4:]}
    assert set(list_ids(client, merchant)) == ids | {existing["id"]}


def test_batch_duplicate_across_internal_chunks_is_caught(client, merchant, services):
    items = [shipment_body(f"CH-{i}") for i in range(300)]
    items[280] = shipment_body("CH-3")
    results = post_batch(client, merchant, items).get_json()["results"]
    assert [x["index"] for x in results] == list(range(300))
    errors = [x["index"] for x in results if x["status"] == "error"]
    assert errors == [280]
    assert results[280]["error"]["code"] == "duplicate_merchant_order_id"
    assert db_count(services, Shipment, Shipment.merchant_id == merchant.id) == 299


def test_batch_of_1000_valid_items_succeeds(client, merchant, services):
    items = [shipment_body(f"BULK-{i:04d}") for i in range(1000)]
    r = post_batch(client, merchant, items)
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    results = r.get_json()["results"]
    assert len(results) == 1000
    assert [x["index"] for x in results] == list(range(1000))
    assert all(x["status"] == "created" for x in results)
    assert [x["shipment"]["merchant_order_id"] for x in results] == [f"BULK-{i:04d}" for i in range(1000)]
    assert len({x["shipment"]["id"] for x in results}) == 1000
    assert len({x["shipment"]["waybill_no"] for x in results}) == 1000
    assert db_count(services, Shipment, Shipment.merchant_id == merchant.id) == 1000
    assert db_count(services, AuditEvent, AuditEvent.action == "shipment.create",
                    AuditEvent.object_id.in_([x["shipment"]["id"] for x in results[:50]])) == 50
    pages = list_pages(client, merchant, limit=200)
    assert [len(p) for p in pages] == [200] * 5


@pytest.mark.parametrize("body", [
    {"shipments": [shipment_body(f"T-{i}") for i in range(1001)]},
    {"shipments": []},
    {"shipments": None},
    {"shipments": shipment_body("T-1")},
    {},
    {"shipments": [shipment_body("T-1")], "extra": 1},
])
def test_batch_envelope_errors_write_nothing(client, merchant, services, body):
    r = client.post("/v1/shipments/batch", json=body, headers=merchant.headers)
    assert_error(r, 422, "validation_error", "shipments")
    assert db_count(services, Shipment, Shipment.merchant_id == merchant.id) == 0


# ----------------------------------------------------------------------------------------------- auth


def _auth_variants(creds: Any) -> list[dict[str, str]]:
    _, key_id, secret = creds.api_key.split("_", 2)
    wrong_secret = ("A" if secret[0] != "A" else "B") + secret[1:]
    return [
        {},
        {"Authorization": ""},
        {"Authorization": f"Basic {creds.api_key}"},
        {"Authorization": creds.api_key},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Bearer wbk_0123456789abcdef_" + "x" * 43},
        {"Authorization": f"Bearer wbk_{key_id}_{wrong_secret}"},
        {"Authorization": f"Bearer {creds.api_key}x"},
        {"Authorization": f"Bearer wbk_{key_id}"},
        {"Authorization": "Bearer " + "wbk_" + "a" * 600},
    ]


def test_failed_authentication_is_401_and_audited(client, merchant, services):
    variants = _auth_variants(merchant)
    before = db_count(services, AuditEvent, AuditEvent.action == "auth.failed")
    for i, headers in enumerate(variants):
        for method, path, kwargs in (("get", "/v1/shipments", {}),
                                     ("post", "/v1/shipments", {"json": shipment_body(f"A-{i}")})):
            r = getattr(client, method)(path, headers=headers, **kwargs)
            assert_error(r, 401, "unauthenticated")
            assert r.headers.get("WWW-Authenticate", "").lower().startswith("bearer")
    after = db_count(services, AuditEvent, AuditEvent.action == "auth.failed")
    assert after - before == 2 * len(variants)
    assert db_count(services, Shipment, Shipment.merchant_id == merchant.id) == 0
    with services.session_factory() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.failed")).all()
    assert all(e.outcome == "denied" and e.actor == "anonymous" for e in events)
    assert client.get("/v1/shipments", headers=merchant.headers).status_code == 200


def test_disabled_merchant_is_401_and_audited(client, merchant, services):
    s = created(client, merchant, "DIS-1")
    with services.session_factory() as session:
        session.execute(update(Merchant).where(Merchant.id == merchant.id).values(disabled=True))
        session.commit()
    before = db_count(services, AuditEvent, AuditEvent.action == "auth.failed")
    assert_error(client.get("/v1/shipments", headers=merchant.headers), 401, "unauthenticated")
    assert_error(client.get(f"/v1/shipments/{s['id']}", headers=merchant.headers), 401, "unauthenticated")
    assert_error(create(client, merchant, "DIS-2"), 401, "unauthenticated")
    assert db_count(services, AuditEvent, AuditEvent.action == "auth.failed") - before == 3
    assert db_count(services, Shipment, Shipment.merchant_id == merchant.id) == 1


def test_bearer_scheme_is_case_insensitive(client, merchant):
    r = client.get("/v1/shipments", headers={"Authorization": f"bearer {merchant.api_key}"})
    assert r.status_code == 200


# ------------------------------------------------------------------------------------------ rate limit


def test_rate_limit_answers_429_with_retry_after(base_env, session_factory):
    settings = dataclasses.replace(base_env.settings, merchant_rate_per_s=0.5, merchant_burst=2)
    svc = build(settings, engine=base_env.engine, session_factory=session_factory)
    client = create_app(settings, services_override=svc).test_client()
    m = make_merchant(svc, "限流商户")
    other = make_merchant(svc, "另一商户")
    assert client.get("/v1/shipments", headers=m.headers).status_code == 200
    assert client.post("/v1/shipments", json=shipment_body("RL-1"), headers=m.headers).status_code == 201
    r = client.post("/v1/shipments", json=shipment_body("RL-2"), headers=m.headers)
    assert_error(r, 429, "rate_limited")
    retry = r.headers.get("Retry-After")
    assert retry is not None and retry.isdigit() and int(retry) >= 1, retry
    assert int(retry) <= 5  # one token at 0.5/s is about two seconds away
    assert_error(client.get("/v1/shipments", headers=m.headers), 429, "rate_limited")
    # Per merchant: another merchant is unaffected.
    assert client.get("/v1/shipments", headers=other.headers).status_code == 200
    assert db_count(svc, Shipment, Shipment.merchant_id == m.id) == 1


# ---------------------------------------------------------------------------------------------- audit


def test_create_is_audited_with_field_names_only(client, merchant, services):
    s = created(client, merchant, "AUD-1")
    with services.session_factory() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "shipment.create",
                                                          AuditEvent.object_id == s["id"])).all()
    assert len(events) == 1
    ev = events[0]
    assert ev.object_type == "shipment"
    assert ev.outcome == "ok"
    assert merchant.id in ev.actor
    assert ev.fields, "the event must name the personal-data fields written"
    assert set(ev.fields) >= {"recipient.name", "recipient.phone", "recipient.address"}
    for name in ev.fields:
        assert re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", name), name


def test_audit_events_carry_no_personal_data(client, merchant, other_merchant, services):
    s = created(client, merchant, "AUD-2")
    created(client, merchant, "AUD-3", headers={"Idempotency-Key": "aud-3"})
    post_batch(client, merchant, [shipment_body("AUD-4"), shipment_body("AUD-5", recipient=dict(RECIPIENT,
                                                                                              phone="12345"))])
    client.get(f"/v1/shipments/{s['id']}", headers=merchant.headers)
    client.get(f"/v1/shipments/{s['id']}", headers=other_merchant.headers)
    client.get("/v1/shipments", headers=merchant.headers)
    client.post("/v1/shipments/search", json={"recipient_phone": "+86 138-1234-5678"}, headers=merchant.headers)
    client.post(f"/v1/shipments/{s['id']}/cancel", headers=merchant.headers)
    client.get("/v1/shipments", headers={"Authorization": "Bearer " + RECIPIENT["phone"]})
    with services.session_factory() as session:
        events = session.scalars(select(AuditEvent)).all()
        actions = {e.action for e in events}
        assert {"shipment.create", "shipment.read", "shipment.search", "shipment.cancel", "auth.failed"} <= actions
        dump = "\n".join(str(getattr(e, c.key)) for e in events for c in AuditEvent.__table__.columns)
    for value in PLAINTEXT + ["13812345678"]:
        assert value not in dump, value


# -------------------------------------------------------------------------------------------- openapi


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/")
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _resolve(doc, schema["allOf"][0])
    return schema


def test_openapi_document_describes_the_merchant_api(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["openapi"].startswith("3.1")
    routes = {(re.sub(r"\{[^}]+\}", "{}", path), method) for path, ops in doc["paths"].items() for method in ops}
    for route in [("/v1/shipments", "post"), ("/v1/shipments/batch", "post"), ("/v1/shipments/{}", "get"),
                  ("/v1/shipments", "get"), ("/v1/shipments/{}/cancel", "post"), ("/v1/shipments/search", "post")]:
        assert route in routes, route
    # The paths use the methods the app serves, not others.
    assert ("/v1/shipments/{}", "post") not in routes
    create_op = doc["paths"]["/v1/shipments"]["post"]
    body = create_op["requestBody"]["content"]["application/json"]["schema"]
    assert body.get("$ref", "").endswith("/ShipmentIn")
    shipment_in = _resolve(doc, body)
    assert shipment_in["additionalProperties"] is False
    assert {"merchant_order_id", "sender", "recipient", "parcel"} <= set(shipment_in["required"])
    recipient = _resolve(doc, shipment_in["properties"]["recipient"])
    assert {"name", "phone", "province", "city", "district", "address"} <= set(recipient["properties"])
    assert recipient["additionalProperties"] is False
    assert "201" in create_op["responses"]
    list_op = doc["paths"]["/v1/shipments"]["get"]
    assert {p["name"] for p in list_op["parameters"] if p["in"] == "query"} >= {"limit", "cursor"}
    assert "bearer" in {k for sec in create_op["security"] for k in sec}


def test_openapi_schema_matches_runtime_rejection_of_unknown_fields(client, merchant):
    doc = client.get("/openapi.json").get_json()
    assert doc["components"]["schemas"]["ShipmentIn"]["additionalProperties"] is False
    r = client.post("/v1/shipments", json=shipment_body("OA-1", surprise=True), headers=merchant.headers)
    assert_error(r, 422, "validation_error", "surprise")
