"""Fan-out: a status change becomes one delivery per subscribed endpoint, in the change's own transaction.

:func:`publish` is called by :func:`waybill.tracking.move` for every status change. For each of the merchant's
live endpoints subscribed to ``shipment.status_changed`` it adds a :class:`WebhookDelivery` holding the exact body
every attempt will send. When the transaction commits (just before: a ``before_commit`` hook, so in the same
transaction) one task message per endpoint (:data:`TOPIC`, payload ``delivery_ids``: that endpoint's deliveries of
the transaction, :data:`BATCH` per message) is enqueued: the deliveries and their task exist exactly when the
change commits, and survive a crash before they are sent; a sorting scan of 1,000 parcels is a few batches.

Batch paths (a sorting scan of 1,000 parcels, a print job of thousands) call it once per shipment: the
merchant's endpoints are read once per transaction (cached on the session, keyed by its transaction), so a
merchant without endpoints costs one query per transaction, not one per parcel.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session, SessionTransaction

from waybill import outbox
from waybill.ids import new_id
from waybill.models import Shipment, TrackingEvent, utcnow
from waybill.schemas import iso_utc
from waybill.webhooks.models import WebhookDelivery, WebhookEndpoint

TOPIC = "webhooks.deliver"
EVENT = "shipment.status_changed"
_CACHE = "waybill.webhooks.endpoints"
_QUEUED = "waybill.webhooks.queued"
#: At most this many deliveries per task message (one batch of requests to one endpoint).
BATCH = 200


def body(shipment: Shipment, event: TrackingEvent) -> str:
    """The delivery body: ids, the status, its number and time; never personal data.

    ``merchant_order_id`` is the merchant's own order number (the contract names it), nothing the parties gave.
    """
    at = iso_utc(event.at)
    payload: dict[str, Any] = {"type": EVENT, "timestamp": at, "data": {
        "shipment_id": shipment.id, "waybill_no": shipment.waybill_no,
        "merchant_order_id": shipment.merchant_order_id, "status": event.status, "seq": event.seq, "at": at}}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _subscribed(session: Session, merchant_id: str) -> list[str]:
    """The merchant's live endpoints subscribed to status changes, read once per transaction."""
    transaction = session.get_transaction()
    cached = session.info.get(_CACHE)
    if cached is None or cached[0] is not transaction:
        cached = (transaction, {})
        session.info[_CACHE] = cached
    per_merchant: dict[str, list[str]] = cached[1]
    found = per_merchant.get(merchant_id)
    if found is None:
        rows = session.execute(select(WebhookEndpoint.id, WebhookEndpoint.events).where(
            WebhookEndpoint.merchant_id == merchant_id, WebhookEndpoint.deleted_at.is_(None),
            WebhookEndpoint.disabled_at.is_(None)).order_by(WebhookEndpoint.id)).all()
        found = per_merchant[merchant_id] = [endpoint_id for endpoint_id, events in rows if EVENT in (events or [])]
    return found


def has_endpoints(session: Session, merchant_id: str) -> bool:
    """Whether the merchant has a live endpoint subscribed to status changes (read once per transaction)."""
    return bool(_subscribed(session, merchant_id))


def forget_cache(session: Session) -> None:
    """Drop the per-transaction endpoint cache (an endpoint was created or removed in this transaction)."""
    session.info.pop(_CACHE, None)


def _queued(session: Session) -> dict[str, list[str]]:
    """This transaction's new deliveries per endpoint, not yet enqueued (see :func:`_enqueue_queued`)."""
    transaction: SessionTransaction | None = session.get_transaction()
    held = session.info.get(_QUEUED)
    if held is None or held[0] is not transaction:
        held = session.info[_QUEUED] = (transaction, {})
    found: dict[str, list[str]] = held[1]
    return found


def _enqueue_queued(session: Session) -> None:
    held = session.info.pop(_QUEUED, None)
    if held is None or held[0] is not session.get_transaction():
        return  # made in a transaction that rolled back: its deliveries are gone too
    now = utcnow()
    for ids in held[1].values():
        for start in range(0, len(ids), BATCH):
            outbox.enqueue(session, TOPIC, {"delivery_ids": ids[start:start + BATCH]}, now=now)


# Every session: one message per endpoint per transaction, enqueued in that transaction right before it commits.
sa_event.listen(Session, "before_commit", _enqueue_queued)


def publish(session: Session, shipment: Shipment, event: TrackingEvent) -> int:
    """Queue the status change for the merchant's endpoints; returns how many deliveries were made."""
    endpoints = _subscribed(session, shipment.merchant_id)
    if not endpoints:
        return 0
    text = body(shipment, event)
    now = utcnow()
    queued = _queued(session)
    for endpoint_id in endpoints:
        delivery_id = new_id("whd")
        session.add(WebhookDelivery(id=delivery_id, endpoint_id=endpoint_id, shipment_id=shipment.id, seq=event.seq,
                                    event_id=event.id, body=text, status="pending", attempts=0, created_at=now))
        queued.setdefault(endpoint_id, []).append(delivery_id)
    return len(endpoints)
