"""Call receipts pushed by the virtual-number provider (Aliyun ``SecretReport``).

The provider signs nothing it pushes, so the URL carries a long random token from the provider's
credentials file (``receipt_token``), compared in constant time; a wrong token, or a provider that
takes no pushed receipts (the built-in one), answers the same 404 as a path that does not exist.
Receipts are idempotent by ``call_id``: Aliyun re-sends a batch until it gets the acknowledgement.
Each batch leaves an audit event (counts only: receipts carry real phone numbers, which are hashed).
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, request

from waybill import audit
from waybill.errors import NotFound, ValidationFailed
from waybill.permissions import Principal
from waybill.schemas import OutModel
from waybill.web.auth import record_failure, refuse_spent_client
from waybill.web.context import db_session, services
from waybill.web.openapi import operation, respond

bp = Blueprint("phone", __name__)
MAX_RECEIPTS = 1000  # Aliyun pushes at most a few hundred records per batch


class ReceiptAck(OutModel):
    """The acknowledgement the provider expects (Aliyun ``SecretReport``: ``{"code": 0, "msg": "成功"}``)."""

    code: int
    msg: str


DEFAULT_ACK = ReceiptAck(code=0, msg="成功")


@bp.post("/v1/phone/receipts/<token>")
@operation(summary="隐私号服务商推送通话回执（URL 中的密钥即认证；按 call_id 幂等）", tags=("phone",), security=None,
           response=ReceiptAck, errors=(404, 422))
def receipts(token: str) -> Response:
    refuse_spent_client()  # a client out of guesses is refused before any work
    session = db_session()
    provider: Any = services().provider
    # Only providers that take pushed receipts have a receipt token.
    expected: str | None = getattr(provider, "receipt_token", None)
    if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
        record_failure(session, "phone.receipts")  # token guesses: throttled and counted per client
        raise NotFound()
    try:
        batch = provider.parse_receipts(request.get_data())
    except (ValueError, TypeError, KeyError, RecursionError):
        raise ValidationFailed("通话回执格式无效", field="body") from None
    if len(batch) > MAX_RECEIPTS:
        raise ValidationFailed(f"一次最多 {MAX_RECEIPTS} 条回执", field="body")
    new = sum(1 for receipt in batch if provider.record_receipt(session, receipt))
    actor = Principal(kind="provider", id=str(getattr(provider, "name", "provider")), role="system")
    audit.record(session, actor, "phone.receipts", purpose=f"received={len(batch)} new={new}")
    return respond(ReceiptAck, getattr(provider, "receipt_ack", DEFAULT_ACK))
