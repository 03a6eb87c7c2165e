"""Staff accounts in the domain: creation, password hashing, TOTP, no lockout, tokens; and the CLI."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from courier_api import staff, totp
from courier_api.models import StaffToken, StaffUser
from tests.conftest import PG_URL, run
from tests.courier_api import make_staff, totp_now
from tests.waybill.test_privacy_at_rest import _raw_storage, _variants
from waybill.errors import AuthenticationFailed, Conflict, NotFound, PermissionDenied, ValidationFailed
from waybill.models import AuditEvent, utcnow
from waybill.permissions import MFA_ROLES, STAFF_ROLES, SYSTEM, Principal
from waybill.services import build
from waybill.settings import load_settings


def _login(services, new, code=None, *, now=None, password=None, **kw):
    with services.session_factory() as s:
        try:
            return staff.login(s, new.user.username, password or new.password, code,
                               secret=services.keys.secret("session_token"), codec=services.codec,
                               now=now or utcnow(), **kw)
        finally:
            s.commit()  # a refusal's counter and audit events are committed too, as the web layer does


def _auth(services, raw, now=None):
    with services.session_factory() as s:
        return staff.authenticate_token(s, raw, secret=services.keys.secret("session_token"), now=now)


def _actions(services):
    with services.session_factory() as s:
        return [(e.action, e.outcome, e.purpose) for e in s.execute(select(AuditEvent).order_by(AuditEvent.seq))
                .scalars()]


@pytest.mark.parametrize("role", STAFF_ROLES)
def test_create_each_role(services, role):
    new = make_staff(services, f"u.{role}", role)
    assert new.user.id.startswith("usr_") and new.user.role == role
    assert len(new.password) >= 20
    assert new.user.password_hash.startswith("$argon2id$")
    if role in MFA_ROLES:
        assert new.totp_secret is not None and len(new.totp_secret) == 32  # 160 bits in base32
        assert new.user.totp_secret_ct is not None
        assert new.totp_secret.encode() not in bytes(new.user.totp_secret_ct)
    else:
        assert new.totp_secret is None and new.user.totp_secret_ct is None
    assert ("user.create", "ok", None) in _actions(services)


@pytest.mark.parametrize("username,role,station,field", [
    ("Upper", "courier", "A001", "username"),
    ("", "courier", "A001", "username"),
    ("x" * 65, "courier", "A001", "username"),
    ("has space", "courier", "A001", "username"),
    ("ok", "boss", None, "role"),
    ("ok", "courier", None, "station"),
    ("ok", "sorter", "站点", "station"),
])
def test_invalid_accounts_are_refused(services, username, role, station, field):
    with services.session_factory() as s, pytest.raises(ValidationFailed) as err:
        staff.create_user(s, SYSTEM, username, role, station, None, services.codec)
    assert err.value.field == field
    assert username not in err.value.message or not username


def test_duplicate_username_short_password_and_permission(services):
    make_staff(services, "dup", "courier")
    with services.session_factory() as s:
        with pytest.raises(Conflict):
            staff.create_user(s, SYSTEM, "dup", "sorter", "755-W012", None, services.codec)
        with pytest.raises(ValidationFailed) as err:
            staff.create_user(s, SYSTEM, "short", "courier", "A001", "abc", services.codec)
        assert err.value.field == "password"
        courier = Principal(kind="staff", id="usr_x", role="courier", station="A001")
        with pytest.raises(PermissionDenied):
            staff.create_user(s, courier, "other", "courier", "A001", None, services.codec)
        admin = Principal(kind="staff", id="usr_y", role="admin")
        assert staff.create_user(s, admin, "byadmin", "courier", "a001", None, services.codec).user.station == "A001"


def test_our_totp_matches_rfc6238_vectors_and_pyotp():
    # RFC 6238 appendix B, SHA-1 seed "12345678901234567890", truncated to 6 digits.
    import base64

    seed = base64.b32encode(b"12345678901234567890").decode()
    for t, code in [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")]:
        assert totp.code_at_step(seed, totp.step_at(t)) == code
    secret = totp.new_secret()
    assert totp.matching_step(secret, totp_now(secret, 1_700_000_000), 1_700_000_000 + 29) is not None
    assert totp.matching_step(secret, totp_now(secret, 1_700_000_000), 1_700_000_000 + 95) is None
    assert totp.matching_step(secret, "12345", 1_700_000_000) is None


def _rfc4226(secret_b32: str, counter: int) -> str:
    # RFC 4226 section 5.3 written out here, independent of pyotp (which courier_api.totp now uses).
    import base64
    import hashlib
    import hmac
    import struct

    digest = hmac.new(base64.b32decode(secret_b32), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return str((struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 10**6).zfill(6)


def test_totp_codes_and_steps_match_an_independent_computation():
    import base64
    import random

    import pyotp

    rng = random.Random(7)
    for _ in range(500):
        secret = base64.b32encode(rng.randbytes(20)).decode()
        t = rng.uniform(0, 4_000_000_000)
        assert totp.step_at(t) == int(t // 30) == pyotp.TOTP(secret).timecode(t)
        assert totp.code_at_step(secret, totp.step_at(t)) == _rfc4226(secret, int(t // 30))


def test_new_secret_is_160_random_bits_in_base32():
    import base64

    secrets_ = {totp.new_secret() for _ in range(200)}
    assert len(secrets_) == 200
    for s in secrets_:
        assert len(s) == 32 and len(base64.b32decode(s)) == 20


def test_matching_step_names_the_step_within_the_window():
    secret = totp.new_secret()
    t = 1_700_000_015.5
    step = int(t // 30)
    for offset in (-1, 0, 1):
        code = _rfc4226(secret, step + offset)
        if all(code != _rfc4226(secret, step + o) for o in (-1, 0, 1) if o != offset):
            assert totp.matching_step(secret, code, t) == step + offset
    for offset in (-3, -2, 2, 3):
        code = _rfc4226(secret, step + offset)
        if all(code != _rfc4226(secret, step + o) for o in (-1, 0, 1)):
            assert totp.matching_step(secret, code, t) is None
    assert totp.matching_step(secret, _rfc4226(secret, step + 2), t, window=2) == step + 2
    # Only six ASCII digits: pyotp's own comparison NFKC-normalises and would take full-width digits.
    code = _rfc4226(secret, step)
    full_width = code.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    for bad in (full_width, code + "0", code[:5], " " + code[:5], code[:5] + "x", ""):
        assert totp.matching_step(secret, bad, t) is None


def test_login_without_mfa_issues_a_short_lived_token(services):
    new = make_staff(services, "courier1", "courier")
    now = utcnow()
    result = _login(services, new, now=now)
    assert result.role == "courier" and result.expires_in == staff.ACCESS_TOKEN_TTL_S == 900
    assert result.access_token.startswith("wbs_")
    principal = _auth(services, result.access_token, now=now + timedelta(seconds=899))
    assert principal == Principal(kind="staff", id=new.user.id, role="courier", station="A001")
    with pytest.raises(AuthenticationFailed):  # expired
        _auth(services, result.access_token, now=now + timedelta(seconds=900))
    with pytest.raises(AuthenticationFailed):  # tampered secret part
        _auth(services, result.access_token[:-2] + "xx", now=now)
    with pytest.raises(AuthenticationFailed):  # unknown id
        _auth(services, "wbs_0123456789abcdef_" + result.access_token.split("_", 2)[2], now=now)
    assert ("auth.login", "ok", None) in _actions(services)


@pytest.mark.parametrize("role", sorted(MFA_ROLES))
def test_mfa_roles_need_a_valid_code(services, role):
    new = make_staff(services, f"mfa.{role}", role)
    now = utcnow()
    for code in (None, "000000" if totp_now(new.totp_secret) != "000000" else "111111"):
        with pytest.raises(AuthenticationFailed):
            _login(services, new, code, now=now)
    # A code from far outside the ±1 step window is refused too.
    stale = totp_now(new.totp_secret, now.timestamp() - 120)
    with pytest.raises(AuthenticationFailed):
        _login(services, new, stale, now=now)
    ok = _login(services, new, totp_now(new.totp_secret, now.timestamp()), now=now)
    assert ok.role == role
    reasons = [p for a, o, p in _actions(services) if a == "auth.failed"]
    assert reasons == ["totp_missing", "totp_invalid", "totp_invalid"]


def test_replayed_code_is_rejected(services):
    new = make_staff(services, "aud", "auditor")
    now = utcnow()
    code = totp_now(new.totp_secret, now.timestamp())
    _login(services, new, code, now=now)
    with pytest.raises(AuthenticationFailed):
        _login(services, new, code, now=now + timedelta(seconds=5))
    # An older code still inside the window is refused as well; the next step's code works.
    with pytest.raises(AuthenticationFailed):
        _login(services, new, totp_now(new.totp_secret, now.timestamp() - 30), now=now + timedelta(seconds=6))
    later = now + timedelta(seconds=30)
    assert _login(services, new, totp_now(new.totp_secret, later.timestamp()), now=later).role == "auditor"
    assert "totp_replayed" in [p for a, _, p in _actions(services) if a == "auth.failed"]


def test_failures_never_lock_the_account(services):
    """Any number of wrong passwords leaves the right one working (throttling is per client, in the web
    layer): a lock would let anyone who knows a username keep its owner out."""
    new = make_staff(services, "locky", "sorter")
    now = utcnow()
    for _ in range(12):
        with pytest.raises(AuthenticationFailed) as err:
            _login(services, new, now=now, password="wrong-password-123")
        assert err.value.message == staff.LOGIN_FAILED_MESSAGE
    with services.session_factory() as s:
        assert s.get(StaffUser, new.user.id).failed_attempts == 12
    assert _login(services, new, now=now).role == "sorter"
    assert not [a for a in _actions(services) if a[0] == "auth.locked"]
    with services.session_factory() as s:
        user = s.get(StaffUser, new.user.id)
        assert user.failed_attempts == 0 and user.locked_until is None


def test_a_lock_left_by_an_older_version_no_longer_refuses(services):
    new = make_staff(services, "was.locked", "courier")
    with services.session_factory() as s:
        s.get(StaffUser, new.user.id).locked_until = utcnow() + timedelta(hours=1)
        s.commit()
    assert _login(services, new).role == "courier"


def test_success_resets_the_failure_counter(services):
    new = make_staff(services, "resets", "courier")
    for _ in range(4):
        with pytest.raises(AuthenticationFailed):
            _login(services, new, password="wrong-password-123")
    _login(services, new)
    for _ in range(4):
        with pytest.raises(AuthenticationFailed):
            _login(services, new, password="wrong-password-123")
    assert _login(services, new).role == "courier"


def test_unknown_user_fails_like_a_wrong_password(services):
    new = make_staff(services, "known", "courier")
    errors = []
    for username, password in (("nobody", "whatever-pass-1"), ("known", "whatever-pass-1"), ("BAD NAME", "x")):
        with services.session_factory() as s, pytest.raises(AuthenticationFailed) as err:
            staff.login(s, username, password, None, secret=services.keys.secret("session_token"),
                        codec=services.codec)
        errors.append((type(err.value), err.value.message, err.value.field))
    assert len(set(errors)) == 1
    assert new.password not in str(errors)


def test_disable_revokes_every_token_at_once(services):
    new = make_staff(services, "leaver", "dispatcher")
    tokens = [_login(services, new).access_token for _ in range(3)]
    assert _auth(services, tokens[0]).role == "dispatcher"
    with services.session_factory() as s:
        user, revoked = staff.disable_user(s, SYSTEM, "leaver")
        s.commit()
    assert revoked == 3 and user.disabled_at is not None
    for raw in tokens:
        with pytest.raises(AuthenticationFailed):
            _auth(services, raw)
    with pytest.raises(AuthenticationFailed):
        _login(services, new)
    with services.session_factory() as s, pytest.raises(NotFound):
        staff.disable_user(s, SYSTEM, "nobody")


def test_disabled_flag_alone_stops_a_live_token(services):
    """Even a token that somehow escaped revocation dies with the user's disabled_at."""
    new = make_staff(services, "flagged", "courier")
    raw = _login(services, new).access_token
    with services.session_factory() as s:
        s.get(StaffUser, new.user.id).disabled_at = utcnow()
        s.commit()
    with pytest.raises(AuthenticationFailed):
        _auth(services, raw)


