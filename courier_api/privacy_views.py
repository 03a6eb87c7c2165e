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


class RequestOut(OutModel):
    """From :class:`courier_api.models.PersonalDataRequest`."""

    id: str
    shipment_id: str
    purpose: str
    reference: str
    fields: list[str]
    created_at: UtcTimestamp
    expires_at: UtcTimestamp


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
@operation(summary="隐私官：登记个人信息调取申请（用途、编号、所需字段）", tags=("privacy",), body=RequestIn,
           response=RequestOut, status=201, errors=(404, 422))
@requires(Permission.PERSONAL_DATA_REQUEST)
def file_request() -> Response:
    data: RequestIn = parse(RequestIn, json_body())
    req = privacy.file_request(db_session(), courier_services().privacy, authenticate(), data.shipment_id,
                               data.purpose, data.reference, data.fields)
    return respond(RequestOut, req)


@bp.get("/v1/privacy/requests/<request_id>/personal-data")
@operation(summary="隐私官：在申请有效期内读取申请所列字段（每次读取均审计）", tags=("privacy",),
           response=PersonalDataOut, errors=(404,))
@requires(Permission.PERSONAL_DATA_REQUEST)
def read_request(request_id: str) -> Response:
    read = privacy.read_request(db_session(), courier_services().privacy, authenticate(), request_id)
    req, shipment = read.request, read.shipment
    return respond(PersonalDataOut, PersonalDataOut(
        request_id=req.id, shipment_id=shipment.id, waybill_no=shipment.waybill_no, purpose=req.purpose,
        reference=req.reference, expires_at=req.expires_at,
        sender=None if read.sender is None else PartyData.model_validate(read.sender),
        recipient=None if read.recipient is None else PartyData.model_validate(read.recipient)))
