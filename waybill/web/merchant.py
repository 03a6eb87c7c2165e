"""Merchant API: create (single, batch), read, list, search, cancel shipments."""

from __future__ import annotations

import math
import re
from typing import Any

from flask import Blueprint, Response, request

from waybill import masked, shipments
from waybill.crypto.vault import FieldCodec
from waybill.errors import ValidationFailed
from waybill.models import Shipment
from waybill.permissions import Permission
from waybill.schemas import (
    BatchIn,
    BatchItemError,
    BatchOut,
    BatchResult,
    ConsentsOut,
    ParcelOut,
    PartyOut,
    ShipmentIn,
    ShipmentOut,
    ShipmentPage,
    parse,
)
from waybill.shipment_rows import ShipmentRow
from waybill.web import query
from waybill.web.auth import authenticate, charge, hold_heavy_slot, requires
from waybill.web.context import db_session, services
from waybill.web.errors import classify
from waybill.web.openapi import operation, respond

bp = Blueprint("merchant", __name__)
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
TAGS = ("merchant",)


def json_body() -> Any:
    if not request.is_json:
        raise ValidationFailed("请求体须为 JSON（Content-Type: application/json）", field=None)
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # absurdly deep nesting: json.loads gives up before Flask can catch it
        data = None
    if data is None:
        raise ValidationFailed("请求体不是有效的 JSON", field=None)
    return data


def party_out(masked: dict[str, str], region: dict[str, str]) -> PartyOut:
    """A party as merchants see it: masked name, phone and address, and the (unencrypted) region."""
    return PartyOut(name=masked["name"], phone=masked["phone"], province=region["province"], city=region["city"],
                    district=region["district"], address=masked["address"])


def shipment_out(s: Shipment | ShipmentRow, codec: FieldCodec | None = None) -> ShipmentOut:
    """The merchant view: masked parties only (same masks as the printed label), decrypted from the snapshot.

    ``s`` is a stored shipment or a row a batch has just written. ``codec`` defaults to the request's
    services' (views pass nothing).
    """
    codec = codec or services().codec
    parties: dict[str, PartyOut | None] = {}
    for role in ("sender", "recipient"):
        blob = getattr(s, f"{role}_masked_ct")
        # A destroyed party has no snapshot left (and no key to open one): null, never an error.
        parties[role] = None if blob is None or getattr(s, f"{role}_destroyed_at") is not None else party_out(
            masked.unseal(codec, s.id, role, blob), getattr(s, f"{role}_region"))
    gone = sum(p is None for p in parties.values())
    return ShipmentOut.model_validate({
        "id": s.id, "waybill_no": s.waybill_no, "status": s.status, "sorting_code": s.sorting_code,
        "merchant_order_id": s.merchant_order_id, **parties,
        "parcel": ParcelOut(weight_g=s.weight_g, pieces=s.pieces, has_description=s.description_ct is not None),
        "created_at": s.created_at, "ended_at": s.ended_at,
        "personal_data": "destroyed" if gone == 2 else "partially_destroyed" if gone else "present",
        "consents": None if s.notice_version is None else ConsentsOut(
            notice_version=s.notice_version, purposes=list(s.consent_purposes or [])),
    })


@bp.post("/v1/shipments")
@operation(summary="创建运单", tags=TAGS, body=ShipmentIn, response=ShipmentOut, status=201,
           headers=(("Idempotency-Key", "幂等键：相同键与相同内容返回同一运单"),), errors=(409,))
@requires(Permission.SHIPMENT_CREATE)
def create() -> Response:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise ValidationFailed("Idempotency-Key 须为 1-128 个可见 ASCII 字符", field="Idempotency-Key")
    data = parse(ShipmentIn, json_body())
    shipment, created = shipments.create_shipment(db_session(), services().shipment_deps, authenticate(), data,
                                                  idempotency_key=key)
    resp = respond(ShipmentOut, shipment_out(shipment))
    if not created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


def batch_cost(items: int, item_cost: float) -> int:
    """What a batch's items cost on top of the request: ``ceil(items * item_cost)`` units (a create costs 1;
    the default 0.5 is the batch discount: the items share one request, authentication and transaction)."""
    return math.ceil(items * item_cost)


@bp.post("/v1/shipments/batch")
@operation(summary="批量创建运单（最多 1000 条，逐条成败；按条计入限额）", tags=TAGS, body=BatchIn,
           response=BatchOut)