def test_revoke_token(services):
    new = make_staff(services, "bye", "courier")
    raw = _login(services, new).access_token
    secret = services.keys.secret("session_token")
    with services.session_factory() as s:
        assert staff.revoke_token(s, raw, secret=secret) is True
        assert staff.revoke_token(s, raw, secret=secret) is False
        assert staff.revoke_token(s, raw[:-1] + "Z", secret=secret) is False
        assert staff.revoke_token(s, "wbs_nope", secret=secret) is False
        s.commit()
    with pytest.raises(AuthenticationFailed):
        _auth(services, raw)


def test_no_secret_is_stored_in_plaintext(fresh_env):
    env = fresh_env()
    svc = env.services()
    secrets_seen = []
    for role in STAFF_ROLES:
        new = make_staff(svc, f"p.{role}", role)
        result = _login(svc, new, totp_now(new.totp_secret) if new.totp_secret else None)
        secrets_seen += [new.password, result.access_token, result.access_token.split("_", 2)[2]]
        if new.totp_secret:
            secrets_seen.append(new.totp_secret)
    with svc.session_factory() as s:
        hashes = s.execute(select(StaffUser.password_hash)).scalars().all()
        assert len(hashes) == 6 and all(h.startswith("$argon2id$") for h in hashes)
        assert len(s.execute(select(StaffToken.token_hash)).scalars().all()) == 6
    raw = _raw_storage(env)
    assert b"$argon2id$" in raw  # positive control: the scan sees the users table
    for value in secrets_seen:
        for form in _variants(value) + [value.encode().hex().encode()]:
            assert form not in raw, "a secret was found at rest"


