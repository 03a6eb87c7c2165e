"""The partner register and the disclosures made to partners at the last mile.

A locker or station delivery names a registered partner of the matching kind (a franchise outlet may run a
station, 驿站; an authority never takes parcels) whose agreement has not expired (its last valid day is
``agreement_expires``, Asia/Shanghai). Each such delivery records a :class:`Disclosure`: which of the
recipient's fields the partner gets (to hold the parcel for them and hand it over), when, on what basis
(``contract``: PIPL Art. 13(1)(2), necessary to perform the contract the recipient is party to), and by whom.
Disclosure rows hold ids and field names, never values, so they outlive the data (the subject's access log
and the privacy office's list keep showing them).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from courier_api.models import Disclosure, Partner
from waybill import audit
from waybill.crypto.subject_keys import day_of
from waybill.errors import PartnerAgreementExpired, ValidationFailed
from waybill.ids import looks_like, new_id
from waybill.models import Shipment, utcnow
from waybill.permissions import Permission, Principal

KINDS = ("locker", "station", "franchise", "authority")
#: The partner kinds a delivery method may hand a parcel to.
METHOD_KINDS = {"locker": frozenset({"locker"}), "station": frozenset({"station", "franchise"})}
#: What each method discloses of the recipient: a locker binds the compartment to the phone; a station also
#: checks the name at the counter.
METHOD_FIELDS = {"locker": ["recipient.phone"], "station": ["recipient.name", "recipient.phone"]}
BASIS = "contract"
DISCLOSE_ACTION = "partner.disclose"
#: Longest name: it goes into the pickup notice's SMS parameter (35 characters at most).
NAME_MAX = 35
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.-]{0,63}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class ListedDisclosure:
    disclosure: Disclosure
    partner: Partner


def active(partner: Partner, today: date) -> bool:
    """Whether the partner's agreement still holds on ``today`` (its expiry day included)."""
    return partner.agreement_expires >= today


def _today(now: datetime | None) -> date:
    return day_of(now or utcnow())


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX or any(unicodedata.category(ch)[0] == "C" for ch in name) or "${" in name:
        raise ValidationFailed(f"name 须为 1-{NAME_MAX} 个字符，不含控制字符", field="name")
    return name


def create(session: Session, principal: Principal, *, name: str, kind: str, agreement_ref: str,
           agreement_expires: str, now: datetime | None = None) -> Partner:
    """Register a partner (audited). An agreement that has already expired is refused (field ``agreement_expires``)."""
    principal.require(Permission.PARTNER_MANAGE)
    name = _check_name(name)
    if kind not in KINDS:
        raise ValidationFailed("kind 须为 locker / station / franchise / authority", field="kind")
    if not _REF.fullmatch(agreement_ref):
        raise ValidationFailed("agreement_ref 须为字母、数字及 / _ . -（最多 64 个字符）", field="agreement_ref")
    try:
        if not _DATE.fullmatch(agreement_expires):
            raise ValueError(agreement_expires)
        expires = date.fromisoformat(agreement_expires)
    except ValueError:
        raise ValidationFailed("agreement_expires 须为 YYYY-MM-DD 日期", field="agreement_expires") from None
    if expires < _today(now):
        raise ValidationFailed("协议已过期，不能登记", field="agreement_expires")
    partner = Partner(id=new_id("ptn"), name=name, kind=kind, agreement_ref=agreement_ref,
                      agreement_expires=expires, created_at=now or utcnow())
    session.add(partner)
    session.flush()
    audit.record(session, principal, "partner.create", object_type="partner", object_id=partner.id, purpose=kind)
    return partner


def listing(session: Session, principal: Principal, kind: str | None = None) -> list[Partner]:
    """The register (optionally one kind), by name."""
    principal.require(Permission.PARTNER_READ)
    if kind is not None and kind not in KINDS:
        raise ValidationFailed("kind 须为 locker / station / franchise / authority", field="kind")
    stmt = select(Partner).order_by(Partner.name, Partner.id)
    if kind is not None:
        stmt = stmt.where(Partner.kind == kind)
    return list(session.scalars(stmt))


def for_delivery(session: Session, partner_id: object, method: str, *, now: datetime | None = None) -> Partner:
    """The partner a ``method`` delivery names: unknown or of another kind ``422`` (field ``partner_id``),
    an expired agreement ``409`` ``partner_agreement_expired``."""
    partner = None
    if isinstance(partner_id, str) and looks_like("ptn", partner_id):
        partner = session.get(Partner, partner_id)
    if partner is None or partner.kind not in METHOD_KINDS.get(method, frozenset()):
        raise ValidationFailed("合作方不存在或类型不符", field="partner_id")
    if not active(partner, _today(now)):
        raise PartnerAgreementExpired(field="partner_id")
    return partner


def disclose(session: Session, principal: Principal, partner: Partner, shipment: Shipment, method: str, *,
             now: datetime | None = None) -> Disclosure:
    """Record (and audit) that the recipient's fields for ``method`` go to ``partner`` with this shipment."""
    fields = list(METHOD_FIELDS[method])
    row = Disclosure(id=new_id("dsc"), at=now or utcnow(), partner_id=partner.id, shipment_id=shipment.id,
                     party="recipient", fields=fields, basis=BASIS, actor=principal.actor)
    session.add(row)
    # The purpose names the basis and the partner (an id, not personal data): the subject's log shows who.
    audit.record(session, principal, DISCLOSE_ACTION, object_type="shipment", object_id=shipment.id, fields=fields,
                 purpose=f"{BASIS}:{partner.id}")
    session.flush()
    return row


def disclosures(session: Session, principal: Principal, *, partner_id: str | None = None, limit: int = 100,
                before: str | None = None) -> tuple[list[ListedDisclosure], str | None]:
    """Every disclosure to partners (one partner's, if named), newest first; (page, next cursor). Audited."""
    principal.require(Permission.DISCLOSURE_READ)
    stmt = (select(Disclosure, Partner).join(Partner, Partner.id == Disclosure.partner_id)
            .order_by(Disclosure.id.desc()).limit(limit + 1))  # ids grow with time
    if partner_id is not None:
        stmt = stmt.where(Disclosure.partner_id == partner_id)
    if before is not None:
        stmt = stmt.where(Disclosure.id < before)
    rows = [ListedDisclosure(d, p) for d, p in session.execute(stmt)]
    more = len(rows) > limit
    rows = rows[:limit]
    audit.record(session, principal, "disclosure.list", object_type="partner" if partner_id else None,
                 object_id=partner_id)
    return rows, rows[-1].disclosure.id if more and rows else None


def of_party(session: Session, shipment_id: str, party: str) -> list[ListedDisclosure]:
    """One party's disclosures, oldest first (for their access log and ``disclosed_to``)."""
    stmt = (select(Disclosure, Partner).join(Partner, Partner.id == Disclosure.partner_id)
            .where(Disclosure.shipment_id == shipment_id, Disclosure.party == party).order_by(Disclosure.id))
    return [ListedDisclosure(d, p) for d, p in session.execute(stmt)]
