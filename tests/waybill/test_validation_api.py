"""Input validation of the merchant API: every field of the shipment body, malformed requests, accepted phone
spellings, and a property test that no JSON body whatsoever makes the service answer 5xx."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RECIPIENT, SENDER, shipment_body

MISSING = object()
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def assert_error_shape(r: Any) -> dict[str, Any]:
    assert r.is_json, (r.status_code, r.content_type, r.get_data()[:200])
    body = r.get_json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict) and {"code", "message", "field"} <= set(err), err
    assert isinstance(err["code"], str) and SNAKE.match(err["code"]), err
    assert isinstance(err["message"], str) and err["message"].strip(), err
    assert err["field"] is None or isinstance(err["field"], str), err
    return err


def with_value(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A valid body (or a copy of ``base``) with the dotted ``path`` set to ``value`` (removed, for MISSING)."""
    body = copy.deepcopy(base if base is not None else shipment_body("VAL-1"))
    *parents, leaf = path.split(".")
    node = body
    for part in parents:
        node = node[part]
    if value is MISSING:
        del node[leaf]
    else:
        node[leaf] = value
    return body


def shown(value: Any) -> str | None:
    """The text of a submitted value that must not be echoed back (None when too short to check)."""
    if value is MISSING or value is None or isinstance(value, bool):
        return None
    text = value.strip() if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) >= 2 else None


def list_ids(client: Any, creds: Any) -> list[str]:
    r = client.get("/v1/shipments?limit=200", headers=creds.headers)
    assert r.status_code == 200
    return [s["id"] for s in r.get_json()["items"]]


PARTY_CASES: list[tuple[str, Any]] = [
    ("name", MISSING), ("name", None), ("name", 123), ("name", ["欧阳"]), ("name", ""), ("name", "   "),
    ("name", "名" * 51), ("name", "欧阳\x00娜娜"), ("name", "欧阳\u202e娜娜"), ("name", "欧阳\x1b[31m娜"),
    ("phone", MISSING), ("phone", None), ("phone", 13812345678), ("phone", ""), ("phone", "   "),
    ("phone", "12345"), ("phone", "1381234567a"), ("phone", "+1 415 555 0100"), ("phone", "12812345678"),
    ("phone", "138123456789"), ("phone", "138" + " " * 38 + "12345678"), ("phone", "138\x0712345678"),
    ("phone", "13812345678 ext 12"), ("phone", "(0213)4567890"),
    ("province", MISSING), ("province", 44), ("province", ""), ("province", "广" * 21), ("province", "广东\x01省"),
    ("city", MISSING), ("city", 5), ("city", ""), ("city", "深" * 31), ("city", "深圳\x1b市"),
    ("district", MISSING), ("district", 5), ("district", ""), ("district", "南" * 31), ("district", "南山\x7f区"),
    ("address", MISSING), ("address", 5), ("address", ""), ("address", "路" * 201), ("address", "科技园路\x001号"),
    ("address", {"street": "科技园路"}),
]

CASES: list[tuple[str, Any]] = [
    ("merchant_order_id", MISSING), ("merchant_order_id", None), ("merchant_order_id", 123),
    ("merchant_order_id", ""), ("merchant_order_id", "x" * 65), ("merchant_order_id", "ORD 1"),
    ("merchant_order_id", "订单一号"), ("merchant_order_id", "ORD\x00-1"), ("merchant_order_id", ["ORD-1"]),
    ("sender", MISSING), ("sender", "诸葛孔明"), ("recipient", MISSING), ("recipient", []), ("parcel", MISSING),
    ("parcel", 1500),
    *[(f"{role}.{field}", value) for role in ("sender", "recipient") for field, value in PARTY_CASES],
    ("parcel.weight_g", MISSING), ("parcel.weight_g", None), ("parcel.weight_g", True),
    ("parcel.weight_g", False), ("parcel.weight_g", 1.5), ("parcel.weight_g", 1500.0), ("parcel.weight_g", 0),
    ("parcel.weight_g", -1), ("parcel.weight_g", 70001), ("parcel.weight_g", 10**30), ("parcel.weight_g", "1500"),
    ("parcel.description", 5), ("parcel.description", "书" * 201), ("parcel.description", "书\x00籍"),
    ("parcel.description", ["书籍"]),
]


def _case_id(case: tuple[str, Any]) -> str:
    path, value = case
    label = "MISSING" if value is MISSING else repr(value)
    return f"{path}={label[:24]}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_field_is_422_naming_the_field(client, merchant, case):
    path, value = case
    r = client.post("/v1/shipments", json=with_value(path, value), headers=merchant.headers)
    assert r.status_code == 422, r.get_data(as_text=True)
    err = assert_error_shape(r)
    assert err["code"] == "validation_error"
    assert err["field"] == path
    echoed = shown(value)
    if echoed is not None:
        assert echoed not in r.get_data(as_text=True)
    assert list_ids(client, merchant) == []