# -- command line ------------------------------------------------------------------------------
def _cli_services(env_vars):
    settings = load_settings(environ=env_vars)
    return build(settings)


def test_cli_creates_each_role_and_the_accounts_work(cli_env):
    created = {}
    for role in STAFF_ROLES:
        args = ["users", "create", f"cli.{role}", "--role", role]
        if role in staff.STATION_ROLES:
            args += ["--station", "755-W012"]  # a registered station (a sorter's must be)
        doc = json.loads(run(args, cli_env).stdout)
        assert set(doc) >= {"user_id", "username", "role", "password", "totp_secret"}
        assert doc["user_id"].startswith("usr_") and doc["username"] == f"cli.{role}" and doc["role"] == role
        assert (doc["totp_secret"] is not None) == (role in MFA_ROLES)
        created[role] = doc
    svc = _cli_services(cli_env)
    try:
        for role in ("courier", "admin"):
            doc = created[role]
            with svc.session_factory() as s:
                code = totp_now(doc["totp_secret"]) if doc["totp_secret"] else None
                result = staff.login(s, doc["username"], doc["password"], code,
                                     secret=svc.keys.secret("session_token"), codec=svc.codec)
                s.commit()
            assert result.role == role
        if not PG_URL:
            stored = b"".join(p.read_bytes() for p in svc.settings.data_dir.glob("waybill.db*"))
            for doc in created.values():
                assert doc["password"].encode() not in stored
                assert doc["totp_secret"] is None or doc["totp_secret"].encode() not in stored
    finally:
        svc.engine.dispose()


