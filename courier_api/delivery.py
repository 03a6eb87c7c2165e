"""Dispatch, scan, call and deliver: what a courier needs to deliver, and nothing more.

Object-level rules (the second of the two permission checks):
- a dispatcher assigns only shipments destined for their own station, to a courier of that station;
- a courier sees a shipment only while it is assigned to them and out for delivery;
- unknown, foreign, revoked, expired and delivered tokens all answer the same ``NotFound``.
Every scan attempt is audited with its outcome; reading the full address is audited as such.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.orm import Session

from courier_api import partners, pickup_codes
from courier_api.models import Assignment, PickupCode, StaffUser
from courier_api.pickup_codes import PickupDeps
from waybill import audit, labels, masked, tracking
from waybill.alerts.counters import Watch
from waybill.canaries import watch as canaries
from waybill.crypto.subject_keys import SubjectKeyring
from waybill.crypto.vault import FieldCodec
from waybill.errors import (
    Conflict,
    InvalidStatusTransition,
    NotFound,
    SandboxShipment,
    ShipmentNotFound,
    ValidationFailed,
)
from waybill.ids import looks_like, new_id
from waybill.models import QrToken, Shipment, utcnow
from waybill.permissions import Permission, Principal
from waybill.virtual_numbers.base import Binding, OutOfSession, VirtualNumberProvider

ASSIGNABLE = frozenset({"printed", "in_transit", "out_for_delivery", "delivery_failed"})
DELIVERY_METHODS = ("handover", "locker", "station")


class NoCourierPhone(Conflict):
    default_message = "快递员未登记手机号，无法分配隐私号"


@dataclass(frozen=True)
class DeliveryDeps:
    codec: FieldCodec
    token_key: bytes
    provider: VirtualNumberProvider
    binding_ttl: timedelta
    release_grace: timedelta
    token_max_age: timedelta
    # The parties' data keys: a delivery ends the contract and re-wraps them under the end day's key.
    keyring: SubjectKeyring
    # Pickup codes: their own secret, and the message provider that sends them to recipients.
    pickup: PickupDeps
    # Told each scan's outcome ("ok", "denied", "not_found"): the service's metrics.
    on_scan: Callable[[str], None] | None = None
    # The write-path alert rules (not_found_burst, foreign_station, off_hours); None: off.
    watch: Watch | None = None


@dataclass(frozen=True)
class CourierRecipient:
    """The recipient as a courier sees them: masked name and phone, the full address to deliver to."""

    name: str
    phone: str
    province: str
    city: str
    district: str
    address: str


@dataclass(frozen=True)
class ScannedShipment:
    """What a scan gives the assigned courier (and nothing more)."""

    shipment_id: str
    waybill_no: str
    status: str
    sorting_code: str
    recipient: CourierRecipient


def shipment_station(shipment: Shipment) -> str:
    """The delivering station: the first two segments of the sorting code (hub and station)."""
    hub, station, _area = (shipment.sorting_code.split("-") + ["", "", ""])[:3]
    return f"{hub}-{station}"


def _decrypt(deps: DeliveryDeps, shipment: Shipment, column: str) -> str:
    return deps.codec.decrypt(getattr(shipment, f"{column}_ct"), table="shipments", column=column,
                              row_id=shipment.id)


def _station_shipment(session: Session, principal: Principal, shipment_id: str, action: str,
                      watch: Watch | None = None) -> Shipment:
    """The shipment (locked) if it is for the dispatcher's own station, else :class:`ShipmentNotFound`
    (audited as ``action``): the object-level rule of every dispatcher action. A refusal counts towards
    ``foreign_station`` (another station's shipment) or ``not_found_burst`` (no such shipment)."""
    shipment = None
    if looks_like("shp", shipment_id):
        shipment = session.execute(select(Shipment).where(Shipment.id == shipment_id).with_for_update()
                                   ).scalar_one_or_none()
    if shipment is None or principal.station is None or shipment_station(shipment) != principal.station:
        audit.record(session, principal, action, object_type="shipment",
                     object_id=shipment_id if looks_like("shp", shipment_id) else None, outcome="denied",
                     durable=True)
        if watch is not None:
            (watch.missed if shipment is None else watch.foreign)(session, principal)
        raise ShipmentNotFound()
    return shipment


def assign(session: Session, principal: Principal, shipment_id: str, courier_username: str, *,
           provider: VirtualNumberProvider, pickup: PickupDeps, watch: Watch | None = None) -> Assignment:
    """Hand a shipment to a courier of the dispatcher's station; status becomes ``out_for_delivery``.

    Every assignment (a reassignment too) issues a new pickup code and sends it to the recipient: the old
    one stops working, so a code a previous courier may have heard is worthless. Except while handover is
    locked (5 wrong codes): the lock stays until a dispatcher resends.

    A reassignment ends the previous assignment and releases its call binding at once (no grace period:
    the previous courier must no longer reach the recipient, and the new courier's binding of the same
    shipment must not conflict with it). A remote provider is told after the commit (see
    :meth:`~waybill.virtual_numbers.store.StoredProvider.release`).
    """
    principal.require(Permission.DISPATCH_ASSIGN)
    shipment = _station_shipment(session, principal, shipment_id, "dispatch.assign", watch)
    courier = session.execute(select(StaffUser).where(StaffUser.username == courier_username)).scalar_one_or_none()
    if (courier is None or courier.role != "courier" or courier.disabled_at is not None
            or courier.station != principal.station):
        # Unknown and other-station couriers look the same.
        raise ValidationFailed("快递员不存在或不属于本站", field="courier")
    if shipment.test_mode:
        raise SandboxShipment(field="shipment_id")
    if shipment.status not in ASSIGNABLE:
        raise InvalidStatusTransition("当前状态不可派送", field="shipment_id")
    now = utcnow()
    # Read under the shipment's lock: a concurrent call of the previous courier either committed its
    # binding id before (released here) or re-checks its assignment after us and rolls back.
    ending = session.execute(select(Assignment.id, Assignment.binding_id).where(
        Assignment.shipment_id == shipment.id, Assignment.ended_at.is_(None))).all()
    if ending:
        session.execute(update(Assignment).where(Assignment.id.in_([row.id for row in ending]))
                        .values(ended_at=now, end_reason="reassigned").execution_options(synchronize_session=False))
    for row in ending:
        if row.binding_id is not None:
            with contextlib.suppress(OutOfSession):  # a binding that is gone already needs no release
                provider.release(session, row.binding_id)
    session.flush()
    assignment = Assignment(id=new_id("asg"), shipment_id=shipment.id, courier_id=courier.id,
                            dispatcher_id=principal.id, station=principal.station, assigned_at=now)
    session.add(assignment)
    if shipment.status != "out_for_delivery":  # a reassignment keeps the status
        tracking.move(session, principal, shipment, "out_for_delivery", station=principal.station, at=now)
    current = pickup_codes.live(session, shipment.id)
    # A lock is the shipment's: only a resend lifts it. A reassignment that issued a fresh code would hand the
    # same (or a colluding) courier five more guesses without the resend the contract asks for.
    if current is None or current.locked_at is None:
        pickup_codes.issue(session, pickup, principal, shipment, now=now)
    audit.record(session, principal, "dispatch.assign", object_type="shipment", object_id=shipment.id,
                 purpose=f"courier:{courier.id}")
    session.flush()
    return assignment


# The object-level rule for scan, call and deliver, in one place: the shipment is out for delivery and
# this courier holds its active assignment (the courier's id is the "courier_id" parameter).
_ACTIVE_FOR_COURIER = and_(Assignment.ended_at.is_(None), Assignment.courier_id == bindparam("courier_id"))


def _may_deliver(principal: Principal, status: str) -> bool:
    return principal.role == "courier" and status == "out_for_delivery"


def _active_assignment(session: Session, principal: Principal, shipment: Shipment) -> Assignment | None:
    if not _may_deliver(principal, shipment.status):
        return None
    return session.execute(select(Assignment).where(Assignment.shipment_id == shipment.id, _ACTIVE_FOR_COURIER),
                           {"courier_id": principal.id}).scalar_one_or_none()


# The scan's one query, built once: the live token, the few shipment columns the courier view needs,
# and whether this courier holds the shipment's active assignment.
_SCAN = (select(QrToken.token_hash, Shipment.id, Shipment.waybill_no, Shipment.status, Shipment.sorting_code,
                Shipment.recipient_region, Shipment.recipient_masked_ct, Shipment.recipient_address_ct,
                Assignment.id.label("assignment_id"),
                select(PickupCode.id).where(PickupCode.shipment_id == Shipment.id,
                                            PickupCode.purpose == pickup_codes.HANDOVER).exists().label("has_code"),
                canaries.is_canary_clause(Shipment.id).label("canary"))
         .join(Shipment, Shipment.id == QrToken.shipment_id)
         .outerjoin(Assignment, and_(Assignment.shipment_id == Shipment.id, _ACTIVE_FOR_COURIER))
         .where(labels.LIVE_TOKEN))


def scan(session: Session, deps: DeliveryDeps, principal: Principal, raw_token: Any) -> ScannedShipment:
    """The courier view for a scanned QR token: masked name and phone, full address."""
    principal.require(Permission.COURIER_SCAN)
    row = None
    params = labels.live_token_params(deps.token_key, raw_token, max_age=deps.token_max_age)
    if params is not None:
        found = session.connection().execute(_SCAN, {**params, "courier_id": principal.id}).first()
        row = found if labels.token_matches(found, params) else None
    assigned = row is not None and row.assignment_id is not None and _may_deliver(principal, row.status)
    if row is None or not assigned:
        outcome = "denied" if row is not None else "not_found"
        audit.record(session, principal, "courier.scan", object_type="shipment",
                     object_id=row.id if row is not None else None, outcome=outcome, durable=True)
        if deps.on_scan is not None:
            deps.on_scan(outcome)
        if deps.watch is not None:  # an unknown token, or one of a parcel that is not this courier's
            deps.watch.missed(session, principal)
        raise NotFound()
    region, snap = row.recipient_region, masked.unseal(deps.codec, row.id, "recipient", row.recipient_masked_ct)
    address = deps.codec.decrypt(row.recipient_address_ct, table="shipments", column="recipient_address",
                                 row_id=row.id)
    view = ScannedShipment(
        shipment_id=row.id, waybill_no=row.waybill_no, status=row.status, sorting_code=row.sorting_code,
        recipient=CourierRecipient(name=snap["name"], phone=snap["phone"], province=region["province"],
                                   city=region["city"], district=region["district"], address=address),
    )
    audit.record(session, principal, "courier.scan", object_type="shipment", object_id=row.id,
                 fields=["recipient.address"], purpose="delivery")
    if deps.watch is not None:
        deps.watch.read(session, principal)
    canaries.touched(session, principal, row.id, known=bool(row.canary))  # read in the scan's own query
    if not row.has_code:  # out for delivery since before pickup codes existed: the first scan sends one
        pickup_codes.ensure_issued(session, deps.pickup, principal, row.id)
    if deps.on_scan is not None:
        deps.on_scan("ok")
    return view


def _assigned(session: Session, principal: Principal, shipment_id: str, action: str, *,
              lock: bool = True, watch: Watch | None = None) -> tuple[Shipment, Assignment]:
    shipment = None
    if looks_like("shp", shipment_id):
        query = select(Shipment).where(Shipment.id == shipment_id)
        if lock:  # populate_existing: a re-check under the lock must see what committed meanwhile
            query = query.with_for_update().execution_options(populate_existing=True)
        shipment = session.execute(query).scalar_one_or_none()
    assignment = _active_assignment(session, principal, shipment) if shipment is not None else None
    if shipment is None or assignment is None:
        audit.record(session, principal, action, object_type="shipment",
                     object_id=shipment_id if looks_like("shp", shipment_id) else None, outcome="denied",
                     durable=True)
        if watch is not None:  # unknown, or not assigned to this courier: a miss either way
            watch.missed(session, principal)
        raise ShipmentNotFound()
    return shipment, assignment


def call(session: Session, deps: DeliveryDeps, principal: Principal, shipment_id: str) -> Binding:
    """A virtual number (and extension) for the assigned courier to call the recipient through.

    A remote provider's bind is an HTTP call, so it runs before this transaction locks any row: the
    checks first read without locks, the provider binds, and only then is the shipment locked and the
    assignment checked again. If it ended meanwhile (a reassignment), the request fails and rolls back,
    and the provider's compensation gives the remote binding back.
    """
    principal.require(Permission.COURIER_CALL)
    shipment, assignment = _assigned(session, principal, shipment_id, "courier.call", lock=False, watch=deps.watch)
    courier = session.get(StaffUser, principal.id)
    if courier is None or courier.phone_ct is None:
        raise NoCourierPhone(field="courier")
    courier_phone = deps.codec.decrypt(courier.phone_ct, table="staff_users", column="phone", row_id=courier.id)
    # Binding again with the same ref and parties returns the live binding: repeated calls are cheap.
    binding = deps.provider.bind_axe(session, courier_phone, _decrypt(deps, shipment, "recipient_phone"),
                                     ttl=deps.binding_ttl, ref=shipment.id)
    shipment, assignment = _assigned(session, principal, shipment_id, "courier.call")
    assignment.binding_id = binding.id
    if deps.watch is not None:
        deps.watch.read(session, principal)
    audit.record(session, principal, "courier.call", object_type="shipment", object_id=shipment.id,
                 fields=["recipient.phone"], purpose="delivery call")
    canaries.touched(session, principal, shipment.id)
    session.flush()
    return binding


def deliver(session: Session, deps: DeliveryDeps, principal: Principal, shipment_id: str, method: str,
            pickup_code: str | None = None, *, partner_id: str | None = None, locker_id: str | None = None,
            now: datetime | None = None) -> Shipment:
    """Sign-off: status ``delivered``, the QR token revoked, the call binding released after a grace period.

    ``handover`` needs the recipient's pickup code (:mod:`courier_api.pickup_codes`). ``locker`` and ``station``
    name a registered partner of that kind with a live agreement (:mod:`courier_api.partners`); the disclosure
    to it is recorded and the recipient gets the partner's pickup notice with a collection code.
    """
    principal.require(Permission.COURIER_DELIVER)
    if method not in DELIVERY_METHODS:
        raise ValidationFailed("method 须为 handover / locker / station", field="method")
    if method == "locker" and not (isinstance(locker_id, str) and locker_id):
        raise ValidationFailed("快递柜签收须提供柜号", field="locker_id")
    shipment, assignment = _assigned(session, principal, shipment_id, "courier.deliver", watch=deps.watch)
    now = now or utcnow()
    partner = None
    if method == "handover":
        pickup_codes.check_handover(session, deps.pickup, principal, shipment, pickup_code)
    else:
        partner = partners.for_delivery(session, partner_id, method, now=now)
    tracking.move(session, principal, shipment, "delivered", station=assignment.station, at=now)
    assignment.ended_at = now
    assignment.end_reason = "delivered"
    assignment.delivered_method = method
    pickup_codes.supersede(session, shipment.id, now, purpose=None)  # delivered: no code works any more
    if partner is not None:
        partners.disclose(session, principal, partner, shipment, method, now=now)
        canaries.touched(session, principal, shipment.id)  # the recipient's data handed on to a partner
        pickup_codes.send_collection_notice(session, deps.pickup, principal, shipment, partner.name, now=now)
    labels.revoke_tokens(session, principal, shipment.id, "delivered", now=now)
    deps.keyring.end_contract(session, shipment, now)
    if assignment.binding_id is not None:
        # The recipient may still call back for a while after sign-off; then the number stops routing.
        deps.provider.release(session, assignment.binding_id, at=now + deps.release_grace)
    audit.record(session, principal, "courier.deliver", object_type="shipment", object_id=shipment.id,
                 purpose=method)
    session.flush()
    return shipment


def resend_code(session: Session, deps: DeliveryDeps, principal: Principal, shipment_id: str) -> bool:
    """A dispatcher of the shipment's station sends the recipient a new handover code (the old one stops working,
    a lock ends); True when an SMS was queued (False: a landline, or the number's hourly budget spent)."""
    principal.require(Permission.PICKUP_CODE_RESEND)
    shipment = _station_shipment(session, principal, shipment_id, "pickup_code.resend", deps.watch)
    if shipment.status != "out_for_delivery":
        raise InvalidStatusTransition("仅派送中的运单可重发取件码", field="shipment_id")
    return pickup_codes.issue(session, deps.pickup, principal, shipment, action="pickup_code.resend")
def assigned_shipment(session: Session, principal: Principal, shipment_id: str,
                      action: str, watch: Watch | None = None) -> tuple[Shipment, Assignment]:
    """The shipment (locked) and the active assignment ``principal`` holds of it, or :class:`ShipmentNotFound`
    (audited as ``action``; a miss for ``not_found_burst``): the object-level rule of every courier action on an
    assigned parcel."""
    return _assigned(session, principal, shipment_id, action, watch=watch)
