"""Labels: QR tokens and the label models handed to the printing package.

A QR token is 160 random bits from :mod:`secrets`, shown once on the printed label and stored only as
a keyed hash (HMAC-SHA256 with the ``qr_token`` secret). Because the service cannot print the same
token twice, a label is issued once; printing it again is a *reprint* — a new token, the old one revoked,
with reason and actor recorded, and capped per shipment — so photographed or lost labels stop working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from printing.model import LabelModel, MaskedParty
from waybill import audit
from waybill.errors import Conflict, InvalidStatusTransition, NotFound, ShipmentNotFound, ValidationFailed
from waybill.ids import looks_like, new_id
from waybill.models import QrToken, Shipment, utcnow
from waybill.permissions import Permission, Principal

TOKEN_BYTES = 20  # 160 bits: above the 128-bit floor, and 32 base32 characters fit QR alphanumeric mode
PRINTABLE = frozenset({"created", "printed", "in_transit", "out_for_delivery"})
SERVICE_NAME = "标准快递"
# Labels show Beijing time (UTC+8 all year, no daylight saving), whatever the server's zone.
CHINA_TIME = timezone(timedelta(hours=8), "CST")


class LabelAlreadyIssued(Conflict):
    default_message = "面单已打印；如需重打，请调用 reprint 接口并说明原因"


class ReprintLimitReached(Conflict):
    default_message = "该运单重打次数已达上限"


@dataclass(frozen=True)
class LabelDeps:
    token_key: bytes
    reprint_max: int


@dataclass(frozen=True)
class IssuedLabel:
    shipment: Shipment
    model: LabelModel


def hash_token(key: bytes, raw: str) -> bytes:
    return hmac.new(key, raw.encode(), hashlib.sha256).digest()


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode().rstrip("=")


def _party(shipment: Shipment, role: str) -> MaskedParty:
    masked, region = getattr(shipment, f"{role}_masked"), getattr(shipment, f"{role}_region")
    return MaskedParty(name=masked["name"], phone=masked["phone"], province=region["province"],
                       city=region["city"], district=region["district"], address=masked["address"])


def label_model(shipment: Shipment, token: str, printed_at: datetime) -> LabelModel:
    """The label as printed: masked snapshot, sorting code, waybill number and the QR token only."""
    return LabelModel(waybill_no=shipment.waybill_no, sorting_code=shipment.sorting_code,
                      recipient=_party(shipment, "recipient"), sender=_party(shipment, "sender"), token=token,
                      weight_g=shipment.weight_g, service=SERVICE_NAME, category=None,
                      printed_at=printed_at.astimezone(CHINA_TIME))


def _load(session: Session, principal: Principal, shipment_id: str, action: str) -> Shipment:
    """Object-level check: merchants reach their own shipments, sorters any printable one."""
    shipment = None
    if looks_like("shp", shipment_id):
        stmt = select(Shipment).where(Shipment.id == shipment_id)
        if principal.kind == "merchant":
            stmt = stmt.where(Shipment.merchant_id == principal.id)
        elif principal.role != "sorter":
            stmt = stmt.where(False)  # deny by default
        shipment = session.execute(stmt.with_for_update()).scalar_one_or_none()
    if shipment is None:
        audit.record(session, principal, action, object_type="shipment",
                     object_id=shipment_id if looks_like("shp", shipment_id) else None, outcome="denied",
                     durable=True)
        raise ShipmentNotFound()
    return shipment


def _issue(session: Session, deps: LabelDeps, principal: Principal, shipment: Shipment, *, reason: str,
           reprint: bool, now: datetime) -> LabelModel:
    if shipment.status not in PRINTABLE:
        raise InvalidStatusTransition("当前状态不可打印面单", field="status")
    raw = new_token()
    session.add(QrToken(id=new_id("qrt"), shipment_id=shipment.id, token_hash=hash_token(deps.token_key, raw),
                        issued_at=now, issued_by=principal.actor, issue_reason=reason, is_reprint=reprint))
    if shipment.status == "created":
        shipment.status = "printed"
    if shipment.printed_at is None:
        shipment.printed_at = now
    shipment.updated_at = now
    audit.record(session, principal, "label.reprint" if reprint else "label.print", object_type="shipment",
                 object_id=shipment.id, fields=["masked"], purpose=reason if reprint else None)
    return label_model(shipment, raw, now)


def _live_token(session: Session, shipment_id: str) -> QrToken | None:
    return session.execute(
        select(QrToken).where(QrToken.shipment_id == shipment_id, QrToken.revoked_at.is_(None))
    ).scalar_one_or_none()


def issue_label(session: Session, deps: LabelDeps, principal: Principal, shipment_id: str) -> IssuedLabel:
    """First print of a shipment's label (owning merchant or sorter); a second call is a conflict."""
    principal.require(Permission.LABEL_READ)
    shipment = _load(session, principal, shipment_id, "label.print")
    if _live_token(session, shipment.id) is not None:
        raise LabelAlreadyIssued(field="shipment_id")
    model = _issue(session, deps, principal, shipment, reason="first_print", reprint=False, now=utcnow())
    session.flush()
    return IssuedLabel(shipment, model)


