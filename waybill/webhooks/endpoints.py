"""Merchants' webhook endpoints: create (the secret shown once), list, remove, rotate the secret, the delivery log.

Every function checks ``WEBHOOK_MANAGE``, a live (not test-mode) key, and ownership: another merchant's
endpoint, a removed one and one that never existed all raise the same :class:`~waybill.errors.WebhookNotFound`.
Secrets are ``whsec_`` + base64 of 32 random bytes (the Standard Webhooks format), encrypted by the vault codec
under their own table and column (the signer needs them back in the clear; a hash would not do).
Functions flush, never commit.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from waybill import audit
from waybill.crypto.vault import FieldCodec
from waybill.errors import PermissionDenied, ValidationFailed, WebhookNotFound
from waybill.ids import looks_like, new_id
from waybill.models import utcnow
from waybill.permissions import Permission, Principal
from waybill.settings import Settings
from waybill.webhooks import fanout, guard
from waybill.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

TABLE = "webhook_endpoints"
EVENT_TYPES = ("shipment.status_changed",)
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32
#: After a rotation, deliveries are signed with the new and the previous secret for this long (the contract's 24 h).
ROTATION_OVERLAP = timedelta(hours=24)
MAX_ENDPOINTS = 10  # live endpoints per merchant


class WebhookServices(Protocol):
    """What endpoints and deliveries use of :class:`waybill.services.Services` (typed here: no import of it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def codec(self) -> FieldCodec: ...


@dataclass(frozen=True)
class Created:
    """A new endpoint and its secret (the only time the secret is shown)."""

    endpoint: WebhookEndpoint
    secret: str


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def seal(codec: FieldCodec, endpoint_id: str, column: str, secret: str) -> bytes:
    return codec.encrypt(secret, table=TABLE, column=column, row_id=endpoint_id)


def signing_secrets(codec: FieldCodec, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets a delivery at ``now`` is signed with: the current one, and the previous during the overlap."""
    found = []
    if endpoint.secret_ct is not None:
        found.append(codec.decrypt(endpoint.secret_ct, table=TABLE, column="secret", row_id=endpoint.id))
    if endpoint.previous_secret_ct is not None and endpoint.previous_expires_at is not None \
            and endpoint.previous_expires_at > now:
        found.append(codec.decrypt(endpoint.previous_secret_ct, table=TABLE, column="previous_secret",
                                   row_id=endpoint.id))
    return found


def _merchant(principal: Principal) -> str:
    principal.require(Permission.WEBHOOK_MANAGE)
    if principal.kind != "merchant":
        raise PermissionDenied()
    if principal.test_mode:
        # Endpoints are the merchant's production integration (test shipments' events reach them too): a test
        # key, handed to developers and CI, must not read a rotated secret (it would forge production webhooks),
        # remove an endpoint or read its log.
        raise PermissionDenied("测试模式密钥不能管理 webhook 地址，请使用正式密钥")
    return principal.id


def _own(session: Session, principal: Principal, endpoint_id: str, *, lock: bool = False) -> WebhookEndpoint:
    merchant_id = _merchant(principal)
    if not looks_like("whk", endpoint_id):
        raise WebhookNotFound()
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None or row.merchant_id != merchant_id or row.deleted_at is not None:
        raise WebhookNotFound()
    return row


def create_endpoint(session: Session, svc: WebhookServices, principal: Principal, url: str,
                    events: Sequence[str], *, now: datetime | None = None) -> Created:
    """A new endpoint for the principal's merchant; the URL must name a public host (unless allowed otherwise)."""
    merchant_id = _merchant(principal)
    url = guard.check_url(url)
    wanted = list(dict.fromkeys(events))
    if not wanted or any(e not in EVENT_TYPES for e in wanted):
        raise ValidationFailed(f"events 只能包含 {', '.join(EVENT_TYPES)}", field="events")
    live = session.scalar(select(func.count()).select_from(WebhookEndpoint).where(
        WebhookEndpoint.merchant_id == merchant_id, WebhookEndpoint.deleted_at.is_(None))) or 0
    if live >= MAX_ENDPOINTS:
        raise ValidationFailed(f"每个商户最多 {MAX_ENDPOINTS} 个 webhook 地址", field="url")
    # Last: the resolution may take a moment, and a malformed request needs none.
    guard.check_public(url, allow_private=svc.settings.webhook_allow_private)
    now = now or utcnow()
    endpoint_id = new_id("whk")
    secret = new_secret()
    row = WebhookEndpoint(id=endpoint_id, merchant_id=merchant_id, url=url, events=wanted,
                          secret_ct=seal(svc.codec, endpoint_id, "secret", secret), created_at=now)
    session.add(row)
    session.flush()
    fanout.forget_cache(session)
    audit.record(session, principal, "webhook.create", object_type="webhook_endpoint", object_id=endpoint_id)
    return Created(row, secret)


def list_endpoints(session: Session, principal: Principal) -> list[WebhookEndpoint]:
    """The merchant's endpoints (removed ones excluded), oldest first."""
    merchant_id = _merchant(principal)
    return list(session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.merchant_id == merchant_id, WebhookEndpoint.deleted_at.is_(None))
        .order_by(WebhookEndpoint.id)))


