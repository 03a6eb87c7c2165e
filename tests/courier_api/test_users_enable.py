"""`waybill users enable USERNAME`: lifts the suspensions critical alerts placed and clears `users disable`,
revokes the tokens the account held (none used while suspended comes back), audited; an unknown user exits 1."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from courier_api import staff
from tests.conftest import run
from waybill.alerts import store
from waybill.errors import AuthenticationFailed, PermissionDenied
from waybill.models import AuditEvent
from waybill.permissions import Principal
from waybill.services import build
from waybill.settings import load_settings


def _login(svc, username, password):
    with svc.session_factory() as s:
        raw = staff.login(s, username, password, None, secret=svc.keys.secret("session_token"),
                          codec=svc.codec).access_token
        s.commit()
    return raw


def _works(svc, raw):
    with svc.session_factory() as s:
        try:
            staff.authenticate_token(s, raw, secret=svc.keys.secret("session_token"))
        except AuthenticationFailed:
            return False
        finally:
            s.commit()
    return True


def test_cli_enable_lifts_a_suspension_and_a_disable(cli_env):
    made = json.loads(run(["users", "create", "rented", "--role", "courier", "--station", "755-W012"],
                          cli_env).stdout)
    svc = build(load_settings(environ=cli_env))
    try:
        raw = _login(svc, "rented", made["password"])
        principal = Principal(kind="staff", id=made["user_id"], role="courier", station="755-W012")
        with svc.session_factory() as s:
            store.fire(s, principal, "new_client")
            s.commit()
        assert not _works(svc, raw)
        with pytest.raises(staff.LoginFailed):  # no new session while suspended
            _login(svc, "rented", made["password"])

        doc = json.loads(run(["users", "enable", "rented"], cli_env).stdout)
        assert doc == {"ok": True, "user_id": made["user_id"], "username": "rented", "lifted_suspensions": 1,
                       "was_disabled": False, "revoked_tokens": 1}
        with svc.session_factory() as s:
            assert not store.is_suspended(s, principal.actor)
            actions = [(e.action, e.object_id) for e in s.scalars(select(AuditEvent).where(
                AuditEvent.action.in_(("account.unsuspend", "user.enable"))))]
        assert actions == [("account.unsuspend", principal.actor), ("user.enable", made["user_id"])]
        assert not _works(svc, raw)  # the token used while suspended stays dead: the owner logs in again
        fresh = _login(svc, "rented", made["password"])
        assert _works(svc, fresh)

        # `users disable` is undone the same way (its tokens were revoked by the disable itself).
        assert json.loads(run(["users", "disable", "rented"], cli_env).stdout)["revoked_tokens"] == 1
        with pytest.raises(staff.LoginFailed):
            _login(svc, "rented", made["password"])
        doc = json.loads(run(["users", "enable", "rented"], cli_env).stdout)
        assert (doc["lifted_suspensions"], doc["was_disabled"], doc["revoked_tokens"]) == (0, True, 0)
        assert _works(svc, _login(svc, "rented", made["password"]))
    finally:
        svc.engine.dispose()

    missing = run(["users", "enable", "nobody"], cli_env, check=False)
    assert missing.returncode == 1
    err = json.loads(missing.stdout)["error"]
    assert (err["code"], err["field"]) == ("not_found", "username")


def test_only_an_admin_or_the_system_enables(services):
    from tests.courier_api import make_staff

    make_staff(services, "enable_me", "courier")
    with services.session_factory() as s:
        for role in ("privacy_officer", "auditor", "courier"):
            with pytest.raises(PermissionDenied):
                staff.enable_user(s, Principal(kind="staff", id="usr_x", role=role), "enable_me")
        done = staff.enable_user(s, Principal(kind="staff", id="usr_admin", role="admin"), "enable_me")
        assert (done.lifted, done.was_disabled) == (0, False)
        s.rollback()


def test_a_critical_alert_after_enable_suspends_again_although_the_first_is_still_open(services):
    """A careless operator enables the account without resolving its alert: the next firing of the same rule (an
    increment of that open alert, no new row) must still suspend the account."""
    from tests.courier_api import make_staff

    made = make_staff(services, "enabled_again", "courier")
    principal = Principal(kind="staff", id=made.user.id, role="courier", station="755-W012")
    with services.session_factory() as s:
        store.fire(s, principal, "new_client", object_type="account", object_id=principal.actor)
        s.commit()
        assert store.is_suspended(s, principal.actor)
        staff.enable_user(s, Principal(kind="system", id="cli", role="system"), "enabled_again")
        s.commit()
        assert not store.is_suspended(s, principal.actor)
        store.fire(s, principal, "new_client", object_type="account", object_id=principal.actor)
        s.commit()
        assert store.is_suspended(s, principal.actor)
        suspends = s.scalars(select(AuditEvent.object_id).where(AuditEvent.action == "account.suspend")).all()
        assert suspends == [principal.actor, principal.actor]
