"""What a data subject sees of their own party: the data itself, who received it, and every access to it.

GB/T 35273-2020 8.1 (access: what is held, what for, which third parties got it) and 8.6 (a copy). Everything
comes from real records: the shipment's ciphertexts, the audit log (each event names the fields it touched,
``recipient.address``, or ``masked`` for the masked snapshot of both parties), the staff register (a role's
station, never a name or an id) and the deliveries' virtual-number bindings. Reading is itself audited.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from courier_api import partners
from courier_api.models import Assignment, Partner, StaffUser
from courier_api.subjects.verify import SubjectScope, scope_of
from waybill import audit, consent
from waybill.consent import PrivacyNotice
from waybill.crypto.vault import CryptoError, FieldCodec
from waybill.errors import NotFound
from waybill.models import AuditEvent, Shipment
from waybill.permissions import Permission, Principal
from waybill.retention_dates import destroyed_by

PD_COLUMNS = ("name", "phone", "address")
LOG_LIMIT = 1000
# A purpose shown to the subject: a code, never an id, a case number or free text.
_SAFE_PURPOSE = re.compile(r"[a-z][a-z_ ]{0,40}")
# Audit actions that hand this party's data to someone outside the staff: (action, fields) -> partner.
PARTNER_ACTIONS = {"courier.call": "virtual_number_provider", "message.deliver": "sms_provider"}
PARTNER_TEXT = {"virtual_number_provider": "隐私号（虚拟号码）服务商：用于快递员联系您，不显示真实号码",
                "sms_provider": "短信服务商：用于发送验证码、取件码等通知"}
PARTNER_KIND_TEXT = {"locker": "快递柜运营方", "station": "驿站", "franchise": "加盟网点", "authority": "主管部门"}
ROLE_TEXT = {"courier": "派送快递员（完整地址，用于派送）", "sorter": "分拣员（脱敏面单）",
             "privacy_officer": "隐私官（依登记的申请）"}


@dataclass(frozen=True)
class PersonalData:
    name: str
    phone: str
    province: str
    city: str
    district: str
    address: str


@dataclass(frozen=True)
class Disclosure:
    kind: str  # "provider" | "role" | "partner"
    recipient: str
    description: str
    fields: list[str]
    last_at: datetime
    partner_kind: str | None = None


@dataclass(frozen=True)
class SubjectView:
    waybill_no: str
    party: str
    personal_data: PersonalData | None
    personal_data_status: str  # "available" | "destroyed"
    status: str
    purposes: list[dict[str, Any]]
    retained_until: datetime | None
    retention_note: str
    disclosed_to: list[Disclosure]


@dataclass(frozen=True)
class AccessItem:
    at: datetime
    role: str
    action: str
    purpose: str | None
    fields: list[str]
    station: str | None = None
    partner: str | None = None
    partner_kind: str | None = None


@dataclass
class _Seen:
    fields: set[str] = field(default_factory=set)
    last_at: datetime | None = None


def _shipment(session: Session, scope: SubjectScope) -> Shipment:
    shipment = session.get(Shipment, scope.shipment_id)
    if shipment is None:
        raise NotFound()
    return shipment


def party_destroyed(shipment: Shipment, party: str) -> bool:
    """Whether one party's personal data is gone (destroyed by retention or a deletion request)."""
    if getattr(shipment, f"{party}_destroyed_at") is not None:
        return True
    return any(getattr(shipment, f"{party}_{column}_ct", None) is None for column in PD_COLUMNS)


def decrypt_party(codec: FieldCodec, shipment: Shipment, party: str) -> PersonalData | None:
    """The party's data in clear, or None when it is destroyed (its key gone: the ciphertexts cannot open)."""
    if party_destroyed(shipment, party):
        return None
    try:
        values = {c: codec.decrypt(getattr(shipment, f"{party}_{c}_ct"), table="shipments", column=f"{party}_{c}",
                                   row_id=shipment.id) for c in PD_COLUMNS}
    except CryptoError:
        return None
    region: dict[str, str] = getattr(shipment, f"{party}_region")
    return PersonalData(province=region["province"], city=region["city"], district=region["district"], **values)


def touches(fields: Iterable[str], party: str) -> list[str]:
    """The fields of an event that are this party's (``masked`` is both parties' masked snapshot)."""
    return sorted(f for f in fields if f == "masked" or f.startswith(f"{party}.") or f == "personal_data")


def _events(session: Session, shipment_id: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.object_id == shipment_id)
                                .order_by(AuditEvent.seq.desc()).limit(LOG_LIMIT)))


def _stations(session: Session, events: Iterable[AuditEvent]) -> dict[str, str | None]:
    ids = {e.actor.split(":", 1)[1] for e in events if e.actor.startswith("staff:")}
    if not ids:
        return {}
    return {uid: station for uid, station in session.execute(
        select(StaffUser.id, StaffUser.station).where(StaffUser.id.in_(ids)))}


def _purpose(raw: str | None) -> str | None:
    if not raw:
        return None
    head = raw.split(":", 1)[0].split(";", 1)[0]
    return head if _SAFE_PURPOSE.fullmatch(head) else None


def _partner_of(ev: AuditEvent, known: dict[str, Partner]) -> Partner | None:
    """The partner a ``partner.disclose`` event names (its purpose is ``basis:partner id``)."""
    if ev.action != partners.DISCLOSE_ACTION or not ev.purpose:
        return None
    return known.get(ev.purpose.split(":", 1)[-1])


