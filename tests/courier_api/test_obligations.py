"""Staff obligations as gates (issue 14 part 6): training older than WAYBILL_TRAINING_VALID_DAYS refuses personal
data with 403 obligations_lapsed before any object lookup, audited, until `waybill users attest` renews it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from courier_api import obligations
from courier_api.models import StaffUser
from tests.conftest import run, shipment_body
from tests.courier_api.last_mile_helpers import assign, printed
from tests.courier_api.test_privacy_requests import _filed_and_approved
from waybill.ids import new_id
from waybill.models import AuditEvent
from waybill.permissions import PERSONAL_DATA_PERMISSIONS, PERSONAL_DATA_ROLES, SYSTEM, Permission
from waybill.settings import SettingsError, load_settings


def _age_training(services, username: str, days: int) -> None:
    with services.session_factory() as s:
        s.execute(update(StaffUser).where(StaffUser.username == username).values(
            training_attested_at=datetime.now(UTC) - timedelta(days=days)))
        s.commit()


def _attest(services, username: str, ref: str | None = "BG-2026-0042") -> obligations.Obligations:
    with services.session_factory() as s:
        done = obligations.attest(s, SYSTEM, username, background_check_ref=ref,
                                  valid_days=services.settings.training_valid_days)
        s.commit()
    return done


def _lapsed(r) -> bool:
    return r.status_code == 403 and r.get_json()["error"]["code"] == "obligations_lapsed"


def _denials(services, username: str) -> list[AuditEvent]:
    with services.session_factory() as s:
        uid = s.scalars(select(StaffUser.id).where(StaffUser.username == username)).one()
        return list(s.scalars(select(AuditEvent).where(AuditEvent.actor == f"staff:{uid}",
                                                       AuditEvent.outcome == "obligations_lapsed")))


def test_a_lapsed_courier_is_refused_scan_and_call_even_for_unknown_ids_until_attested(client, services, merchant,
                                                                                      field_crew):
    shp, qr = printed(client, merchant, field_crew["sorter"])
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    courier = field_crew["courier"]
    _age_training(services, "lm_courier", services.settings.training_valid_days + 1)

    for r in (client.post("/v1/courier/scan", json={"token": qr}, headers=courier),
              client.post("/v1/courier/scan", json={"token": "A" * 32}, headers=courier),
              client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=courier),
              client.post(f"/v1/courier/shipments/{new_id('shp')}/call", headers=courier),
              client.post(f"/v1/courier/shipments/{shp['id']}/deliver", json={"method": "handover",
                                                                                "pickup_code": "000000"},
                          headers=courier)):
        assert _lapsed(r), r.get_json()
        assert "个人信息" in r.get_json()["error"]["message"]
    # Work without personal data goes on; the refusals are in the audit log, durable.
    assert client.get("/v1/partners", headers=courier).status_code == 200
    assert len(_denials(services, "lm_courier")) == 5
    # Another courier of the station (trained) is not affected.
    assert client.post("/v1/courier/scan", json={"token": "A" * 32}, headers=field_crew["courier2"]).status_code == 404

    done = _attest(services, "lm_courier")
    assert done.training_valid_until is not None and done.training_valid_until > datetime.now(UTC)
    r = client.post("/v1/courier/scan", json={"token": qr}, headers=courier)  # the same token, admitted again
    assert r.status_code == 200, r.get_json()
    assert client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=courier).status_code == 200


def test_a_lapsed_privacy_officer_is_refused_reads_even_for_unknown_requests_until_attested(client, services,
                                                                                            merchant, officers):
    r = client.post("/v1/shipments", json=shipment_body("OB-1"), headers=merchant.headers)
    req = _filed_and_approved(client, officers, r.get_json()["id"])
    _age_training(services, "po_one", 400)
    for rid in (req["id"], new_id("pdr")):
        got = client.get(f"/v1/privacy/requests/{rid}/personal-data", headers=officers["officer"])
        assert _lapsed(got), got.get_json()
    filed = client.post("/v1/privacy/requests", json={"shipment_id": r.get_json()["id"], "purpose": "complaint",
                                                      "reference": "CASE-2026-0001", "fields": ["recipient.name"]},
                        headers=officers["officer"])
    assert _lapsed(filed)
    assert _lapsed(client.get("/v1/privacy/subject-requests", headers=officers["officer"]))
    # The auditor's work (no personal data) is not gated; the refusals are in the trail.
    assert client.get("/v1/audit/events?action=access.denied", headers=officers["auditor"]).status_code == 200
    assert len(_denials(services, "po_one")) == 4
    _attest(services, "po_one")
    got = client.get(f"/v1/privacy/requests/{req['id']}/personal-data", headers=officers["officer"])
    assert got.status_code == 200, got.get_json()


def test_lapse_is_measured_against_the_valid_days():
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert not obligations.lapsed(now - timedelta(days=364), 365, now)
    assert obligations.lapsed(now - timedelta(days=365), 365, now)
    assert obligations.lapsed(None, 365, now)


def test_the_gate_covers_the_roles_that_reach_personal_data():
    assert {Permission.COURIER_SCAN, Permission.COURIER_CALL, Permission.PERSONAL_DATA_REQUEST} <= \
        PERSONAL_DATA_PERMISSIONS
    assert {"courier", "privacy_officer"} == PERSONAL_DATA_ROLES


@pytest.mark.parametrize("value", ["0", "-1", "abc", "99999"])
def test_training_valid_days_is_validated(tmp_path, value):
    with pytest.raises(SettingsError, match="WAYBILL_TRAINING_VALID_DAYS"):
        load_settings({"WAYBILL_DATA_DIR": str(tmp_path), "WAYBILL_TRAINING_VALID_DAYS": value})
    assert load_settings({"WAYBILL_DATA_DIR": str(tmp_path)}).training_valid_days == 365


def test_users_create_records_the_attestation_and_users_attest_renews_it(cli_env):
    created = json.loads(run(["users", "create", "ob_courier", "--role", "courier", "--station", "755-W012"],
                             cli_env).stdout)
    assert created["obligations"]["training_attested_at"] is not None
    assert created["obligations"]["confidentiality_attested_at"] is not None
    assert created["obligations"]["source"] == "create" and created["obligations"]["background_check_required"]
    refused = run(["users", "attest", "ob_courier"], cli_env, check=False)  # a courier needs a background check
    assert refused.returncode == 2 and json.loads(refused.stdout)["error"]["field"] == "background_check"
    bad = run(["users", "attest", "ob_courier", "--background-check", "13812345678"], cli_env, check=False)
    assert bad.returncode == 2 and "13812345678" not in bad.stdout
    done = json.loads(run(["users", "attest", "ob_courier", "--background-check", "BG-2026-0042"], cli_env).stdout)
    assert done["ok"] and done["source"] == "attest" and done["background_check_ref"] == "BG-2026-0042"
    assert done["training_attested_at"] >= created["obligations"]["training_attested_at"]
    # An auditor reads no personal data: attested without a background check.
    run(["users", "create", "ob_auditor", "--role", "auditor"], cli_env)
    assert json.loads(run(["users", "attest", "ob_auditor"], cli_env).stdout)["background_check_required"] is False
    missing = run(["users", "attest", "nobody"], cli_env, check=False)
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"]["code"] == "not_found"
