"""Red team of the oversight routes: odd input never answers 5xx (incidents' timestamps at the edges of the
calendar, huge shipment lists, report months, alert filters)."""

from __future__ import annotations

import pytest


def _incident(scope, **extra):
    body = {"title": "t", "kind": "leak", "severity": "general", "detected_at": "2026-01-01T00:00:00Z",
            "scope": scope}
    body.update(extra)
    return body


WINDOW_EDGES = [
    {"from": "0001-01-01T00:00:00+01:00", "to": "2026-01-01T00:00:00Z"},
    {"from": "2026-01-01T00:00:00Z", "to": "9999-12-31T23:59:59-01:00"},
    {"from": "2026-01-01T00:00:00+23:59", "to": "2026-01-02T00:00:00-23:59"},
    {"from": "2026-01-01T00:00:00+24:00", "to": "2026-01-02T00:00:00Z"},
    {"from": "2026-02-30T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
    {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
    {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"},
]


@pytest.mark.parametrize("scope", WINDOW_EDGES)
def test_incident_window_edges_answer_4xx_or_201(client, officers, scope):
    r = client.post("/v1/incidents", json=_incident(scope), headers=officers["officer"])
    assert r.status_code in (201, 422), (r.status_code, r.get_data(as_text=True)[:300])


@pytest.mark.parametrize("detected", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                      "0001-01-01T03:00:00+05:00", "2026-01-01T00:00:00+99:00"])
def test_incident_detected_at_edges(client, officers, detected):
    body = _incident({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}, detected_at=detected,
                     severity="major")
    r = client.post("/v1/incidents", json=body, headers=officers["officer"])
    assert r.status_code in (201, 422), (r.status_code, r.get_data(as_text=True)[:300])


def test_incident_huge_shipment_list(client, officers):
    ids = ["shp_" + "0" * 26] * 5000
    r = client.post("/v1/incidents", json=_incident({"shipment_ids": ids}), headers=officers["officer"])
    assert r.status_code == 422


@pytest.mark.parametrize("month", ["2000-01", "2099-12", "2026-00", "2026-13", "abcd-ef", "2026-1", "%E2%80%8B"])
@pytest.mark.parametrize("fmt", ["json", "pdf"])
def test_report_months(client, officers, month, fmt):
    r = client.get(f"/v1/privacy/reports/{month}?format={fmt}", headers=officers["auditor"])
    assert r.status_code in (200, 422, 404), (r.status_code, r.get_data(as_text=True)[:300])


@pytest.mark.parametrize("query", ["status=x", "rule=x", "limit=0", "limit=99999999", "cursor=x", "limit=%EF%BC%91",
                                   "cursor=alr_" + "Z" * 26, "status=open&status=resolved", "foo=1"])
def test_alert_list_odd_queries(client, officers, query):
    r = client.get(f"/v1/alerts?{query}", headers=officers["auditor"])
    assert r.status_code in (200, 422), (r.status_code, r.get_data(as_text=True)[:300])


@pytest.mark.parametrize("body", [None, [], {"resolution": 5}, {"resolution": "x" * 5000}, {"resolution": "\x00"}])
def test_resolve_odd_bodies(client, officers, body):
    r = client.post("/v1/alerts/alr_" + "0" * 26 + "/resolve", json=body, headers=officers["officer"])
    assert r.status_code in (404, 422, 400), (r.status_code, r.get_data(as_text=True)[:300])


ODD_TEXT = "😀𠀀右到左\U0010fffd\u0301" + "长" * 180


def test_incident_with_odd_text_renders_its_report(client, officers):
    texts = {k: ODD_TEXT for k in ("found_by", "location", "system")}
    texts.update({k: ODD_TEXT * 5 for k in ("cause", "possible_harm", "remedies", "connected_effects")})
    body = _incident({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}, title=ODD_TEXT, **texts)
    r = client.post("/v1/incidents", json=body, headers=officers["officer"])
    assert r.status_code == 201, r.get_json()
    iid = r.get_json()["id"]
    r = client.post(f"/v1/incidents/{iid}/timeline", json={"action": "note", "note": ODD_TEXT * 5},
                    headers=officers["officer"])
    assert r.status_code == 201, r.get_json()
    for fmt in ("json", "pdf"):
        r = client.get(f"/v1/incidents/{iid}/report?format={fmt}", headers=officers["officer"])
        assert r.status_code == 200, r.get_data(as_text=True)[:300]
    assert client.get(f"/v1/incidents/{iid}", headers=officers["auditor"]).status_code == 200
    assert client.post(f"/v1/incidents/{iid}/notify", headers=officers["officer"]).status_code == 200


@pytest.mark.parametrize("path", ["/v1/incidents/inc_%00", "/v1/incidents/" + "x" * 5000, "/v1/alerts/%FF/resolve"])
def test_odd_ids(client, officers, path):
    method = client.post if path.endswith("resolve") else client.get
    r = method(path, headers=officers["officer"], json={"resolution": "x"})
    assert r.status_code in (404, 422), (r.status_code, r.get_data(as_text=True)[:300])