def test_cli_password_stdin_disable_and_errors(cli_env):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")} | cli_env
    proc = subprocess.run([sys.executable, "-m", "waybill.commands.main", "users", "create", "typed", "--role",
                           "sorter", "--station", "755-W012", "--password-stdin"], input="correct horse battery\n",
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["password"] is None  # a typed password is not echoed back
    assert "correct horse" not in proc.stdout + proc.stderr

    svc = _cli_services(cli_env)
    try:
        with svc.session_factory() as s:
            raw = staff.login(s, "typed", "correct horse battery", None, secret=svc.keys.secret("session_token"),
                              codec=svc.codec).access_token
            s.commit()
        disabled = json.loads(run(["users", "disable", "typed"], cli_env).stdout)
        assert disabled["ok"] and disabled["revoked_tokens"] == 1 and disabled["user_id"] == doc["user_id"]
        with svc.session_factory() as s, pytest.raises(AuthenticationFailed):
            staff.authenticate_token(s, raw, secret=svc.keys.secret("session_token"))
    finally:
        svc.engine.dispose()

    for args, field in ((["users", "create", "x1", "--role", "boss"], "role"),
                        (["users", "create", "x2", "--role", "courier"], "station"),
                        (["users", "create", "X 3", "--role", "admin"], "username")):
        proc = run(args, cli_env, check=False)
        assert proc.returncode == 2
        err = json.loads(proc.stdout)["error"]
        assert err["code"] == "validation_error" and err["field"] == field
    dup = run(["users", "create", "typed", "--role", "sorter", "--station", "755-W012"], cli_env, check=False)
    assert dup.returncode == 1 and json.loads(dup.stdout)["error"]["code"] == "conflict"
    missing = run(["users", "disable", "nobody"], cli_env, check=False)
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"]["code"] == "not_found"
