"""Delivering webhooks: the ``webhooks.deliver`` task (Standard Webhooks headers, retries, order, ``410``).

A task message names a batch of deliveries of one endpoint (``delivery_ids``: those one transaction made, the
successors a finished batch let go, a retry; ``delivery_id``: one). One run (:func:`deliver`):

1. *Claim*, in the task's transaction: lock the delivery rows; nothing to do for one no longer pending (a
   duplicate message: at least once, sent once), or whose lease another run holds (in flight: check again when
   the lease ends), or whose retry wait has not passed (a duplicate message must not retry early: check again
   then), or with an earlier ``seq`` of the same shipment still pending for the same endpoint (that one's end
   enqueues this one: per-shipment order). The others take a lease (``not_before``) and count the attempt; the
   secrets are read, and the claim **commits**: no row lock — and on SQLite no write lock, which would stop every
   request — is held while the requests are out.
2. *Send*: resolve the host and check every address again (DNS may have changed since creation; once per batch),
   then POST each stored body, in order, over one kept-alive connection to a checked address, with
   ``webhook-id`` (the tracking event's id), ``webhook-timestamp`` (now) and ``webhook-signature``
   (``v1,<base64 HMAC-SHA256 of id.timestamp.body>``, one per live secret). No request starts after
   :data:`BATCH_DEADLINE_S` (one slow endpoint holds a worker for a bounded time, then queues behind the others);
   a failure without an answer (timeout, refused connection) or a ``410`` ends the batch too.
3. *Record*, in one new transaction: every attempt (the merchant's delivery log); a ``2xx`` succeeds; ``410 Gone``
   disables the endpoint and cancels its pending deliveries; anything else (another status, a redirect, a timeout,
   a refused address) is retried on :data:`SCHEDULE_S` with jitter, for at least :data:`RETRY_WINDOW` after the
   first failure, then given up. Finished deliveries enqueue their shipments' next pending ones for the endpoint
   (one message); claimed deliveries the batch did not reach are released (their attempt uncounted) and enqueued
   again at once.

A process dying between 1 and 3 leaves the outbox message undone: it is handed over again (the leases have
expired by then) and the same ids and bodies are sent again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from waybill import outbox
from waybill.ids import new_id
from waybill.models import utcnow
from waybill.outbox import Handler
from waybill.uow import UnitOfWork
from waybill.webhooks import guard
from waybill.webhooks.endpoints import WebhookServices, cancel_pending, signing_secrets
from waybill.webhooks.fanout import BATCH, TOPIC
from waybill.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from waybill.webhooks.transport import DEADLINE_S, Answer, Connection, HttpTransport, Transport

log = logging.getLogger("waybill.webhooks")

#: Waits before the 2nd, 3rd... attempt (Svix's schedule from the 2nd attempt on): 5 s, 5 min, 30 min, 2 h, 5 h,
#: 10 h, 10 h — about 27.6 h in all, and never less than RETRY_WINDOW even with the jitter taking 10 % off.
SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.1
RETRY_WINDOW = timedelta(hours=24)
#: A batch starts no request after this many seconds (its last one may take DEADLINE_S more).
BATCH_DEADLINE_S = 5.0
#: Longer than a batch can take (its deadline + connect + reads + one request's deadline): a live lease never ends.
LEASE = timedelta(seconds=BATCH_DEADLINE_S + DEADLINE_S + 45)
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




def _enqueue(session: Session, ids: Sequence[str], delay_s: float, now: datetime) -> None:
    """Messages for ``ids`` (one endpoint's deliveries), :data:`BATCH` ids per message."""
    for start in range(0, len(ids), BATCH):
        outbox.enqueue(session, TOPIC, {"delivery_ids": list(ids[start:start + BATCH])}, delay_s=delay_s, now=now)


def _locked(session: Session, ids: Sequence[str]) -> list[WebhookDelivery]:
    # Locked in id order (two runs sharing ids cannot deadlock); sent in seq order, then creation order.
    rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                           .order_by(WebhookDelivery.id).with_for_update()).all()
    return sorted(rows, key=lambda r: (r.created_at, r.seq, r.id))


