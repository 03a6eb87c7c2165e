"""Unauthenticated floods cannot amplify into audit writes: per-client budget, then 429 and a count."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.limits_clock import limits_clock  # noqa: F401 (a fixture)
from waybill import merchants
from waybill.models import AuditEvent
from waybill.ratelimit import FailureThrottle
from waybill.web.app import create_app


def test_failure_throttle_counts_what_it_suppresses(limits_clock):  # noqa: F811
    throttle = FailureThrottle(rate=1.0, burst=2)  # two failures per two seconds
    assert throttle.failure("a") == (None, 0)
    assert throttle.failure("a") == (None, 0)
    for _ in range(5):
        wait, _ = throttle.failure("a")
        assert wait is not None and wait > 0
    assert throttle.refusal("a") is not None  # a peek of a spent client counts too
    assert throttle.failure("b") == (None, 0)  # another client has its own budget
    assert throttle.refusal("b") is None
    limits_clock.advance(2.5)
    assert throttle.refusal("a") is None
    assert throttle.failure("a") == (None, 6)  # the next recorded failure carries the count


def _count(svc, action):
    with svc.session_factory() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))


def test_a_flood_of_bad_keys_writes_a_bounded_number_of_rows(fresh_env):
    env = fresh_env(auth_failure_burst=3, auth_failure_rate_per_s=0.001)
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    codes = [client.get("/v1/shipments", headers={"Authorization": f"Bearer wbm_guess{i}"}).status_code
             for i in range(40)]
    assert codes[:3] == [401] * 3 and set(codes[3:]) == {429}
    assert _count(svc, "auth.failed") == 3
    # Another client (behind no proxy here: another socket address) still gets its own answers.
    other = client.get("/v1/shipments", headers={"Authorization": "Bearer nope"},
                       environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert other.status_code == 401


def test_a_spent_client_is_refused_before_the_key_lookup(fresh_env, monkeypatch):
    """Past its budget a client costs no lookup at all: the key is never hashed nor looked up."""
    env = fresh_env(auth_failure_burst=2, auth_failure_rate_per_s=0.001)
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    lookups = []
    real = merchants.authenticate

    def counting(*args, **kwargs):
        lookups.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(merchants, "authenticate", counting)
    codes = [client.get("/v1/shipments", headers={"Authorization": f"Bearer wbk_{i:016x}_guess"}).status_code
             for i in range(30)]
    assert codes == [401, 401] + [429] * 28
    assert len(lookups) == 2
    assert _count(svc, "auth.failed") == 2


def test_receipt_token_guesses_stop_before_the_check(fresh_env):
    env = fresh_env(auth_failure_burst=2, auth_failure_rate_per_s=0.001)
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    codes = [client.post(f"/v1/phone/receipts/guess{i}", data=b"[]").status_code for i in range(20)]
    assert codes[:2] == [404, 404] and set(codes[2:]) == {429}
    assert _count(svc, "phone.receipts") == 2
