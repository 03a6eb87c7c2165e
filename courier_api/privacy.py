"""Privacy officers' full access to personal data: only through a recorded, approved request with a purpose.

GB/T 35273-2020 7.1 e: access to personal data beyond what a role needs is granted per recorded
request; 7.1 b: it needs an approval step. Here an officer files a request naming one shipment, the fields
needed (minimum necessary), a purpose from a fixed list and a case reference. It is ``pending`` until
*another* privacy officer approves it (four eyes); approval opens a short window in which *the filer* may
read *those* fields of *that* shipment. An emergency filing (with a stated reason) is readable at once and
raises a critical alert instead. Each officer may read at most ``reads_per_day`` times a day
(:mod:`courier_api.privacy_quota`). Filing, approving, every read and every refused attempt are audited;
the audit event names the fields, never their values (nor an emergency's reason). Requests of other
officers, unknown ones and expired ones all answer the same ``NotFound``; so does approving one's own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from courier_api.models import PersonalDataRequest
from courier_api.privacy_quota import officer_day, take_read
from waybill import audit
from waybill.alerts import store as alert_store
from waybill.alerts.counters import Watch
from waybill.canaries import watch as canaries
from waybill.crypto.vault import FieldCodec
from waybill.errors import (
    Conflict,
    NotApproved,
    NotFound,
    PermissionDenied,
    PersonalDataDestroyed,
    RateLimited,
    ShipmentNotFound,
    ValidationFailed,
)
from waybill.ids import looks_like, new_id
from waybill.models import Shipment, utcnow
from waybill.permissions import Permission, Principal

# Why an officer may look (the codes are recorded; the texts are for people).
Purpose = Literal["data_subject_request", "complaint", "legal_order", "security_incident"]
FieldName = Literal["sender.name", "sender.phone", "sender.address", "recipient.name", "recipient.phone",
                    "recipient.address"]
PURPOSES: dict[str, str] = {
    "data_subject_request": "个人信息主体行使查阅、复制、更正权利",
    "complaint": "投诉与纠纷处理",
    "legal_order": "司法或行政机关依法调取",
    "security_incident": "个人信息安全事件调查",
}
PARTIES = ("sender", "recipient")
FIELDS: tuple[str, ...] = get_args(FieldName)
# The Literals are the one source: the texts must cover exactly the purposes, the fields every party's.
if tuple(PURPOSES) != get_args(Purpose) or tuple(
        f"{party}.{name}" for party in PARTIES for name in ("name", "phone", "address")) != FIELDS:
    raise RuntimeError("privacy purposes/fields out of step with their Literal types")
# A case or ticket number: letters, a dash, then letters, digits and dashes. Never free text, and
# never just digits, so a phone number cannot end up in the audit log by way of a "reference".
# The contract's case-number format: a prefix, a year, a number — it cannot carry a phone number
# (TEL-13812345678 was accepted by the looser format and landed in the audit log).
REFERENCE_RE = re.compile(r"^[A-Z]{2,10}-20[0-9]{2}-[0-9]{1,6}$")
REASON_MAX = 500
PENDING, APPROVED = "pending", "approved"
log = logging.getLogger("courier_api.privacy")


@dataclass(frozen=True)
class PrivacyDeps:
    codec: FieldCodec
    window: timedelta  # how long an approved request stays readable (and a pending one waits for approval)
    reads_per_day: int  # personal-data reads per officer per Asia/Shanghai day
    alert_reads: int = 40  # reads in an officer's day that raise `privacy_reads` (WAYBILL_ALERT_PRIVACY_READS_COUNT)
    # The write-path alert rules (not_found_burst on unknown shipments, off_hours on reads); None: off.
    watch: Watch | None = None


@dataclass(frozen=True)
class DisclosedParty:
    """The fields of one party a request named, in clear; ``None`` for what it did not name.

    The region (province, city, district) comes with the address.
    """

    name: str | None = None
    phone: str | None = None
    province: str | None = None
    city: str | None = None
    district: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class PersonalDataRead:
    """One audited read under a request: the request, its shipment, and each named party's fields."""

    request: PersonalDataRequest
    shipment: Shipment
    sender: DisclosedParty | None
    recipient: DisclosedParty | None


def _require_officer(principal: Principal) -> None:
    principal.require(Permission.PERSONAL_DATA_REQUEST)
    if principal.kind != "staff":  # a person answers for every request: never an API key or the CLI
        raise PermissionDenied()


