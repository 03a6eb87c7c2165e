"""`privacy_reads` and `subject_request_overdue` land in the alert store with their rule's severity, and their
thresholds are settings named after the rule (WAYBILL_ALERT_PRIVACY_READS_COUNT,
WAYBILL_ALERT_SUBJECT_REQUEST_OVERDUE_WARN_DAYS, with the documented WAYBILL_SUBJECT_REQUEST_WARN_DAYS an alias)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from courier_api.subjects import OVERDUE_TOPIC
from courier_api.subjects.models import SubjectRequest
from tests.courier_api.subjects_helpers import direct_token, make_shipment
from tests.courier_api.test_privacy_requests import PLAINTEXT, _filed_and_approved, _shipment
from waybill.alerts.models import Alert
from waybill.alerts.settings import AlertSettings
from waybill.models import utcnow
from waybill.settings import SettingsError, load_settings
from waybill.uow import unit_of_work
from waybill.web.app import create_app


def _with(services: Any, **changes: Any) -> Any:
    return dataclasses.replace(services, settings=dataclasses.replace(services.settings, **changes))


def _alerts(session: Any, rule: str) -> list[Alert]:
    return list(session.scalars(select(Alert).where(Alert.rule == rule).order_by(Alert.first_at)))


def _text(alert: Alert) -> str:
    return " ".join(str(getattr(alert, c.name)) for c in Alert.__table__.columns)


def test_privacy_reads_fire_at_the_count_and_at_the_quota(base_env: Any, services: Any, merchant: Any,
                                                           officers: Any, client: Any) -> None:
    limited = _with(services, privacy_reads_per_day=3, alerts=AlertSettings(thresholds={"privacy_reads.count": 2}))
    worker = create_app(base_env.settings, services_override=limited).test_client()
    rid = _filed_and_approved(client, officers, _shipment(client, merchant))["id"]
    url = f"/v1/privacy/requests/{rid}/personal-data"
    codes = [worker.get(url, headers=officers["officer"]).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    officer = officers["users"]["officer"].user.id
    with services.session_factory() as s:
        at_count, at_quota = _alerts(s, "privacy_reads")
        assert {a.severity for a in (at_count, at_quota)} == {"warning"}
        assert {a.actor for a in (at_count, at_quota)} == {f"staff:{officer}"}
        assert (at_count.object_type, at_count.detail, at_count.count) == ("day", "reads=2", 1)  # once, not at 3
        assert at_quota.object_type is None
        assert not any(p in _text(a) for a in (at_count, at_quota) for p in PLAINTEXT)


def test_overdue_requests_land_as_one_warning_alert_per_request(client: Any, merchant: Any, services: Any) -> None:
    shp = make_shipment(client, merchant)
    token = direct_token(services, shp["id"], "recipient")
    r = client.post("/v1/subject/requests", json={"type": "complaint", "text": "未收到包裹"}, headers=token)
    assert r.status_code == 201, r.get_json()
    rid = r.get_json()["id"]
    soon = _with(services, alerts=AlertSettings(thresholds={"subject_request_overdue.warn_days": 5}))
    from courier_api.extension import extension

    handler = extension.task_handlers(soon)[OVERDUE_TOPIC]
    with services.session_factory() as s:
        s.execute(update(SubjectRequest).where(SubjectRequest.id == rid).values(due_at=utcnow() + timedelta(days=4)))
        s.commit()
    with unit_of_work(services.session_factory) as tx:  # 4 days left, warned 5 days ahead: due soon
        handler(tx, {})
    with services.session_factory() as s:
        (alert,) = _alerts(s, "subject_request_overdue")
        assert (alert.severity, alert.object_type, alert.object_id, alert.count) == (
            "warning", "subject_request", rid, 1)
        s.execute(update(SubjectRequest).where(SubjectRequest.id == rid).values(due_at=utcnow() - timedelta(hours=1)))
        s.commit()
    with unit_of_work(services.session_factory) as tx:
        handler(tx, {})
    with services.session_factory() as s:
        (alert,) = _alerts(s, "subject_request_overdue")  # the same request's burst: one alert, counted twice
        assert (alert.severity, alert.count) == ("warning", 2)
        assert "未收到包裹" not in _text(alert)


def test_the_thresholds_are_rule_settings_and_the_documented_name_still_works() -> None:
    assert load_settings({"WAYBILL_ALERT_PRIVACY_READS_COUNT": "7"}).alerts.threshold("privacy_reads", "count") == 7
    new = load_settings({"WAYBILL_ALERT_SUBJECT_REQUEST_OVERDUE_WARN_DAYS": "6"})
    assert new.alerts.threshold("subject_request_overdue", "warn_days") == 6
    old = load_settings({"WAYBILL_SUBJECT_REQUEST_WARN_DAYS": "4"})
    assert old.alerts.threshold("subject_request_overdue", "warn_days") == 4
    both = load_settings({"WAYBILL_SUBJECT_REQUEST_WARN_DAYS": "4",
                          "WAYBILL_ALERT_SUBJECT_REQUEST_OVERDUE_WARN_DAYS": "2"})
    assert both.alerts.threshold("subject_request_overdue", "warn_days") == 2
    assert load_settings({}).alerts.threshold("subject_request_overdue", "warn_days") == 3
    with pytest.raises(SettingsError, match="WAYBILL_SUBJECT_REQUEST_WARN_DAYS"):
        load_settings({"WAYBILL_SUBJECT_REQUEST_WARN_DAYS": "31"})


def test_alerts_can_be_switched_off_except_in_production(tmp_path: Any) -> None:
    assert load_settings({}).alerts.enabled is True
    assert load_settings({"WAYBILL_ALERTS_ENABLED": "0"}).alerts.enabled is False
    with pytest.raises(SettingsError, match="WAYBILL_ALERTS_ENABLED"):
        load_settings({"WAYBILL_ALERTS_ENABLED": "maybe"})
    key_file = tmp_path / "keys.json"
    with pytest.raises(SettingsError, match="WAYBILL_ALERTS_ENABLED=0 is refused in production"):
        load_settings({"WAYBILL_ENV": "production", "WAYBILL_KEY_FILE": str(key_file),
                       "WAYBILL_ALERTS_ENABLED": "0"})


def test_switched_off_an_alert_event_is_audited_but_stores_no_alert(fresh_env: Any) -> None:
    from waybill.alerts import store
    from waybill.models import AuditEvent
    from waybill.permissions import Principal

    env = fresh_env(alerts=AlertSettings(enabled=False))
    svc = env.services()
    courier = Principal(kind="staff", id="usr_off", role="courier")
    with svc.session_factory() as s:
        store.fire(s, courier, "canary", object_type="shipment", object_id="shp_off")
        s.commit()
        assert s.scalars(select(AuditEvent.actor).where(AuditEvent.action == "alert.canary")).all() == [courier.actor]
        assert _alerts(s, "canary") == [] and not store.is_suspended(s, courier.actor)