def delete_endpoint(session: Session, principal: Principal, endpoint_id: str, *,
                    now: datetime | None = None) -> WebhookEndpoint:
    """Remove an endpoint: its secrets are erased and its pending deliveries cancelled (nothing more is sent)."""
    row = _own(session, principal, endpoint_id, lock=True)
    now = now or utcnow()
    row.deleted_at = now
    row.secret_ct = row.previous_secret_ct = None
    row.previous_expires_at = None
    cancel_pending(session, row.id, now)
    session.flush()
    fanout.forget_cache(session)
    audit.record(session, principal, "webhook.delete", object_type="webhook_endpoint", object_id=row.id)
    return row


def rotate_secret(session: Session, svc: WebhookServices, principal: Principal, endpoint_id: str, *,
                  now: datetime | None = None) -> str:
    """A new secret (returned once); the previous one keeps signing alongside it for :data:`ROTATION_OVERLAP`.

    A second rotation within the overlap drops the oldest secret: at most two signatures go out."""
    row = _own(session, principal, endpoint_id, lock=True)
    now = now or utcnow()
    secret = new_secret()
    current = signing_secrets(svc.codec, row, now)[:1]
    row.previous_secret_ct = seal(svc.codec, row.id, "previous_secret", current[0]) if current else None
    row.previous_expires_at = now + ROTATION_OVERLAP if current else None
    row.secret_ct = seal(svc.codec, row.id, "secret", secret)
    session.flush()
    audit.record(session, principal, "webhook.rotate_secret", object_type="webhook_endpoint", object_id=row.id)
    return secret


def cancel_pending(session: Session, endpoint_id: str, now: datetime) -> None:
    """Every pending delivery of the endpoint is cancelled (removed, or disabled by a ``410``)."""
    session.execute(update(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id,
                                                  WebhookDelivery.status == "pending")
                    .values(status="cancelled", finished_at=now, not_before=None)
                    .execution_options(synchronize_session=False))


def attempts(session: Session, principal: Principal, endpoint_id: str, *, limit: int,
             cursor: str | None = None) -> tuple[list[WebhookAttempt], str | None]:
    """The endpoint's delivery attempts, newest first, ``limit`` per page; the cursor is the last attempt's id."""
    row = _own(session, principal, endpoint_id)
    query = select(WebhookAttempt).where(WebhookAttempt.endpoint_id == row.id)
    if cursor is not None:
        if not looks_like("wha", cursor):
            raise ValidationFailed("cursor 无效", field="cursor")
        query = query.where(WebhookAttempt.id < cursor)
    rows = list(session.scalars(query.order_by(WebhookAttempt.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
