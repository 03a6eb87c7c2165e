"""Caps on sorters' reprints: per print job, and per sorter per hour; refusals raise ``alert.mass_reprint``.

A reprint revokes the live QR token of a label: a courier's scan of the parcel stops working. One print job
with a reprint reason could revoke thousands of labels at once, so:

- a job with a reprint reason lists at most ``per_job`` shipments (more: ``422`` naming ``shipment_ids``);
- a sorter reprints at most ``per_hour`` labels in any hour (more: ``429`` with ``Retry-After``: when enough of
  the hour's reprints have aged out).

The hourly count is read from the durable ``qr_tokens`` rows (``is_reprint``, ``issued_by``, ``issued_at``;
a partial index keeps it cheap), not from an in-process bucket: every worker process and a restarted one see
the same count, and a reprint counts exactly when its token was committed. Checks of one sorter are serialised
(an advisory transaction lock on PostgreSQL; SQLite's write transactions are serial anyway), so concurrent
jobs cannot both pass on the same remaining allowance. Both refusals come before anything is revoked or
issued, and raise an ``alert.mass_reprint`` audit event (durable: it outlives the refused work).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from waybill import audit
from waybill.errors import RateLimited, ValidationFailed
from waybill.models import QrToken
from waybill.permissions import Principal

__all__ = ["HOUR", "capped", "check_hourly", "check_job_size"]

HOUR = timedelta(hours=1)
log = logging.getLogger("waybill.alerts")


def capped(principal: Principal) -> bool:
    """Sorter accounts' reprints are capped. A merchant's are capped per shipment only (it reprints one label a
    call); an operator at the service's own shell (``waybill print``, kind ``cli``) holds its keys anyway."""
    return principal.kind == "staff" and principal.role == "sorter"


def _alert(session: Session, principal: Principal, purpose: str) -> None:
    # Counts and caps only: never a shipment id list, never personal data.
    audit.record(session, principal, "alert.mass_reprint", outcome="alert", purpose=purpose, durable=True)
    log.warning("mass reprint refused", extra={"actor": principal.actor, "detail": purpose})


def check_job_size(session: Session, principal: Principal, per_job: int, count: int) -> None:
    """Refuse a reprint job of more than ``per_job`` shipments (422, field ``shipment_ids``), with an alert."""
    if count > per_job and capped(principal):
        _alert(session, principal, f"job_size={count} cap={per_job}")
        raise ValidationFailed(f"带重打原因的打印任务最多 {per_job} 张", field="shipment_ids")


def _serialise(session: Session, actor: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(b"reprints|" + actor.encode()).digest()[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))


def check_hourly(session: Session, principal: Principal, per_hour: int, count: int, now: datetime) -> None:
    """Refuse ``count`` more reprints by a sorter who would exceed ``per_hour`` in the last hour (429)."""
    if count <= 0 or not capped(principal):
        return
    _serialise(session, principal.actor)
    recent = (QrToken.issued_by == principal.actor, QrToken.is_reprint.is_(True), QrToken.issued_at > now - HOUR)
    used = int(session.execute(select(func.count()).select_from(QrToken).where(*recent)).scalar_one())
    if used + count <= per_hour:
        return
    # The allowance comes back as the hour's reprints age out: wait for the one that frees enough.
    must_expire = used + count - per_hour
    freeing = session.execute(select(QrToken.issued_at).where(*recent).order_by(QrToken.issued_at)
                              .offset(must_expire - 1).limit(1)).scalar_one_or_none()
    wait = (freeing + HOUR - now).total_seconds() if freeing is not None else HOUR.total_seconds()
    _alert(session, principal, f"hourly={used}+{count} cap={per_hour}")
    raise RateLimited(max(1.0, wait), f"本小时重打次数已达上限（{per_hour} 张）")
