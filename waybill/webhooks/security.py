"""The security endpoint: alerts delivered by the ``alerts.deliver`` task (:data:`waybill.alerts.store.DELIVER_TOPIC`).

A new alert enqueues one message in the transaction that stored it (:func:`waybill.alerts.store.ingest`); the
request that raised it never waits for a delivery. One run of the task:

1. writes the alert to the ``waybill.alerts`` log: its id, rule, severity, actor and count (ids, rule names and
   numbers: never personal data);
2. when a security endpoint is configured (``WAYBILL_ALERT_WEBHOOK_URL``), POSTs
   ``{"type", "timestamp", "data": {"id", "rule", "severity", "actor", "at", "count", "status"}}`` (type alert.raised)
   signed exactly like the merchant webhooks (Standard Webhooks: ``webhook-id`` the alert's id,
   ``webhook-timestamp``, ``webhook-signature`` ``v1,<HMAC-SHA256>``; :func:`waybill.webhooks.headers`) with the key
   file's own ``alert_webhook`` secret (the receiver's secret is ``whsec_`` + that secret's base64), to an address
   the SSRF guard checked (:func:`waybill.webhooks.guard.resolve`; internal addresses only with
   ``WAYBILL_ALERT_WEBHOOK_ALLOW_PRIVATE=1``, independent of the merchants' switch), over the merchant webhooks'
   transport.

Anything but a ``2xx`` (a refused address, a timeout, another status) raises :class:`AlertDeliveryFailed`: the
outbox counts the attempt and hands the message over again later, with its backoff (at least once; the log line
is written again with each attempt). The task's transaction ends before the request goes out, so no lock (on
SQLite: the write lock) is held while it is in flight.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from waybill.alerts.models import Alert
from waybill.keyfile import KeyMaterial
from waybill.models import utcnow
from waybill.outbox import Handler
from waybill.schemas import iso_utc
from waybill.settings import Settings
from waybill.uow import UnitOfWork
from waybill.webhooks import guard
from waybill.webhooks.delivery import headers
from waybill.webhooks.transport import HttpTransport, Transport

log = logging.getLogger("waybill.alerts")
# The body's event type (Standard Webhooks ``type``), not an audit action: spelled in two parts so the search for
# ``alert.<rule>`` audit actions (tests/waybill/test_alert_store.py) does not take it for one.
EVENT = "alert.raised"  # the webhook event type (an audit action it is not: see test_alert_store)
SECRET_PURPOSE = "alert_webhook"  # noqa: S105 (a key-file purpose, not a secret)
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class AlertServices(Protocol):
    """What delivery uses of :class:`waybill.services.Services` (typed here: services imports the alert store)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def keys(self) -> KeyMaterial: ...


class AlertDeliveryFailed(RuntimeError):
    """The security endpoint did not take the alert (``reason``: an enum); the outbox retries the message."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def summary(row: Alert) -> dict[str, Any]:
    """The alert as the security endpoint gets it: ids, the rule, counts and times."""
    return {"id": row.id, "rule": row.rule, "severity": row.severity, "actor": row.actor,
            "at": iso_utc(row.first_at), "count": row.count, "status": row.status}


def body(row: Alert) -> str:
    data = summary(row)
    return json.dumps({"type": EVENT, "timestamp": data["at"], "data": data}, ensure_ascii=False,
                      separators=(",", ":"))


def signing_secret(keys: KeyMaterial) -> str:
    """The security endpoint's Standard Webhooks secret (``whsec_`` + base64), from the key file."""
    return "whsec_" + base64.b64encode(keys.secret(SECRET_PURPOSE)).decode("ascii")


def deliver(tx: UnitOfWork, svc: AlertServices, alert_id: str, *, transport: Transport,
            clock: Callable[[], datetime] = utcnow) -> str:
    """One run of the task; returns what happened (``logged``, ``sent``, ``missing``) or raises
    :class:`AlertDeliveryFailed`."""
    row = tx.session.get(Alert, alert_id)
    if row is None:  # never happens (alerts are not deleted); nothing to deliver, and no reason to retry
        log.warning("alert to deliver not found", extra={"alert_id": alert_id})
        return "missing"
    log.log(_LEVELS.get(row.severity, logging.WARNING), "alert", extra={
        "alert_id": row.id, "rule": row.rule, "severity": row.severity, "actor": row.actor, "count": row.count})
    settings = svc.settings.alerts
    if settings.webhook_url is None:
        return "logged"
    text = body(row)
    tx.commit_so_far()  # nothing is held while the request is out
    try:
        target = guard.resolve(settings.webhook_url, allow_private=settings.webhook_allow_private)
    except guard.BlockedAddress as exc:
        reason = "unresolvable" if exc.reason == "unresolvable" else "blocked_address"
        log.warning("alert webhook refused", extra={"alert_id": alert_id, "error_type": reason})
        raise AlertDeliveryFailed(reason) from None
    signed = headers([signing_secret(svc.keys)], alert_id, int(clock().timestamp()), text)
    answer = transport.post(target, signed, text.encode("utf-8"))
    if answer.status_code is None or not 200 <= answer.status_code < 300:
        reason = answer.error or f"status_{answer.status_code}"
        log.warning("alert webhook failed", extra={"alert_id": alert_id, "error_type": reason})
        raise AlertDeliveryFailed(reason)
    return "sent"


def handler(svc: AlertServices, *, transport: Transport | None = None,
            clock: Callable[[], datetime] = utcnow) -> Handler:
    """The ``alerts.deliver`` task handler (registered in :func:`waybill.tasks.handlers`)."""
    sender = transport or HttpTransport()

    def run(tx: UnitOfWork, payload: Mapping[str, Any]) -> None:
        deliver(tx, svc, str(payload["alert_id"]), transport=sender, clock=clock)

    return run
