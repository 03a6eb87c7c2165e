"""Staff accounts: creation, disabling and enabling, password + TOTP login, short-lived access tokens.

Plain arguments, no Flask. Functions flush and never commit; the caller owns the transaction.
A refused login raises :class:`LoginFailed`, whose work (failure counter, audit event)
must still be committed: see :mod:`courier_api.auth_api`. Accounts are never locked by failures (a lock
would let anyone who knows a username keep its owner out): the web layer throttles per (username, client)
instead, see :mod:`courier_api.login_throttle`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple, cast

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import CursorResult, bindparam, exists, literal, select, update
from sqlalchemy.orm import Session, aliased

from courier_api import obligations, totp
from courier_api.models import StaffToken, StaffUser
from courier_api.passwords import PASSWORD_MAX_LEN as PASSWORD_MAX_LEN  # re-exported: the login schema's bound
from courier_api.passwords import PASSWORD_MIN_LEN as PASSWORD_MIN_LEN
from courier_api.passwords import check_password
from waybill import audit
from waybill.alerts import store as alert_store
from waybill.crypto.vault import FieldCodec
from waybill.errors import AuthenticationFailed, Conflict, NotFound, PermissionDenied, ValidationFailed
from waybill.ids import new_id
from waybill.models import utcnow
from waybill.permissions import MFA_ROLES, STAFF_ROLES, Permission, Principal
from waybill.stations import StationRegister

TOKEN_PREFIX = "wbs"  # noqa: S105 (a public prefix, not a secret)
# Defaults; the web layer prefers settings of the same meaning when they exist.
ACCESS_TOKEN_TTL_S = 15 * 60
# last_used_at is bookkeeping: refresh it at most this often so requests do not all write.
LAST_USED_RESOLUTION_S = 60
STATION_ROLES = frozenset({"courier", "dispatcher", "sorter"})
# Roles whose station must be one of the station register (a station, or a hub for its transit centre's staff):
# a sorter's station decides which shipments they act for (waybill/scope.py).
REGISTERED_STATION_ROLES = frozenset({"sorter"})

USERNAME_RE = re.compile(r"[a-z0-9_.-]{1,64}")
STATION_RE = re.compile(r"[A-Z0-9][A-Z0-9-]{0,31}")
_TOKEN_ID_HEX = 16

# Argon2id with the library's RFC 9106 parameters (t=3, 64 MiB, p=4); type made explicit so a
# library default change can never silently downgrade to Argon2i.
#: argon2id with the library's defaults (RFC 9106's second recommended option: t=3, m=64 MiB, p=4).
PRODUCTION_HASHER = PasswordHasher(type=Type.ID)
HASHER = PRODUCTION_HASHER
LOGIN_FAILED_MESSAGE = "用户名、密码或动态验证码错误"

TABLE = "staff_users"
TOTP_COLUMN = "totp_secret"


class NewUser(NamedTuple):
    user: StaffUser
    password: str
    totp_secret: str | None


class LoginResult(NamedTuple):
    access_token: str
    expires_in: int
    role: str


class LoginFailed(AuthenticationFailed):
    """A refused login. Same message whatever the reason; the session holds state to commit."""

    default_message = LOGIN_FAILED_MESSAGE


@cache
def _packaged_stations() -> StationRegister:
    return StationRegister.load()


@cache
def _dummy_hash() -> str:
    # Verified against when the username is unknown, so the answer takes as long as for a real user.
    return HASHER.hash(secrets.token_urlsafe(16))


def _principal(user: StaffUser) -> Principal:
    return Principal(kind="staff", id=user.id, role=user.role, station=user.station)


def _token_hash(secret: bytes, raw: str) -> bytes:
    return hmac.new(secret, raw.encode(), hashlib.sha256).digest()


def _by_username(session: Session, username: str, *, lock: bool = False) -> StaffUser | None:
    stmt = select(StaffUser).where(StaffUser.username == username)
    if lock:  # serialise concurrent logins of one user so the failure counter is exact
        stmt = stmt.with_for_update()
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()


# -- accounts ----------------------------------------------------------------------------------
def validate_account(username: str, role: str, station: str | None,
                     stations: StationRegister | None = None) -> str | None:
    """Check username, role and station; return the station in canonical (upper-case) form.

    A sorter's station must be in ``stations`` (default: the packaged register): a station code, or a hub
    code for the staff of its transit centre, who then act for every station of the hub.
    """
    if USERNAME_RE.fullmatch(username) is None:
        raise ValidationFailed("用户名须为 1-64 个小写字母、数字或 _ . -", field="username")
    if role not in STAFF_ROLES:
        raise ValidationFailed("角色须为 " + "、".join(STAFF_ROLES) + " 之一", field="role")
    station = station.strip().upper() if station else None
    if station is not None and STATION_RE.fullmatch(station) is None:
        raise ValidationFailed("站点编码须为 1-32 个字母、数字或短横线", field="station")
    if role in STATION_ROLES and station is None:
        raise ValidationFailed("该角色必须指定站点", field="station")
    if role in REGISTERED_STATION_ROLES and station not in (stations if stations is not None else _packaged_stations()):
        raise ValidationFailed("站点编码不在站点表中", field="station")
    return station


def create_user(session: Session, actor: Principal, username: str, role: str, station: str | None,
                password: str | None, codec: FieldCodec, stations: StationRegister | None = None, *,
                background_check_ref: str | None = None) -> NewUser:
    """Create a staff account; returns the user, its password (generated when not given) and,
    for MFA roles, the TOTP secret. Both are shown to the caller once and never stored in clear.
    ``stations`` is the service's register (default: the packaged one). The confidentiality agreement and the
    training are recorded as attested now (:mod:`courier_api.obligations`), with the background check if given.
    """
    if actor.kind != "system":
        actor.require(Permission.USER_MANAGE)
    station = validate_account(username, role, station, stations)
    if password is None:
        password = generate_password(username, role, station)
    else:
        check_password(password, username=username, role=role, station=station)
    if _by_username(session, username) is not None:
        raise Conflict("用户名已存在")
    now = utcnow()
    user = StaffUser(id=new_id("usr"), username=username, role=role, station=station,
                     password_hash=HASHER.hash(password), failed_attempts=0, created_at=now)
    obligations.record_at_creation(user, background_check_ref, now)
    secret = None
    if role in MFA_ROLES:
        secret = totp.new_secret()
        user.totp_secret_ct = codec.encrypt(secret, table=TABLE, column=TOTP_COLUMN, row_id=user.id)
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.create", object_type="staff_user", object_id=user.id)
    return NewUser(user, password, secret)


def _managed_user(session: Session, actor: Principal, username: str) -> StaffUser:
    """The account ``actor`` manages (the CLI's system principal, or a holder of ``user:manage``), locked for the
    change; an unknown username is ``NotFound`` naming ``username``."""
    if actor.kind != "system":
        actor.require(Permission.USER_MANAGE)
    user = _by_username(session, username, lock=True)
    if user is None:
        raise NotFound("用户不存在", field="username")
    return user


def disable_user(session: Session, actor: Principal, username: str, *,
                 now: datetime | None = None) -> tuple[StaffUser, int]:
    """Disable an account and revoke every token it holds, in the same transaction.

    Returns the user and the number of tokens revoked. Disabling twice keeps the first
    ``disabled_at``.
    """
    user = _managed_user(session, actor, username)
    now = now or utcnow()
    if user.disabled_at is None:
        user.disabled_at = now
    revoked = _revoke_tokens(session, user.id, now)
    session.flush()
    audit.record(session, actor, "user.disable", object_type="staff_user", object_id=user.id)
    return user, int(revoked or 0)


def _revoke_tokens(session: Session, user_id: str, now: datetime) -> int:
    """Revoke every live access token of ``user_id``; returns how many."""
    result = session.execute(update(StaffToken).where(StaffToken.user_id == user_id, StaffToken.revoked_at.is_(None))
                             .values(revoked_at=now))
    return int(cast("CursorResult[Any]", result).rowcount or 0)


class Enabled(NamedTuple):
    """What :func:`enable_user` did: suspensions lifted, whether a disable was cleared, tokens revoked."""

    user: StaffUser
    lifted: int
    was_disabled: bool
    revoked: int


def enable_user(session: Session, actor: Principal, username: str, *, now: datetime | None = None) -> Enabled:
    """Let an account in again (``waybill users enable``): lift every suspension a critical alert placed on it
    (audited ``account.unsuspend``) and clear a ``disabled_at`` set by :func:`disable_user`.

    Its access tokens are revoked as well, so none used while it was suspended (a rented account's: the other
    handheld's) works again: the owner logs in afresh. Enabling an account that is neither is a no-op but for that.
    Audited (``user.enable``).
    """
    user = _managed_user(session, actor, username)
    now = now or utcnow()
    lifted = alert_store.lift(session, actor, f"staff:{user.id}", now=now)
    was_disabled = user.disabled_at is not None
    user.disabled_at = None
    revoked = _revoke_tokens(session, user.id, now)
    session.flush()
    audit.record(session, actor, "user.enable", object_type="staff_user", object_id=user.id,
                 purpose=f"lifted={lifted} was_disabled={was_disabled}")
    return Enabled(user, lifted, was_disabled, revoked)


def set_password(session: Session, actor: Principal, username: str, password: str | None, *,
                 now: datetime | None = None) -> tuple[StaffUser, str, int]:
    """Give an account a new password (generated when ``password`` is None; checked against the policy
    otherwise) and revoke every token it holds. Returns the user, the password and the tokens revoked."""
    user = _managed_user(session, actor, username)
    now = now or utcnow()
    if password is None:
        password = generate_password(user.username, user.role, user.station)
    else:
        check_password(password, username=user.username, role=user.role, station=user.station)
    user.password_hash = HASHER.hash(password)
    result = session.execute(
        update(StaffToken).where(StaffToken.user_id == user.id, StaffToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.flush()
    audit.record(session, actor, "user.password_set", object_type="staff_user", object_id=user.id)
    return user, password, int(cast("CursorResult[Any]", result).rowcount or 0)


def generate_password(username: str, role: str, station: str | None) -> str:
    """A random password (144 bits) that passes the policy: one that happens to contain the username is
    drawn again."""
    for _ in range(20):
        password = secrets.token_urlsafe(18)
        try:
            check_password(password, username=username, role=role, station=station)
        except ValidationFailed:
            continue
        return password
    raise AssertionError("no random password passed the policy")  # 20 misses in a row: the policy is broken


# -- login -------------------------------------------------------------------------------------
def _refuse(session: Session, user: StaffUser | None, action: str, reason: str) -> LoginFailed:
    principal = _principal(user) if user is not None else None
    audit.record(session, principal, action, object_type="staff_user" if user else None,
                 object_id=user.id if user else None, outcome="denied", purpose=reason, durable=True)
    session.flush()
    return LoginFailed()


def _check_totp(user: StaffUser, code: str | None, codec: FieldCodec, now: datetime) -> str | None:
    """``None`` when the code is acceptable (and remembered), else the reason it is not."""
    if user.totp_secret_ct is None:
        return None
    if not code:
        return "totp_missing"
    secret = codec.decrypt(user.totp_secret_ct, table=TABLE, column=TOTP_COLUMN, row_id=user.id)
    step = totp.matching_step(secret, code, now.timestamp())
    if step is None:
        return "totp_invalid"
    if user.totp_last_step is not None and step <= user.totp_last_step:
        return "totp_replayed"
    user.totp_last_step = step
    return None


def login(session: Session, username: str, password: str, totp_code: str | None, *, secret: bytes,
          codec: FieldCodec, now: datetime | None = None, ttl_s: int = ACCESS_TOKEN_TTL_S) -> LoginResult:
    """Check password (Argon2id) and, for MFA roles, the TOTP code; issue an access token.

    Unknown user, wrong password, wrong/missing/replayed code and a disabled or suspended account all raise
    the same :class:`LoginFailed`. ``failed_attempts`` counts consecutive failures (for operators); it
    never locks the account: the right password from a client that is not throttled always works.
    """
    now = now or utcnow()
    user = _by_username(session, username, lock=True) if USERNAME_RE.fullmatch(username) else None
    ok: bool
    try:
        ok = HASHER.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        ok = False
    if user is None:
        raise _refuse(session, None, "auth.failed", "bad_credentials")
    if user.disabled_at is not None:
        raise _refuse(session, user, "auth.failed", "disabled")
    if alert_store.is_suspended(session, f"staff:{user.id}"):  # a token it issued would answer 401 anyway
        raise _refuse(session, user, "auth.failed", "suspended")
    reason = "bad_credentials" if not ok else _check_totp(user, totp_code, codec, now)
    if reason is not None:
        user.failed_attempts = (user.failed_attempts or 0) + 1
        raise _refuse(session, user, "auth.failed", reason)
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = HASHER.hash(password)
    user.failed_attempts = 0
    user.locked_until = None  # a lock left by an older version (locks are no longer set) is cleared
    raw = issue_token(session, user, secret=secret, now=now, ttl_s=ttl_s)
    audit.record(session, _principal(user), "auth.login", object_type="staff_user", object_id=user.id)
    session.flush()
    return LoginResult(raw, ttl_s, user.role)


# -- tokens ------------------------------------------------------------------------------------
def issue_token(session: Session, user: StaffUser, *, secret: bytes, now: datetime | None = None,
                ttl_s: int = ACCESS_TOKEN_TTL_S) -> str:
    """Store a new token for ``user`` (hashed) and return the raw ``wbs_<id>_<secret>`` once."""
    now = now or utcnow()
    token_id = secrets.token_hex(_TOKEN_ID_HEX // 2)
    raw = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    session.add(StaffToken(id=token_id, user_id=user.id, token_hash=_token_hash(secret, raw), created_at=now,
                           expires_at=now + timedelta(seconds=ttl_s)))
    return raw


def _token_id(raw: str) -> str | None:
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != _TOKEN_ID_HEX or not parts[2]:
        return None
    return parts[1]


# Built once (see authenticate_token).
_TOKEN_COLUMNS = (StaffToken.token_hash, StaffToken.expires_at, StaffToken.revoked_at, StaffToken.last_used_at,
                  StaffUser.id, StaffUser.role, StaffUser.station, StaffUser.disabled_at,
                  StaffUser.training_attested_at,
                  alert_store.suspended_clause(literal("staff:") + StaffUser.id).label("suspended"))
_TOKEN_LOOKUP = (select(*_TOKEN_COLUMNS).join(StaffUser, StaffUser.id == StaffToken.user_id)
                 .where(StaffToken.id == bindparam("token_id")))

#: Roles the ``new_client`` rule watches: the contract's "couriers work on one handheld".
NEW_CLIENT_ROLES = ("courier",)
_OTHER = aliased(StaffToken)
# The new_client rule (contract: two live sessions of one account both used within the window), in the token
# lookup itself (no query of its own): another unexpired token (live or logged out since) of the same courier
# used within the window AND after this token was issued. The second condition is what keeps a re-login on the
# same handheld quiet: the old token's last use predates the new token, and the handheld never uses it again.
# A rented account interleaves: the owner's token is used after the renter's was issued, and the renter's after
# the owner's — so whichever of the two is used next finds the other. A revoked token counts too (its uses
# happened): otherwise a renter who logs in, scans and logs out at once never leaves a second live session behind.
# last_used_at is kept at a minute's resolution, which can only make a use look older, so the rule may fire up to
# a minute late, never early.
_CONCURRENT = exists().where(
    _OTHER.user_id == StaffToken.user_id, _OTHER.id != StaffToken.id, _OTHER.expires_at > bindparam("now"),
    _OTHER.last_used_at >= bindparam("since"),
    _OTHER.last_used_at > StaffToken.created_at, StaffUser.role.in_(NEW_CLIENT_ROLES))
_TOKEN_LOOKUP_WATCHED = (select(*_TOKEN_COLUMNS, _CONCURRENT.label("concurrent"))
                         .join(StaffUser, StaffUser.id == StaffToken.user_id)
                         .where(StaffToken.id == bindparam("token_id")))


def authenticate_token(session: Session, raw: str, *, secret: bytes, now: datetime | None = None,
                       new_client_window_s: int | None = None, training_valid_days: int = 365) -> Principal:
    """Resolve a raw access token to its staff principal, or raise :class:`AuthenticationFailed`.

    Checked on every request: expiry, revocation, the user's ``disabled_at`` and any suspension by a critical
    alert (in the database: every worker and node sees it), so either stops their tokens on the very next request.

    With ``new_client_window_s``, the ``new_client`` rule is evaluated in the same lookup (see ``_CONCURRENT``):
    a courier's token used while another of their live tokens was used within the window since this one was
    issued fires the critical alert (which suspends the account at commit) and this request is refused too:
    one of the two clients is not the courier, and it is not known which.

    The principal says whether the user's training is older than ``training_valid_days`` (read in the same row):
    then the route check refuses personal data (:mod:`courier_api.obligations`).
    """
    now = now or utcnow()
    token_id = _token_id(raw)
    row = None
    if token_id is not None:
        # Core on the session's connection: this runs on every staff request, and the ORM layer
        # (not needed for a row of columns) was a large share of its cost.
        if new_client_window_s is None:
            row = session.connection().execute(_TOKEN_LOOKUP, {"token_id": token_id}).first()
        else:
            row = session.connection().execute(_TOKEN_LOOKUP_WATCHED, {
                "token_id": token_id, "now": now, "since": now - timedelta(seconds=new_client_window_s)}).first()
    expected = bytes(row.token_hash) if row is not None else bytes(32)
    # Always compare, even for an unknown id, so timing does not tell which ids exist.
    matches = hmac.compare_digest(_token_hash(secret, raw), expected)
    if (row is None or not matches or row.revoked_at is not None or row.expires_at <= now
            or row.disabled_at is not None or row.suspended):
        raise AuthenticationFailed()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() >= LAST_USED_RESOLUTION_S:
        session.execute(update(StaffToken).where(StaffToken.id == token_id).values(last_used_at=now))
    principal = Principal(kind="staff", id=row.id, role=row.role, station=row.station,
                          obligations_lapsed=obligations.lapsed(row.training_attested_at, training_valid_days, now))
    if new_client_window_s is not None and row.concurrent:
        alert_store.fire(session, principal, "new_client", object_type="account", object_id=principal.actor,
                         detail=f"two live sessions used within {new_client_window_s}s")
        raise AuthenticationFailed()
    return principal


def revoke_token(session: Session, raw: str, *, secret: bytes, now: datetime | None = None) -> bool:
    """Revoke the token ``raw`` (logout); ``False`` when it is unknown or was already revoked."""
    token_id = _token_id(raw)
    if token_id is None:
        return False
    token = session.get(StaffToken, token_id)
    if token is None or not hmac.compare_digest(_token_hash(secret, raw), bytes(token.token_hash)):
        return False
    if token.revoked_at is not None:
        return False
    token.revoked_at = now or utcnow()
    session.flush()
    return True



def set_phone(session: Session, actor: Principal, username: str, phone: str, codec: FieldCodec) -> StaffUser:
    """Record a courier's own phone, encrypted: the "A" side of the virtual-number bindings they call through."""
    from waybill.phones import InvalidPhone, normalize_phone

    if actor.kind != "system" and not actor.can(Permission.USER_MANAGE):
        raise PermissionDenied()
    user = _by_username(session, username, lock=True)
    if user is None:
        raise NotFound(field="username")
    try:
        number = normalize_phone(phone).number
    except InvalidPhone as exc:
        raise ValidationFailed(str(exc), field="phone") from None
    user.phone_ct = codec.encrypt(number, table="staff_users", column="phone", row_id=user.id)
    audit.record(session, actor, "user.set_phone", object_type="staff_user", object_id=user.id, fields=["phone"])
    session.flush()
    return user
