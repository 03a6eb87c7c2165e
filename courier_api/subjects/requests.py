"""Data subjects' requests (correct, delete, withdraw consent, complain) and the privacy office's decisions.

GB/T 35273-2020 8.2-8.4, 8.7 (answer within 30 days, or the working-day rule of :mod:`waybill.deadlines`;
a refusal gives reasons, shown to the subject), 8.8 (complaints tracked), and 002 §5 (every request recorded).
The subject's changes and text, and the officer's reason, are personal data or may be: sealed in the vault,
never in the audit log, whose events name fields and request types only. A request ``received`` holds the
shipment's data from retention until it is decided. Each request is decided once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from courier_api.subjects.access import decrypt_party, party_destroyed
from courier_api.subjects.models import SubjectRequest
from courier_api.subjects.verify import scope_of
from waybill import audit, corrections, deadlines, tracking
from waybill.crypto.vault import CryptoError, FieldCodec
from waybill.errors import (
    Conflict,
    InDelivery,
    NotFound,
    PermissionDenied,
    PersonalDataDestroyed,
    RequestAlreadyOpen,
    ValidationFailed,
)
from waybill.ids import looks_like, new_id
from waybill.models import Shipment, utcnow
from waybill.permissions import Permission, Principal
from waybill.schemas import _no_control_chars
from waybill.services import Services

TYPES = ("correct", "delete", "withdraw_consent", "complaint")
#: Open requests a party may have of each type at once (others: one).
MAX_OPEN = {"complaint": 3}
RECEIVED, COMPLETED, REJECTED = "received", "completed", "rejected"
STATUSES = (RECEIVED, COMPLETED, REJECTED)
TEXT_MAX = 1000
TABLE = "subject_requests"
ENDED = tracking.TERMINAL  # delivered, cancelled, returned: the contract has ended


@dataclass(frozen=True)
class RequestView:
    """A request as its subject or the privacy office sees it (``reason`` in clear, when there is one)."""

    id: str
    type: str
    status: str
    received_at: datetime
    due_at: datetime
    due_fallback: bool
    decided_at: datetime | None
    reason: str | None
    days_left: int
    overdue: bool
    changes: dict[str, Any] | None = None  # the subject's own content: for them and the deciding officer only
    text: str | None = None


def _seal(session: Session, svc: Services, req: SubjectRequest, column: str, text: str) -> bytes:
    """Under the party's own data key: the request's content is destroyed with the party's data."""
    kid = svc.subject_keys.key_id(session, req.shipment_id, req.party)
    if kid is None:
        raise PersonalDataDestroyed()
    return svc.codec.encrypt(text, table=TABLE, column=column, row_id=req.id, subject_key=kid)


def _open(codec: FieldCodec, req: SubjectRequest, column: str) -> str | None:
    blob: bytes | None = getattr(req, f"{column}_ct")
    if blob is None:
        return None
    try:
        return codec.decrypt(blob, table=TABLE, column=column, row_id=req.id)
    except CryptoError:  # a destroyed key: the text is gone with the party's data
        return None


def present(codec: FieldCodec, req: SubjectRequest, now: datetime | None = None, *,
            content: bool = False) -> RequestView:
    """A request's answer; with ``content`` also the subject's changes and text (decrypted)."""
    now = now or utcnow()
    raw_changes = _open(codec, req, "changes") if content else None
    return RequestView(changes=json.loads(raw_changes) if raw_changes else None,
                       text=_open(codec, req, "text") if content else None,
                       id=req.id, type=req.type, status=req.status, received_at=req.received_at,
                       due_at=req.due_at, due_fallback=req.due_fallback, decided_at=req.decided_at,
                       reason=_open(codec, req, "reason") if req.status != RECEIVED else None,
                       days_left=deadlines.days_left(req.due_at, now),
                       overdue=req.status == RECEIVED and now > req.due_at)


def _clean_text(text: object, field: str) -> str:
    if not isinstance(text, str) or not text.strip() or len(text) > TEXT_MAX:
        raise ValidationFailed(f"请填写 1-{TEXT_MAX} 字的说明", field=field)
    try:
        return _no_control_chars(text.strip())
    except ValueError:
        raise ValidationFailed("包含不允许的控制字符", field=field) from None


