"""Lockout is not a weapon: staff logins back off per (username, client), never lock the account, and alert.

Regression tests of issue 11 item 6: five wrong passwords used to lock any known user for 15 minutes, renewable
forever, from anywhere.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
from sqlalchemy import select

from courier_api.login_throttle import LoginLimits, LoginThrottle
from tests.courier_api import make_staff
from tests.limits_clock import limits_clock  # noqa: F401 - fixture
from waybill.models import AuditEvent
from waybill.services import build
from waybill.web.app import create_app

WRONG = "not-the-password-1"
ATTACKER = {"REMOTE_ADDR": "203.0.113.66"}
USER_SIDE = {"REMOTE_ADDR": "198.51.100.7"}


def _events(services, action):
    with services.session_factory() as s:
        return s.execute(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)).scalars().all()


def _post(client, username, password, environ):
    return client.post("/v1/auth/token", json={"username": username, "password": password}, environ_base=environ)


@pytest.fixture
def configured(base_env, session_factory):
    """An app whose settings the test chooses (login limits), on the shared test database."""

    def make(**settings):
        svc = build(dataclasses.replace(base_env.settings, **settings), engine=base_env.engine,
                    session_factory=session_factory)
        return create_app(svc.settings, services_override=svc).test_client(), svc

    return make


def test_an_attacker_failing_100_times_does_not_keep_the_user_out(client, services):
    new = make_staff(services, "victim", "dispatcher")
    codes = [_post(client, "victim", WRONG, ATTACKER).status_code for _ in range(100)]
    assert codes == [401] * 5 + [429] * 95
    # The user, from their own client, logs in at once.
    r = _post(client, "victim", new.password, USER_SIDE)
    assert r.status_code == 200, r.get_json()
    # The attacker's 95 refusals wrote nothing: five failures, five audit rows, one alert.
    assert len(_events(services, "auth.failed")) == 5
    alerts = _events(services, "alert.login_failures")
    assert [(a.purpose, a.outcome, a.client_addr) for a in alerts] == [
        ("pattern=user_client_backoff", "alert", ATTACKER["REMOTE_ADDR"])]
    for e in alerts:
        assert "victim" not in " ".join(str(v) for v in (e.actor, e.object_id, e.purpose, e.fields))


def test_the_refused_client_waits_longer_each_time(client, services, limits_clock):  # noqa: F811
    new = make_staff(services, "patient", "courier")
    start = limits_clock.now
    for _ in range(5):
        assert _post(client, "patient", WRONG, ATTACKER).status_code == 401
    waits = []
    for _ in range(4):
        r = _post(client, "patient", WRONG, ATTACKER)
        assert r.status_code == 429 and r.get_json()["error"]["code"] == "rate_limited"
        waits.append(int(r.headers["Retry-After"]))
        # Still refused just before the wait is over; one more failure is allowed once it is.
        limits_clock.advance(waits[-1] - 2)
        assert _post(client, "patient", WRONG, ATTACKER).status_code == 429
        limits_clock.advance(3)
        assert _post(client, "patient", WRONG, ATTACKER).status_code == 401
    assert waits == [60, 119, 239, 479]  # doubling (the base is 60 s; a second went by in each step)
    # Backing off holds the right password too from that client, until the wait is over; success clears it.
    r = _post(client, "patient", new.password, ATTACKER)
    assert r.status_code == 429
    limits_clock.advance(int(r.headers["Retry-After"]) + 1)
    assert _post(client, "patient", new.password, ATTACKER).status_code == 200
    assert [_post(client, "patient", WRONG, ATTACKER).status_code for _ in range(6)] == [401] * 5 + [429]
    # Alerts: at most one per alert window (600 s) for this client, not one per refusal or step.
    elapsed = limits_clock.now - start
    assert 1 <= len(_events(services, "alert.login_failures")) <= 1 + elapsed // 600 < 10


def test_the_backoff_is_capped(limits_clock):  # noqa: F811
    throttle = LoginThrottle(LoginLimits(free=2, base_s=10, max_s=40))
    waits = []
    for _ in range(12):
        while (wait := throttle.begin("u", "c")) is not None:
            waits.append(wait)
            limits_clock.advance(wait + 0.5)
        throttle.failed("u", "c")
    assert waits[:3] == [10, 19.5, 39.5]  # doubling from the base (half a second went by each time)
    assert max(waits) <= 40 and min(waits) >= 10  # capped, and never back to free
    assert throttle.begin("u", "other-client") is None


def test_one_client_spraying_usernames_is_refused_across_them(configured):
    client, svc = configured(login_client_failures_per_minute=4)
    codes = [_post(client, f"user{i}", WRONG, ATTACKER).status_code for i in range(10)]
    assert codes == [401] * 4 + [429] * 6
    assert _post(client, "user99", WRONG, USER_SIDE).status_code == 401  # another client is unaffected
    assert [a.purpose for a in _events(svc, "alert.login_failures")] == ["pattern=client_failures"]


def test_one_account_failing_from_many_clients_alerts_but_is_not_locked(configured):
    client, svc = configured(login_user_alert_failures=6)
    new = make_staff(svc, "sprayed", "sorter")
    codes = [_post(client, "sprayed", WRONG, {"REMOTE_ADDR": f"192.0.2.{i}"}).status_code for i in range(12)]
    assert codes == [401] * 12
    assert [a.purpose for a in _events(svc, "alert.login_failures")] == ["pattern=user_many_clients"]
    assert _post(client, "sprayed", new.password, USER_SIDE).status_code == 200


def test_parallel_guesses_cannot_all_pass_before_the_first_fails(fresh_env):
    """An attempt is counted when it starts: 20 parallel wrong passwords from one client, 5 reach the check."""
    env = fresh_env()
    svc = env.services()
    app = create_app(env.settings, services_override=svc)
    make_staff(svc, "raced", "courier")
    barrier = threading.Barrier(20)
    codes: list[int] = []

    def guess():
        client = app.test_client()
        barrier.wait(timeout=30)
        codes.append(_post(client, "raced", WRONG, ATTACKER).status_code)

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(codes) == [401] * 5 + [429] * 15
    assert len(_events(svc, "auth.failed")) == 5
