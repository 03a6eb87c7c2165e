"""Shipments: create (single, idempotent, batch), read, list, cancel, search by phone.

Domain functions take a session, the acting principal and plain data; they flush but never commit.
Personal data is encrypted field by field, bound to (table, column, row id); the masked snapshot,
encrypted beside it (:mod:`waybill.masked`), is what every merchant view and label shows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from waybill import audit, shipment_rows, tracking
from waybill.crypto.subject_keys import SubjectKeyring
from waybill.crypto.vault import subject_key_of
from waybill.errors import (
    DomainError,
    DuplicateMerchantOrder,
    IdempotencyConflict,
    InvalidStatusTransition,
    ShipmentNotFound,
    ValidationFailed,
)
from waybill.ids import looks_like
from waybill.labels import revoke_tokens
from waybill.models import Shipment, TrackingEvent
from waybill.permissions import Permission, Principal
from waybill.phone_index import phone_index
from waybill.phones import normalize_phone
from waybill.schemas import ShipmentIn
from waybill.shipment_rows import Built, RowBuilder, ShipmentRow
from waybill.shipment_rows import ShipmentDeps as ShipmentDeps  # where it is defined; imported from here

TABLE = "shipments"
PARTIES = ("sender", "recipient")
PD_FIELDS = tuple(f"{p}.{f}" for p in PARTIES for f in ("name", "phone", "address"))
CANCELLABLE = frozenset({"created", "printed"})


@dataclass(frozen=True)
class BatchItemResult:
    """One batch item's outcome: the row as written, or the error naming the field."""

    index: int
    shipment: ShipmentRow | None = None
    error: DomainError | None = None


def _duplicate() -> DuplicateMerchantOrder:
    return DuplicateMerchantOrder(field="merchant_order_id")


def _fingerprint(deps: ShipmentDeps, data: ShipmentIn) -> bytes:
    # Keyed, so the stored fingerprint of a body full of personal data can't be brute-forced.
    body = data.model_dump(mode="json")
    if body["parcel"]["pieces"] == 1:
        # A single piece is how bodies looked before `pieces` existed: the same fingerprint as then, so a
        # retry across the upgrade with the same Idempotency-Key still finds its shipment.
        del body["parcel"]["pieces"]
    if body.get("consents") is None:
        # Likewise for bodies from before consents were taken: no key, the same fingerprint.
        body.pop("consents", None)
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return hmac.new(deps.fingerprint_key, canonical.encode(), hashlib.sha256).digest()


def _own(session: Session, principal: Principal, shipment_id: str, action: str, *,
         lock: bool = False) -> Shipment:
    """The principal's own shipment, or :class:`ShipmentNotFound` (audited: probing leaves a trace).

    Unknown, malformed and foreign ids are indistinguishable to the caller.
    """
    shipment = None
    if principal.kind == "merchant" and looks_like("shp", shipment_id):
        # A test-mode key sees only its test shipments, a live key only live ones.
        stmt = select(Shipment).where(Shipment.id == shipment_id, Shipment.merchant_id == principal.id,
                                      Shipment.test_mode == principal.test_mode)
        if lock:
            stmt = stmt.with_for_update()
        shipment = session.execute(stmt).scalar_one_or_none()
    if shipment is None:
        # The caller can't tell "foreign" from "unknown"; the audit log can, for the auditors.
        known = looks_like("shp", shipment_id)
        exists = known and session.execute(select(Shipment.id).where(Shipment.id == shipment_id)).first()
        audit.record(session, principal, action, object_type="shipment", object_id=shipment_id if known else None,
                     outcome="denied" if exists else "not_found", durable=True)
        raise ShipmentNotFound()
    return shipment