def access_log(session: Session, principal: Principal) -> list[AccessItem]:
    """Every audited access to (or disclosure of) this party's data, newest first: roles and stations only;
    a disclosure to a partner names the partner (a business, not a person) and its kind."""
    scope = scope_of(session, principal, Permission.SUBJECT_LOG_READ)
    events = _events(session, scope.shipment_id)
    stations = _stations(session, events)
    known = {row.partner.id: row.partner for row in partners.of_party(session, scope.shipment_id, scope.party)}
    items = []
    for ev in events:
        mine = touches(ev.fields, scope.party)
        if not mine:
            continue
        staff_id = ev.actor.split(":", 1)[1] if ev.actor.startswith("staff:") else None
        partner = _partner_of(ev, known)
        items.append(AccessItem(at=ev.at, role=ev.role, action=ev.action, purpose=_purpose(ev.purpose), fields=mine,
                                station=stations.get(staff_id) if staff_id else None,
                                partner=partner.name if partner is not None else PARTNER_ACTIONS.get(ev.action),
                                partner_kind=partner.kind if partner is not None else None))
    audit.record(session, principal, "subject.access_log", object_type="shipment", object_id=scope.shipment_id,
                 purpose="data_subject_access")
    return items


def _disclosures(session: Session, shipment: Shipment, party: str) -> list[Disclosure]:
    seen: dict[tuple[str, str], _Seen] = {}

    def note(kind: str, recipient: str, fields: Iterable[str], at: datetime) -> None:
        entry = seen.setdefault((kind, recipient), _Seen())
        entry.fields.update(fields)
        entry.last_at = max(at, entry.last_at) if entry.last_at else at

    for ev in _events(session, shipment.id):
        mine = touches(ev.fields, party)
        if not mine or ev.outcome not in ("ok", "sent", "emergency") or ev.action == partners.DISCLOSE_ACTION:
            continue  # a partner's disclosure is read from its own record below
        partner = PARTNER_ACTIONS.get(ev.action)
        if partner is not None:
            note("provider", partner, mine, ev.at)
        elif ev.role in ROLE_TEXT:
            note("role", ev.role, mine, ev.at)
    if party == "recipient":  # a binding hands the recipient's real number to the virtual-number provider
        for at in session.scalars(select(Assignment.assigned_at).where(Assignment.shipment_id == shipment.id,
                                                                       Assignment.binding_id.is_not(None))):
            note("provider", "virtual_number_provider", ["recipient.phone"], at)
    out: list[Disclosure] = []
    for row in partners.of_party(session, shipment.id, party):  # oldest first: the newest stays last per partner
        found = next((d for d in out if d.kind == "partner" and d.recipient == row.partner.name
                      and d.partner_kind == row.partner.kind), None)
        fields = sorted(set(row.disclosure.fields) | (set(found.fields) if found else set()))
        if found is not None:
            out.remove(found)
        kind_text = PARTNER_KIND_TEXT.get(row.partner.kind, row.partner.kind)
        out.append(Disclosure(kind="partner", recipient=row.partner.name, partner_kind=row.partner.kind,
                              description=f"{kind_text}：{row.partner.name}（依协议代收包裹并通知您取件）",
                              fields=fields, last_at=row.disclosure.at))
    for (kind, recipient), entry in sorted(seen.items()):
        assert entry.last_at is not None
        text = PARTNER_TEXT.get(recipient) if kind == "provider" else ROLE_TEXT.get(recipient)
        out.append(Disclosure(kind=kind, recipient=recipient, description=text or recipient,
                              fields=sorted(entry.fields), last_at=entry.last_at))
    return out


def _purposes(shipment: Shipment, party: str, notice: PrivacyNotice | None) -> list[dict[str, Any]]:
    return list(consent.purposes_of(shipment, party, notice=notice))


def view(session: Session, codec: FieldCodec, principal: Principal, *, retention_days: int,
         notice: PrivacyNotice | None = None) -> SubjectView:
    """The subject's own party: data in full, status, purposes, retention and recipients (audited)."""
    scope = scope_of(session, principal, Permission.SUBJECT_DATA_READ)
    shipment = _shipment(session, scope)
    data = decrypt_party(codec, shipment, scope.party)
    ended = shipment.ended_at
    if ended is not None:
        retained_until: datetime | None = destroyed_by(ended, retention_days)
        note = f"运单已结束，个人信息保留至该时间后销毁（保存期限 {retention_days} 天）"
    else:
        retained_until, note = None, f"运单尚未结束；签收或取消后再保留 {retention_days} 天，然后销毁"
    if data is None:
        note = "您在本运单上的个人信息已销毁，无法恢复"
    audit.record(session, principal, "subject.data_read", object_type="shipment", object_id=shipment.id,
                 fields=[] if data is None else [f"{scope.party}.{c}" for c in PD_COLUMNS],
                 purpose="data_subject_access", outcome="ok" if data is not None else "destroyed")
    return SubjectView(waybill_no=shipment.waybill_no, party=scope.party, personal_data=data,
                       personal_data_status="available" if data is not None else "destroyed",
                       status=shipment.status, purposes=_purposes(shipment, scope.party, notice),
                       retained_until=retained_until, retention_note=note,
                       disclosed_to=_disclosures(session, shipment, scope.party))
