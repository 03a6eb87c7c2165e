"""The alert API: the list (newest first, keyset pagination by id, filters, 422 naming the field) and resolving
(once: 409 ``alert_resolved``; unknown 404), both audited; the resolution is stored encrypted and shown nowhere.
And a suspension holds on every node: two apps built separately over one database."""

from __future__ import annotations

import json

from sqlalchemy import select

from tests.courier_api import bearer, login, make_staff
from waybill.alerts import review, store
from waybill.alerts.models import Alert
from waybill.models import AuditEvent
from waybill.permissions import Principal
from waybill.web.app import create_app

COURIER = Principal(kind="staff", id="usr_alertapi", role="courier", station="755-W012")
OTHER = Principal(kind="staff", id="usr_alertapi2", role="courier", station="010-W201")
RESOLUTION = "已电话核实：张伟13912345678本人操作"  # free text that names a person: must show nowhere


def _raise(services, principal, rule, **kw):
    with services.session_factory() as s:
        store.fire(s, principal, rule, **kw)
        s.commit()
        return s.scalars(select(Alert.id).where(Alert.rule == rule, Alert.actor == principal.actor)
                         .order_by(Alert.id.desc())).first()


def test_the_list_pages_newest_first_and_filters(client, services, officers):
    ids = [_raise(services, COURIER, "not_found_burst"), _raise(services, OTHER, "foreign_station"),
           _raise(services, COURIER, "pickup_code_failures", object_type="shipment", object_id="shp_x1")]
    _raise(services, COURIER, "not_found_burst")  # the same burst: a count, no new alert
    h = officers["auditor"]
    seen, cursor = [], None
    while True:
        r = client.get("/v1/alerts?limit=1" + (f"&cursor={cursor}" if cursor else ""), headers=h)
        assert r.status_code == 200, r.get_json()
        page = r.get_json()
        assert len(page["items"]) <= 1
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    mine = [i for i in seen if i["id"] in ids]
    assert [i["id"] for i in mine] == sorted(ids, reverse=True)  # newest first
    burst = next(i for i in mine if i["rule"] == "not_found_burst")
    assert {"id", "rule", "severity", "actor", "at", "count", "status"} <= set(burst)
    assert (burst["count"], burst["severity"], burst["actor"], burst["status"]) == (2, "warning", COURIER.actor,
                                                                                    "open")
    assert burst["at"].endswith("Z") and burst["at"] == burst["first_at"]
    pickup = next(i for i in mine if i["rule"] == "pickup_code_failures")
    assert (pickup["object_type"], pickup["object_id"]) == ("shipment", "shp_x1")
    only = client.get("/v1/alerts?rule=foreign_station", headers=h).get_json()["items"]
    assert [i["id"] for i in only if i["id"] in ids] == [ids[1]] and {i["rule"] for i in only} == {"foreign_station"}
    assert client.get("/v1/alerts?status=resolved", headers=h).get_json()["items"] == []
    with services.session_factory() as s:
        assert s.scalar(select(AuditEvent.seq).where(AuditEvent.action == "alerts.list",
                                                    AuditEvent.purpose == "status=* rule=foreign_station"))


def test_bad_query_values_answer_422_naming_the_field(client, officers):
    for query, field in (("status=closed", "status"), ("rule=no_such_rule", "rule"), ("limit=0", "limit"),
                         ("limit=abc", "limit"), ("limit=100000", "limit"), ("cursor=alr_nope", "cursor"),
                         ("cursor=shp_01ARZ3NDEKTSV4RRFFQ69G5FAV", "cursor"), ("sort=asc", "sort")):
        r = client.get(f"/v1/alerts?{query}", headers=officers["officer"])
        assert r.status_code == 422, (query, r.get_json())
        assert r.get_json()["error"]["field"] == field, query