def _purpose_text(req: PersonalDataRequest) -> str:
    # Codes and ids only (the reference cannot carry a phone number); an emergency says so, never its reason.
    return f"{req.purpose}:{req.reference}:{req.id}" + (":emergency" if req.emergency else "")


def validate_request(purpose: str, reference: str, fields: Sequence[str], *, emergency: bool = False,
                     reason: str | None = None) -> list[str]:
    """Check a request's purpose, reference, fields and (emergency only) reason; the fields come back
    de-duplicated, in order."""
    if purpose not in PURPOSES:
        raise ValidationFailed("purpose 须为 " + " / ".join(PURPOSES), field="purpose")
    if not isinstance(reference, str) or not REFERENCE_RE.fullmatch(reference):
        raise ValidationFailed("reference 须为案件/工单编号，如 CASE-2026-0001", field="reference")
    if not fields or any(f not in FIELDS for f in fields):
        raise ValidationFailed("fields 须为 " + " / ".join(FIELDS) + " 中的一项或多项", field="fields")
    if emergency and (not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX):
        raise ValidationFailed(f"紧急申请须说明理由（1-{REASON_MAX} 字）", field="reason")
    if not emergency and reason is not None:
        raise ValidationFailed("reason 仅用于紧急申请（emergency 为 true）", field="reason")
    return [f for f in FIELDS if f in fields]


def file_request(session: Session, deps: PrivacyDeps, principal: Principal, shipment_id: str, purpose: str,
                 reference: str, fields: Sequence[str], *, emergency: bool = False, reason: str | None = None,
                 now: datetime | None = None) -> PersonalDataRequest:
    """Record an officer's request for ``fields`` of one shipment: ``pending`` until another officer approves
    it (it lapses unapproved at ``expires_at``). An ``emergency`` filing with a ``reason`` is approved at once
    and raises a critical alert (``alert.privacy_emergency``); the reason is stored encrypted, nowhere else."""
    _require_officer(principal)
    wanted = validate_request(purpose, reference, fields, emergency=emergency, reason=reason)
    shipment = session.get(Shipment, shipment_id) if looks_like("shp", shipment_id) else None
    if shipment is None:
        audit.record(session, principal, "privacy.request", object_type="shipment",
                     object_id=shipment_id if looks_like("shp", shipment_id) else None, fields=wanted,
                     purpose=purpose, outcome="not_found", durable=True)
        if deps.watch is not None:
            deps.watch.missed(session, principal)
        raise ShipmentNotFound()
    _refuse_destroyed(session, principal, shipment, wanted, "privacy.request")
    now = now or utcnow()
    req = PersonalDataRequest(id=new_id("pdr"), officer_id=principal.id, shipment_id=shipment.id, purpose=purpose,
                              reference=reference, fields=wanted, created_at=now, expires_at=now + deps.window,
                              reads=0, status=PENDING, emergency=emergency)
    if emergency:
        assert reason is not None  # validate_request made sure
        req.status, req.approved_at = APPROVED, now
        req.reason_ct = deps.codec.encrypt(reason, table="personal_data_requests", column="reason", row_id=req.id)
    session.add(req)
    audit.record(session, principal, "privacy.request", object_type="shipment", object_id=shipment.id,
                 fields=wanted, purpose=_purpose_text(req), outcome="emergency" if emergency else "ok")
    if emergency:
        # Access without a second officer: a critical alert, written with the request (it exists iff the
        # request does). Severity in a field of fixed values; the reason stays out of the trail.
        audit.record(session, principal, "alert.privacy_emergency", object_type="personal_data_request",
                     object_id=req.id, fields=wanted, outcome="alert", purpose="severity=critical")
        log.warning("privacy officer emergency access", extra={"actor": principal.actor, "object_id": req.id})
    session.flush()
    return req


def _locked_request(session: Session, request_id: str) -> PersonalDataRequest | None:
    if not looks_like("pdr", request_id):
        return None
    return session.execute(select(PersonalDataRequest).where(PersonalDataRequest.id == request_id)
                           .with_for_update()).scalar_one_or_none()


