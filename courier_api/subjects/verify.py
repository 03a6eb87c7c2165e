"""Proving control of a phone on a waybill: an SMS challenge, a code, and a short-lived subject session.

- :func:`challenge` always answers alike (a new challenge id and its expiry) and does the same work whether
  or not the waybill number and the phone match: it looks the waybill up, decrypts both parties' phones (a
  stand-in ciphertext when there is no such waybill), draws a code, stores its keyed hash. Only a match on a
  *mobile* phone sends the code by SMS; only a match ties the challenge to a shipment and party.
- :func:`open_session` checks a code (constant time, keyed hash); a wrong one counts, and after
  ``MAX_ATTEMPTS`` the challenge is over (the right code then fails too). A right one opens a session: a random
  token, stored as a keyed hash, scoped to that shipment and party, for ``token_ttl`` only.
- :func:`authenticate` resolves a token to a ``subject`` principal; :func:`scope_of` to its shipment and party.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from courier_api.subjects.models import SubjectChallenge, SubjectToken
from waybill import audit, outbox
from waybill.canaries import watch as canaries
from waybill.crypto.subject_keys import SubjectKeyring
from waybill.crypto.vault import CryptoError, FieldCodec
from waybill.errors import AuthenticationFailed, InvalidCode, PermissionDenied
from waybill.ids import looks_like, new_id
from waybill.models import Shipment, utcnow
from waybill.permissions import Permission, Principal
from waybill.phones import InvalidPhone, normalize_phone

TOKEN_PREFIX = "wbd"  # noqa: S105 (a public prefix: "waybill data subject")
PARTIES = ("sender", "recipient")
MAX_ATTEMPTS = 5
CODE_DIGITS = 6
_TOKEN_ID_HEX = 16
_DUMMY_PHONE = "13800000000"
_dummies: dict[int, bytes] = {}


@dataclass(frozen=True)
class VerifyDeps:
    codec: FieldCodec
    keyring: SubjectKeyring  # the matched party's key seals the code until the outbox task sends it
    code_key: bytes  # key-file secret "subject_code": codes' and throttle keys' keyed hashes
    token_key: bytes  # key-file secret "subject_token"
    code_ttl: timedelta
    token_ttl: timedelta


@dataclass(frozen=True)
class Challenge:
    """What the challenge answers, and (never answered) whom the code went to."""

    challenge: SubjectChallenge
    code: str


@dataclass(frozen=True)
class OpenedSession:
    token: str
    expires_in: int
    party: str
    waybill_no: str


@dataclass(frozen=True)
class SubjectScope:
    """What a subject session may see: one party of one shipment."""

    token_id: str
    shipment_id: str
    party: str


def keyed(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def throttle_key(deps: VerifyDeps, kind: str, value: str) -> str:
    """A phone or waybill number as a throttle's key: a keyed hash, so counters hold neither."""
    return keyed(deps.code_key, f"{kind}|{value}").hex()[:32]


def _dummy(codec: FieldCodec) -> bytes:
    # A ciphertext to decrypt when there is no such waybill, so a miss costs what a hit costs.
    found = _dummies.get(id(codec))
    if found is None:
        found = _dummies[id(codec)] = codec.encrypt(_DUMMY_PHONE, table="subject_challenges", column="dummy",
                                                    row_id="dummy")
    return found


def _decrypt_or_dummy(codec: FieldCodec, shipment: Shipment | None, party: str) -> str | None:
    blob: bytes | None = getattr(shipment, f"{party}_phone_ct", None) if shipment is not None else None
    try:
        if blob is None:  # no such waybill, or that party's data is destroyed
            codec.decrypt(_dummy(codec), table="subject_challenges", column="dummy", row_id="dummy")
            return None
        assert shipment is not None
        return codec.decrypt(blob, table="shipments", column=f"{party}_phone", row_id=shipment.id)
    except CryptoError:  # a destroyed subject key: nothing to match
        return None


#: The outbox task that sends a challenge's code (courier_api.subjects registers its handler).
SEND_CODE_TOPIC = "subjects.send_code"


def _matching_party(codec: FieldCodec, shipment: Shipment | None, phone: str) -> str | None:
    """The party whose phone is ``phone`` (normalised), or None; every candidate is compared, in constant time."""
    found = None
    for party in PARTIES:
        plain = _decrypt_or_dummy(codec, shipment, party)
        stored = plain if plain is not None else _DUMMY_PHONE
        with contextlib.suppress(InvalidPhone):
            stored = normalize_phone(stored).number
        same = hmac.compare_digest(stored.encode(), phone.encode())
        if same and plain is not None and found is None:
            found = party
    return found


