"""Labels: QR tokens and the label models handed to the printing package.

A token is derived from 160 random bits (a nonce from :mod:`secrets`) with the ``qr_token`` secret:
``token = HMAC(secret, "derive" | nonce)``; the table keeps the nonce and ``HMAC(secret, "hash" | token)``
for lookup, never the token. So the label can be printed again with the *same* token (a GET stays
idempotent), while the database alone reveals no token. A *reprint* issues a new nonce and revokes the
old token, with a reason code and the actor recorded, capped per shipment — so a photographed or lost
label stops working. Sorters act only for their own station or hub (:mod:`waybill.scope`), and their
reprints are capped per job and per hour (:mod:`waybill.reprint_caps`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

from sqlalchemy import CursorResult, LargeBinary, and_, bindparam, func, select, update
from sqlalchemy.orm import Session

from printing.model import ORDER_TAIL_MAX, LabelModel, MaskedParty
from waybill import audit, masked, reprint_caps, tracking
from waybill.crypto.subject_keys import SubjectKeyring
from waybill.crypto.vault import FieldCodec
from waybill.errors import (
    InvalidStatusTransition,
    PersonalDataDestroyed,
    ReprintLimitReached,
    SandboxShipment,
    ShipmentNotFound,
    ValidationFailed,
)
from waybill.ids import looks_like, new_id
from waybill.models import QrToken, Shipment, UTCDateTime, utcnow
from waybill.permissions import Permission, Principal
from waybill.phone_index import phone_index
from waybill.phones import InvalidPhone, normalize_phone
from waybill.routing import RoutingTable, UnknownProvince
from waybill.scope import label_scope

TOKEN_BYTES = 20  # 160 bits: above the 128-bit floor, and 32 base32 characters fit QR alphanumeric mode
# Reprints carry a reason code, not free text: the reason lands in the audit log, which holds no personal data.
REPRINT_REASONS = {"damaged": "面单污损", "lost": "面单丢失", "printer_jam": "打印机卡纸", "misprint": "打印错误",
                   "relabel": "更换面单规格"}
# A parcel under way, on its way out or back (a failed attempt or a return may need a new label: a torn one, or
# one whose token expired during the attempts); never one whose contract ended.
PRINTABLE = frozenset({"created", "printed", "in_transit", "out_for_delivery", "delivery_failed", "returning"})
SERVICE_NAME = "标准快递"
# Labels show Beijing time (UTC+8 all year, no daylight saving), whatever the server's zone.
CHINA_TIME = timezone(timedelta(hours=8), "CST")


@dataclass(frozen=True)
class LabelDeps:
    token_key: bytes
    reprint_max: int
    # Opens the encrypted masked snapshot, and checks order-number tails against the blind index.
    codec: FieldCodec
    carrier: str = ""
    routing: RoutingTable | None = None  # routes shipments created before they stored their 集包地
    reprints_per_job: int = 20  # shipments in one print job with a reprint reason
    reprints_per_hour: int = 60  # reprints by one sorter in any hour
    # The parties' data keys, loaded many at a time for a print job (a node that did not create the shipments has
    # none of their keys cached: one query per 500 shipments, not one per party).
    keyring: SubjectKeyring | None = None


@dataclass(frozen=True)
class IssuedLabel:
    shipment: Shipment
    model: LabelModel


def hash_token(key: bytes, raw: str) -> bytes:
    return hmac.new(key, b"hash|" + raw.encode(), hashlib.sha256).digest()


def derive_token(key: bytes, nonce: bytes) -> str:
    """The QR payload for a nonce: 32 base32 characters (160 bits)."""
    digest = hmac.new(key, b"derive|" + bytes(nonce), hashlib.sha256).digest()[:TOKEN_BYTES]
    return base64.b32encode(digest).decode().rstrip("=")


def _party(codec: FieldCodec, shipment: Shipment, role: str) -> MaskedParty:
    blob = getattr(shipment, f"{role}_masked_ct")
    if blob is None:  # destroyed (retention, the party's deletion): there is nothing to print, ever again
        raise PersonalDataDestroyed()
    snap = masked.unseal(codec, shipment.id, role, blob)
    region = getattr(shipment, f"{role}_region")
    return MaskedParty(name=snap["name"], phone=snap["phone"], province=region["province"],
                       city=region["city"], district=region["district"], address=snap["address"])


# Digit runs that could be a phone number: mobile (optionally +86), landline with area code, local number.
_SEPARATORS = re.compile(r"[-_.:]")
_DIGIT_RUN = re.compile(r"\d+")
_PHONE_SHAPED = re.compile(r"(?:86)?1[3-9]\d{9}|0\d{9,11}|\d{7,8}")


def _digit_runs(merchant_order_id: str) -> set[str]:
    # Runs as written and with separators removed: "13812345678-1" hides a phone as the first, and
    # "138-1234-5678" as the second.
    return set(_DIGIT_RUN.findall(merchant_order_id)) | set(_DIGIT_RUN.findall(_SEPARATORS.sub("", merchant_order_id)))


def _phone_candidates(runs: set[str]) -> Iterator[str]:
    """Every canonical phone number spelled by a window of the digit runs (mobile, or landline with area code)."""
    seen: set[str] = set()
    for run in runs:
        for length in (11, 10, 12):
            for start in range(0, len(run) - length + 1):
                window = run[start:start + length]
                if window[0] not in "01":
                    continue
                try:
                    phone = normalize_phone(window).number
                except InvalidPhone:
                    continue
                if phone not in seen:
                    seen.add(phone)
                    yield phone


def order_tail(merchant_order_id: str, is_party_phone: Callable[[str], bool] | None = None) -> str | None:
    """The last characters of the merchant's order number as a label shows them, or None.

    Merchants do use phone numbers as order numbers: six more digits next to the masked phone would undo
    its masking. So an order number prints no tail when any of its digit runs (as written, or with separators
    removed) is phone-shaped, or — checked through the blind index, without decrypting anything — when any
    window of its digits spells the sender's or recipient's phone (``is_party_phone``).
    """
    runs = _digit_runs(merchant_order_id)
    if any(_PHONE_SHAPED.fullmatch(run) for run in runs):
        return None
    if is_party_phone is not None and any(is_party_phone(p) for p in _phone_candidates(runs)):
        return None
    return merchant_order_id[-ORDER_TAIL_MAX:]


def _party_phone_check(deps: LabelDeps, shipment: Shipment) -> Callable[[str], bool]:
    # The index is narrow on purpose (waybill/crypto/vault.py): a false match only hides a tail needlessly.
    codec = deps.codec
    stored = {("sender", shipment.sender_phone_bidx), ("recipient", shipment.recipient_phone_bidx)}

    def check(phone: str) -> bool:
        return any((role, phone_index(codec, shipment.merchant_id, role, phone)) in stored
                   for role in ("sender", "recipient"))

    return check


def _consolidation(deps: LabelDeps, shipment: Shipment) -> str | None:
    if shipment.consolidation is not None or deps.routing is None:
        return shipment.consolidation
    region = shipment.recipient_region
    try:
        return deps.routing.route(region["province"], region["city"], region["district"]).consolidation
    except UnknownProvince:
        return None


def label_model(deps: LabelDeps, shipment: Shipment, token: str, printed_at: datetime) -> LabelModel:
    """The label as printed: masked snapshot, sorting code, waybill number and the QR token only, with what
    a carrier prints besides (carrier name, order-number tail, pieces, 集包地)."""
    return LabelModel(waybill_no=shipment.waybill_no, sorting_code=shipment.sorting_code,
                      recipient=_party(deps.codec, shipment, "recipient"),
                      sender=_party(deps.codec, shipment, "sender"), token=token,
                      weight_g=shipment.weight_g, service=SERVICE_NAME, category=None,
                      printed_at=printed_at.astimezone(CHINA_TIME), carrier=deps.carrier,
                      order_tail=order_tail(shipment.merchant_order_id, _party_phone_check(deps, shipment)),
                      pieces=shipment.pieces,
                      consolidation=_consolidation(deps, shipment))


def _exists(session: Session, shipment_id: str) -> bool:
    return session.execute(select(Shipment.id).where(Shipment.id == shipment_id)).first() is not None


def _load(session: Session, principal: Principal, shipment_id: str, action: str) -> Shipment:
    """Object-level check: merchants reach their own shipments, sorters those of their station or hub."""
    shipment = None
    known = looks_like("shp", shipment_id)
    if known:
        stmt = select(Shipment).where(Shipment.id == shipment_id, label_scope(principal))
        shipment = session.execute(stmt.with_for_update()).scalar_one_or_none()
    if shipment is None:
        # The caller can't tell out-of-scope from unknown; the audit log can ("denied": it exists).
        audit.record(session, principal, action, object_type="shipment", object_id=shipment_id if known else None,
                     outcome="denied" if known and _exists(session, shipment_id) else "not_found", durable=True)
        raise ShipmentNotFound()
    return shipment


def _issue(session: Session, deps: LabelDeps, principal: Principal, shipment: Shipment, *, reason: str,
           reprint: bool, now: datetime) -> LabelModel:
    """A new token for ``shipment`` (the caller has revoked any live one), and its label."""
    if shipment.test_mode:  # no token, so nothing a courier could ever scan
        raise SandboxShipment(field="shipment_id")
    if shipment.status not in PRINTABLE:
        raise InvalidStatusTransition("当前状态不可打印面单", field="status")
    nonce = secrets.token_bytes(TOKEN_BYTES)
    raw = derive_token(deps.token_key, nonce)
    session.add(QrToken(id=new_id("qrt"), shipment_id=shipment.id, nonce=nonce,
                        token_hash=hash_token(deps.token_key, raw), issued_at=now, issued_by=principal.actor,
                        issue_reason=reason, is_reprint=reprint))
    if shipment.status == "created":
        tracking.move(session, principal, shipment, "printed", at=now)
    if shipment.printed_at is None:
        shipment.printed_at = now
    shipment.updated_at = now
    audit.record(session, principal, "label.reprint" if reprint else "label.print", object_type="shipment",
                 object_id=shipment.id, fields=["masked"], purpose=reason if reprint else None)
    return label_model(deps, shipment, raw, now)


def _again(session: Session, deps: LabelDeps, principal: Principal, shipment: Shipment, token: QrToken,
           now: datetime) -> LabelModel:
    """The same label once more, with the live token: nothing changes but the audit trail."""
    if shipment.status not in PRINTABLE:
        raise InvalidStatusTransition("当前状态不可打印面单", field="status")
    audit.record(session, principal, "label.print_again", object_type="shipment", object_id=shipment.id,
                 fields=["masked"])
    return label_model(deps, shipment, derive_token(deps.token_key, token.nonce), now)


def _live_token(session: Session, shipment_id: str) -> QrToken | None:
    return session.execute(
        select(QrToken).where(QrToken.shipment_id == shipment_id, QrToken.revoked_at.is_(None))
    ).scalar_one_or_none()


def issue_label(session: Session, deps: LabelDeps, principal: Principal, shipment_id: str) -> IssuedLabel:
    """The shipment's label (owning merchant or sorter): first print issues the token, later calls reuse it."""
    principal.require(Permission.LABEL_READ)
    shipment = _load(session, principal, shipment_id, "label.print")
    live = _live_token(session, shipment.id)
    now = utcnow()
    if live is not None:
        model = _again(session, deps, principal, shipment, live, now)
    else:
        model = _issue(session, deps, principal, shipment, reason="first_print", reprint=False, now=now)
    session.flush()
    return IssuedLabel(shipment, model)