def test_resolve_once_encrypted_audited_and_never_shown(client, services, officers):
    alert_id = _raise(services, COURIER, "scan_quota")
    url = f"/v1/alerts/{alert_id}/resolve"
    r = client.post(url, json={"resolution": RESOLUTION}, headers=officers["officer"])
    assert r.status_code == 200, r.get_json()
    done = r.get_json()
    assert (done["id"], done["status"], done["rule"]) == (alert_id, "resolved", "scan_quota")
    assert done["resolved_at"].endswith("Z") and done["resolved_by"].startswith("staff:usr_")
    again = client.post(url, json={"resolution": "再次处理"}, headers=officers["other"])
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "alert_resolved"
    for missing in ("alr_01ARZ3NDEKTSV4RRFFQ69G5FAV", "nothing"):
        r = client.post(f"/v1/alerts/{missing}/resolve", json={"resolution": "x"}, headers=officers["officer"])
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    for bad in ({}, {"resolution": ""}, {"resolution": "x" * 1001}, {"resolution": 5}, {"resolution": "a\x00b"},
                {"resolution": "ok", "extra": 1}):
        r = client.post(f"/v1/alerts/{_raise(services, OTHER, 'scan_quota')}/resolve", json=bad,
                        headers=officers["officer"])
        assert r.status_code == 422, (bad, r.get_json())
    listed = client.get("/v1/alerts?status=resolved", headers=officers["auditor"])
    assert [i["id"] for i in listed.get_json()["items"]] == [alert_id]
    with services.session_factory() as s:
        row = s.get(Alert, alert_id)
        assert RESOLUTION.encode() not in row.resolution_ct and b"13912345678" not in row.resolution_ct
        assert review.resolution_text(services.codec, row) == RESOLUTION
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "alerts.resolve")).all()
        assert [(e.object_id, e.actor) for e in events] == [(alert_id, done["resolved_by"])]
        audit_text = json.dumps([[str(v) for v in vars(e).values()] for e in s.scalars(select(AuditEvent))],
                                ensure_ascii=False)
    for text in (done, listed.get_json(), audit_text):
        assert "13912345678" not in json.dumps(text, ensure_ascii=False) and "张伟" not in json.dumps(
            text, ensure_ascii=False)


def test_an_auditor_reads_but_cannot_resolve(client, services, officers):
    alert_id = _raise(services, COURIER, "scan_quota")
    r = client.post(f"/v1/alerts/{alert_id}/resolve", json={"resolution": "看过"}, headers=officers["auditor"])
    assert r.status_code == 403
    with services.session_factory() as s:
        assert s.get(Alert, alert_id).status == "open"


def test_a_suspension_holds_on_every_node(fresh_env):
    """Two apps, each built on its own (its own Services, engine and session factory), over one database: a
    critical alert raised through the first makes the second answer 401 for the same token at once."""
    env = fresh_env()
    node_a, node_b = create_app(env.settings), create_app(env.settings)
    svc_a, svc_b = node_a.extensions["waybill"], node_b.extensions["waybill"]
    try:
        assert svc_a is not svc_b and svc_a.engine is not svc_b.engine
        new = make_staff(svc_a, "node_courier", "courier")
        a, b = node_a.test_client(), node_b.test_client()
        token = login(a, new).get_json()["access_token"]
        assert b.get("/v1/partners", headers=bearer(token)).status_code == 200
        assert a.get("/v1/partners", headers=bearer(token)).status_code == 200
        principal = Principal(kind="staff", id=new.user.id, role="courier", station=new.user.station)
        with svc_a.session_factory() as s:
            store.fire(s, principal, "canary", object_type="shipment", object_id="shp_canary")
            s.commit()
        r = b.get("/v1/partners", headers=bearer(token))
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthenticated"
        assert a.get("/v1/partners", headers=bearer(token)).status_code == 401
        assert login(b, new).status_code == 401  # no new session either
    finally:
        svc_a.engine.dispose()
        svc_b.engine.dispose()


def test_the_resolution_is_nowhere_in_plaintext_at_rest(fresh_env):
    from tests.waybill.test_privacy_at_rest import _raw_storage, _variants

    env = fresh_env()
    svc = env.services()
    client = env.app().test_client()
    officer = make_staff(svc, "rest_officer", "privacy_officer")
    headers = bearer(login(client, officer).get_json()["access_token"])
    alert_id = _raise(svc, COURIER, "scan_quota")
    r = client.post(f"/v1/alerts/{alert_id}/resolve", json={"resolution": RESOLUTION}, headers=headers)
    assert r.status_code == 200, r.get_json()
    with svc.session_factory() as s:
        assert review.resolution_text(svc.codec, s.get(Alert, alert_id)) == RESOLUTION  # it is stored
    raw = _raw_storage(env)
    assert alert_id.encode() in raw  # the search does see the alert rows
    for value in (RESOLUTION, "13912345678", "张伟"):
        for variant in _variants(value):
            assert variant not in raw, value


def test_nobody_resolves_an_alert_on_their_own_account(client, services, officers):
    """An officer whose own reads raised privacy_reads must not close it before anyone else reads it."""
    me = officers["users"]["officer"].user
    alert_id = _raise(services, Principal(kind="staff", id=me.id, role="privacy_officer"), "privacy_reads",
                      object_type="day", object_id="2026-01-01")
    url = f"/v1/alerts/{alert_id}/resolve"
    r = client.post(url, json={"resolution": "本人核实无误"}, headers=officers["officer"])
    assert r.status_code == 403, r.get_json()
    with services.session_factory() as s:
        assert s.get(Alert, alert_id).status == "open"
    r = client.post(url, json={"resolution": "另一位隐私官核实"}, headers=officers["other"])
    assert r.status_code == 200, r.get_json()
