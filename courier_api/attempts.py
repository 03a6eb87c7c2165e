"""Failed delivery attempts: the assigned courier could not hand the parcel over.

``record_attempt`` moves the parcel to ``delivery_failed`` and ends the courier's assignment
(``end_reason`` ``attempt_failed``) and releases its call binding at once, and the label's QR token stays
valid, so a dispatcher can assign the parcel again. At once, not after the grace period a delivery leaves: the
parcel goes to another courier (or back to its sender), so, as at a reassignment, the courier who failed must no
longer reach the recipient, and the provider binds one shipment to one pair of numbers at a time (a live binding
would refuse the next courier's call as a conflict). The attempts are counted from the ended assignments; after
``max_attempts`` failed ones, or at once when the recipient refused the parcel, it goes on to ``returning``
(back to its sender) in the same request. The reason is kept as the status event's ``event`` (an enumerated
word, never free text: merchants read it in the tracking history).
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from courier_api.delivery import DeliveryDeps, assigned_shipment
from courier_api.models import Assignment
from waybill import audit, tracking
from waybill.errors import ValidationFailed
from waybill.models import Shipment, utcnow
from waybill.permissions import Permission, Principal
from waybill.virtual_numbers.base import OutOfSession

__all__ = ["ATTEMPT_FAILED", "REASONS", "failed_attempts", "record_attempt"]

REASONS = ("not_home", "refused", "address_problem", "other")
ATTEMPT_FAILED = "attempt_failed"  # the assignment's end_reason


def failed_attempts(session: Session, shipment_id: str) -> int:
    """How many delivery attempts of the shipment failed so far."""
    return int(session.scalar(select(func.count()).select_from(Assignment).where(
        Assignment.shipment_id == shipment_id, Assignment.end_reason == ATTEMPT_FAILED)) or 0)


def record_attempt(session: Session, deps: DeliveryDeps, principal: Principal, shipment_id: str, reason: str, *,
                   max_attempts: int, now: datetime | None = None) -> Shipment:
    """A failed attempt by the assigned courier; see the module docstring. Returns the shipment."""
    principal.require(Permission.COURIER_ATTEMPT)
    if reason not in REASONS:
        raise ValidationFailed("reason 须为 not_home / refused / address_problem / other", field="reason")
    shipment, assignment = assigned_shipment(session, principal, shipment_id, "courier.attempt", deps.watch)
    now = now or utcnow()
    tracking.move(session, principal, shipment, "delivery_failed", station=assignment.station, at=now, event=reason)
    assignment.ended_at = now
    assignment.end_reason = ATTEMPT_FAILED
    if assignment.binding_id is not None:
        with contextlib.suppress(OutOfSession):  # a binding that is gone already needs no release
            deps.provider.release(session, assignment.binding_id)
    session.flush()
    failed = failed_attempts(session, shipment.id)
    audit.record(session, principal, "courier.attempt", object_type="shipment", object_id=shipment.id,
                 purpose=f"{reason} (attempt {failed})")
    if reason == "refused" or failed >= max_attempts:
        tracking.move(session, principal, shipment, "returning", station=assignment.station, at=now,
                      event="refused" if reason == "refused" else "max_attempts")
        audit.record(session, principal, "courier.return", object_type="shipment", object_id=shipment.id,
                     purpose="refused" if reason == "refused" else f"{failed} failed attempts")
    session.flush()
    return shipment
