"""Retention's HTTP: the destruction records (privacy officers, auditors) and legal holds (privacy officers)."""

from __future__ import annotations

from flask import Blueprint, Flask, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from waybill import lifecycle
from waybill.models import DestructionRecord, LegalHold
from waybill.permissions import Permission
from waybill.schemas import OutModel, UtcTimestamp, parse
from waybill.web import query
from waybill.web.auth import authenticate, requires
from waybill.web.context import db_session
from waybill.web.merchant import json_body
from waybill.web.openapi import operation, respond

bp = Blueprint("retention", __name__)
TAGS = ("privacy",)


class DestructionOut(OutModel):
    """From :class:`waybill.models.DestructionRecord` (销毁记录)."""

    id: str
    at: UtcTimestamp
    reason: str = Field(description="retention 保存期限届满；subject_request 本人删除请求")
    method: str
    shipments: int = Field(description="本次销毁个人信息的运单数")
    key_ids: list[str] = Field(description="被销毁的密钥标识（密钥库中的期间密钥、运单当事人的数据密钥）")
    actor: str


class DestructionPage(OutModel):
    items: list[DestructionOut]
    next_cursor: str | None


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
    shipment_ids: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    incident_id: str | None = Field(default=None, min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=lifecycle.HOLD_REASON_MAX)


class HoldOut(OutModel):
    id: str
    reason: str
    incident_id: str | None
    shipments: int = Field(description="被保全的运单数")
    created_at: UtcTimestamp
    released_at: UtcTimestamp | None
    status: str = Field(description="active 保全中（保存期限暂停）；released 已解除")


def install(app: Flask) -> None:
    app.register_blueprint(bp)


def _hold_out(hold: LegalHold) -> HoldOut:
    return HoldOut(id=hold.id, reason=hold.reason, incident_id=hold.incident_id,
                   shipments=lifecycle.hold_shipment_count(db_session(), hold.id), created_at=hold.created_at,
                   released_at=hold.released_at, status="active" if hold.released_at is None else "released")


@bp.get("/v1/privacy/destructions")
@operation(summary="销毁记录：何时、因何、以何种方式、多少运单、哪些密钥、由谁（新的在前，游标分页）", tags=TAGS,
           response=DestructionPage, errors=(422,),
           query=(("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "每页条数"),
                  ("cursor", {"type": "string", "pattern": "^dsr_[0-9A-HJKMNP-TV-Z]{26}$"}, "上一页的 next_cursor")))
@requires(Permission.DESTRUCTION_READ)
def destructions() -> Response:
    query.only("limit", "cursor")
    limit, cursor = query.limit(maximum=200), query.id_cursor("dsr")
    stmt = select(DestructionRecord).order_by(DestructionRecord.id.desc())  # ids grow with time
    if cursor is not None:
        stmt = stmt.where(DestructionRecord.id < cursor)
    rows = list(db_session().scalars(stmt.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return respond(DestructionPage, DestructionPage(items=[DestructionOut.model_validate(r) for r in rows],
                                                    next_cursor=rows[-1].id if more and rows else None))


@bp.post("/v1/privacy/holds")
@operation(summary="隐私官：设立法律保全（运单或安全事件），保全期间这些运单的个人信息不因保存期限届满而销毁",
           tags=TAGS, body=HoldIn, response=HoldOut, status=201, errors=(422,))
@requires(Permission.PRIVACY_HOLD)
def place_hold() -> Response:
    data: HoldIn = parse(HoldIn, json_body())
    hold = lifecycle.place_hold(db_session(), authenticate(), reason=data.reason, shipment_ids=data.shipment_ids,
                                incident_id=data.incident_id)
    return respond(HoldOut, _hold_out(hold), status=201)


@bp.delete("/v1/privacy/holds/<hold_id>")
@operation(summary="隐私官：解除法律保全（保存期限恢复计算）", tags=TAGS, response=HoldOut, errors=(404,))
@requires(Permission.PRIVACY_HOLD)
def release_hold(hold_id: str) -> Response:
    hold = lifecycle.release_hold(db_session(), authenticate(), hold_id)
    return respond(HoldOut, _hold_out(hold))
