"""Delivering one webhook: the ``webhooks.deliver`` task (Standard Webhooks headers, retries, order, ``410``).

One run of the task for one delivery (:func:`attempt`):

1. *Claim*, in the task's transaction: lock the delivery row; nothing to do when it is no longer pending (a
   duplicate message: at least once, sent once), or another run holds its lease (in flight: check again when
   the lease ends), or an earlier ``seq`` of the same shipment is still pending for the same endpoint (that one's
   end enqueues this one: per-shipment order), or its retry wait has not passed (a duplicate message must not
   retry early). Otherwise take a lease (``not_before``), count the attempt, read the secrets, and
   **commit**: no row lock — and on SQLite no write lock, which would stop every request — is held while the
   request is out.
2. *Send*: resolve the host and check every address again (DNS may have changed since creation), connect to a
   checked one, POST the stored body with ``webhook-id`` (the tracking event's id), ``webhook-timestamp`` (now)
   and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of id.timestamp.body>``, one per live secret).
3. *Record*, in a new transaction: the attempt (the merchant's delivery log); a ``2xx`` succeeds; ``410 Gone``
   disables the endpoint and cancels its pending deliveries; anything else (another status, a redirect, a timeout,
   a refused address) is retried on :data:`SCHEDULE_S` with jitter, for at least :data:`RETRY_WINDOW` after the
   first failure, then given up. A finished delivery enqueues the shipment's next pending one for the endpoint.

A process dying between 1 and 3 leaves the outbox message undone: it is handed over again (the lease has
expired by then) and the same id and body are sent again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from waybill import outbox
from waybill.ids import new_id
from waybill.models import utcnow
from waybill.outbox import Handler
from waybill.uow import UnitOfWork
from waybill.webhooks import guard
from waybill.webhooks.endpoints import WebhookServices, cancel_pending, signing_secrets
from waybill.webhooks.fanout import TOPIC
from waybill.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from waybill.webhooks.transport import DEADLINE_S, Answer, HttpTransport, Transport

log = logging.getLogger("waybill.webhooks")

#: Waits before the 2nd, 3rd... attempt (Svix's schedule from the 2nd attempt on): 5 s, 5 min, 30 min, 2 h, 5 h,
#: 10 h, 10 h — about 27.6 h in all, and never less than RETRY_WINDOW even with the jitter taking 10 % off.
SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.1
RETRY_WINDOW = timedelta(hours=24)
#: Longer than one attempt can take (connect + reads + deadline), so a live attempt's lease never runs out.
LEASE = timedelta(seconds=DEADLINE_S + 45)
Clock = Callable[[], datetime]


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """``v1,`` + base64 HMAC-SHA256 over ``id.timestamp.body`` keyed with the secret's decoded bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers; during a rotation's overlap one signature per secret, space-separated."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets)}


def next_delay(attempts: int, first_failure_at: datetime, now: datetime,
               rng: Callable[[], float] = random.random) -> float | None:
    """Seconds until the next attempt after ``attempts`` failed ones, or ``None``: give up.

    The schedule's last wait repeats until :data:`RETRY_WINDOW` has passed since the first failure."""
    if attempts <= len(SCHEDULE_S):
        base = float(SCHEDULE_S[attempts - 1])
    elif now - first_failure_at < RETRY_WINDOW:
        base = float(SCHEDULE_S[-1])
    else:
        return None
    return base * (1 - JITTER + 2 * JITTER * rng())


def _locked(session: Session, delivery_id: str) -> WebhookDelivery | None:
    return session.scalars(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                           .with_for_update()).first()


def _enqueue(session: Session, delivery_id: str, delay_s: float, now: datetime) -> None:
    outbox.enqueue(session, TOPIC, {"delivery_id": delivery_id}, delay_s=delay_s, now=now)


def _next_in_line(session: Session, row: WebhookDelivery, now: datetime) -> None:
    """The shipment's next pending delivery to the same endpoint may go now."""
    successor = session.scalar(select(WebhookDelivery.id).where(
        WebhookDelivery.endpoint_id == row.endpoint_id, WebhookDelivery.shipment_id == row.shipment_id,
        WebhookDelivery.seq > row.seq, WebhookDelivery.status == "pending")
        .order_by(WebhookDelivery.seq).limit(1))
    if successor is not None:
        _enqueue(session, successor, 0, now)