@requires(Permission.SHIPMENT_CREATE)
def create_batch() -> Response:
    principal = authenticate()
    # First of all, before the body is even parsed (up to 8 MiB of JSON): a merchant with its allowed number of
    # batches in flight is refused at once, so a flood of batches costs the service next to nothing.
    hold_heavy_slot(principal)
    body = json_body()
    settings = services().settings
    limit = settings.batch_max_items
    if not isinstance(body, dict) or set(body) != {"shipments"}:
        raise ValidationFailed("请求体须为仅包含 shipments 的对象", field="shipments")
    items = body["shipments"]
    if not isinstance(items, list) or not 1 <= len(items) <= limit:
        raise ValidationFailed(f"shipments 须为 1-{limit} 个元素的数组", field="shipments")
    cost = batch_cost(len(items), settings.batch_item_cost)
    # The request's own unit and the items' must fit in one window, or it could never pass however long the
    # merchant waited: that is a 422 naming the field, not a 429 to retry.
    room = services().merchant_limiter.burst - 1
    if cost > room:
        raise ValidationFailed(f"本商户单批最多 {int(room // settings.batch_item_cost)} 条", field="shipments")
    # Before any item is validated or written: a batch the budget cannot cover is refused whole.
    charge(principal, cost)
    parsed: list[ShipmentIn | ValidationFailed] = []
    for item in items:
        try:
            parsed.append(parse(ShipmentIn, item))
        except ValidationFailed as exc:
            parsed.append(exc)
    results: list[BatchResult] = []
    for res in shipments.create_batch(db_session(), services().shipment_deps, principal, parsed):
        if res.shipment is not None:
            results.append(BatchResult(index=res.index, status="created", shipment=shipment_out(res.shipment)))
        else:
            assert res.error is not None
            _, code = classify(res.error)
            results.append(BatchResult(index=res.index, status="error", error=BatchItemError(
                code=code, message=res.error.message, field=res.error.field)))
    return respond(BatchOut, BatchOut(results=results))


@bp.get("/v1/shipments/<shp:shipment_id>")
@operation(summary="查询运单（脱敏）", tags=TAGS, response=ShipmentOut, errors=(404,))
@requires(Permission.SHIPMENT_READ)
def get(shipment_id: str) -> Response:
    return respond(ShipmentOut, shipment_out(shipments.get_shipment(db_session(), authenticate(), shipment_id)))


@bp.get("/v1/shipments")
@operation(summary="列出本商户运单（游标分页）", tags=TAGS, response=ShipmentPage,
           query=(("limit", lambda st: {"type": "integer", "minimum": 1, "maximum": st.page_max, "default": 50},
                    "每页条数"),
                  ("cursor", "string", "上一页返回的 next_cursor")),
           errors=(422,))
@requires(Permission.SHIPMENT_LIST)
def list_() -> Response:
    query.only("limit", "cursor")
    rows, cursor = shipments.list_shipments(db_session(), services().shipment_deps, authenticate(),
                                            limit=query.limit(), cursor=request.args.get("cursor") or None)
    return respond(ShipmentPage, ShipmentPage(items=[shipment_out(r) for r in rows], next_cursor=cursor))


@bp.post("/v1/shipments/search")
@operation(summary="按收件人电话查找本商户运单（电话放在请求体中，不进日志）", tags=TAGS,
           response=ShipmentPage, errors=(422,))
@requires(Permission.SHIPMENT_LIST)
def search() -> Response:
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"recipient_phone", "limit"} or "recipient_phone" not in body:
        raise ValidationFailed("请求体须为包含 recipient_phone 的对象", field="recipient_phone")
    phone, limit = body["recipient_phone"], body.get("limit", 50)
    if not isinstance(phone, str):
        raise ValidationFailed("应为字符串", field="recipient_phone")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= services().settings.page_max:
        raise ValidationFailed("limit 超出范围", field="limit")
    rows, _ = shipments.list_shipments(db_session(), services().shipment_deps, authenticate(), limit=limit,
                                       recipient_phone=phone)
    return respond(ShipmentPage, ShipmentPage(items=[shipment_out(r) for r in rows], next_cursor=None))


@bp.post("/v1/shipments/<shp:shipment_id>/cancel")
@operation(summary="取消运单（揽收前）", tags=TAGS, response=ShipmentOut, errors=(404, 409))
@requires(Permission.SHIPMENT_CANCEL)
def cancel(shipment_id: str) -> Response:
    return respond(ShipmentOut, shipment_out(shipments.cancel_shipment(db_session(), authenticate(), shipment_id,
                                                                        keyring=services().subject_keys)))