def challenge(session: Session, deps: VerifyDeps, waybill_no: str, phone: str, *,
              now: datetime | None = None) -> Challenge:
    """Record a challenge for (``waybill_no``, ``phone``) (both valid in form); see the module docstring."""
    now = now or utcnow()
    number = normalize_phone(phone)
    shipment = session.execute(select(Shipment).where(Shipment.waybill_no == waybill_no)).scalar_one_or_none()
    party = _matching_party(deps.codec, shipment, number.number)
    cid = new_id("sch")
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    matched_id = shipment.id if party and shipment else None
    # Sealed for the outbox task that sends it: under the matched party's key (it dies with their data), and on
    # a miss under the shared key (a code nobody receives). The same work and the same rows either way.
    key = deps.keyring.key_id(session, matched_id, party) if matched_id and party else None
    code_ct = deps.codec.encrypt(code, table="subject_challenges", column="code", row_id=cid, subject_key=key)
    row = SubjectChallenge(id=cid, code_hash=keyed(deps.code_key, f"{cid}|{code}"), code_ct=code_ct,
                           created_at=now, expires_at=now + deps.code_ttl, attempts=0, shipment_id=matched_id,
                           party=party)
    session.add(row)
    session.flush()
    outbox.enqueue(session, SEND_CODE_TOPIC, {"challenge_id": cid}, now=now)
    # One event either way. With a waybill found, both parties' phones were decrypted to compare: an access to
    # both, on the shipment (their access logs show it); never the phone, the match or the code.
    if shipment is not None:
        # Someone outside holds a canary's waybill number and phone: its data left the company. Looked up for
        # every known waybill (matched or not: the same work either way); raised only on a match.
        canary = canaries.is_canary(session, shipment.id)
        if party is not None and canary:
            canaries.touched(session, None, shipment.id, known=True)
        audit.record(session, None, "subject.challenge", object_type="shipment", object_id=shipment.id,
                     fields=[f"{p}.phone" for p in PARTIES], outcome="matched" if party else "unmatched",
                     purpose="subject_verification")
    else:
        audit.record(session, None, "subject.challenge", object_type="subject_challenge", object_id=cid,
                     outcome="unknown_waybill", purpose="subject_verification")
    session.flush()
    return Challenge(challenge=row, code=code)


def issue_token(session: Session, deps: VerifyDeps, challenge_id: str, shipment_id: str, party: str, *,
                now: datetime | None = None) -> tuple[str, SubjectToken]:
    """Store a new subject session for one shipment's party (hashed); the raw ``wbd_<id>_<secret>`` once."""
    now = now or utcnow()
    token_id = secrets.token_hex(_TOKEN_ID_HEX // 2)
    raw = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    row = SubjectToken(id=token_id, token_hash=keyed(deps.token_key, raw), challenge_id=challenge_id,
                       shipment_id=shipment_id, party=party, created_at=now, expires_at=now + deps.token_ttl)
    session.add(row)
    session.flush()
    return raw, row


def open_session(session: Session, deps: VerifyDeps, challenge_id: str, code: str, *,
                 now: datetime | None = None) -> OpenedSession:
    """Exchange a challenge's code for a subject session, or :class:`InvalidCode` (whose bookkeeping, the
    counted attempt, the caller must commit)."""
    now = now or utcnow()
    row = None
    if looks_like("sch", challenge_id):
        row = session.execute(select(SubjectChallenge).where(SubjectChallenge.id == challenge_id)
                              .with_for_update()).scalar_one_or_none()
    expected = bytes(row.code_hash) if row is not None else bytes(32)
    # Always computed and compared, so neither timing nor answer tells a known challenge from an unknown one.
    matches = hmac.compare_digest(keyed(deps.code_key, f"{challenge_id}|{code}"), expected)
    if row is None or row.used_at is not None or row.attempts >= MAX_ATTEMPTS or row.expires_at <= now:
        raise InvalidCode()
    if not matches or row.shipment_id is None or row.party is None:
        row.attempts += 1
        session.flush()
        raise InvalidCode()
    row.used_at = now
    shipment = session.get(Shipment, row.shipment_id)
    if shipment is None:  # the foreign key makes this impossible
        raise InvalidCode()
    raw, token = issue_token(session, deps, row.id, shipment.id, row.party, now=now)
    principal = Principal(kind="subject", id=token.id, role="subject")
    audit.record(session, principal, "subject.session", object_type="shipment", object_id=shipment.id,
                 purpose=row.party)
    return OpenedSession(token=raw, expires_in=int(deps.token_ttl.total_seconds()), party=row.party,
                         waybill_no=shipment.waybill_no)


def _token_id(raw: str) -> str | None:
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != _TOKEN_ID_HEX or not parts[2]:
        return None
    return parts[1]


def _live_token(session: Session, token_id: str, now: datetime) -> SubjectToken | None:
    row = session.get(SubjectToken, token_id)
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return row


def authenticate(session: Session, raw: str, *, key: bytes, now: datetime | None = None) -> Principal:
    """The ``subject`` principal of a live token, or :class:`AuthenticationFailed`."""
    now = now or utcnow()
    token_id = _token_id(raw)
    row = session.get(SubjectToken, token_id) if token_id is not None else None
    expected = bytes(row.token_hash) if row is not None else bytes(32)
    matches = hmac.compare_digest(keyed(key, raw), expected)
    if row is None or not matches or row.revoked_at is not None or row.expires_at <= now:
        raise AuthenticationFailed()
    return Principal(kind="subject", id=row.id, role="subject")


def scope_of(session: Session, principal: Principal, permission: Permission, *,
             now: datetime | None = None) -> SubjectScope:
    """The one shipment and party a subject principal acts on (the domain's own check, after the route's)."""
    principal.require(permission)
    if principal.kind != "subject":
        raise PermissionDenied()
    row = _live_token(session, principal.id, now or utcnow())
    if row is None:
        raise AuthenticationFailed()
    return SubjectScope(token_id=row.id, shipment_id=row.shipment_id, party=row.party)
