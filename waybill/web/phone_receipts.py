"""Call receipts pushed by the virtual-number provider (Aliyun ``SecretReport``).

The provider signs nothing it pushes, so the URL carries a long random token from the provider's
credentials file (``receipt_token``), compared in constant time; a wrong token, or a provider that
takes no pushed receipts (the built-in one), answers the same 404 as a path that does not exist.
Receipts are idempotent by ``call_id``: Aliyun re-sends a batch until it gets the acknowledgement.
Records are taken one by one: a malformed record is reported in the answer (index, call id, field) and
audited as an alert, and never costs the batch its good records. Legacy SMS records are passed over.
Each batch leaves an audit event (counts only: receipts carry real phone numbers, which are hashed).
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy.exc import SQLAlchemyError

from waybill import audit
from waybill.errors import NotFound, ValidationFailed
from waybill.permissions import Principal
from waybill.schemas import OutModel
from waybill.web.auth import record_failure, refuse_spent_client
from waybill.web.context import db_session, services
from waybill.web.openapi import operation, respond

bp = Blueprint("phone", __name__)
MAX_RECEIPTS = 1000  # Aliyun pushes at most a few hundred records per batch


class RejectedReceipt(OutModel):
    """A record of the batch that was not taken: its position, the provider's call id if any, the field."""

    index: int
    call_id: str | None
    field: str


class ReceiptAck(OutModel):
    """The acknowledgement the provider expects (Aliyun ``SecretReport``: ``{"code": 0, "msg": "成功"}``), and
    what became of each record: stored, already known, SMS records passed over, records rejected."""

    code: int
    msg: str
    accepted: int = 0
    duplicates: int = 0
    sms_skipped: int = 0
    rejected: list[RejectedReceipt] = []


DEFAULT_ACK = {"code": 0, "msg": "成功"}


@bp.post("/v1/phone/receipts/<token>")
@operation(summary="隐私号服务商推送通话回执（URL 中的密钥即认证；按 call_id 幂等；逐条处理，格式错误的记录逐条报告）",
           tags=("phone",), security=None, response=ReceiptAck, errors=(404, 422))
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
        batch = provider.parse_receipt_batch(request.get_data())
    except (ValueError, TypeError, RecursionError):  # not JSON at all: there are no records to take
        raise ValidationFailed("通话回执格式无效", field="body") from None
    if len(batch.receipts) + batch.sms + len(batch.rejected) > MAX_RECEIPTS:
        raise ValidationFailed(f"一次最多 {MAX_RECEIPTS} 条回执", field="body")
    rejected = [RejectedReceipt(index=r.index, call_id=r.call_id, field=r.field) for r in batch.rejected]
    accepted = duplicates = 0
    for index, receipt in batch.receipts:
        # Each record alone: one the database refuses (a value out of range) is reported, the rest stored.
        try:
            with session.begin_nested():
                new = provider.record_receipt(session, receipt)
        except (SQLAlchemyError, ValueError, TypeError):
            rejected.append(RejectedReceipt(index=index, call_id=receipt.call_id, field="record"))
            continue
        accepted, duplicates = accepted + int(new), duplicates + int(not new)
    rejected.sort(key=lambda r: r.index)
    actor = Principal(kind="provider", id=str(getattr(provider, "name", "provider")), role="system")
    total = len(batch.receipts) + batch.sms + len(batch.rejected)
    audit.record(session, actor, "phone.receipts",
                 purpose=f"received={total} new={accepted} sms={batch.sms} rejected={len(rejected)}")
    if rejected:  # a provider whose records we cannot read is an operator's problem: say so
        audit.record(session, actor, "alert.phone_receipts_rejected", outcome="alert",
                     purpose=f"rejected={len(rejected)} fields={','.join(sorted({r.field for r in rejected}))}")
    # Always the acknowledgement: a re-sent batch brings the malformed records back unchanged (and Aliyun
    # gives up after three tries, good records included); the rejects are reported here and audited.
    ack = {**getattr(provider, "receipt_ack", DEFAULT_ACK)}
    return respond(ReceiptAck, ReceiptAck(code=int(ack["code"]), msg=str(ack["msg"]), accepted=accepted,
                                          duplicates=duplicates, sms_skipped=batch.sms, rejected=rejected))
