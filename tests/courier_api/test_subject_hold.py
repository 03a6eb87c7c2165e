"""A subject's request still ``received`` holds the shipment from retention (real commits: retention runs in its
own transactions); once it is decided, retention destroys the data as for any other shipment."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.conftest import make_merchant, shipment_body
from tests.courier_api import bearer, login, make_staff
from tests.courier_api.subjects_helpers import direct_token
from waybill import retention
from waybill.models import utcnow
from waybill.permissions import SYSTEM
from waybill.web.app import create_app


def test_a_received_request_holds_the_shipment_until_decided(fresh_env: Any) -> None:
    env = fresh_env(retention_days=30)
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    merchant = make_merchant(svc)
    shp = client.post("/v1/shipments", json=shipment_body("HOLD-1"), headers=merchant.headers).get_json()
    assert client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers).status_code == 200
    token = direct_token(svc, shp["id"], "recipient")
    rid = client.post("/v1/subject/requests", headers=token, json={"type": "complaint", "text": "未收到退款"}
                      ).get_json()["id"]
    run_at = utcnow() + timedelta(days=40)
    assert retention.run(svc, SYSTEM, now=run_at).destroyed == 0
    assert client.get("/v1/subject/data", headers=token).get_json()["personal_data_status"] == "available"
    officer = bearer(login(client, make_staff(svc, "hold_po", "privacy_officer")).get_json()["access_token"])
    r = client.post(f"/v1/privacy/subject-requests/{rid}/decision", headers=officer,
                    json={"decision": "complete", "reason": "已退款"})
    assert r.status_code == 200
    assert retention.run(svc, SYSTEM, now=run_at).destroyed == 1
    assert client.get("/v1/subject/data", headers=token).get_json()["personal_data_status"] == "destroyed"
    svc.engine.dispose()