def approve_request(session: Session, deps: PrivacyDeps, principal: Principal, request_id: str, *,
                    now: datetime | None = None) -> PersonalDataRequest:
    """Another privacy officer approves a pending request: the filer may then read it for ``deps.window``.

    The filer's own request answers like a missing one (``NotFound``), as do unknown and lapsed ones; one
    that is not pending (approved already, an emergency) is a ``Conflict``.
    """
    _require_officer(principal)
    now = now or utcnow()
    req = _locked_request(session, request_id)
    outcome = ("not_found" if req is None else "denied" if req.officer_id == principal.id
               else "expired" if req.status == PENDING and now >= req.expires_at
               else "conflict" if req.status != PENDING else "ok")
    if outcome != "ok":
        audit.record(session, principal, "privacy.approve", object_type="personal_data_request",
                     object_id=request_id if looks_like("pdr", request_id) else None, outcome=outcome,
                     durable=True)
        if outcome == "conflict":
            raise Conflict("该申请不在待批准状态")
        raise NotFound()
    assert req is not None
    req.status, req.approver_id, req.approved_at = APPROVED, principal.id, now
    req.expires_at = now + deps.window  # the reading window opens at approval
    audit.record(session, principal, "privacy.approve", object_type="personal_data_request", object_id=req.id,
                 fields=req.fields, purpose=_purpose_text(req))
    session.flush()
    return req


def _refuse_destroyed(session: Session, principal: Principal, shipment: Shipment, fields: Sequence[str],
                      action: str) -> None:
    """410 ``destroyed`` when a named party's personal data is destroyed (retention or the party's deletion)."""
    parties = {name.split(".")[0] for name in fields}
    if any(getattr(shipment, f"{party}_destroyed_at") is not None for party in parties):
        audit.record(session, principal, action, object_type="shipment", object_id=shipment.id,
                     outcome="destroyed", durable=True)
        raise PersonalDataDestroyed()


def read_request(session: Session, deps: PrivacyDeps, principal: Principal, request_id: str, *,
                 now: datetime | None = None) -> PersonalDataRead:
    """The fields a live, approved request of this officer names, decrypted; each read is audited and counted
    against the officer's daily quota (``RateLimited`` beyond it, until the next Asia/Shanghai day)."""
    _require_officer(principal)
    now = now or utcnow()
    req = _locked_request(session, request_id)
    if req is None or req.officer_id != principal.id or now >= req.expires_at:
        outcome = "not_found" if req is None else "denied" if req.officer_id != principal.id else "expired"
        audit.record(session, principal, "privacy.read", object_type="personal_data_request",
                     object_id=request_id if looks_like("pdr", request_id) else None, outcome=outcome, durable=True)
        raise NotFound()
    if req.status != APPROVED:
        audit.record(session, principal, "privacy.read", object_type="personal_data_request", object_id=req.id,
                     outcome="not_approved", durable=True)
        raise NotApproved()
    shipment = session.get(Shipment, req.shipment_id)
    if shipment is None:  # the foreign key makes this impossible; answer like any other miss
        raise NotFound()
    _refuse_destroyed(session, principal, shipment, req.fields, "privacy.read")  # before the quota: nothing read
    taken = take_read(session, principal.id, deps.reads_per_day, now)
    if taken.wait is not None:
        audit.record(session, principal, "privacy.read", object_type="personal_data_request", object_id=req.id,
                     outcome="quota_exceeded", durable=True)
        # The contract's `privacy_reads` rule: an officer reading beyond the quota is worth a look.
        audit.record(session, principal, "alert.privacy_reads", outcome="alert", purpose="severity=warning",
                     durable=True)
        raise RateLimited(taken.wait, "今日个人信息读取次数已达上限，请明日再试")
    if taken.reads == deps.alert_reads:  # once a day: the count only grows, one read reaches it exactly
        alert_store.fire(session, principal, "privacy_reads", object_type="day", object_id=str(officer_day(now)),
                         detail=f"reads={taken.reads}")
    data: dict[str, DisclosedParty] = {}
    for name in req.fields:
        party, column = name.split(".")
        value = deps.codec.decrypt(getattr(shipment, f"{party}_{column}_ct"), table="shipments",
                                   column=f"{party}_{column}", row_id=shipment.id)
        section = replace(data.get(party, DisclosedParty()), **{column: value})
        if column == "address":
            region: dict[str, str] = getattr(shipment, f"{party}_region")
            section = replace(section, province=region["province"], city=region["city"],
                              district=region["district"])
        data[party] = section
    req.reads += 1
    if deps.watch is not None:
        deps.watch.read(session, principal, now)
    audit.record(session, principal, "privacy.read", object_type="shipment", object_id=shipment.id,
                 fields=req.fields, purpose=_purpose_text(req))
    canaries.touched(session, principal, shipment.id)
    session.flush()
    return PersonalDataRead(request=req, shipment=shipment, sender=data.get("sender"),
                            recipient=data.get("recipient"))