def file_request(session: Session, svc: Services, principal: Principal, request_type: str,
                 changes: Mapping[str, Any] | None, text: str | None, *, now: datetime | None = None
                 ) -> SubjectRequest:
    """Record a subject's request on their own party; ``due_at`` by :func:`waybill.deadlines.due_date`."""
    scope = scope_of(session, principal, Permission.SUBJECT_REQUEST)
    if request_type not in TYPES:
        raise ValidationFailed("type 须为 " + " / ".join(TYPES), field="type")
    shipment = session.get(Shipment, scope.shipment_id)
    if shipment is None:
        raise NotFound()
    # A bound on open requests per type and party: a token (15 minutes, renewable by SMS) could otherwise file
    # requests without end, each with its own deadline for the privacy office and its own retention hold. A
    # second correction, deletion or withdrawal while one is open adds nothing; complaints may be about
    # different things, so a few may be open at once.
    open_now = session.scalar(select(func.count()).select_from(SubjectRequest).where(
        SubjectRequest.shipment_id == shipment.id, SubjectRequest.party == scope.party,
        SubjectRequest.type == request_type, SubjectRequest.status == RECEIVED)) or 0
    if open_now >= MAX_OPEN.get(request_type, 1):
        raise RequestAlreadyOpen(field="type")
    fields: list[str] = []
    if request_type == "correct":
        current = decrypt_party(svc.codec, shipment, scope.party)
        if current is None:
            raise Conflict("您在本运单上的个人信息已销毁，无需更正")
        corrections.validate_changes(svc.shipment_deps, dataclasses.asdict(current), changes or {})
        fields = [f"{scope.party}.{k}" for k in corrections.FIELDS if k in (changes or {})]
    elif changes is not None:
        raise ValidationFailed("只有更正申请可以填写 changes", field="changes")
    if request_type == "complaint" and text is None:
        raise ValidationFailed("投诉须填写说明", field="text")
    clean = None if text is None else _clean_text(text, "text")
    now = now or utcnow()
    deadline = deadlines.due_date(now, request_type, calendar_days=svc.settings.subject_request_days,
                                  working_days=dict(svc.settings.subject_request_working_days))
    req = SubjectRequest(id=new_id("sjr"), shipment_id=shipment.id, party=scope.party, type=request_type,
                         status=RECEIVED, received_at=now, due_at=deadline.due_at, due_fallback=deadline.fallback)
    if changes:
        req.changes_ct = _seal(session, svc, req, "changes", json.dumps(dict(changes), ensure_ascii=False))
    if clean is not None:
        req.text_ct = _seal(session, svc, req, "text", clean)
    session.add(req)
    audit.record(session, principal, "subject.request", object_type="shipment", object_id=shipment.id,
                 fields=fields, purpose=f"{request_type}:{req.id}")
    session.flush()
    return req


def own_request(session: Session, principal: Principal, request_id: str) -> SubjectRequest:
    """One of the subject's own requests (same shipment and party); any other answers ``NotFound``."""
    scope = scope_of(session, principal, Permission.SUBJECT_REQUEST)
    req = session.get(SubjectRequest, request_id) if looks_like("sjr", request_id) else None
    if req is None or req.shipment_id != scope.shipment_id or req.party != scope.party:
        audit.record(session, principal, "subject.request_read", object_type="subject_request",
                     object_id=request_id if looks_like("sjr", request_id) else None, outcome="not_found",
                     durable=True)
        raise NotFound()
    return req


def _officer(principal: Principal) -> None:
    principal.require(Permission.SUBJECT_REQUEST_DECIDE)
    if principal.kind != "staff":
        raise PermissionDenied()


def content_fields(codec: FieldCodec, req: SubjectRequest) -> list[str]:
    """What reading a request's content discloses, by name: the party's fields it changes, and its text."""
    raw = _open(codec, req, "changes")
    names = [f"{req.party}.{k}" for k in corrections.FIELDS if raw and k in json.loads(raw)]
    return names + (["subject_request.text"] if req.text_ct is not None else [])


def office_request(session: Session, codec: FieldCodec, principal: Principal, request_id: str) -> SubjectRequest:
    """One request with its content, for the privacy office to decide on (the read is audited by field name)."""
    _officer(principal)
    req = session.get(SubjectRequest, request_id) if looks_like("sjr", request_id) else None
    if req is None:
        audit.record(session, principal, "subject_request.read", object_type="subject_request",
                     object_id=request_id if looks_like("sjr", request_id) else None, outcome="not_found",
                     durable=True)
        raise NotFound()
    audit.record(session, principal, "subject_request.read", object_type="shipment", object_id=req.shipment_id,
                 fields=content_fields(codec, req), purpose=f"data_subject_request:{req.id}")
    return req


def decode_cursor(cursor: str) -> str:
    try:
        rid = base64.urlsafe_b64decode(cursor.encode() + b"==").decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed("分页游标无效", field="cursor") from None
    if not looks_like("sjr", rid):
        raise ValidationFailed("分页游标无效", field="cursor")
    return rid


