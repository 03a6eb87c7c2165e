"""After destruction: merchants see de-identified data, privacy officers 410 ``destroyed``, nothing answers 5xx."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import RECIPIENT, SENDER, shipment_body
from tests.courier_api import bearer, login, make_staff
from waybill import retention
from waybill.models import utcnow
from waybill.permissions import SYSTEM


def test_every_path_to_a_destroyed_shipment_answers_without_a_5xx(client, services, merchant, officers):
    shp = client.post("/v1/shipments", json=shipment_body("GONE-1"), headers=merchant.headers).get_json()
    sid = shp["id"]
    assert client.post(f"/v1/shipments/{sid}/cancel", headers=merchant.headers).status_code == 200
    # An officer's request filed and approved before the run: reading it afterwards is 410.
    req = client.post("/v1/privacy/requests", json={"shipment_id": sid, "purpose": "complaint",
                                                     "reference": "CASE-2026-0042", "fields": ["recipient.phone"]},
                      headers=officers["officer"]).get_json()
    assert client.post(f"/v1/privacy/requests/{req['id']}/approve", headers=officers["other"]).status_code == 200
    result = retention.run(services, SYSTEM, now=utcnow() + timedelta(days=services.settings.retention_days + 2))
    assert result.destroyed >= 1

    sorter = make_staff(services, "gone_sorter", "sorter", "755-W012")
    dispatcher = make_staff(services, "gone_disp", "dispatcher", "755-W012")
    h_sorter = bearer(login(client, sorter).get_json()["access_token"])
    h_disp = bearer(login(client, dispatcher).get_json()["access_token"])
    answers = {
        "get": client.get(f"/v1/shipments/{sid}", headers=merchant.headers),
        "list": client.get("/v1/shipments?limit=50", headers=merchant.headers),
        "search": client.post("/v1/shipments/search", json={"recipient_phone": RECIPIENT["phone"]},
                              headers=merchant.headers),
        "cancel": client.post(f"/v1/shipments/{sid}/cancel", headers=merchant.headers),
        "label": client.get(f"/v1/shipments/{sid}/label?format=zpl", headers=merchant.headers),
        "sorter_label": client.get(f"/v1/shipments/{sid}/label?format=pdf", headers=h_sorter),
        "reprint": client.post(f"/v1/shipments/{sid}/label/reprint", json={"reason": "damaged", "format": "zpl"},
                               headers=merchant.headers),
        "print_job": client.post("/v1/print-jobs", json={"shipment_ids": [sid], "format": "zpl"}, headers=h_sorter),
        "assign": client.post("/v1/dispatch/assignments", json={"shipment_id": sid, "courier": "nobody"},
                              headers=h_disp),
        "read": client.get(f"/v1/privacy/requests/{req['id']}/personal-data", headers=officers["officer"]),
        "file": client.post("/v1/privacy/requests", json={"shipment_id": sid, "purpose": "complaint",
                                                          "reference": "CASE-2026-0043", "fields": ["sender.name"]},
                            headers=officers["officer"]),
        "challenge": client.post("/v1/subject/challenge", json={"waybill_no": shp["waybill_no"],
                                                                "phone": RECIPIENT["phone"]}),
    }
    for name, r in answers.items():
        assert r.status_code < 500, (name, r.status_code, r.get_data(as_text=True))
        assert r.is_json or r.status_code < 300, name
        for value in (RECIPIENT["name"], RECIPIENT["phone"], SENDER["name"], RECIPIENT["address"]):
            assert value not in r.get_data(as_text=True), name
    doc = answers["get"].get_json()
    assert doc["personal_data"] == "destroyed" and doc["sender"] is None and doc["recipient"] is None
    assert doc["waybill_no"] == shp["waybill_no"] and doc["status"] == "cancelled"
    assert answers["read"].status_code == 410 and answers["read"].get_json()["error"]["code"] == "destroyed"
    assert answers["file"].status_code == 410 and answers["file"].get_json()["error"]["code"] == "destroyed"
    assert answers["search"].get_json()["items"] == []
    assert answers["challenge"].status_code == 202
    destroyed = client.get("/v1/privacy/destructions", headers=officers["auditor"]).get_json()["items"]
    assert destroyed and destroyed[0]["reason"] == "retention" and destroyed[0]["shipments"] >= 1