def attempt(tx: UnitOfWork, svc: WebhookServices, delivery_id: str, *, transport: Transport,
            clock: Clock = utcnow) -> str:
    """One run of the task for ``delivery_id`` (see the module docstring); returns what happened (an enum)."""
    session = tx.session
    now = clock()
    row = _locked(session, delivery_id)
    if row is None or row.status != "pending":
        return "done"
    endpoint = session.get(WebhookEndpoint, row.endpoint_id)
    if endpoint is None or endpoint.deleted_at is not None or endpoint.disabled_at is not None:
        row.status, row.finished_at = "cancelled", now
        return "cancelled"
    if row.not_before is not None and row.not_before > now:
        # In flight elsewhere, or waiting for its retry: look again then (the other run may die mid-request).
        _enqueue(session, row.id, (row.not_before - now).total_seconds() + 1, now)
        return "not_yet"
    earlier = session.scalar(select(WebhookDelivery.id).where(
        WebhookDelivery.endpoint_id == row.endpoint_id, WebhookDelivery.shipment_id == row.shipment_id,
        WebhookDelivery.seq < row.seq, WebhookDelivery.status == "pending").limit(1))
    if earlier is not None:
        return "waiting"
    secrets = signing_secrets(svc.codec, endpoint, now)
    url, msg_id, body = endpoint.url, row.event_id, row.body
    row.not_before = now + LEASE
    row.attempts += 1
    tx.commit_so_far()

    started = clock()
    answer = _send(svc, url, headers(secrets, msg_id, int(started.timestamp()), body), body, transport)
    finished = clock()
    return _record(session, row.id, answer, started, finished)


def _send(svc: WebhookServices, url: str, sent_headers: Mapping[str, str], body: str, transport: Transport) -> Answer:
    try:
        target = guard.resolve(url, allow_private=svc.settings.webhook_allow_private)
    except guard.BlockedAddress as exc:
        return Answer(None, "unresolvable" if exc.reason == "unresolvable" else "blocked_address")
    return transport.post(target, sent_headers, body.encode("utf-8"))


def _record(session: Session, delivery_id: str, answer: Answer, started: datetime, finished: datetime) -> str:
    row = _locked(session, delivery_id)
    assert row is not None  # delivery rows are never deleted
    code = answer.status_code
    ok = code is not None and 200 <= code < 300
    error = answer.error or (None if ok or code is None else "redirect" if 300 <= code < 400 else "status")
    session.add(WebhookAttempt(id=new_id("wha"), endpoint_id=row.endpoint_id, delivery_id=row.id,
                               event_id=row.event_id, at=started, status_code=code, ok=ok, error=error,
                               duration_ms=max(0, int((finished - started).total_seconds() * 1000))))
    row.not_before = None
    if row.status != "pending":  # cancelled while the request was out (the endpoint was removed)
        return "recorded"
    if ok:
        row.status, row.finished_at = "succeeded", finished
        _next_in_line(session, row, finished)
        return "succeeded"
    if code == 410:
        endpoint = session.get(WebhookEndpoint, row.endpoint_id, with_for_update=True)
        row.status, row.finished_at = "failed", finished
        if endpoint is not None and endpoint.disabled_at is None:
            endpoint.disabled_at, endpoint.disabled_reason = finished, "gone"
        session.flush()
        cancel_pending(session, row.endpoint_id, finished)
        log.warning("webhook endpoint disabled", extra={"endpoint_id": row.endpoint_id, "reason": "gone"})
        return "disabled"
    row.first_failure_at = row.first_failure_at or started
    delay = next_delay(row.attempts, row.first_failure_at, finished)
    if delay is None:
        row.status, row.finished_at = "failed", finished
        _next_in_line(session, row, finished)
        log.warning("webhook delivery given up", extra={"delivery_id": row.id, "attempts": row.attempts})
        return "failed"
    row.not_before = finished + timedelta(seconds=delay)
    _enqueue(session, row.id, delay, finished)
    return "retry"


def handler(svc: WebhookServices, *, transport: Transport | None = None, clock: Clock = utcnow) -> Handler:
    """The ``webhooks.deliver`` task handler (registered in :func:`waybill.tasks.handlers`)."""
    sender = transport or HttpTransport()

    def run(tx: UnitOfWork, payload: Mapping[str, Any]) -> None:
        attempt(tx, svc, str(payload["delivery_id"]), transport=sender, clock=clock)

    return run