def _check_reason(reason: str, field: str) -> None:
    if reason not in REPRINT_REASONS:
        raise ValidationFailed(f"重打原因须为 {' / '.join(REPRINT_REASONS)} 之一", field=field)


def _reprints(session: Session, shipment_ids: Sequence[str]) -> dict[str, int]:
    if not shipment_ids:
        return {}
    rows = session.execute(
        select(QrToken.shipment_id, func.count()).where(QrToken.shipment_id.in_(list(shipment_ids)),
                                                        QrToken.is_reprint.is_(True))
        .group_by(QrToken.shipment_id)).all()
    return {sid: int(n) for sid, n in rows}


def reprint_label(session: Session, deps: LabelDeps, principal: Principal, shipment_id: str,
                  reason: str) -> IssuedLabel:
    """New token, old one revoked, reason and actor recorded; at most ``deps.reprint_max`` times."""
    principal.require(Permission.LABEL_REPRINT)
    _check_reason(reason, "reason")
    shipment = _load(session, principal, shipment_id, "label.reprint")
    if _reprints(session, [shipment.id]).get(shipment.id, 0) >= deps.reprint_max:
        audit.record(session, principal, "label.reprint", object_type="shipment", object_id=shipment.id,
                     outcome="limit_reached", purpose=reason, durable=True)
        raise ReprintLimitReached(field="shipment_id")
    now = utcnow()
    reprint_caps.check_hourly(session, principal, deps.reprints_per_hour, 1, now)
    revoke_tokens(session, principal, shipment.id, "reprint", now=now)
    model = _issue(session, deps, principal, shipment, reason=reason, reprint=True, now=now)
    session.flush()
    return IssuedLabel(shipment, model)


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
    return int(cast("CursorResult[Any]", result).rowcount or 0)


