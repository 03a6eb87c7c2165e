"""The alert store: alerts come from ``alert.*`` audit events, deduplicated per burst, durable, delivered through
the outbox; thresholds are settings named after their rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from waybill import audit
from waybill.alerts import store
from waybill.alerts.models import AccountSuspension, Alert
from waybill.alerts.rules import RULES, setting_name
from waybill.models import AuditEvent, OutboxMessage
from waybill.permissions import Principal
from waybill.settings import SettingsError, known_variables, load_settings

COURIER = Principal(kind="staff", id="usr_alerttest", role="courier", station="021-A001")


def _alerts(session, rule):
    return session.scalars(select(Alert).where(Alert.rule == rule)).all()


def test_a_burst_is_one_alert_with_a_count_and_one_delivery(services):
    for _ in range(5):
        with services.session_factory() as s:
            store.fire(s, COURIER, "not_found_burst")
            s.commit()
    with services.session_factory() as s:
        (alert,) = _alerts(s, "not_found_burst")
        assert (alert.count, alert.status, alert.severity, alert.actor) == (5, "open", "warning", COURIER.actor)
        deliveries = s.scalars(select(OutboxMessage).where(OutboxMessage.topic == store.DELIVER_TOPIC)).all()
        assert [m.payload for m in deliveries] == [{"alert_id": alert.id}]
        # Each firing is in the audit chain all the same.
        assert s.scalar(select(func.count()).select_from(AuditEvent)
                        .where(AuditEvent.action == "alert.not_found_burst")) == 5


def test_another_object_or_actor_is_another_alert(services):
    other = Principal(kind="staff", id="usr_other", role="courier")
    with services.session_factory() as s:
        store.fire(s, COURIER, "pickup_code_failures", object_type="shipment", object_id="shp_1")
        store.fire(s, COURIER, "pickup_code_failures", object_type="shipment", object_id="shp_2")
        store.fire(s, other, "pickup_code_failures", object_type="shipment", object_id="shp_1")
        s.commit()
        assert len(_alerts(s, "pickup_code_failures")) == 3


def test_a_resolved_alert_lets_the_next_burst_open_a_new_one(services):
    with services.session_factory() as s:
        store.fire(s, COURIER, "scan_quota")
        s.commit()
        (alert,) = _alerts(s, "scan_quota")
        alert.status = "resolved"
        s.commit()
        store.fire(s, COURIER, "scan_quota")
        s.commit()
        assert sorted(a.status for a in _alerts(s, "scan_quota")) == ["open", "resolved"]


def test_an_alert_outlives_the_rolled_back_request(services):
    from waybill.uow import write_durable

    with services.session_factory() as s:
        store.fire(s, COURIER, "foreign_station")
        durable = audit.take_durable(s)
        s.rollback()
    write_durable(services.session_factory, durable)
    with services.session_factory() as s:
        assert len(_alerts(s, "foreign_station")) == 1


def test_a_critical_alert_suspends_a_staff_account_once_and_enable_lifts_it(services):
    with services.session_factory() as s:
        store.fire(s, COURIER, "canary", object_type="shipment", object_id="shp_c1")
        store.fire(s, COURIER, "canary", object_type="shipment", object_id="shp_c2")
        s.commit()
        assert store.is_suspended(s, COURIER.actor)
        assert s.scalar(select(func.count()).select_from(AccountSuspension)) == 1
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "account.suspend", AuditEvent.object_id == COURIER.actor)) == 1
        from waybill.permissions import SYSTEM

        assert store.lift(s, SYSTEM, COURIER.actor) == 1
        s.commit()
        assert not store.is_suspended(s, COURIER.actor)


def test_a_warning_never_suspends(services):
    with services.session_factory() as s:
        store.fire(s, COURIER, "scan_quota")
        s.commit()
        assert not store.is_suspended(s, COURIER.actor)


def test_an_unknown_rule_is_a_programming_error(services):
    with services.session_factory() as s, pytest.raises(KeyError):
        store.fire(s, COURIER, "no_such_rule")


def test_every_alert_action_in_the_code_has_a_rule():
    root = Path(__file__).resolve().parents[2]
    found = set()
    for package in ("waybill", "courier_api"):
        for path in (root / package).rglob("*.py"):
            found |= set(re.findall(r'"alert\.([a-z_]+)"', path.read_text(encoding="utf-8")))
    assert found, "the search found no alert actions at all"
    found.discard("raised")  # "alert.raised": the security webhook's event type, not an audit action
    assert found <= set(RULES), sorted(found - set(RULES))


def test_thresholds_are_settings_named_after_the_rule():
    rule = RULES["not_found_burst"]
    (count,) = [t for t in rule.thresholds if t.name == "count"]
    assert setting_name(rule, count) == "WAYBILL_ALERT_NOT_FOUND_BURST_COUNT"
    assert "WAYBILL_ALERT_NOT_FOUND_BURST_COUNT" in known_variables()
    settings = load_settings({"WAYBILL_ALERT_NOT_FOUND_BURST_COUNT": "7"})
    assert settings.alerts.threshold("not_found_burst", "count") == 7
    assert settings.alerts.threshold("not_found_burst", "window_s") == 600  # the default
    with pytest.raises(SettingsError, match="WAYBILL_ALERT_NOT_FOUND_BURST_COUNT"):
        load_settings({"WAYBILL_ALERT_NOT_FOUND_BURST_COUNT": "0"})
    with pytest.raises(SettingsError, match="WAYBILL_ALERT_NEW_CLIENT_WINDOW_S"):
        load_settings({"WAYBILL_ALERT_NEW_CLIENT_WINDOW_S": "ten"})
