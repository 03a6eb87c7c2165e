"""Four eyes for privacy officers' full access (issue 11, item 7): another officer approves, an emergency path
that raises a critical alert, and a daily read quota that holds across worker processes.

Before: an officer approved nothing and read 200 full records in 1.8 s; every test below failed then (no
``status``, no ``/approve``, reads answered at once and without limit).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from courier_api import privacy
from courier_api.deps import privacy_deps
from courier_api.models import PersonalDataRequest, PrivacyReadCount
from courier_api.privacy_quota import officer_day, seconds_until_next_day
from tests.conftest import RECIPIENT, make_merchant
from tests.courier_api import make_staff
from tests.courier_api.test_privacy_requests import (
    PLAINTEXT,
    _approve,
    _events,
    _file,
    _filed_and_approved,
    _shipment,
)
from waybill.errors import NotFound, RateLimited
from waybill.ids import new_id
from waybill.permissions import Principal
from waybill.uow import unit_of_work
from waybill.web.app import create_app

# Free text an officer might well type: it names the recipient and quotes her phone number.
REASON = f"紧急：收件人{RECIPIENT['name']}来电称包裹被冒领，回拨 {RECIPIENT['phone']}"


def _read(client, headers, rid):
    return client.get(f"/v1/privacy/requests/{rid}/personal-data", headers=headers)


def test_the_filer_cannot_approve_their_own_request(client, merchant, officers):
    sid = _shipment(client, merchant)
    req = _file(client, officers["officer"], sid).get_json()
    own = _approve(client, officers["officer"], req["id"])
    missing = _approve(client, officers["officer"], new_id("pdr"))
    junk = _approve(client, officers["officer"], "not-an-id")
    assert own.status_code == missing.status_code == junk.status_code == 404
    assert own.data == missing.data == junk.data
    assert _read(client, officers["officer"], req["id"]).status_code == 409  # still pending
    outcomes = sorted(e["outcome"] for e in _events(client, officers["auditor"], "privacy.approve"))
    assert outcomes == ["denied", "not_found", "not_found"]


def test_an_approved_request_cannot_be_approved_again_and_other_roles_cannot_approve(client, merchant, officers):
    sid = _shipment(client, merchant)
    req = _filed_and_approved(client, officers, sid)
    again = _approve(client, officers["other"], req["id"])
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict"
    assert _approve(client, officers["auditor"], req["id"]).status_code == 403


def test_a_pending_request_lapses_unapproved_and_approval_opens_the_window(client, merchant, officers, services):
    sid = _shipment(client, merchant)
    deps = privacy_deps(services)
    filer = Principal("staff", officers["users"]["officer"].user.id, "privacy_officer")
    other = Principal("staff", officers["users"]["other"].user.id, "privacy_officer")
    with services.session_factory() as s:
        late = privacy.file_request(s, deps, filer, sid, "complaint", "CASE-2026-11", ["recipient.name"])
        on_time = privacy.file_request(s, deps, filer, sid, "complaint", "CASE-2026-12", ["recipient.name"])
        s.commit()
        with pytest.raises(NotFound):  # not approved within the window: lapsed, like an expired request
            privacy.approve_request(s, deps, other, late.id, now=late.created_at + deps.window)
        approved_at = on_time.created_at + deps.window - timedelta(seconds=1)
        privacy.approve_request(s, deps, other, on_time.id, now=approved_at)
        assert on_time.expires_at == approved_at + deps.window  # a full window from the approval
        privacy.read_request(s, deps, filer, on_time.id, now=approved_at + deps.window - timedelta(seconds=1))
        with pytest.raises(NotFound):
            privacy.read_request(s, deps, filer, on_time.id, now=approved_at + deps.window)
        s.commit()


def test_an_emergency_is_readable_at_once_raises_a_critical_alert_and_keeps_its_reason_secret(
        client, merchant, officers, session, services, caplog):
    caplog.set_level(logging.DEBUG)
    sid = _shipment(client, merchant)
    filed = _file(client, officers["officer"], sid, emergency=True, reason=REASON, purpose="security_incident")
    assert filed.status_code == 201, filed.get_json()
    req = filed.get_json()
    assert req["status"] == "approved" and req["emergency"] is True and "reason" not in req
    r = _read(client, officers["officer"], req["id"])
    assert r.status_code == 200 and r.get_json()["recipient"]["phone"] == RECIPIENT["phone"]

    (alert,) = _events(client, officers["auditor"], "alert.privacy_emergency")
    assert alert["purpose"] == "severity=critical" and alert["outcome"] == "alert"
    assert alert["object_id"] == req["id"] and alert["actor"] == f"staff:{officers['users']['officer'].user.id}"
    (read,) = [e for e in _events(client, officers["auditor"], "privacy.read") if e["outcome"] == "ok"]
    assert read["purpose"].endswith(":emergency")
    # The reason is stored, encrypted: not in the row in clear, not in the audit table, not in any log record.
    row = session.get(PersonalDataRequest, req["id"])
    assert row.reason_ct and RECIPIENT["phone"].encode() not in row.reason_ct
    assert services.codec.decrypt(row.reason_ct, table="personal_data_requests", column="reason",
                                  row_id=row.id) == REASON
    trail = json.dumps([list(map(str, r)) for r in session.execute(text("SELECT * FROM audit_events"))],
                       ensure_ascii=False)
    logged = json.dumps([{k: str(v) for k, v in vars(r).items()} for r in caplog.records], ensure_ascii=False)
    assert [getattr(r, "object_id", None) for r in caplog.records
            if r.getMessage() == "privacy officer emergency access"] == [req["id"]]
    for secret in (REASON, "冒领", RECIPIENT["phone"], RECIPIENT["name"]):
        assert secret not in trail and secret not in logged
        assert secret not in filed.get_data(as_text=True)


@pytest.mark.parametrize(("change", "field"), [
    ({"emergency": True}, "reason"),
    ({"emergency": True, "reason": "   "}, "reason"),
    ({"emergency": True, "reason": "x" * 501}, "reason"),
    ({"reason": "no emergency"}, "reason"),
    ({"emergency": "yes", "reason": "r"}, "emergency"),
])
def test_an_emergency_needs_a_reason_and_only_an_emergency_has_one(client, merchant, officers, change, field):
    r = _file(client, officers["officer"], _shipment(client, merchant), **change)
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["error"]["field"] == field


def _limited(services, limit):
    return dataclasses.replace(services, settings=dataclasses.replace(services.settings,
                                                                      privacy_reads_per_day=limit))


def test_the_daily_read_quota_holds_across_worker_processes(base_env, services, merchant, officers, client):
    """Two apps (two worker processes: each builds its own registry) share one count: the database's."""
    limited = _limited(services, 3)
    workers = [create_app(base_env.settings, services_override=limited).test_client() for _ in range(2)]
    sids = [_shipment(client, merchant, f"Q-{i}") for i in range(3)]
    reqs = [_filed_and_approved(client, officers, sid)["id"] for sid in sids]
    answers = [_read(workers[i % 2], officers["officer"], reqs[i % 3]) for i in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    refused = answers[3]
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert not any(p in refused.get_data(as_text=True) for p in PLAINTEXT)
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 86400 and abs(wait - seconds_until_next_day(datetime.now(UTC))) < 60
    outcomes = [e["outcome"] for e in _events(client, officers["auditor"], "privacy.read")]
    assert outcomes.count("ok") == 3 and outcomes.count("quota_exceeded") == 2
    assert len(_events(client, officers["auditor"], "alert.privacy_reads")) == 2
    # Per officer: the other officer's own reads are not spent by the first one's.
    theirs = _file(client, officers["other"], sids[0]).get_json()
    assert _approve(client, officers["officer"], theirs["id"]).status_code == 200
    assert _read(workers[0], officers["other"], theirs["id"]).status_code == 200


def test_the_quota_renews_at_midnight_in_shanghai(services, merchant, client, officers, session):
    deps = dataclasses.replace(privacy_deps(services), reads_per_day=2)
    filer = Principal("staff", officers["users"]["officer"].user.id, "privacy_officer")
    other = Principal("staff", officers["users"]["other"].user.id, "privacy_officer")
    late_evening = datetime(2026, 12, 1, 15, 59, 0, tzinfo=UTC)  # 23:59 in Shanghai
    req = privacy.file_request(session, deps, filer, _shipment(client, merchant), "complaint", "CASE-2026-3",
                               ["recipient.name"], now=late_evening)
    privacy.approve_request(session, deps, other, req.id, now=late_evening)
    for _ in range(2):
        privacy.read_request(session, deps, filer, req.id, now=late_evening)
    with pytest.raises(RateLimited) as refused:
        privacy.read_request(session, deps, filer, req.id, now=late_evening)
    assert refused.value.retry_after == 60
    privacy.read_request(session, deps, filer, req.id, now=late_evening + timedelta(minutes=1))  # a new day
    days = session.execute(select(PrivacyReadCount.day, PrivacyReadCount.reads)
                           .where(PrivacyReadCount.officer_id == filer.id).order_by(PrivacyReadCount.day)).all()
    assert [(str(d), n) for d, n in days] == [("2026-12-01", 2), ("2026-12-02", 1)]


def test_quota_day_and_wait():
    assert str(officer_day(datetime(2026, 12, 1, 16, 0, tzinfo=UTC))) == "2026-12-02"
    assert str(officer_day(datetime(2026, 12, 1, 15, 59, 59, tzinfo=UTC))) == "2026-12-01"
    assert seconds_until_next_day(datetime(2026, 12, 1, 16, 0, tzinfo=UTC)) == 86400
    assert math.isclose(seconds_until_next_day(datetime(2026, 12, 1, 15, 59, 59, tzinfo=UTC)), 1)


def test_concurrent_reads_never_overshoot_the_quota(fresh_env):
    """Twelve reads at once by one officer, limit 5: exactly 5 pass (the count row serialises them)."""
    env = fresh_env(privacy_reads_per_day=5)
    svc = env.services()
    deps = privacy_deps(svc)
    filer_user = make_staff(svc, "po_conc_a", "privacy_officer")
    other_user = make_staff(svc, "po_conc_b", "privacy_officer")
    client = create_app(env.settings, services_override=svc).test_client()
    sid = _shipment(client, make_merchant(svc))
    filer = Principal("staff", filer_user.user.id, "privacy_officer")
    other = Principal("staff", other_user.user.id, "privacy_officer")
    with unit_of_work(svc.session_factory) as tx:
        rid = privacy.file_request(tx.session, deps, filer, sid, "complaint", "CASE-2026-9", ["recipient.name"]).id
    with unit_of_work(svc.session_factory) as tx:
        privacy.approve_request(tx.session, deps, other, rid)
    results: list[str] = []
    barrier = threading.Barrier(12)

    def read() -> None:
        barrier.wait()
        try:
            with unit_of_work(svc.session_factory) as tx:
                privacy.read_request(tx.session, deps, filer, rid)
            results.append("ok")
        except RateLimited:
            results.append("limited")

    threads = [threading.Thread(target=read) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["limited"] * 7 + ["ok"] * 5
    with svc.session_factory() as s:
        assert s.execute(select(PrivacyReadCount.reads)).scalar_one() == 5
