"""Unauthenticated floods cannot amplify into audit writes: per-client budget, then 429 and a count."""

from __future__ import annotations

from sqlalchemy import func, select

from waybill.models import AuditEvent
from waybill.ratelimit import FailureThrottle
from waybill.web.app import create_app


def test_failure_throttle_counts_what_it_suppresses():
    now = [0.0]
    throttle = FailureThrottle(rate=1.0, burst=2, clock=lambda: now[0])
    assert throttle.failure("a") == (None, 0)
    assert throttle.failure("a") == (None, 0)
    for _ in range(5):
        wait, _ = throttle.failure("a")
        assert wait is not None and wait > 0
    assert throttle.failure("b") == (None, 0)  # another client has its own budget
    now[0] += 1.0
    assert throttle.failure("a") == (None, 5)  # the next recorded failure carries the count


def test_a_flood_of_bad_keys_writes_a_bounded_number_of_rows(fresh_env):
    env = fresh_env(auth_failure_burst=3, auth_failure_rate_per_s=0.001)
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    codes = [client.get("/v1/shipments", headers={"Authorization": f"Bearer wbm_guess{i}"}).status_code
             for i in range(40)]
    assert codes[:3] == [401] * 3 and set(codes[3:]) == {429}
    with svc.session_factory() as s:
        rows = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "auth.failed"))
    assert rows == 3
    # Another client (behind no proxy here: another socket address) still gets its own answers.
    other = client.get("/v1/shipments", headers={"Authorization": "Bearer nope"},
                       environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert other.status_code == 401
