"""Notice and consent at collection: the privacy notice, consents recorded per shipment, withdrawal per party."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.conftest import shipment_body
from waybill import consent
from waybill.consent import PrivacyNotice
from waybill.errors import ValidationFailed
from waybill.models import Shipment
from waybill.settings import SettingsError, load_settings
from waybill.uow import unit_of_work

NOTICE = PrivacyNotice.load()


def _consents(*purposes: str, version: str | None = None) -> dict[str, object]:
    return {"notice_version": version or NOTICE.version, "purposes": list(purposes)}


def _shipment(services, sid: str) -> Shipment:
    with services.session_factory() as s:
        row = s.get(Shipment, sid)
        s.expunge(row)
        return row


def test_privacy_notice_is_public_and_documented(client):
    resp = client.get("/v1/privacy-notice")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["version"] == NOTICE.version and "个人信息" in doc["text"]
    ids = {p["id"]: p["required"] for p in doc["purposes"]}
    assert ids == {"fulfilment": True, "delivery_sms": False, "service_survey": False}
    assert all(p["name"] for p in doc["purposes"])
    paths = client.get("/openapi.json").get_json()["paths"]
    assert paths["/v1/privacy-notice"]["get"]["security"] == []
    assert "consents" in client.get("/openapi.json").get_json()["components"]["schemas"]["ShipmentIn"]["properties"]


def test_shipments_record_the_notice_version_and_optional_purposes(client, merchant, services):
    body = shipment_body(consents=_consents("delivery_sms", "fulfilment", "delivery_sms"))
    resp = client.post("/v1/shipments", json=body, headers=merchant.headers)
    assert resp.status_code == 201, resp.get_json()
    out = resp.get_json()
    assert out["consents"] == {"notice_version": NOTICE.version, "purposes": ["delivery_sms"]}
    row = _shipment(services, out["id"])
    assert row.notice_version == NOTICE.version and row.consent_purposes == ["delivery_sms"]
    assert consent.allows(row, "recipient", "delivery_sms") and consent.allows(row, "sender", "fulfilment")
    assert not consent.allows(row, "recipient", "service_survey")
    assert client.get(f"/v1/shipments/{out['id']}", headers=merchant.headers).get_json()["consents"] == out["consents"]


def test_without_consents_the_current_version_applies_with_required_purposes_only(client, merchant, services):
    out = client.post("/v1/shipments", json=shipment_body(), headers=merchant.headers).get_json()
    assert out["consents"] == {"notice_version": NOTICE.version, "purposes": []}
    row = _shipment(services, out["id"])
    assert [p["id"] for p in consent.purposes_of(row, "recipient") if p["active"]] == ["fulfilment"]


@pytest.mark.parametrize(("consents", "field"), [
    (_consents(version="1999-01-01"), "consents.notice_version"),
    (_consents("delivery_sms", "marketing"), "consents.purposes[1]"),
    ({"purposes": ["delivery_sms"]}, "consents.notice_version"),
    ({"notice_version": NOTICE.version, "purposes": "delivery_sms"}, "consents.purposes"),
    ({"notice_version": NOTICE.version, "extra": 1}, "consents.extra"),
])
def test_bad_consents_answer_422_naming_the_field(client, merchant, consents, field):
    resp = client.post("/v1/shipments", json=shipment_body(consents=consents), headers=merchant.headers)
    assert resp.status_code == 422
    assert resp.get_json()["error"]["field"] == field


def test_batch_items_take_consents_each_standing_alone(client, merchant):
    items = [shipment_body("B-1", consents=_consents("service_survey")),
             shipment_body("B-2", consents=_consents("nope")), shipment_body("B-3")]
    results = client.post("/v1/shipments/batch", json={"shipments": items}, headers=merchant.headers).get_json()
    first, second, third = results["results"]
    assert first["shipment"]["consents"]["purposes"] == ["service_survey"]
    assert second["status"] == "error" and second["error"]["field"] == "consents.purposes[0]"
    assert third["shipment"]["consents"]["purposes"] == []


def test_idempotent_replay_still_matches_with_and_without_consents(client, merchant):
    headers = {**merchant.headers, "Idempotency-Key": "k-1"}
    first = client.post("/v1/shipments", json=shipment_body("I-1"), headers=headers)
    again = client.post("/v1/shipments", json=shipment_body("I-1"), headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    changed = client.post("/v1/shipments", json=shipment_body("I-1", consents=_consents("delivery_sms")),
                          headers=headers)
    assert changed.status_code == 409


def test_withdrawal_is_per_party_and_required_purposes_stay(client, merchant, services):
    sid = client.post("/v1/shipments", json=shipment_body(consents=_consents("delivery_sms", "service_survey")),
                      headers=merchant.headers).get_json()["id"]
    with unit_of_work(services.session_factory) as tx:
        row = tx.session.get(Shipment, sid)
        assert consent.withdraw(tx.session, row, "recipient", ["delivery_sms"]) == ["delivery_sms"]
        assert consent.withdraw(tx.session, row, "recipient", ["delivery_sms"]) == []  # again: nothing changes
        with pytest.raises(ValidationFailed) as required:
            consent.withdraw(tx.session, row, "recipient", ["fulfilment"])
        assert required.value.field == "purposes"
        with pytest.raises(ValidationFailed):
            consent.withdraw(tx.session, row, "recipient", ["marketing"])
    row = _shipment(services, sid)
    assert not consent.allows(row, "recipient", "delivery_sms")
    assert consent.allows(row, "sender", "delivery_sms")  # the sender did not withdraw
    assert consent.allows(row, "recipient", "fulfilment")
    assert set(row.consent_withdrawn["recipient"]) == {"delivery_sms"}
    listed = {p["id"]: p for p in consent.purposes_of(row, "recipient")}
    assert listed["delivery_sms"] == {"id": "delivery_sms", "name": NOTICE.purpose("delivery_sms").name,
                                      "required": False, "active": False}
    assert listed["service_survey"]["active"] and listed["fulfilment"]["active"]
    with unit_of_work(services.session_factory) as tx:
        row = tx.session.get(Shipment, sid)
        assert consent.withdraw(tx.session, row, "sender", None) == ["delivery_sms", "service_survey"]
    row = _shipment(services, sid)
    assert [p["id"] for p in consent.purposes_of(row, "sender") if p["active"]] == ["fulfilment"]
    with pytest.raises(ValueError):
        consent.allows(row, "courier", "fulfilment")
    with pytest.raises(ValueError):
        consent.allows(row, "sender", "delivery_smss")


def _notice_doc(**changes):
    doc = {"version": "v2", "text": "告知正文", "purposes": [{"id": "fulfilment", "name": "寄递", "required": True},
                                                            {"id": "delivery_sms", "name": "短信", "required": False}]}
    doc.update(changes)
    return doc


def test_the_notice_file_can_be_replaced_and_is_checked_at_start(tmp_path, base_env, services, client, merchant):
    path = tmp_path / "notice.json"
    path.write_text(json.dumps(_notice_doc()), encoding="utf-8")
    settings = load_settings({"WAYBILL_PRIVACY_NOTICE_FILE": str(path)})
    assert PrivacyNotice.load(settings.privacy_notice_file).version == "v2"
    svc = dataclasses.replace(services, privacy_notice=PrivacyNotice.load(path))
    from waybill.web.app import create_app

    other = create_app(base_env.settings, services_override=svc).test_client()
    assert other.get("/v1/privacy-notice").get_json()["version"] == "v2"
    resp = other.post("/v1/shipments", json=shipment_body(consents=_consents(version="v2")), headers=merchant.headers)
    assert resp.status_code == 201 and resp.get_json()["consents"]["notice_version"] == "v2"
    for bad in (_notice_doc(version="bad version!"), _notice_doc(purposes=[]),
                _notice_doc(purposes=[{"id": "x_y", "name": "n", "required": False}]),
                _notice_doc(purposes=[{"id": "a_b", "name": "n", "required": True}] * 2), ["not", "an object"]):
        path.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(SettingsError, match="WAYBILL_PRIVACY_NOTICE_FILE"):
            load_settings({"WAYBILL_PRIVACY_NOTICE_FILE": str(path)})
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings({"WAYBILL_PRIVACY_NOTICE_FILE": str(tmp_path / "missing.json")})