@pytest.mark.parametrize("role", ["sender", "recipient"])
def test_unknown_province_is_422(client, merchant, role):
    r = client.post("/v1/shipments", json=with_value(f"{role}.province", "火星省"), headers=merchant.headers)
    assert r.status_code == 422, r.get_data(as_text=True)
    err = assert_error_shape(r)
    assert (err["code"], err["field"]) == ("invalid_region", f"{role}.province")
    assert "火星" not in err["message"]
    assert list_ids(client, merchant) == []


def test_boundary_values_are_accepted(client, merchant):
    """The rejections above are not simply "everything fails": the limits themselves pass."""
    bodies = [
        with_value("parcel.weight_g", 1), with_value("parcel.weight_g", 70000),
        with_value("merchant_order_id", "A" * 64), with_value("merchant_order_id", "a.b:c_d-1"),
        with_value("recipient.name", "名" * 50), with_value("recipient.address", "路" * 200),
        with_value("parcel.description", "书" * 200), with_value("parcel.description", None),
        with_value("parcel.description", MISSING), with_value("recipient.name", "  欧阳娜娜  "),
        with_value("recipient.name", "👩\u200d👩\u200d👧"),
    ]
    for i, body in enumerate(bodies):
        if body["merchant_order_id"] == "VAL-1":
            body["merchant_order_id"] = f"EDGE-{i}"
        r = client.post("/v1/shipments", json=body, headers=merchant.headers)
        assert r.status_code == 201, (i, r.get_data(as_text=True))
    assert len(list_ids(client, merchant)) == len(bodies)


@pytest.mark.parametrize("path, field", [
    ("surprise", "surprise"), ("recipient.email", "recipient.email"), ("sender.id_card", "sender.id_card"),
    ("parcel.volume_cm3", "parcel.volume_cm3"),
])
def test_unknown_fields_are_rejected_by_name(client, merchant, path, field):
    r = client.post("/v1/shipments", json=with_value(path, "13812345678"), headers=merchant.headers)
    assert r.status_code == 422, r.get_data(as_text=True)
    err = assert_error_shape(r)
    assert (err["code"], err["field"]) == ("validation_error", field)
    assert "13812345678" not in r.get_data(as_text=True)
    assert list_ids(client, merchant) == []


VALID_JSON = json.dumps(shipment_body("RAW-1"), ensure_ascii=False)
MALFORMED = [
    ("text", "hello", "text/plain"),
    ("json-as-text", VALID_JSON, "text/plain"),
    ("json-as-form", VALID_JSON, "application/x-www-form-urlencoded"),
    ("array", json.dumps([shipment_body("RAW-1")]), "application/json"),
    ("string", json.dumps("shipment"), "application/json"),
    ("number", "42", "application/json"),
    ("null", "null", "application/json"),
    ("invalid", '{"merchant_order_id": "RAW-1", ', "application/json"),
    ("trailing", VALID_JSON + "}", "application/json"),
    ("empty", "", "application/json"),
    ("no-type", VALID_JSON, None),
    ("bad-utf8", b'{"merchant_order_id": "\xff\xfe"}', "application/json"),
    ("multipart", "--x\r\n\r\n--x--", "multipart/form-data; boundary=x"),
]