def queue(session: Session, principal: Principal, *, status: str | None, limit: int, cursor: str | None
          ) -> tuple[list[SubjectRequest], str | None]:
    """The privacy office's queue, oldest first (ids are time-ordered), keyset-paginated."""
    _officer(principal)
    stmt = select(SubjectRequest).order_by(SubjectRequest.id).limit(limit + 1)
    if status is not None:
        stmt = stmt.where(SubjectRequest.status == status)
    if cursor is not None:
        stmt = stmt.where(SubjectRequest.id > decode_cursor(cursor))
    rows = list(session.scalars(stmt))
    audit.record(session, principal, "subject_request.list", object_type="subject_request",
                 purpose=f"status={status or 'any'}")
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = base64.urlsafe_b64encode(rows[-1].id.encode()).decode().rstrip("=") if more and rows else None
    return rows, next_cursor


def _carry_out(session: Session, svc: Services, principal: Principal, req: SubjectRequest,
               shipment: Shipment) -> None:
    if req.type == "correct":
        if party_destroyed(shipment, req.party):
            raise Conflict("该当事人的个人信息已销毁")
        raw = _open(svc.codec, req, "changes")
        changes: dict[str, Any] = json.loads(raw) if raw else {}
        corrections.apply_correction(session, svc.shipment_deps, principal, shipment, req.party, changes)
    elif req.type == "delete":
        if shipment.status not in ENDED:
            raise InDelivery()
        from waybill import lifecycle  # the lead's destruction of one party (crypto-shredding)

        lifecycle.destroy_party(session, svc.subject_keys, shipment, req.party, principal=principal,
                                reason="subject_request")
    elif req.type == "withdraw_consent":
        from waybill import consent

        consent.withdraw(session, shipment, req.party, None, notice=svc.privacy_notice)


def decide(session: Session, svc: Services, principal: Principal, request_id: str, decision: str,
           reason: str | None, *, now: datetime | None = None) -> SubjectRequest:
    """Complete (carry out) or reject a received request; a rejection needs a reason (shown to the subject)."""
    _officer(principal)
    if decision not in ("complete", "reject"):
        raise ValidationFailed("decision 须为 complete / reject", field="decision")
    req = None
    if looks_like("sjr", request_id):
        req = session.execute(select(SubjectRequest).where(SubjectRequest.id == request_id)
                              .with_for_update()).scalar_one_or_none()
    if req is None:
        audit.record(session, principal, "subject_request.decide", object_type="subject_request",
                     object_id=request_id if looks_like("sjr", request_id) else None, outcome="not_found",
                     durable=True)
        raise NotFound()
    if req.status != RECEIVED:
        audit.record(session, principal, "subject_request.decide", object_type="subject_request", object_id=req.id,
                     outcome="conflict", durable=True)
        raise Conflict("该申请已处理")
    if (decision == "reject" or req.type == "complaint") and reason is None:
        raise ValidationFailed("请填写处理理由（将告知申请人）", field="reason")
    clean = None if reason is None else _clean_text(reason, "reason")
    shipment = session.execute(select(Shipment).where(Shipment.id == req.shipment_id)
                               .with_for_update()).scalar_one()
    if decision == "complete":
        _carry_out(session, svc, principal, req, shipment)
    now = now or utcnow()
    req.status = COMPLETED if decision == "complete" else REJECTED
    req.decided_at, req.decided_by = now, principal.id
    if clean is not None:
        # After a deletion the party's key is gone: the reason, if any, is not kept (the audit event says why).
        with contextlib.suppress(PersonalDataDestroyed):
            req.reason_ct = _seal(session, svc, req, "reason", clean)
    audit.record(session, principal, "subject_request.decide", object_type="shipment", object_id=shipment.id,
                 fields=[], purpose=f"{req.type}:{decision}:{req.id}", outcome=req.status)
    session.flush()
    return req


def raise_overdue_alerts(session: Session, *, warn_days: int, now: datetime | None = None) -> int:
    """``alert.subject_request_overdue`` for each received request due within ``warn_days`` days or overdue,
    once per request and state (``due_soon``, then ``overdue``); returns how many were raised."""
    now = now or utcnow()
    horizon = now + timedelta(days=warn_days + 1)
    raised = 0
    for req in session.scalars(select(SubjectRequest).where(SubjectRequest.status == RECEIVED,
                                                            SubjectRequest.due_at <= horizon)
                               .with_for_update()):
        left = deadlines.days_left(req.due_at, now)
        state = "overdue" if now > req.due_at else "due_soon" if left <= warn_days else None
        if state is None or req.alerted == state:
            continue
        req.alerted = state
        audit.record(session, None, "alert.subject_request_overdue", object_type="subject_request",
                     object_id=req.id, outcome="alert",
                     purpose=f"severity={'critical' if state == 'overdue' else 'warning'};state={state}")
        raised += 1
    session.flush()
    return raised
