"""Pickup codes: a random 6-digit code per shipment, sent to the recipient by SMS, kept only as a keyed hash.

- :func:`issue` makes a new code (``secrets``), supersedes the live one of the same purpose and queues the SMS
  through :func:`waybill.messages.send` (sealed under the recipient's data key, so it dies with their data).
  The code exists in clear only inside this call and the encrypted message: never in a response, log, label
  or audit event.
- Handover (:func:`check_handover`): the courier types the code the recipient tells them; it is compared in
  constant time with the live row's hash. Each wrong code is counted on the row (the count outlives the
  ``422``); the fifth locks handover (``409`` ``pickup_locked``) and raises ``alert.pickup_code_failures``.
  A dispatcher's resend (:func:`resend`) issues a new code, which also unlocks.
- Landline recipients cannot receive an SMS: a row is still made (``sent`` false), so a handover answers
  ``409`` ``pickup_code_unavailable`` instead of counting guesses of a code nobody has, and the courier
  delivers to a locker or station (the partner notifies the recipient by phone) or records a failed attempt.
  The same holds when the number's hourly SMS budget is spent; a dispatcher may resend later.
- Locker and station deliveries send the partner's pickup notice instead (:func:`send_collection_notice`): a
  fresh collection code (purpose ``collection``, hashed the same way) in the ``partner_pickup_notice`` template.

The hash is ``HMAC-SHA256(pickup_code secret, "pickup|v1|" row id "|" code)``: bound to its row, so a code is
worthless for any other shipment or after a resend, and the secret is used for nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from courier_api.models import PickupCode
from waybill import audit, messages, uow
from waybill.crypto.vault import FieldCodec
from waybill.errors import PersonalDataDestroyed, PickupCodeUnavailable, PickupLocked, ValidationFailed
from waybill.ids import new_id
from waybill.messages.store import MessageServices
from waybill.models import Shipment, utcnow
from waybill.permissions import Principal

log = logging.getLogger("waybill.alerts")

HANDOVER = "handover"
COLLECTION = "collection"
#: Wrong codes after which handover is locked for the shipment (the contract's number): the default of
#: WAYBILL_ALERT_PICKUP_CODE_FAILURES_COUNT, which PickupDeps.max_failures carries.
MAX_FAILURES = 5
_CONTEXT = b"pickup|v1|"
_FORM = re.compile(r"[0-9]{6}")  # ASCII digits only: no full-width or Arabic-Indic digits (as \d would take)


@dataclass(frozen=True)
class PickupDeps:
    """The pickup-code secret (its own purpose in the key file) and what sending an SMS needs."""

    key: bytes
    messages: MessageServices
    max_failures: int = MAX_FAILURES  # wrong codes that lock the handover and fire pickup_code_failures

    @property
    def codec(self) -> FieldCodec:
        return self.messages.codec


def code_hash(key: bytes, row_id: str, code: str) -> bytes:
    """The keyed hash of ``code`` for the row ``row_id``."""
    return hmac.new(key, _CONTEXT + row_id.encode() + b"|" + code.encode(), hashlib.sha256).digest()


def _tail(shipment: Shipment) -> str:
    """What the SMS names the parcel by: the waybill number's last four characters (printed on the label)."""
    return shipment.waybill_no[-4:]


def _recipient_phone(deps: PickupDeps, shipment: Shipment) -> str:
    if shipment.recipient_phone_ct is None:  # destroyed: impossible while in delivery (deletions wait for the end)
        raise PersonalDataDestroyed()
    return deps.codec.decrypt(shipment.recipient_phone_ct, table="shipments", column="recipient_phone",
                              row_id=shipment.id)


def live(session: Session, shipment_id: str, purpose: str = HANDOVER) -> PickupCode | None:
    """The shipment's live (not superseded) code of ``purpose``, locked for update."""
    return session.scalars(select(PickupCode).where(
        PickupCode.shipment_id == shipment_id, PickupCode.purpose == purpose, PickupCode.superseded_at.is_(None))
        .order_by(PickupCode.created_at.desc(), PickupCode.id.desc()).limit(1).with_for_update()).first()


def issued(session: Session, shipment_id: str) -> bool:
    """Whether the shipment ever had a handover code (parcels out for delivery before this existed had none)."""
    return session.scalar(select(PickupCode.id).where(PickupCode.shipment_id == shipment_id,
                                                      PickupCode.purpose == HANDOVER).limit(1)) is not None


def supersede(session: Session, shipment_id: str, now: datetime, purpose: str | None = HANDOVER) -> None:
    """End the live codes of ``purpose`` (all purposes with None): they stop working at once."""
    stmt = update(PickupCode).where(PickupCode.shipment_id == shipment_id, PickupCode.superseded_at.is_(None))
    if purpose is not None:
        stmt = stmt.where(PickupCode.purpose == purpose)
    session.execute(stmt.values(superseded_at=now).execution_options(synchronize_session=False))


def _new_row(session: Session, deps: PickupDeps, shipment: Shipment, purpose: str,
             now: datetime) -> tuple[PickupCode, str]:
    supersede(session, shipment.id, now, purpose)
    code = f"{secrets.randbelow(1_000_000):06d}"
    row_id = new_id("pkc")
    row = PickupCode(id=row_id, shipment_id=shipment.id, purpose=purpose, code_hash=code_hash(deps.key, row_id, code),
                     sent=False, created_at=now, failures=0)
    session.add(row)
    session.flush()
    return row, code