def create_shipment(session: Session, deps: ShipmentDeps, principal: Principal, data: ShipmentIn, *,
                    idempotency_key: str | None = None) -> tuple[Shipment, bool]:
    """Create one shipment; returns ``(shipment, created)``.

    With an idempotency key, the same body again returns the original shipment (``created`` False)
    and a different body raises :class:`IdempotencyConflict`. A reused ``merchant_order_id`` raises
    :class:`DuplicateMerchantOrder`.
    """
    principal.require(Permission.SHIPMENT_CREATE)
    fingerprint = _fingerprint(deps, data) if idempotency_key else None
    if idempotency_key:
        replay = _idempotent_replay(session, principal, idempotency_key, fingerprint)
        if replay is not None:
            audit.record(session, principal, "shipment.read", object_type="shipment", object_id=replay.id,
                         fields=["masked"], purpose="idempotent replay")
            return replay, False
    (built,) = RowBuilder(deps, principal).build([(data, idempotency_key, fingerprint)])
    if isinstance(built, ValidationFailed):
        raise built
    if not shipment_rows.write(session, principal, [built]):
        # A concurrent request won the race for the key or the order id: answer as it would have.
        if idempotency_key:
            replay = _idempotent_replay(session, principal, idempotency_key, fingerprint)
            if replay is not None:
                return replay, False
        raise DuplicateMerchantOrder(field="merchant_order_id")
    shipment = shipment_rows.attach(session, built.row)
    audit.record(session, principal, "shipment.create", object_type="shipment", object_id=shipment.id,
                 fields=PD_FIELDS)
    return shipment, True


def _idempotent_replay(session: Session, principal: Principal, key: str,
                       fingerprint: bytes | None) -> Shipment | None:
    existing = session.execute(
        select(Shipment).where(Shipment.merchant_id == principal.id, Shipment.idempotency_key == key)
    ).scalar_one_or_none()
    if existing is None:
        return None
    # The key was used by the merchant's other mode (test vs live): refused, never that mode's shipment.
    if existing.test_mode != principal.test_mode:
        raise IdempotencyConflict(field="Idempotency-Key")
    if fingerprint is None or not hmac.compare_digest(bytes(existing.request_fingerprint or b""), fingerprint):
        raise IdempotencyConflict(field="Idempotency-Key")
    return existing


def create_batch(session: Session, deps: ShipmentDeps, principal: Principal,
                 items: Sequence[ShipmentIn | ValidationFailed], *,
                 chunk: int = 500) -> Iterator[BatchItemResult]:
    """Create many shipments, each standing or failing alone; yields results in input order.

    Work is done in chunks: one query finds already-used order ids, and a few set-based statements write the
    chunk (:func:`waybill.shipment_rows.write`); no ORM object is made per row, so memory stays bounded by the
    chunk size.
    """
    principal.require(Permission.SHIPMENT_CREATE)
    seen: set[str] = set()
    builder = RowBuilder(deps, principal)  # one per batch: what repeats across its items is worked out once
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        order_ids = [it.merchant_order_id for it in part if isinstance(it, ShipmentIn)]
        taken = set(session.execute(
            select(Shipment.merchant_order_id).where(Shipment.merchant_id == principal.id,
                                                     Shipment.merchant_order_id.in_(order_ids))
        ).scalars()) if order_ids else set()
        # Built before the order ids are claimed: an item that fails its checks leaves its order id free for a
        # later item of the batch, as when items were built one at a time.
        fresh = [(offset, item) for offset, item in enumerate(part)
                 if isinstance(item, ShipmentIn) and item.merchant_order_id not in taken]
        built = dict(zip((offset for offset, _ in fresh),
                         builder.build([(item, None, None) for _, item in fresh]), strict=True))
        results: list[BatchItemResult] = []
        good: list[tuple[int, Built]] = []
        for offset, item in enumerate(part):
            index = start + offset
            if isinstance(item, ValidationFailed):
                results.append(BatchItemResult(index, error=item))
            elif item.merchant_order_id in taken or item.merchant_order_id in seen:
                results.append(BatchItemResult(index, error=_duplicate()))
            elif isinstance(b := built[offset], ValidationFailed):
                results.append(BatchItemResult(index, error=b))
            else:
                seen.add(item.merchant_order_id)
                good.append((offset, b))
                results.append(BatchItemResult(index, shipment=b.row))
        written = {b.row.id for b in shipment_rows.write(session, principal, [b for _, b in good])}
        for offset, b in good:
            if b.row.id in written:
                audit.record(session, principal, "shipment.create", object_type="shipment", object_id=b.row.id,
                             fields=PD_FIELDS)
            else:  # a concurrent request took the order id meanwhile
                results[offset] = BatchItemResult(start + offset, error=_duplicate())
        yield from results