@pytest.mark.parametrize("path", ["/v1/shipments", "/v1/shipments/batch", "/v1/shipments/search"])
@pytest.mark.parametrize("name, data, content_type", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_bodies_answer_4xx_in_contract_shape(client, merchant, path, name, data, content_type):
    kwargs: dict[str, Any] = {"data": data}
    if content_type is not None:
        kwargs["content_type"] = content_type
    r = client.post(path, headers=merchant.headers, **kwargs)
    assert 400 <= r.status_code < 500, (name, r.status_code, r.get_data(as_text=True))
    assert_error_shape(r)
    assert list_ids(client, merchant) == []


@pytest.mark.parametrize("path", ["/v1/shipments", "/v1/shipments/batch", "/v1/shipments/search"])
def test_deeply_nested_json_is_4xx_not_500(client, merchant, path):
    depth = 100_000
    r = client.post(path, data="[" * depth + "]" * depth, content_type="application/json",
                    headers=merchant.headers)
    assert 400 <= r.status_code < 500, r.status_code
    assert_error_shape(r)


def test_oversized_body_is_413_in_contract_shape(client, merchant):
    limit = client.application.extensions["waybill"].settings.max_request_bytes
    r = client.post("/v1/shipments", data=b"x" * (limit + 1), content_type="application/json",
                    headers=merchant.headers)
    assert r.status_code == 413
    assert assert_error_shape(r)["code"] == "payload_too_large"


@pytest.mark.parametrize("role, raw, masked", [
    ("recipient", "+86 138 1234 5678", "138******78"),
    ("recipient", "0086-13812345678", "138******78"),
    ("recipient", "８６１３８１２３４５６７８", "138******78"),
    ("recipient", "(021) 6432-1234", "021-******34"),
    ("recipient", "+86 21 6432 1234", "021-******34"),
    ("sender", "(021) 6432-1234", "021-******34"),
    ("sender", "+86 138 1234 5678", "138******78"),
])
def test_accepted_phone_spellings_are_normalised(client, merchant, role, raw, masked):
    r = client.post("/v1/shipments", json=shipment_body("PH-1", **{role: dict(RECIPIENT if role == "recipient"
                                                                             else SENDER, phone=raw)}),
                    headers=merchant.headers)
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.get_json()[role]["phone"] == masked
    if role == "recipient":
        # Stored under the normalised number: a search with the canonical spelling finds it.
        canonical = "13812345678" if masked.startswith("138") else "021-64321234"
        s = client.post("/v1/shipments/search", json={"recipient_phone": canonical}, headers=merchant.headers)
        assert [x["id"] for x in s.get_json()["items"]] == [r.get_json()["id"]]


# ------------------------------------------------------------------------------------------ property test

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
FIELD_PATHS = ["merchant_order_id", "sender", "recipient", "parcel", "parcel.weight_g", "parcel.description",
               *[f"{r}.{f}" for r in ("sender", "recipient")
                 for f in ("name", "phone", "province", "city", "district", "address")], "extra", "recipient.extra"]


@st.composite
def near_valid_bodies(draw: Any) -> dict[str, Any]:
    """A valid body with one field replaced by (or removed for) an arbitrary JSON value."""
    path = draw(st.sampled_from(FIELD_PATHS))
    plausible = st.one_of(st.text(min_size=1, max_size=60), st.integers(min_value=-5, max_value=70_005))
    value = draw(JSON_VALUES if "extra" in path else st.one_of(st.just(MISSING), JSON_VALUES, plausible))
    body = with_value(path, value)
    if path != "merchant_order_id":
        body["merchant_order_id"] = draw(st.from_regex(r"\AH-[A-Za-z0-9]{1,12}\Z"))
    return body


FREE_TEXT_PATHS = ["sender.name", "recipient.name", "recipient.city", "recipient.district", "recipient.address",
                   "sender.address", "parcel.description"]


@st.composite
def odd_text_bodies(draw: Any) -> dict[str, Any]:
    """A valid body whose free-text fields hold arbitrary text (mostly accepted: exercises masking and storage)."""
    body = shipment_body(draw(st.from_regex(r"\AT-[A-Za-z0-9]{1,12}\Z")))
    for path in draw(st.lists(st.sampled_from(FREE_TEXT_PATHS), min_size=1, max_size=3, unique=True)):
        body = with_value(path, draw(st.text(min_size=2, max_size=50)), base=body)
    return body


BODIES = st.one_of(JSON_VALUES, near_valid_bodies(), odd_text_bodies())
BATCH_BODIES = st.one_of(JSON_VALUES, st.fixed_dictionaries({"shipments": st.lists(BODIES, max_size=4)}),
                         st.dictionaries(st.sampled_from(["shipments", "extra"]), JSON_VALUES, max_size=2))


def _check_answer(r: Any) -> None:
    assert r.status_code < 500, (r.status_code, r.get_data(as_text=True))
    if r.status_code >= 400:
        assert_error_shape(r)
    else:
        assert r.is_json


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_no_json_body_makes_create_fail_with_5xx(client, merchant, body):
    # allow_nan: Python's json accepts NaN/Infinity, so a client may well send them.
    r = client.post("/v1/shipments", data=json.dumps(body), content_type="application/json",
                    headers=merchant.headers)
    _check_answer(r)
    if r.status_code == 201:
        assert set(r.get_json()) >= {"id", "waybill_no", "status", "recipient"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BATCH_BODIES)
def test_no_json_body_makes_batch_fail_with_5xx(client, merchant, body):
    r = client.post("/v1/shipments/batch", data=json.dumps(body), content_type="application/json",
                    headers=merchant.headers)
    _check_answer(r)
    if r.status_code == 200:
        results = r.get_json()["results"]
        assert [x["index"] for x in results] == list(range(len(body["shipments"])))
        for x in results:
            assert x["status"] in {"created", "error"}
            if x["status"] == "error":
                assert SNAKE.match(x["error"]["code"]) and x["error"]["message"]
