"""The privacy notice shown before collection (``GET /v1/privacy-notice``): anyone may read it."""

from __future__ import annotations

from flask import Blueprint, Response

from waybill.schemas import OutModel
from waybill.web.context import services
from waybill.web.openapi import operation, respond

bp = Blueprint("privacy_notice", __name__)


class PurposeOut(OutModel):
    id: str
    name: str
    required: bool


class PrivacyNoticeOut(OutModel):
    version: str
    text: str
    purposes: list[PurposeOut]


@bp.get("/v1/privacy-notice")
@operation(summary="当前隐私告知（版本、正文、处理目的）：商户在收集前展示，创建运单时以 consents 记录版本与同意",
           tags=("privacy",), response=PrivacyNoticeOut, security=None)
def privacy_notice() -> Response:
    return respond(PrivacyNoticeOut, services().privacy_notice.as_json())
