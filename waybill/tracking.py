"""Movement through the network: the status edges, and the tracking events every step leaves.

Every status change goes through :func:`move`, which refuses a step that is not an edge of :data:`EDGES`
(``InvalidStatusTransition``), and every sorting scan through :func:`record_scan`. Both append a
:class:`~waybill.models.TrackingEvent` with the shipment's next sequence number, in the caller's transaction:
the history merchants read (``GET /v1/shipments/{id}/events``) and the webhooks they are sent are exactly
what committed with the change. Events hold statuses, stations and times only, never personal data.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from waybill.errors import InvalidStatusTransition, ValidationFailed
from waybill.ids import new_id
from waybill.models import Shipment, TrackingEvent, utcnow
from waybill.permissions import Principal

STATUSES = ("created", "printed", "in_transit", "out_for_delivery", "delivery_failed", "returning", "returned",
            "delivered", "cancelled")

#: The only steps a status may take (the contract's "Status only moves along these edges").
EDGES: dict[str, frozenset[str]] = {
    "created": frozenset({"printed", "cancelled"}),
    # A parcel may go straight from the label printer to a courier of the same station (no sorting centre).
    "printed": frozenset({"in_transit", "out_for_delivery", "cancelled"}),
    "in_transit": frozenset({"out_for_delivery"}),
    "out_for_delivery": frozenset({"delivered", "delivery_failed"}),
    # After a failed attempt: assigned again, or sent back (refused, or the last allowed attempt).
    "delivery_failed": frozenset({"out_for_delivery", "returning"}),
    "returning": frozenset({"returned"}),
    "returned": frozenset(),
    "delivered": frozenset(),
    "cancelled": frozenset(),
}
TERMINAL = frozenset(status for status, nexts in EDGES.items() if not nexts)
SCAN_EVENTS = ("arrival", "departure")


def can_move(current: str, to: str) -> bool:
    """Whether ``current`` -> ``to`` is an edge."""
    return to in EDGES.get(current, frozenset())


def _append(session: Session, shipment: Shipment, *, kind: str, status: str, previous: str | None,
            event: str | None, station: str | None, actor: str | None, at: datetime) -> TrackingEvent:
    # One atomic increment: two transactions appending to one shipment queue on its row (PostgreSQL) or on
    # the single writer (SQLite) and never draw the same number.
    seq = session.execute(update(Shipment).where(Shipment.id == shipment.id)
                          .values(event_seq=Shipment.event_seq + 1).returning(Shipment.event_seq)
                          .execution_options(synchronize_session=False)).scalar_one()
    # The loaded row learns the number too (without becoming dirty: a later flush must not write it back over
    # a newer one), so what this session reads of it afterwards is not stale.
    set_committed_value(shipment, "event_seq", int(seq))
    row = TrackingEvent(id=new_id("trk"), shipment_id=shipment.id, seq=int(seq), kind=kind, status=status,
                        previous_status=previous, event=event, station=station, actor=actor, at=at)
    session.add(row)
    return row


def started(session: Session, principal: Principal, shipment: Shipment, *, at: datetime) -> TrackingEvent:
    """The first event of a new shipment (status ``created``)."""
    return _append(session, shipment, kind="status", status=shipment.status, previous=None, event=None,
                   station=shipment.origin_station, actor=principal.actor, at=at)


def move(session: Session, principal: Principal, shipment: Shipment, to: str, *, station: str | None = None,
         at: datetime | None = None, event: str | None = None) -> TrackingEvent:
    """Change ``shipment``'s status to ``to`` along an edge, and record it (merchants' webhooks included).

    ``event`` says why, in an enumerated word (a failed attempt's reason: ``not_home``, ``refused``...), never
    free text: merchants read it.
    """
    previous = shipment.status
    if not can_move(previous, to):
        raise InvalidStatusTransition(field="status")
    at = at or utcnow()
    shipment.status = to
    shipment.updated_at = at
    row = _append(session, shipment, kind="status", status=to, previous=previous, event=event, station=station,
                  actor=principal.actor, at=at)
    _publish(session, shipment, row)
    return row


def record_scan(session: Session, principal: Principal, shipment: Shipment, event: str, *, station: str,
                at: datetime | None = None) -> TrackingEvent:
    """A sorting scan (``arrival``/``departure``) at ``station``: an event without a status change."""
    if event not in SCAN_EVENTS:
        raise ValidationFailed("event 须为 arrival 或 departure", field="event")
    return _append(session, shipment, kind="scan", status=shipment.status, previous=None, event=event,
                   station=station, actor=principal.actor, at=at or utcnow())


def _publish(session: Session, shipment: Shipment, event: TrackingEvent) -> None:
    """Queue the merchant's webhooks for a status change, in the same transaction."""
    # Filled in by merchant webhooks (waybill/webhooks): until then a status change notifies nobody.


def history(session: Session, shipment_id: str) -> list[TrackingEvent]:
    """A shipment's events in sequence order (the caller has checked that the principal may see it)."""
    return list(session.scalars(select(TrackingEvent).where(TrackingEvent.shipment_id == shipment_id)
                                .order_by(TrackingEvent.seq)))
