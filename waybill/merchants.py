"""Merchants and their API keys (stored as keyed hashes, compared in constant time), and the keys' lifecycle:
list, rotate (the previous keys keep working for a grace period), revoke, and disabling a merchant.

Key material never leaves this module except as the one return value of :func:`issue_api_key`; listings and
audit events carry key ids (the public lookup prefix), never a key or its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from waybill import audit
from waybill.errors import AuthenticationFailed, Conflict, NotFound, ValidationFailed
from waybill.ids import new_id
from waybill.models import ApiKey, Merchant, utcnow
from waybill.permissions import Principal

KEY_PREFIX = "wbk"
KEY_MODES = ("live", "test")
# last_used_at is bookkeeping: refresh it at most this often so requests do not all write.
LAST_USED_RESOLUTION_S = 60
_KEY_ID_HEX = 16


@dataclass(frozen=True)
class NewMerchant:
    merchant_id: str
    api_key: str


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never the key or its hash."""

    key_id: str
    mode: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    status: str  # "active" | "expiring" (in its rotation grace) | "expired" | "revoked"


@dataclass(frozen=True)
class MerchantKeys:
    merchant_id: str
    disabled: bool
    disabled_at: datetime | None
    keys: list[KeyInfo]


@dataclass(frozen=True)
class Rotation:
    merchant_id: str
    key_id: str
    api_key: str
    mode: str
    # The keys put on their grace period by this rotation, and when it ends.
    expiring: list[str]
    old_keys_expire_at: datetime


def _hash(secret: bytes, raw_key: str) -> bytes:
    return hmac.new(secret, raw_key.encode(), hashlib.sha256).digest()


