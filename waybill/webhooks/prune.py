"""Forgetting old deliveries: finished deliveries and their attempts are deleted after :data:`KEEP`.

Bodies hold no personal data, but they do hold merchants' order numbers and the history of every parcel; the
delivery log a merchant reads needs the recent past only. An hourly job (``webhooks.prune``) deletes up to
:data:`CHUNK` finished deliveries per run, oldest first, with their attempts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from waybill.models import utcnow
from waybill.outbox import Handler
from waybill.uow import UnitOfWork
from waybill.webhooks.models import WebhookAttempt, WebhookDelivery

TOPIC = "webhooks.prune"
KEEP = timedelta(days=30)
CHUNK = 5000


def prune(session: Session, *, now: datetime | None = None, chunk: int = CHUNK) -> int:
    """Delete up to ``chunk`` deliveries finished before ``now - KEEP`` and their attempts; returns how many."""
    cutoff = (now or utcnow()) - KEEP
    ids = list(session.scalars(select(WebhookDelivery.id).where(
        WebhookDelivery.finished_at.is_not(None), WebhookDelivery.finished_at < cutoff)
        .order_by(WebhookDelivery.finished_at).limit(chunk)))
    if ids:
        session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
    return len(ids)


def handler() -> Handler:
    def run(tx: UnitOfWork, _payload: Mapping[str, Any]) -> None:
        prune(tx.session)

    return run