# A live token: this hash, not revoked, issued after a cutoff. Named parameters (token_hash,
# issued_after) so that statements using it are built once; see live_token_params.
LIVE_TOKEN = and_(QrToken.token_hash == bindparam("token_hash", type_=LargeBinary), QrToken.revoked_at.is_(None),
                  QrToken.issued_at > bindparam("issued_after", type_=UTCDateTime))
_NO_CUTOFF = datetime(1970, 1, 1, tzinfo=UTC)
_RESOLVE = (select(QrToken.token_hash, Shipment).join(Shipment, Shipment.id == QrToken.shipment_id)
            .where(LIVE_TOKEN))


def live_token_params(key: bytes, raw: object, *, max_age: timedelta | None = None,
                      now: datetime | None = None) -> dict[str, Any] | None:
    """The parameters of :data:`LIVE_TOKEN` for a scanned token, or ``None`` for a malformed one.

    ``max_age`` bounds how long a printed label stays scannable: a photographed label sold on stops
    working even if the parcel was never delivered.
    """
    if not isinstance(raw, str) or not 16 <= len(raw) <= 64:
        return None
    return {"token_hash": hash_token(key, raw.strip()),
            "issued_after": (now or utcnow()) - max_age if max_age is not None else _NO_CUTOFF}


def token_matches(row: Any, params: dict[str, Any]) -> bool:
    """The lookup is by hash; compare again in constant time so no code path depends on early exits."""
    return row is not None and hmac.compare_digest(bytes(row.token_hash), params["token_hash"])


def resolve_token(session: Session, key: bytes, raw: str, *, max_age: timedelta | None = None,
                  now: datetime | None = None) -> Shipment | None:
    """The shipment a live token belongs to, or ``None`` (unknown, revoked, expired, malformed alike)."""
    params = live_token_params(key, raw, max_age=max_age, now=now)
    if params is None:
        return None
    row = session.execute(_RESOLVE, params).first()
    return row.Shipment if row is not None and token_matches(row, params) else None

