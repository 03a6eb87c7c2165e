"""Privacy officers' HTTP: file a recorded request for personal data, then read what it names."""

from __future__ import annotations

from flask import Blueprint, Flask, Response
from pydantic import BaseModel, ConfigDict, Field

from courier_api import privacy

# The accepted values are the domain's own Literal types, so the two cannot drift apart.
from courier_api.privacy import FieldName, Purpose
from courier_api.services import courier_services
from waybill.permissions import Permission
from waybill.schemas import OutModel, UtcTimestamp, parse
from waybill.web.auth import authenticate, requires
from waybill.web.context import db_session
from waybill.web.merchant import json_body
from waybill.web.openapi import operation, respond

bp = Blueprint("privacy", __name__)



class RequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
    shipment_id: str = Field(min_length=1, max_length=64)
    purpose: Purpose = Field(description="用途：" + "；".join(f"{k} {v}" for k, v in privacy.PURPOSES.items()))
    reference: str = Field(pattern=privacy.REFERENCE_RE.pattern, max_length=64,
                           description="案件/工单编号，如 CASE-2026-0001")
    fields: list[FieldName] = Field(min_length=1, max_length=6, description="所需字段（最小必要）")
    emergency: bool = Field(default=False, description="紧急调取：无需另一名隐私官批准即可读取，并触发严重告警")
    reason: str | None = Field(default=None, min_length=1, max_length=privacy.REASON_MAX,
                               description="紧急调取的理由（仅 emergency 为 true 时必填；加密保存，不写入审计日志）")


class RequestOut(OutModel):
    """From :class:`courier_api.models.PersonalDataRequest` (never the emergency's reason)."""

    id: str
    shipment_id: str
    purpose: str
    reference: str
    fields: list[str]
    status: str = Field(description="pending 待另一名隐私官批准；approved 可读取")
    emergency: bool
    created_at: UtcTimestamp
    approved_at: UtcTimestamp | None
    expires_at: UtcTimestamp = Field(description="待批准：批准截止时间；已批准：读取截止时间")


class PartyData(OutModel):
    """From :class:`courier_api.privacy.DisclosedParty`: only the fields the request named (minimum necessary)."""

    omit_none = frozenset({"name", "phone", "province", "city", "district", "address"})

    name: str | None = None
    phone: str | None = None
    province: str | None = None
    city: str | None = None
    district: str | None = None
    address: str | None = None


class PersonalDataOut(OutModel):
    request_id: str
    shipment_id: str
    waybill_no: str
    purpose: str
    reference: str
    expires_at: UtcTimestamp
    sender: PartyData | None
    recipient: PartyData | None


def install(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("/v1/privacy/requests")
@operation(summary="隐私官：登记个人信息调取申请（用途、编号、所需字段），待另一名隐私官批准；紧急调取即时可读并告警",
           tags=("privacy",), body=RequestIn, response=RequestOut, status=201, errors=(404, 410, 422))
@requires(Permission.PERSONAL_DATA_REQUEST)
def file_request() -> Response:
    data: RequestIn = parse(RequestIn, json_body())
    req = privacy.file_request(db_session(), courier_services().privacy, authenticate(), data.shipment_id,
                               data.purpose, data.reference, data.fields, emergency=data.emergency,
                               reason=data.reason)
    return respond(RequestOut, req)


@bp.post("/v1/privacy/requests/<request_id>/approve")
@operation(summary="另一名隐私官批准调取申请（申请人不能批准自己的申请）", tags=("privacy",), response=RequestOut,
           errors=(404, 409))
@requires(Permission.PERSONAL_DATA_REQUEST)
def approve_request(request_id: str) -> Response:
    req = privacy.approve_request(db_session(), courier_services().privacy, authenticate(), request_id)
    return respond(RequestOut, req)


@bp.get("/v1/privacy/requests/<request_id>/personal-data")
@operation(summary="隐私官：申请获批后在有效期内读取申请所列字段（每次读取均审计，每日限额）", tags=("privacy",),
           response=PersonalDataOut, errors=(404, 409, 410, 429))
@requires(Permission.PERSONAL_DATA_REQUEST)
def read_request(request_id: str) -> Response:
    read = privacy.read_request(db_session(), courier_services().privacy, authenticate(), request_id)
    req, shipment = read.request, read.shipment
    return respond(PersonalDataOut, PersonalDataOut(
        request_id=req.id, shipment_id=shipment.id, waybill_no=shipment.waybill_no, purpose=req.purpose,
        reference=req.reference, expires_at=req.expires_at,
        sender=None if read.sender is None else PartyData.model_validate(read.sender),
        recipient=None if read.recipient is None else PartyData.model_validate(read.recipient)))
