"""The new_client rule in the token lookup: two live sessions of one courier both used within the window (and
the other used since this one was issued) fire it; a re-login, an old session, another role, or the rule off do
not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from courier_api import staff
from courier_api.models import StaffToken
from tests.courier_api import make_staff
from waybill.alerts.models import Alert
from waybill.errors import AuthenticationFailed
from waybill.models import utcnow
from waybill.uow import unit_of_work

WINDOW = 600


def _setup(services, role="courier", name="nc_user"):
    new = make_staff(services, name, role)
    secret = services.keys.secret("session_token")
    return new, secret


def _issue(services, new, secret, at):
    with services.session_factory() as s:
        user = s.get(type(new.user), new.user.id)
        raw = staff.issue_token(s, user, secret=secret, now=at, ttl_s=3600)
        s.commit()
    return raw


def _use(services, raw, secret, at, window=WINDOW):
    """One request on ``raw`` at ``at`` in a unit of work, as a request has; True if admitted."""
    try:
        with unit_of_work(services.session_factory) as tx:
            staff.authenticate_token(tx.session, raw, secret=secret, now=at, new_client_window_s=window)
    except AuthenticationFailed:
        return False
    return True


def _fired(services):
    with services.session_factory() as s:
        return [(a.rule, a.severity, a.count) for a in s.scalars(select(Alert).where(Alert.rule == "new_client"))]


def test_interleaved_sessions_within_the_window_fire_and_suspend(services):
    new, secret = _setup(services)
    t0 = utcnow()
    owner = _issue(services, new, secret, t0)
    assert _use(services, owner, secret, t0 + timedelta(seconds=1))
    renter = _issue(services, new, secret, t0 + timedelta(seconds=30))
    assert _use(services, renter, secret, t0 + timedelta(seconds=31))  # indistinguishable from a re-login
    assert _fired(services) == []
    assert not _use(services, owner, secret, t0 + timedelta(seconds=90))
    assert _fired(services) == [("new_client", "critical", 1)]
    assert not _use(services, renter, secret, t0 + timedelta(seconds=91))  # suspended


def test_the_other_sessions_use_must_be_within_the_window(services):
    new, secret = _setup(services)
    t0 = utcnow() - timedelta(hours=1)
    old = _issue(services, new, secret, t0)
    assert _use(services, old, secret, t0 + timedelta(seconds=1))
    second = _issue(services, new, secret, t0 + timedelta(seconds=10))
    assert _use(services, second, secret, t0 + timedelta(seconds=20))
    # The old session comes back after the second one was last used, but later than the window.
    assert _use(services, old, secret, t0 + timedelta(seconds=20 + WINDOW + 1))
    assert _fired(services) == []
    # A revoked or expired other session never counts.
    with services.session_factory() as s:
        s.execute(update(StaffToken).where(StaffToken.user_id == new.user.id).values(revoked_at=t0))
        s.commit()
    third = _issue(services, new, secret, t0 + timedelta(seconds=700))
    assert _use(services, third, secret, t0 + timedelta(seconds=701))
    assert _fired(services) == []


def test_a_relogin_leaves_the_old_session_unused_and_fires_nothing(services):
    new, secret = _setup(services)
    t0 = utcnow()
    first = _issue(services, new, secret, t0)
    assert _use(services, first, secret, t0 + timedelta(seconds=5))
    second = _issue(services, new, secret, t0 + timedelta(seconds=6))
    for i in range(5):
        assert _use(services, second, secret, t0 + timedelta(seconds=7 + 70 * i))
    assert _fired(services) == []


@pytest.mark.parametrize("role", ["dispatcher", "rule off"])
def test_other_roles_and_the_rule_off_are_not_watched(services, role):
    new, secret = _setup(services, role="dispatcher" if role != "rule off" else "courier", name="nc_other")
    window = None if role == "rule off" else WINDOW
    t0 = utcnow()
    a = _issue(services, new, secret, t0)
    assert _use(services, a, secret, t0 + timedelta(seconds=1), window)
    b = _issue(services, new, secret, t0 + timedelta(seconds=2))
    assert _use(services, b, secret, t0 + timedelta(seconds=3), window)
    assert _use(services, a, secret, t0 + timedelta(seconds=70), window)
    assert _fired(services) == []


def test_a_renter_who_logs_out_after_each_use_is_still_found(services):
    """Evasion: the renter logs in, scans at once and logs out, so no second *live* session ever exists. The owner's
    next request still finds a session of theirs used within the window after the owner's was issued."""
    new, secret = _setup(services)
    t0 = utcnow()
    owner = _issue(services, new, secret, t0)
    assert _use(services, owner, secret, t0 + timedelta(seconds=1))
    renter = _issue(services, new, secret, t0 + timedelta(seconds=30))
    assert _use(services, renter, secret, t0 + timedelta(seconds=31))
    with services.session_factory() as s:
        assert staff.revoke_token(s, renter, secret=secret, now=t0 + timedelta(seconds=32))
        s.commit()
    assert not _use(services, owner, secret, t0 + timedelta(seconds=90))
    assert _fired(services) == [("new_client", "critical", 1)]


def test_logging_out_and_in_again_on_another_handheld_fires_nothing(services):
    new, secret = _setup(services)
    t0 = utcnow()
    first = _issue(services, new, secret, t0)
    assert _use(services, first, secret, t0 + timedelta(seconds=5))
    with services.session_factory() as s:
        assert staff.revoke_token(s, first, secret=secret, now=t0 + timedelta(seconds=6))
        s.commit()
    second = _issue(services, new, secret, t0 + timedelta(seconds=7))
    for i in range(3):
        assert _use(services, second, secret, t0 + timedelta(seconds=8 + 70 * i))
    assert _fired(services) == []
