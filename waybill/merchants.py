"""Merchants and their API keys (stored as keyed hashes, compared in constant time)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from waybill import audit
from waybill.errors import AuthenticationFailed, ValidationFailed
from waybill.ids import new_id
from waybill.models import ApiKey, Merchant, utcnow
from waybill.permissions import Principal

KEY_PREFIX = "wbk"


@dataclass(frozen=True)
class NewMerchant:
    merchant_id: str
    api_key: str


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


def issue_api_key(session: Session, merchant_id: str, *, api_key_secret: bytes) -> str:
    key_id = secrets.token_hex(8)
    raw = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(id=key_id, merchant_id=merchant_id, key_hash=_hash(api_key_secret, raw),
                       created_at=utcnow()))
    return raw


def authenticate(session: Session, raw_key: str, *, api_key_secret: bytes) -> Principal:
    """Resolve a bearer API key to its merchant, or raise :class:`AuthenticationFailed`."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 16:
        raise AuthenticationFailed()
    row = session.execute(
        select(ApiKey.key_hash, ApiKey.revoked_at, Merchant.id, Merchant.disabled)
        .join(Merchant, Merchant.id == ApiKey.merchant_id)
        .where(ApiKey.id == parts[1])
    ).first()
    expected = row.key_hash if row is not None else bytes(32)
    # Always compare, even for an unknown key id, so timing does not tell which ids exist.
    matches = hmac.compare_digest(_hash(api_key_secret, raw_key), bytes(expected))
    if row is None or not matches or row.revoked_at is not None or row.disabled:
        raise AuthenticationFailed()
    return Principal(kind="merchant", id=row.id, role="merchant")