def _first_pending(session: Session, endpoint_id: str, shipment_ids: set[str]) -> dict[str, int]:
    """Per shipment, the lowest pending ``seq`` of the endpoint (the one that may go)."""
    rows = session.execute(select(WebhookDelivery.shipment_id, func.min(WebhookDelivery.seq)).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.shipment_id.in_(shipment_ids),
        WebhookDelivery.status == "pending").group_by(WebhookDelivery.shipment_id)).all()
    return {shipment_id: int(seq) for shipment_id, seq in rows}


def _next_in_line(session: Session, endpoint_id: str, finished: Sequence[WebhookDelivery], now: datetime) -> None:
    """The shipments' next pending deliveries to the same endpoint may go now: one message for them all."""
    if not finished:
        return
    after = {row.shipment_id: row.seq for row in finished}
    rows = session.execute(select(WebhookDelivery.id, WebhookDelivery.shipment_id, WebhookDelivery.seq).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.shipment_id.in_(after.keys()),
        WebhookDelivery.status == "pending").order_by(WebhookDelivery.seq)).all()
    successors: dict[str, str] = {}
    for delivery_id, shipment_id, seq in rows:
        if seq > after[shipment_id]:
            successors.setdefault(shipment_id, delivery_id)
    _enqueue(session, list(successors.values()), 0, now)


@dataclass
class _Batch:
    """One endpoint's claimed deliveries and what their requests need."""

    endpoint_id: str
    url: str
    secrets: list[str]
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (delivery id, webhook-id, body)
    answers: list[tuple[Answer, datetime, datetime]] = field(default_factory=list)


def _gather(session: Session, endpoint_id: str, named: set[str], room: int, now: datetime) -> list[WebhookDelivery]:
    """Up to ``room`` more of the endpoint's pending deliveries that may go now (not leased, no retry wait),
    oldest first, locked: a run fills its batch with what other messages named too, so a backlog made by many
    one-change transactions still goes in batches. Rows another run has locked are skipped (SKIP LOCKED), and
    the caller keeps per-shipment order (only the lowest pending ``seq`` goes). Their own messages find them
    done, or leased, later: a cheap no-op or one recheck."""
    if room <= 0:
        return []
    rows = session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending",
        or_(WebhookDelivery.not_before.is_(None), WebhookDelivery.not_before <= now),
        WebhookDelivery.id.not_in(named))
        .order_by(WebhookDelivery.created_at, WebhookDelivery.seq, WebhookDelivery.id)
        .limit(room).with_for_update(skip_locked=True)).all()
    return list(rows)


def _claim(session: Session, svc: WebhookServices, rows: list[WebhookDelivery], now: datetime) -> list[_Batch]:
    batches: dict[str, _Batch] = {}
    by_endpoint: dict[str, list[WebhookDelivery]] = {}
    for row in rows:
        if row.status == "pending":
            by_endpoint.setdefault(row.endpoint_id, []).append(row)
    for endpoint_id, mine in by_endpoint.items():
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None or endpoint.deleted_at is not None or endpoint.disabled_at is not None:
            for row in mine:
                row.status, row.finished_at = "cancelled", now
            continue
        mine = mine + _gather(session, endpoint_id, {row.id for row in mine}, BATCH - len(mine), now)
        first = _first_pending(session, endpoint_id, {row.shipment_id for row in mine})
        later: list[WebhookDelivery] = []
        for row in mine:
            if row.not_before is not None and row.not_before > now:
                later.append(row)
                continue
            if first.get(row.shipment_id) != row.seq:
                continue  # an earlier event of the shipment is pending: its end enqueues this one
            batch = batches.get(endpoint_id)
            if batch is None:
                secrets = signing_secrets(svc.codec, endpoint, now)
                batch = batches[endpoint_id] = _Batch(endpoint_id, endpoint.url, secrets)
            batch.rows.append((row.id, row.event_id, row.body))
            row.not_before = now + LEASE
            row.attempts += 1
        if later:
            # In flight elsewhere, or waiting for a retry (which has a message of its own): look again when the
            # last of them may go, in one message (the other run may die mid-request).
            last = max(row.not_before for row in later if row.not_before is not None)
            _enqueue(session, [row.id for row in later], (last - now).total_seconds() + 1, now)
    return list(batches.values())