def reprint_label(session: Session, deps: LabelDeps, principal: Principal, shipment_id: str,
                  reason: str) -> IssuedLabel:
    """New token, old one revoked, reason and actor recorded; at most ``deps.reprint_max`` times."""
    principal.require(Permission.LABEL_REPRINT)
    reason = reason.strip()
    if not 2 <= len(reason) <= 200:
        raise ValidationFailed("重打原因须为 2-200 个字符", field="reason")
    shipment = _load(session, principal, shipment_id, "label.reprint")
    done = session.execute(
        select(func.count()).where(QrToken.shipment_id == shipment.id, QrToken.is_reprint.is_(True))
    ).scalar_one()
    if done >= deps.reprint_max:
        audit.record(session, principal, "label.reprint", object_type="shipment", object_id=shipment.id,
                     outcome="limit_reached", purpose=reason, durable=True)
        raise ReprintLimitReached(field="shipment_id")
    now = utcnow()
    revoke_tokens(session, principal, shipment.id, "reprint", now=now)
    model = _issue(session, deps, principal, shipment, reason=reason, reprint=True, now=now)
    session.flush()
    return IssuedLabel(shipment, model)


def issue_print_job(session: Session, deps: LabelDeps, principal: Principal, shipment_ids: Sequence[str], *,
                    reprint_reason: str | None = None) -> list[LabelModel]:
    """A sorter's batch: every label issued (or, with ``reprint_reason``, reprinted) in request order.

    All or nothing: an unknown, unprintable or already-printed shipment fails the whole job, naming the
    item, before any label is issued.
    """
    principal.require(Permission.PRINT_JOB_CREATE)
    now = utcnow()
    ids = list(shipment_ids)
    if len(set(ids)) != len(ids):
        raise ValidationFailed("shipment_ids 中有重复", field="shipment_ids")
    rows: dict[str, Shipment] = {}
    live: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = [i for i in ids[start:start + 500] if looks_like("shp", i)]
        rows.update({s.id: s for s in session.execute(
            select(Shipment).where(Shipment.id.in_(chunk)).with_for_update()).scalars()})
        live.update(session.execute(select(QrToken.shipment_id).where(
            QrToken.shipment_id.in_(chunk), QrToken.revoked_at.is_(None))).scalars())
    for index, sid in enumerate(ids):
        shipment = rows.get(sid)
        field = f"shipment_ids[{index}]"
        if shipment is None:
            raise NotFound("运单不存在", field=field)
        if shipment.status not in PRINTABLE:
            raise InvalidStatusTransition("当前状态不可打印面单", field=field)
        if sid in live and reprint_reason is None:
            raise LabelAlreadyIssued(field=field)
    models = []
    if reprint_reason is not None:
        already = [sid for sid in ids if sid in live]
        counts = dict(session.execute(
            select(QrToken.shipment_id, func.count()).where(QrToken.shipment_id.in_(already),
                                                            QrToken.is_reprint.is_(True))
            .group_by(QrToken.shipment_id)).all()) if already else {}
        for index, sid in enumerate(ids):
            if counts.get(sid, 0) >= deps.reprint_max:
                raise ReprintLimitReached(field=f"shipment_ids[{index}]")
        revoke_many(session, principal, already, "reprint", now=now)
    for sid in ids:
        reprint = sid in live
        models.append(_issue(session, deps, principal, rows[sid], reason=reprint_reason if reprint else
                             "first_print", reprint=reprint, now=now))
    session.flush()
    return models


def revoke_tokens(session: Session, principal: Principal, shipment_id: str, reason: str, *,
                  now: datetime | None = None) -> int:
    """Revoke the shipment's live token (reprint, delivery, cancellation). Returns how many were revoked."""
    return revoke_many(session, principal, [shipment_id], reason, now=now)


def revoke_many(session: Session, principal: Principal, shipment_ids: Sequence[str], reason: str, *,
                now: datetime | None = None) -> int:
    if not shipment_ids:
        return 0
    result = session.execute(
        update(QrToken).where(QrToken.shipment_id.in_(list(shipment_ids)), QrToken.revoked_at.is_(None))
        .values(revoked_at=now or utcnow(), revoked_by=principal.actor, revoke_reason=reason)
        .execution_options(synchronize_session=False)
    )
    # Revocations must hit the database before a replacement token is inserted (one live token rule).
    session.flush()
    return int(result.rowcount or 0)


def resolve_token(session: Session, key: bytes, raw: str) -> Shipment | None:
    """The shipment a live token belongs to, or ``None`` (unknown, revoked, malformed alike)."""
    if not isinstance(raw, str) or not 16 <= len(raw) <= 64:
        return None
    digest = hash_token(key, raw.strip())
    row = session.execute(
        select(QrToken, Shipment).join(Shipment, Shipment.id == QrToken.shipment_id)
        .where(QrToken.token_hash == digest, QrToken.revoked_at.is_(None))
    ).first()
    # The lookup is by hash; compare again in constant time so no code path depends on early exits.
    if row is None or not hmac.compare_digest(bytes(row[0].token_hash), digest):
        return None
    return row[1]