def _send(session: Session, deps: PickupDeps, shipment: Shipment, row: PickupCode, template: str,
          params: dict[str, str], now: datetime) -> bool:
    """Queue the SMS; False (nothing queued) for a landline or a spent hourly budget.

    Also False when the recipient has no data key to seal the message under (nothing can then be sent to them):
    the delivery goes on without a code rather than fail the dispatcher's assignment.
    """
    try:
        messages.send(session, deps.messages, phone=_recipient_phone(deps, shipment), template=template,
                      params=params, shipment_id=shipment.id, party="recipient", now=now)
    except (messages.NotMobile, messages.InvalidPhone, messages.Throttled, PersonalDataDestroyed) as exc:
        log.info("pickup code not sent", extra={"shipment_id": shipment.id, "error_type": type(exc).__name__})
        return False
    row.sent = True
    return True


def issue(session: Session, deps: PickupDeps, principal: Principal | None, shipment: Shipment, *,
          action: str = "pickup_code.issue", now: datetime | None = None) -> bool:
    """A new handover code for ``shipment`` (the old one stops working), sent to the recipient; True if sent.

    The caller holds the shipment's row lock (assign, scan and resend all lock it first).
    """
    now = now or utcnow()
    row, code = _new_row(session, deps, shipment, HANDOVER, now)
    sent = _send(session, deps, shipment, row, "pickup_code", {"tail": _tail(shipment), "code": code}, now)
    audit.record(session, principal, action, object_type="shipment", object_id=shipment.id,
                 purpose="delivery", outcome="ok" if sent else "not_sent")
    session.flush()
    return sent


def ensure_issued(session: Session, deps: PickupDeps, principal: Principal, shipment_id: str) -> None:
    """Give a parcel that went out for delivery before pickup codes existed its code (at the courier's scan)."""
    shipment = session.execute(select(Shipment).where(Shipment.id == shipment_id).with_for_update()
                               .execution_options(populate_existing=True)).scalar_one_or_none()
    # Re-checked under the lock: two scans at once make one code.
    if shipment is None or shipment.status != "out_for_delivery" or issued(session, shipment_id):
        return
    issue(session, deps, principal, shipment, action="pickup_code.issue_on_scan")


def check_handover(session: Session, deps: PickupDeps, principal: Principal, shipment: Shipment,
                   code: object) -> None:
    """Accept the recipient's code or raise: wrong ``422`` (counted, kept), locked ``409``, none sent ``409``."""
    row = live(session, shipment.id)
    if row is None:
        # Never issued (out for delivery before the upgrade and not scanned since): scanning issues it.
        raise ValidationFailed("该运单尚无取件码：请先扫码，系统将向收件人发送取件码", field="pickup_code")
    if row.locked_at is not None:
        audit.record(session, principal, "courier.deliver", object_type="shipment", object_id=shipment.id,
                     outcome="pickup_locked", durable=True)
        raise PickupLocked(field="pickup_code")
    if not row.sent:
        audit.record(session, principal, "courier.deliver", object_type="shipment", object_id=shipment.id,
                     outcome="pickup_code_unavailable", durable=True)
        raise PickupCodeUnavailable(field="pickup_code")
    if not (isinstance(code, str) and _FORM.fullmatch(code)):
        # Not a code at all (a typo's form, not a guess): refused without counting, after the lock's answer.
        raise ValidationFailed("取件码须为 6 位数字", field="pickup_code")
    given = code
    if hmac.compare_digest(code_hash(deps.key, row.id, given), row.code_hash):
        return
    row.failures += 1
    audit.record(session, principal, "courier.deliver", object_type="shipment", object_id=shipment.id,
                 outcome="bad_pickup_code")
    locked = row.failures >= deps.max_failures
    if locked:
        row.locked_at = utcnow()
        # A run of wrong codes is someone guessing (or a courier without the recipient): oversight looks.
        audit.record(session, principal, "alert.pickup_code_failures", object_type="shipment",
                     object_id=shipment.id, outcome="alert", purpose=f"severity=warning;failures={row.failures}")
        log.warning("pickup code failures: handover locked",
                    extra={"actor": principal.actor, "shipment_id": shipment.id, "failures": row.failures})
    session.flush()
    uow.keep_on_error(session)  # the count (and the lock, the alert) must outlive the error answer
    if locked:
        raise PickupLocked(field="pickup_code")
    raise ValidationFailed("取件码不正确", field="pickup_code")


def send_collection_notice(session: Session, deps: PickupDeps, principal: Principal, shipment: Shipment,
                           partner_name: str, *, now: datetime | None = None) -> bool:
    """The partner's pickup notice with a fresh collection code (locker and station deliveries); True if sent."""
    now = now or utcnow()
    row, code = _new_row(session, deps, shipment, COLLECTION, now)
    sent = _send(session, deps, shipment, row, "partner_pickup_notice",
                 {"tail": _tail(shipment), "partner": partner_name, "code": code}, now)
    audit.record(session, principal, "pickup_code.collection_notice", object_type="shipment",
                 object_id=shipment.id, purpose="delivery", outcome="ok" if sent else "not_sent")
    return sent


def forget(session: Session, shipment_ids: list[str]) -> None:
    """Delete the shipments' code rows with the recipient's personal data (retention, a deletion request)."""
    for start in range(0, len(shipment_ids), 500):
        session.execute(delete(PickupCode).where(PickupCode.shipment_id.in_(shipment_ids[start:start + 500]))
                        .execution_options(synchronize_session=False))