def get_shipment(session: Session, principal: Principal, shipment_id: str) -> Shipment:
    principal.require(Permission.SHIPMENT_READ)
    shipment = _own(session, principal, shipment_id, "shipment.read")
    audit.record(session, principal, "shipment.read", object_type="shipment", object_id=shipment.id,
                 fields=["masked"])
    return shipment


def shipment_events(session: Session, principal: Principal, shipment_id: str) -> list[TrackingEvent]:
    """The merchant's own shipment's tracking history in sequence order (statuses, stations, times: no
    personal data, so reading it is not audited; a foreign or unknown id is, by :func:`_own`)."""
    principal.require(Permission.TRACKING_READ)
    return tracking.history(session, _own(session, principal, shipment_id, "shipment.events").id)


def _decode_cursor(cursor: str) -> str:
    try:
        sid = base64.urlsafe_b64decode(cursor.encode() + b"==").decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed("分页游标无效", field="cursor") from None
    if not looks_like("shp", sid):
        raise ValidationFailed("分页游标无效", field="cursor")
    return sid


def _encode_cursor(shipment: Shipment) -> str:
    # Ids are time-ordered (ULID), so the last id seen is a complete keyset position.
    return base64.urlsafe_b64encode(shipment.id.encode()).decode().rstrip("=")


def list_shipments(session: Session, deps: ShipmentDeps, principal: Principal, *, limit: int,
                   cursor: str | None = None, recipient_phone: str | None = None
                   ) -> tuple[list[Shipment], str | None]:
    """The merchant's own shipments, newest first, keyset-paginated; optional exact phone search."""
    principal.require(Permission.SHIPMENT_LIST)
    if principal.kind != "merchant":
        return [], None
    stmt = select(Shipment).where(Shipment.merchant_id == principal.id, Shipment.test_mode == principal.test_mode)
    if cursor:
        stmt = stmt.where(Shipment.id < _decode_cursor(cursor))
    wanted: str | None = None
    if recipient_phone is not None:
        try:
            wanted = normalize_phone(recipient_phone).number
        except ValueError as exc:
            raise ValidationFailed(str(exc), field="recipient_phone") from None
        stmt = stmt.where(Shipment.recipient_phone_bidx == phone_index(deps.codec, principal.id, "recipient", wanted))
    stmt = stmt.order_by(Shipment.id.desc()).limit(limit + 1)
    rows = list(session.execute(stmt).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode_cursor(rows[-1]) if more and rows else None
    if wanted is not None:
        # The blind index is truncated on purpose: confirm each candidate by decrypting it.
        rows = [r for r in rows if r.recipient_phone_ct is not None and deps.codec.decrypt(
            r.recipient_phone_ct, table=TABLE, column="recipient_phone", row_id=r.id) == wanted]
        audit.record(session, principal, "shipment.search", object_type="shipment",
                     fields=["recipient.phone"], purpose="merchant phone search")
    # One query for the page's data keys instead of one per party (the masked snapshots are opened next).
    deps.keyring.prefetch(k for r in rows for blob in (r.sender_masked_ct, r.recipient_masked_ct)
                          if blob is not None and (k := subject_key_of(blob)) is not None)
    for row in rows:
        audit.record(session, principal, "shipment.read", object_type="shipment", object_id=row.id,
                     fields=["masked"])
    return rows, next_cursor


def cancel_shipment(session: Session, principal: Principal, shipment_id: str, *, keyring: SubjectKeyring) -> Shipment:
    """Cancel before pickup (``created`` or ``printed``); otherwise :class:`InvalidStatusTransition`."""
    principal.require(Permission.SHIPMENT_CANCEL)
    shipment = _own(session, principal, shipment_id, "shipment.cancel", lock=True)
    if shipment.status == "cancelled":
        audit.record(session, principal, "shipment.read", object_type="shipment", object_id=shipment.id,
                     fields=["masked"], purpose="repeated cancel")
        return shipment
    if shipment.status not in CANCELLABLE:
        raise InvalidStatusTransition(field="status")
    tracking.move(session, principal, shipment, "cancelled")
    # A cancelled parcel's printed label must stop resolving.
    revoke_tokens(session, principal, shipment.id, "cancelled", now=shipment.updated_at)
    keyring.end_contract(session, shipment, shipment.updated_at)
    audit.record(session, principal, "shipment.cancel", object_type="shipment", object_id=shipment.id)
    session.flush()
    return shipment
