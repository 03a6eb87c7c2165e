"""Movement through the network: the status edges, and the tracking events every step leaves.

Every status change goes through :func:`move`, which refuses a step that is not an edge of :data:`EDGES`
(``InvalidStatusTransition``), and every sorting scan through :func:`record_scan`. Both append a
:class:`~waybill.models.TrackingEvent` with the shipment's next sequence number, in the caller's transaction:
the history merchants read (``GET /v1/shipments/{id}/events``) and the webhooks they are sent are exactly
what committed with the change. Events hold statuses, stations and times only, never personal data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from waybill.bulk import BulkInsert
from waybill.errors import InvalidStatusTransition, ValidationFailed
from waybill.ids import new_id
from waybill.models import Shipment, TrackingEvent, utcnow
from waybill.permissions import Principal
from waybill.webhooks import fanout

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


_shipments = cast(Table, Shipment.__table__)  # Core, not ORM-enabled DML: a fraction of the cost per statement
_events = cast(Table, TrackingEvent.__table__)
_IN_CHUNK = 500


def _next_seq(session: Session, shipment: Shipment, locked: bool) -> int:
    if locked:
        # The caller holds the row's lock and loaded it under that lock: nobody else can draw a number until
        # it commits, so the number comes from the loaded row and is written with it at the flush (a batch of
        # scans then costs one UPDATE statement, not one round trip per event).
        seq = shipment.event_seq + 1
        shipment.event_seq = seq
        return seq
    if inspect(shipment).attrs.event_seq.history.has_changes():
        session.flush()  # a number drawn in memory first: the increment below must build on it
    # One atomic increment: two transactions appending to one shipment queue on its row (PostgreSQL) or on
    # the single writer (SQLite) and never draw the same number.
    seq = int(session.execute(update(_shipments).where(_shipments.c.id == shipment.id)
                              .values(event_seq=_shipments.c.event_seq + 1)
                              .returning(_shipments.c.event_seq)).scalar_one())
    # The loaded row learns the number too (without becoming dirty: a later flush must not write it back over
    # a newer one), so what this session reads of it afterwards is not stale.
    set_committed_value(shipment, "event_seq", seq)
    return seq


def _append(session: Session, shipment: Shipment, *, kind: str, status: str, previous: str | None,
            event: str | None, station: str | None, actor: str | None, at: datetime,
            locked: bool = False) -> TrackingEvent:
    seq = _next_seq(session, shipment, locked)
    row = TrackingEvent(id=new_id("trk"), shipment_id=shipment.id, seq=seq, kind=kind, status=status,
                        previous_status=previous, event=event, station=station, actor=actor, at=at)
    session.add(row)
    return row


def started(session: Session, principal: Principal, shipment: Shipment, *, at: datetime) -> TrackingEvent:
    """The first event of a new shipment (status ``created``)."""
    return _append(session, shipment, kind="status", status=shipment.status, previous=None, event=None,
                   station=shipment.origin_station, actor=principal.actor, at=at)


#: The sequence number of a shipment's first event: a shipment is written with it (``event_seq``) and the event.
FIRST_SEQ = 1
_FIRST_EVENTS = BulkInsert(cast(Table, TrackingEvent.__table__), (
    "id", "shipment_id", "seq", "kind", "status", "previous_status", "event", "station", "actor", "at"))


def started_many(session: Session, principal: Principal,
                 shipments: Iterable[tuple[str, str, str | None, datetime]]) -> None:
    """The first events of new shipments, one statement for them all: ``(shipment id, status, origin station,
    created at)`` each, what :func:`started` records for one.

    Only for shipments this transaction has just inserted with ``event_seq`` :data:`FIRST_SEQ`: nobody else
    can see them before the commit, so the number needs neither a lock nor an increment."""
    actor = principal.actor
    rows = [(new_id("trk"), sid, FIRST_SEQ, "status", status, None, None, station, actor, at)
            for sid, status, station, at in shipments]
    _FIRST_EVENTS.execute(session.connection(), rows)


def move(session: Session, principal: Principal, shipment: Shipment, to: str, *, station: str | None = None,
         at: datetime | None = None, event: str | None = None, locked: bool = False) -> TrackingEvent:
    """Change ``shipment``'s status to ``to`` along an edge, and record it (merchants' webhooks included).

    ``event`` says why, in an enumerated word (a failed attempt's reason: ``not_home``, ``refused``...), never
    free text: merchants read it. ``locked``: the caller loaded ``shipment`` under its row lock in this
    transaction (``SELECT ... FOR UPDATE`` with ``populate_existing``), so its number is drawn in memory.
    """
    previous = shipment.status
    if not can_move(previous, to):
        raise InvalidStatusTransition(field="status")
    at = at or utcnow()
    shipment.status = to
    shipment.updated_at = at
    row = _append(session, shipment, kind="status", status=to, previous=previous, event=event, station=station,
                  actor=principal.actor, at=at, locked=locked)
    _publish(session, shipment, row)
    return row


def record_scan(session: Session, principal: Principal, shipment: Shipment, event: str, *, station: str,
                at: datetime | None = None, locked: bool = False) -> TrackingEvent:
    """A sorting scan (``arrival``/``departure``) at ``station``: an event without a status change
    (``locked`` as for :func:`move`)."""
    if event not in SCAN_EVENTS:
        raise ValidationFailed("event 须为 arrival 或 departure", field="event")
    return _append(session, shipment, kind="scan", status=shipment.status, previous=None, event=event,
                   station=station, actor=principal.actor, at=at or utcnow(), locked=locked)


@dataclass(frozen=True, slots=True)
class Moving:
    """What :func:`move_many` needs of a shipment it moves (read under the row's lock by the caller)."""

    shipment_id: str
    status: str
    merchant_id: str
    waybill_no: str
    merchant_order_id: str


def move_many(session: Session, principal: Principal, items: Sequence[Moving], to: str, *, at: datetime,
              also: Mapping[str, Any] | None = None) -> dict[str, int]:
    """:func:`move` for a batch, set-based: one ``UPDATE ... RETURNING`` for every shipment (status, time, the next
    event number; ``also``: more columns to set, the same for all), one multi-row insert of their events, and the
    merchants' webhooks. The caller holds the rows' locks. Returns each shipment's new event number.

    Core statements, not the ORM: a shipment of ``items`` loaded in ``session`` learns its new values through
    :func:`refresh_moved`, if the caller still uses it.
    """
    if not items:
        return {}
    for item in items:
        if not can_move(item.status, to):
            raise InvalidStatusTransition(field="status")
    ids = [item.shipment_id for item in items]
    session.flush()  # the ORM's pending changes first: the UPDATE below builds on them
    seqs: dict[str, int] = {}
    for start in range(0, len(ids), _IN_CHUNK):  # bounded IN lists (SQLite's variable limit)
        part = ids[start:start + _IN_CHUNK]
        rows = session.execute(update(_shipments).where(_shipments.c.id.in_(part))
                               .values(status=to, updated_at=at, event_seq=_shipments.c.event_seq + 1, **(also or {}))
                               .returning(_shipments.c.id, _shipments.c.event_seq)).all()
        seqs.update({sid: int(seq) for sid, seq in rows})
    events = [{"id": new_id("trk"), "shipment_id": item.shipment_id, "seq": seqs[item.shipment_id], "kind": "status",
               "status": to, "previous_status": item.status, "event": None, "station": None,
               "actor": principal.actor, "at": at} for item in items]
    session.execute(insert(_events), events)
    for item, row in zip(items, events, strict=True):
        if fanout.has_endpoints(session, item.merchant_id):
            # Transient objects carry the values the delivery body is made of; they are never added to the session.
            shipment = Shipment(id=item.shipment_id, merchant_id=item.merchant_id, waybill_no=item.waybill_no,
                                merchant_order_id=item.merchant_order_id, status=to)
            fanout.publish(session, shipment, TrackingEvent(**row))
    return seqs


def refresh_moved(shipment: Shipment, to: str, seq: int, at: datetime, **also: Any) -> None:
    """Tell a loaded shipment what :func:`move_many` wrote (without making it dirty)."""
    set_committed_value(shipment, "status", to)
    set_committed_value(shipment, "updated_at", at)
    set_committed_value(shipment, "event_seq", seq)
    for name, value in also.items():
        set_committed_value(shipment, name, value)


def _publish(session: Session, shipment: Shipment, event: TrackingEvent) -> None:
    """Queue the merchant's webhooks for a status change, in the same transaction (waybill/webhooks/fanout.py)."""
    fanout.publish(session, shipment, event)


def history(session: Session, shipment_id: str) -> list[TrackingEvent]:
    """A shipment's events in sequence order (the caller has checked that the principal may see it)."""
    return list(session.scalars(select(TrackingEvent).where(TrackingEvent.shipment_id == shipment_id)
                                .order_by(TrackingEvent.seq)))
