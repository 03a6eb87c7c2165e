"""Partners' HTTP: the register (admins write it; dispatchers and couriers list it) and the disclosures made to
partners (privacy officers, auditors)."""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from flask import Blueprint, Flask, Response, request
from pydantic import BaseModel, ConfigDict, Field

from courier_api import partners
from courier_api.partners import ListedDisclosure
from waybill.crypto.subject_keys import day_of
from waybill.errors import ValidationFailed
from waybill.ids import looks_like
from waybill.models import utcnow
from waybill.permissions import Permission
from waybill.schemas import OutModel, UtcTimestamp, parse
from waybill.web.auth import authenticate, requires
from waybill.web.context import db_session
from waybill.web.merchant import json_body
from waybill.web.openapi import operation, respond

bp = Blueprint("partners", __name__)
_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
Kind = Literal["locker", "station", "franchise", "authority"]
_ID = "^ptn_[0-9A-HJKMNP-TV-Z]{26}$"


class PartnerIn(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=partners.NAME_MAX, description="合作方名称（出现在取件通知短信中）")
    kind: Kind
    agreement_ref: str = Field(min_length=1, max_length=64, description="协议编号")
    agreement_expires: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="协议最后有效日（北京时间）")


class PartnerOut(OutModel):
    """From :class:`courier_api.models.Partner`."""

    id: str
    name: str
    kind: str = Field(description="locker / station / franchise / authority")
    agreement_ref: str
    agreement_expires: date
    active: bool = Field(description="协议今天（北京时间）是否仍有效")
    created_at: UtcTimestamp


class PartnerItem(OutModel):
    id: str
    name: str
    kind: str = Field(description="locker / station / franchise / authority")
    agreement_expires: date
    active: bool


class PartnerList(OutModel):
    items: list[PartnerItem]


class DisclosureItem(OutModel):
    """From :class:`courier_api.models.Disclosure`: ids and field names, never the values."""

    id: str
    at: UtcTimestamp
    partner: str = Field(description="合作方编号")
    partner_name: str
    partner_kind: str
    shipment_id: str
    party: str = Field(description="sender / recipient")
    fields: list[str]
    basis: str = Field(description="处理依据：contract 为履行合同所必需（个人信息保护法第十三条第一款第二项）")


class DisclosurePage(OutModel):
    items: list[DisclosureItem]
    next_cursor: str | None


def install(app: Flask) -> None:
    app.register_blueprint(bp)


def _only(allowed: set[str]) -> None:
    unknown = set(request.args) - allowed
    if unknown:
        raise ValidationFailed("不支持的查询参数", field=sorted(unknown)[0])


@bp.post("/v1/partners")
@operation(summary="管理员：登记末端合作方（快递柜、驿站、加盟网点、主管部门）及其协议", tags=("partners",),
           body=PartnerIn, response=PartnerOut, status=201)
@requires(Permission.PARTNER_MANAGE)
def create_partner() -> Response:
    data: PartnerIn = parse(PartnerIn, json_body())
    partner = partners.create(db_session(), authenticate(), name=data.name, kind=data.kind,
                              agreement_ref=data.agreement_ref, agreement_expires=data.agreement_expires)
    today = day_of(utcnow())
    return respond(PartnerOut, PartnerOut(id=partner.id, name=partner.name, kind=partner.kind,
                                          agreement_ref=partner.agreement_ref,
                                          agreement_expires=partner.agreement_expires,
                                          active=partners.active(partner, today), created_at=partner.created_at))


@bp.get("/v1/partners")
@operation(summary="合作方列表（快递员签收时选择）", tags=("partners",), response=PartnerList, errors=(422,),
           query=(("kind", {"type": "string", "enum": list(partners.KINDS)}, "按类型过滤"),))
@requires(Permission.PARTNER_READ)
def list_partners() -> Response:
    _only({"kind"})
    rows = partners.listing(db_session(), authenticate(), request.args.get("kind"))
    today = day_of(utcnow())
    return respond(PartnerList, PartnerList(items=[
        PartnerItem(id=p.id, name=p.name, kind=p.kind, agreement_expires=p.agreement_expires,
                    active=partners.active(p, today)) for p in rows]))


def _item(row: ListedDisclosure) -> DisclosureItem:
    d, p = row.disclosure, row.partner
    return DisclosureItem(id=d.id, at=d.at, partner=p.id, partner_name=p.name, partner_kind=p.kind,
                          shipment_id=d.shipment_id, party=d.party, fields=list(d.fields),
                          basis=d.basis)


@bp.get("/v1/privacy/disclosures")
@operation(summary="向合作方披露个人信息的记录（新的在前，游标分页）", tags=("privacy",), response=DisclosurePage,
           errors=(422,),
           query=(("partner", {"type": "string", "pattern": _ID}, "合作方编号"),
                  ("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}, "每页条数"),
                  ("cursor", {"type": "string", "pattern": "^dsc_[0-9A-HJKMNP-TV-Z]{26}$"}, "上一页的 next_cursor")))
@requires(Permission.DISCLOSURE_READ)
def disclosures() -> Response:
    _only({"partner", "limit", "cursor"})
    raw = request.args.get("limit", "100")
    if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= 500:
        raise ValidationFailed("limit 须为 1-500 的整数", field="limit")
    partner, cursor = request.args.get("partner"), request.args.get("cursor")
    if partner is not None and not looks_like("ptn", partner):
        raise ValidationFailed("合作方编号无效", field="partner")
    if cursor is not None and not looks_like("dsc", cursor):
        raise ValidationFailed("分页游标无效", field="cursor")
    rows, next_cursor = partners.disclosures(db_session(), authenticate(), partner_id=partner, limit=int(raw),
                                             before=cursor)
    return respond(DisclosurePage, DisclosurePage(items=[_item(r) for r in rows], next_cursor=next_cursor))
