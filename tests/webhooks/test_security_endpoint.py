"""The security endpoint: a new alert is logged and POSTed (signed like the merchant webhooks, with the key file's
``alert_webhook`` secret; checked by the standardwebhooks package) by the ``alerts.deliver`` task, never by the
request that raised it; a failure is retried by the outbox; internal addresses need their own switch; and no
personal data is in the body or the log."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import RECIPIENT, SENDER, shipment_body
from waybill import outbox, tasks
from waybill.alerts import store
from waybill.alerts.models import Alert
from waybill.alerts.settings import AlertSettings
from waybill.logs import JsonFormatter
from waybill.models import OutboxMessage
from waybill.permissions import Principal
from waybill.webhooks.security import AlertDeliveryFailed, signing_secret

COURIER = Principal(kind="staff", id="usr_secendpoint", role="courier", station="755-W012")
PERSONAL = [RECIPIENT["name"], RECIPIENT["phone"], RECIPIENT["address"], SENDER["name"], SENDER["phone"],
            SENDER["address"]]


@pytest.fixture
def alert_log() -> Iterator[io.StringIO]:
    """The ``waybill.alerts`` log as the service writes it (JSON lines, the production formatter)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("waybill.alerts")
    logger.addHandler(handler)
    yield out
    logger.removeHandler(handler)


def _with(services, url, *, allow_private, merchant_allow_private=False):
    settings = dataclasses.replace(services.settings, webhook_allow_private=merchant_allow_private,
                                   alerts=AlertSettings(webhook_url=url, webhook_allow_private=allow_private))
    return dataclasses.replace(services, settings=settings)


def _raise(services, client, merchant):
    """A shipment with real personal data, and a warning alert about it; returns (alert id, its message id)."""
    r = client.post("/v1/shipments", json=shipment_body("SEC-1"), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    with services.session_factory() as s:
        store.fire(s, COURIER, "foreign_station", object_type="shipment", object_id=r.get_json()["id"],
                   detail="station=010-W201")
        s.commit()
        alert_id = s.scalars(select(Alert.id).where(Alert.actor == COURIER.actor)).one()
        (message_id,) = s.scalars(select(OutboxMessage.id).where(OutboxMessage.topic == store.DELIVER_TOPIC)).all()
    return alert_id, message_id


def _run(svc, message_id):
    return outbox.run_message(svc.session_factory, tasks.handlers(svc), message_id)


def test_an_alert_is_logged_and_posted_signed_once_its_task_runs(services, client, merchant, receiver, alert_log):
    svc = _with(services, receiver.url, allow_private=True)
    alert_id, message_id = _raise(services, client, merchant)
    assert receiver.received == [] and alert_log.getvalue() == ""  # the request raised it; the task delivers it
    assert _run(svc, message_id)
    (got,) = receiver.received
    secret = signing_secret(services.keys)
    assert secret == "whsec_" + base64.b64encode(services.keys.secret("alert_webhook")).decode()
    payload = Webhook(secret).verify(got.body, got.headers)
    assert got.headers["webhook-id"] == alert_id
    assert payload["type"] == "alert.raised"
    assert payload["data"] == {"id": alert_id, "rule": "foreign_station", "severity": "warning",
                               "actor": COURIER.actor, "at": payload["timestamp"], "count": 1, "status": "open"}
    # Not signed with another purpose's secret (each secret has one purpose).
    for other in ("api_key", "session_token"):
        with pytest.raises(WebhookVerificationError):
            Webhook(base64.b64encode(services.keys.secret(other)).decode()).verify(got.body, got.headers)
    (line,) = [json.loads(raw) for raw in alert_log.getvalue().splitlines()]
    assert (line["logger"], line["level"], line["msg"]) == ("waybill.alerts", "warning", "alert")
    assert {k: line[k] for k in ("alert_id", "rule", "severity", "actor", "count")} == {
        "alert_id": alert_id, "rule": "foreign_station", "severity": "warning", "actor": COURIER.actor, "count": 1}
    raw = got.body.decode() + got.raw_headers.decode() + alert_log.getvalue()
    for value in PERSONAL:
        assert value not in raw, value
    with services.session_factory() as s:
        assert s.get(OutboxMessage, message_id).done_at is not None
    assert not _run(svc, message_id)  # done: a duplicate hand-over sends nothing
    assert len(receiver.received) == 1


def test_a_failed_post_is_retried_by_the_outbox(services, client, merchant, receiver, alert_log):
    svc = _with(services, receiver.url, allow_private=True)
    alert_id, message_id = _raise(services, client, merchant)
    receiver.answer(503)
    with pytest.raises(AlertDeliveryFailed):
        _run(svc, message_id)
    with services.session_factory() as s:
        row = s.get(OutboxMessage, message_id)
        assert (row.done_at, row.attempts, row.last_error_type) == (None, 1, "AlertDeliveryFailed")
        assert row.sent_at is None and row.available_at is not None  # handed over again after its backoff
    assert _run(svc, message_id)
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == alert_id and first.body == second.body
    assert '"error_type": "status_503"' in alert_log.getvalue()


def test_an_internal_address_needs_the_alert_switch_alone(services, client, merchant, receiver, alert_log):
    _, message_id = _raise(services, client, merchant)
    # The merchants' switch does not open the security endpoint's way in.
    refused = _with(services, receiver.url, allow_private=False, merchant_allow_private=True)
    with pytest.raises(AlertDeliveryFailed) as caught:
        _run(refused, message_id)
    assert caught.value.reason == "blocked_address" and receiver.received == []
    assert '"error_type": "blocked_address"' in alert_log.getvalue()
    for url in ("http://169.254.169.254/latest", "http://10.0.0.7/hook", "http://[::1]:9/hook"):
        with pytest.raises(AlertDeliveryFailed):
            _run(_with(services, url, allow_private=False), message_id)
    # Its own switch does, whatever the merchants' says.
    assert _run(_with(services, receiver.url, allow_private=True, merchant_allow_private=False), message_id)
    assert len(receiver.received) == 1


def test_without_an_endpoint_the_alert_goes_to_the_log_only(services, client, merchant, alert_log):
    svc = _with(services, None, allow_private=False)
    alert_id, message_id = _raise(services, client, merchant)
    assert _run(svc, message_id)
    assert json.loads(alert_log.getvalue())["alert_id"] == alert_id


def test_the_endpoint_settings_are_read_from_the_environment():
    from waybill.settings import load_settings

    settings = load_settings({"WAYBILL_ALERT_WEBHOOK_URL": "https://soc.example.com/alerts",
                              "WAYBILL_ALERT_WEBHOOK_ALLOW_PRIVATE": "1"})
    assert settings.alerts.webhook_url == "https://soc.example.com/alerts"
    assert settings.alerts.webhook_allow_private and not settings.webhook_allow_private
