"""Privacy officers' full access to personal data: only through a recorded request with a purpose.

GB/T 35273-2020 7.1 e: access to personal data beyond what a role needs is granted per recorded
request. Here an officer files a request naming one shipment, the fields needed (minimum necessary),
a purpose from a fixed list and a case reference; that opens a short window in which *that* officer
may read *those* fields of *that* shipment. Filing, every read and every refused attempt are audited;
the audit event names the fields, never their values. Requests of other officers, unknown ones and
expired ones all answer the same ``NotFound``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from courier_api.models import PersonalDataRequest
from waybill import audit
from waybill.crypto.vault import FieldCodec
from waybill.errors import NotFound, PermissionDenied, ShipmentNotFound, ValidationFailed
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


@dataclass(frozen=True)
class PrivacyDeps:
    codec: FieldCodec
    window: timedelta  # how long a filed request stays readable


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
    return f"{req.purpose}:{req.reference}:{req.id}"


def validate_request(purpose: str, reference: str, fields: Sequence[str]) -> list[str]:
    """Check a request's purpose, reference and fields; the fields come back de-duplicated, in order."""
    if purpose not in PURPOSES:
        raise ValidationFailed("purpose 须为 " + " / ".join(PURPOSES), field="purpose")
    if not isinstance(reference, str) or not REFERENCE_RE.fullmatch(reference):
        raise ValidationFailed("reference 须为案件/工单编号，如 CASE-2026-0001", field="reference")
    if not fields or any(f not in FIELDS for f in fields):
        raise ValidationFailed("fields 须为 " + " / ".join(FIELDS) + " 中的一项或多项", field="fields")
    return [f for f in FIELDS if f in fields]


def file_request(session: Session, deps: PrivacyDeps, principal: Principal, shipment_id: str, purpose: str,
                 reference: str, fields: Sequence[str], *, now: datetime | None = None) -> PersonalDataRequest:
    """Record an officer's request for ``fields`` of one shipment; it is readable until ``expires_at``."""
    _require_officer(principal)
    wanted = validate_request(purpose, reference, fields)
    shipment = session.get(Shipment, shipment_id) if looks_like("shp", shipment_id) else None
    if shipment is None:
        audit.record(session, principal, "privacy.request", object_type="shipment",
                     object_id=shipment_id if looks_like("shp", shipment_id) else None, fields=wanted,
                     purpose=purpose, outcome="not_found", durable=True)
        raise ShipmentNotFound()
    now = now or utcnow()
    req = PersonalDataRequest(id=new_id("pdr"), officer_id=principal.id, shipment_id=shipment.id, purpose=purpose,
                              reference=reference, fields=wanted, created_at=now, expires_at=now + deps.window,
                              reads=0)
    session.add(req)
    audit.record(session, principal, "privacy.request", object_type="shipment", object_id=shipment.id,
                 fields=wanted, purpose=_purpose_text(req))
    session.flush()
    return req


def read_request(session: Session, deps: PrivacyDeps, principal: Principal, request_id: str, *,
                 now: datetime | None = None) -> PersonalDataRead:
    """The fields a live request of this officer names, decrypted; each read is audited."""
    _require_officer(principal)
    now = now or utcnow()
    req = None
    if looks_like("pdr", request_id):
        req = session.execute(select(PersonalDataRequest).where(PersonalDataRequest.id == request_id)
                              .with_for_update()).scalar_one_or_none()
    if req is None or req.officer_id != principal.id or now >= req.expires_at:
        outcome = "not_found" if req is None else "denied" if req.officer_id != principal.id else "expired"
        audit.record(session, principal, "privacy.read", object_type="personal_data_request",
                     object_id=request_id if looks_like("pdr", request_id) else None, outcome=outcome, durable=True)
        raise NotFound()
    shipment = session.get(Shipment, req.shipment_id)
    if shipment is None:  # the foreign key makes this impossible; answer like any other miss
        raise NotFound()
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
    audit.record(session, principal, "privacy.read", object_type="shipment", object_id=shipment.id,
                 fields=req.fields, purpose=_purpose_text(req))
    session.flush()
    return PersonalDataRead(request=req, shipment=shipment, sender=data.get("sender"),
                            recipient=data.get("recipient"))