def create_merchant(session: Session, actor: Principal, name: str, *, api_key_secret: bytes) -> NewMerchant:
    """Create a merchant with one API key; the plaintext key is returned once and never stored."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValidationFailed("商户名称长度须为 1-200 个字符", field="name")
    merchant = Merchant(id=new_id("mch"), name=name, disabled=False, created_at=utcnow())
    session.add(merchant)
    session.flush()  # no ORM relationship orders the inserts; the key's foreign key needs the row
    raw = issue_api_key(session, merchant.id, api_key_secret=api_key_secret)
    audit.record(session, actor, "merchant.create", object_type="merchant", object_id=merchant.id)
    session.flush()
    return NewMerchant(merchant.id, raw)


def issue_api_key(session: Session, merchant_id: str, *, api_key_secret: bytes, mode: str = "live",
                  now: datetime | None = None) -> str:
    """Store a new key (hashed) for ``merchant_id`` and return the raw ``wbk_<id>_<secret>`` once."""
    if mode not in KEY_MODES:
        raise ValidationFailed("密钥模式须为 live 或 test", field="mode")
    key_id = secrets.token_hex(_KEY_ID_HEX // 2)
    raw = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(id=key_id, merchant_id=merchant_id, key_hash=_hash(api_key_secret, raw),
                       created_at=now or utcnow(), mode=mode))
    return raw


# Built once: this runs on every merchant request.
_KEY_LOOKUP = (select(ApiKey.key_hash, ApiKey.revoked_at, ApiKey.expires_at, ApiKey.last_used_at, ApiKey.mode,
                      Merchant.id, Merchant.disabled)
               .join(Merchant, Merchant.id == ApiKey.merchant_id)
               .where(ApiKey.id == bindparam("key_id")))


def authenticate(session: Session, raw_key: str, *, api_key_secret: bytes, now: datetime | None = None) -> Principal:
    """Resolve a bearer API key to its merchant, or raise :class:`AuthenticationFailed`.

    Looked up by the key's id, then its keyed hash compared in constant time. Checked on every request:
    revocation, the end of a rotation's grace period, and the merchant's ``disabled`` flag, so revoking or
    disabling takes effect on the very next request.
    """
    now = now or utcnow()
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != _KEY_ID_HEX:
        raise AuthenticationFailed()
    row = session.connection().execute(_KEY_LOOKUP, {"key_id": parts[1]}).first()
    expected = bytes(row.key_hash) if row is not None else bytes(32)
    # Always compare, even for an unknown key id, so timing does not tell which ids exist.
    matches = hmac.compare_digest(_hash(api_key_secret, raw_key), expected)
    if (row is None or not matches or row.revoked_at is not None or row.disabled
            or (row.expires_at is not None and row.expires_at <= now)):
        raise AuthenticationFailed()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() >= LAST_USED_RESOLUTION_S:
        _touch(session, parts[1], now)
    return Principal(kind="merchant", id=row.id, role="merchant", test_mode=row.mode == "test")


def _touch(session: Session, key_id: str, now: datetime) -> None:
    # One key serves all of a merchant's concurrent requests: a request that finds the row locked by another
    # one's bookkeeping skips it (SKIP LOCKED on PostgreSQL) instead of waiting for that transaction to end.
    k = ApiKey.__table__.alias("k")  # its own FROM, not correlated to the UPDATE's table
    free = select(k.c.id).where(k.c.id == key_id).with_for_update(skip_locked=True).scalar_subquery()
    session.execute(update(ApiKey).where(ApiKey.id == free).values(last_used_at=now)
                    .execution_options(synchronize_session=False))


# -- lifecycle (operator commands) ------------------------------------------------------------------------
def _merchant(session: Session, merchant_id: str, *, lock: bool = False) -> Merchant:
    stmt = select(Merchant).where(Merchant.id == merchant_id)
    if lock:  # serialise concurrent rotations, revocations and disabling of one merchant
        stmt = stmt.with_for_update()
    merchant = session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()
    if merchant is None:
        raise NotFound("商户不存在", field="merchant_id")
    return merchant


def _status(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None:
        return "expired" if key.expires_at <= now else "expiring"
    return "active"


def _keys(session: Session, merchant_id: str) -> list[ApiKey]:
    return list(session.execute(
        select(ApiKey).where(ApiKey.merchant_id == merchant_id).order_by(ApiKey.created_at, ApiKey.id)
        .execution_options(populate_existing=True)).scalars())


def list_keys(session: Session, merchant_id: str, *, now: datetime | None = None) -> MerchantKeys:
    """Every key of the merchant with its state (oldest first); never the key or its hash."""
    now = now or utcnow()
    merchant = _merchant(session, merchant_id)
    keys = [KeyInfo(k.id, k.mode, k.created_at, k.expires_at, k.revoked_at, k.last_used_at, _status(k, now))
            for k in _keys(session, merchant_id)]
    return MerchantKeys(merchant.id, bool(merchant.disabled), merchant.disabled_at, keys)


def rotate_keys(session: Session, actor: Principal, merchant_id: str, *, api_key_secret: bytes,
                grace: timedelta, mode: str = "live", now: datetime | None = None) -> Rotation:
    """Issue a new key of ``mode`` and put every other working key of that mode on a grace period of ``grace``
    (a key already on a shorter one keeps it). The new key is returned once. Refused for a disabled merchant."""
    now = now or utcnow()
    if mode not in KEY_MODES:
        raise ValidationFailed("密钥模式须为 live 或 test", field="mode")
    merchant = _merchant(session, merchant_id, lock=True)
    if merchant.disabled:
        raise Conflict("商户已停用，不能签发新密钥", field="merchant_id")
    ends = now + max(grace, timedelta(0))
    expiring: list[str] = []
    for key in _keys(session, merchant_id):
        if key.mode != mode or _status(key, now) not in ("active", "expiring"):
            continue
        if key.expires_at is None or key.expires_at > ends:
            key.expires_at = ends
        expiring.append(key.id)
    raw = issue_api_key(session, merchant_id, api_key_secret=api_key_secret, mode=mode, now=now)
    key_id = raw.split("_", 2)[1]
    session.flush()
    audit.record(session, actor, "merchant.key_rotate", object_type="merchant", object_id=merchant_id,
                 purpose=f"new={key_id} mode={mode} expiring={len(expiring)} grace_s={int(grace.total_seconds())}")
    for old in expiring:
        audit.record(session, actor, "merchant.key_expire", object_type="api_key", object_id=old,
                     purpose=f"grace_until={ends.isoformat(timespec='seconds')}")
    return Rotation(merchant_id, key_id, raw, mode, expiring, ends)


def revoke_keys(session: Session, actor: Principal, merchant_id: str, key_id: str | None = None, *,
                now: datetime | None = None) -> list[str]:
    """Stop one key of the merchant (``key_id``), or every key of it when ``key_id`` is None, at once.

    Returns the ids revoked now (a key revoked before is not revoked again). A key of another merchant
    answers like an unknown one.
    """
    now = now or utcnow()
    _merchant(session, merchant_id, lock=True)
    keys = _keys(session, merchant_id)
    if key_id is not None:
        keys = [k for k in keys if k.id == key_id]
        if not keys:
            raise NotFound("密钥不存在", field="key")
    revoked = []
    for key in keys:
        if key.revoked_at is None:
            key.revoked_at = now
            revoked.append(key.id)
            audit.record(session, actor, "merchant.key_revoke", object_type="api_key", object_id=key.id,
                         purpose=f"merchant={merchant_id}")
    session.flush()
    return revoked


def disable_merchant(session: Session, actor: Principal, merchant_id: str, *,
                     now: datetime | None = None) -> Merchant:
    """Disable a merchant: every key of it stops on its next request (authentication checks the flag).

    Disabling twice keeps the first ``disabled_at``.
    """
    merchant = _merchant(session, merchant_id, lock=True)
    if not merchant.disabled:
        merchant.disabled = True
        merchant.disabled_at = now or utcnow()
    session.flush()
    audit.record(session, actor, "merchant.disable", object_type="merchant", object_id=merchant_id)
    return merchant