def _send(svc: WebhookServices, batch: _Batch, transport: Transport, clock: Clock) -> None:
    """Send the batch's deliveries in order over one connection; stops at the deadline, a failure or a ``410``."""
    started = clock()
    try:
        target = guard.resolve(batch.url, allow_private=svc.settings.webhook_allow_private)
    except guard.BlockedAddress as exc:
        refused = Answer(None, "unresolvable" if exc.reason == "unresolvable" else "blocked_address")
        batch.answers = [(refused, started, started)] * len(batch.rows)
        return
    conn: Connection = transport.open(target)
    deadline = time.monotonic() + BATCH_DEADLINE_S
    try:
        for _, msg_id, body in batch.rows:
            if batch.answers and time.monotonic() > deadline:
                break
            started = clock()
            answer = conn.post(headers(batch.secrets, msg_id, int(started.timestamp()), body), body.encode("utf-8"))
            batch.answers.append((answer, started, clock()))
            if answer.status_code is None or answer.status_code == 410:
                break  # unreachable, or gone: the rest would fare no better
    finally:
        conn.close()


def _record_one(session: Session, row: WebhookDelivery, answer: Answer, started: datetime,
                finished: datetime) -> str:
    """One attempt's outcome on its (locked) row; returns it (an enum)."""
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
        log.warning("webhook delivery given up", extra={"delivery_id": row.id, "attempts": row.attempts})
        return "failed"
    row.not_before = finished + timedelta(seconds=delay)
    _enqueue(session, [row.id], delay, finished)
    return "retry"


def _record(session: Session, batch: _Batch, now: datetime) -> list[str]:
    ids = [delivery_id for delivery_id, _, _ in batch.rows]
    rows = {row.id: row for row in _locked(session, ids)}
    unsent = [rows[delivery_id] for delivery_id in ids[len(batch.answers):]]
    for row in unsent:  # claimed, not reached: released, their attempt not counted, and queued again at once
        row.not_before = None
        row.attempts -= 1
    outcomes: list[str] = []
    finished: list[WebhookDelivery] = []
    for delivery_id, (answer, started, ended) in zip(ids, batch.answers, strict=False):
        outcome = _record_one(session, rows[delivery_id], answer, started, ended)
        outcomes.append(outcome)
        if outcome in ("succeeded", "failed"):
            finished.append(rows[delivery_id])
    if "disabled" in outcomes:
        return outcomes  # every pending delivery of the endpoint was cancelled: nothing goes on
    _next_in_line(session, batch.endpoint_id, finished, now)
    _enqueue(session, [row.id for row in unsent], 0, now)
    return outcomes


def deliver(tx: UnitOfWork, svc: WebhookServices, delivery_ids: Sequence[str], *, transport: Transport,
            clock: Clock = utcnow) -> list[str]:
    """One run of the task for ``delivery_ids`` (see the module docstring); returns the attempts' outcomes."""
    session = tx.session
    batches = _claim(session, svc, _locked(session, delivery_ids), clock())
    if not batches:
        return []
    tx.commit_so_far()
    outcomes: list[str] = []
    for n, batch in enumerate(batches):
        if n:
            tx.commit_so_far()  # the previous endpoint's outcomes, before the next one's requests go out
        _send(svc, batch, transport, clock)
        outcomes.extend(_record(session, batch, clock()))
    return outcomes


def attempt(tx: UnitOfWork, svc: WebhookServices, delivery_id: str, *, transport: Transport,
            clock: Clock = utcnow) -> str:
    """One run of the task for one delivery; returns what happened (an enum; ``done``: nothing was sent)."""
    outcomes = deliver(tx, svc, [delivery_id], transport=transport, clock=clock)
    return outcomes[0] if outcomes else "done"


def handler(svc: WebhookServices, *, transport: Transport | None = None, clock: Clock = utcnow) -> Handler:
    """The ``webhooks.deliver`` task handler (registered in :func:`waybill.tasks.handlers`)."""
    sender = transport or HttpTransport()

    def run(tx: UnitOfWork, payload: Mapping[str, Any]) -> None:
        ids = payload.get("delivery_ids")
        wanted = [str(i) for i in ids] if isinstance(ids, list) else [str(payload["delivery_id"])]
        deliver(tx, svc, wanted, transport=sender, clock=clock)

    return run
