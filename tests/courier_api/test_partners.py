"""Partners and disclosures: the register, locker and station deliveries that name a partner of the right kind with
a live agreement, the partner's pickup notice to the recipient, the disclosure record (privacy office's list, the
subject's access log and ``disclosed_to``), and forgetting the recipient's codes with their data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from courier_api.models import Disclosure, Partner, PickupCode
from tests.conftest import RECIPIENT
from tests.courier_api import make_partner, pickup_code, sent_codes
from tests.courier_api.last_mile_helpers import assign, database_dump, deliver, printed
from tests.courier_api.subjects_helpers import subject_session
from waybill import lifecycle
from waybill.crypto.subject_keys import day_of
from waybill.models import utcnow

GOOD = {"name": "丰巢智能柜（科技园）", "kind": "locker", "agreement_ref": "FC-2026/07",
        "agreement_expires": "2099-06-30"}


def _out(client: Any, merchant: Any, crew: Any, order: str) -> dict[str, Any]:
    shp, _ = printed(client, merchant, crew["sorter"], order)
    assert assign(client, crew["dispatcher"], shp["id"]).status_code == 201
    return shp


def test_admins_register_partners_and_bad_input_names_the_field(client: Any, field_crew: Any) -> None:
    r = client.post("/v1/partners", json=GOOD, headers=field_crew["admin"])
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["id"].startswith("ptn_") and body["active"] is True
    assert {k: body[k] for k in GOOD} == GOOD
    yesterday = (day_of(utcnow()) - timedelta(days=1)).isoformat()
    for change, field in ((({"kind": "shop"}), "kind"), ({"agreement_expires": "2026-02-30"}, "agreement_expires"),
                          ({"agreement_expires": "30.06.2099"}, "agreement_expires"),
                          ({"agreement_expires": yesterday}, "agreement_expires"), ({"name": ""}, "name"),
                          ({"name": "柜" * 36}, "name"), ({"agreement_ref": "a b"}, "agreement_ref"),
                          ({"extra": 1}, "extra")):
        r = client.post("/v1/partners", json={**GOOD, **change}, headers=field_crew["admin"])
        assert r.status_code == 422 and r.get_json()["error"]["field"] == field, (change, r.get_json())
    assert client.post("/v1/partners", json=GOOD, headers=field_crew["dispatcher"]).status_code == 403
    # Dispatchers and couriers list them (the handheld's partner select), optionally one kind.
    client.post("/v1/partners", json={**GOOD, "name": "菜鸟驿站", "kind": "station"}, headers=field_crew["admin"])
    listed = client.get("/v1/partners", headers=field_crew["courier"])
    assert listed.status_code == 200
    assert sorted(i["kind"] for i in listed.get_json()["items"]) == ["locker", "station"]
    assert set(listed.get_json()["items"][0]) == {"id", "name", "kind", "agreement_expires", "active"}
    lockers = client.get("/v1/partners?kind=locker", headers=field_crew["dispatcher"]).get_json()["items"]
    assert [i["id"] for i in lockers] == [body["id"]]
    for query, field in (("kind=shop", "kind"), ("colour=red", "colour")):
        r = client.get(f"/v1/partners?{query}", headers=field_crew["courier"])
        assert r.status_code == 422 and r.get_json()["error"]["field"] == field


def test_locker_delivery_records_a_disclosure_and_sends_the_partners_notice(
        client: Any, merchant: Any, services: Any, field_crew: Any, officers: Any) -> None:
    locker = make_partner(services, "locker", "丰巢智能柜")
    shp = _out(client, merchant, field_crew, "LM-P1")
    handover_code = pickup_code(services)
    r = deliver(client, field_crew["courier"], shp["id"], method="locker", partner_id=locker, locker_id="FC-0231")
    assert r.status_code == 200 and r.get_json()["status"] == "delivered"
    (notice_code,) = sent_codes(services, RECIPIENT["phone"], "partner_pickup_notice")
    with services.session_factory() as s:
        from waybill import messages

        text = next(m["text"] for m in messages.sent_to(s, services, RECIPIENT["phone"])
                    if m["template"] == "partner_pickup_notice")
        rows = s.scalars(select(PickupCode).where(PickupCode.shipment_id == shp["id"])).all()
        (disclosure,) = s.scalars(select(Disclosure).where(Disclosure.shipment_id == shp["id"])).all()
    assert "丰巢智能柜" in text and shp["waybill_no"][-4:] in text
    assert sorted(r.purpose for r in rows) == ["collection", "handover"] and all(r.superseded_at for r in rows
                                                                                  if r.purpose == "handover")
    assert disclosure.fields == ["recipient.phone"] and disclosure.basis == "contract"
    # The privacy office's list (privacy officers and auditors), filtered by partner, paged.
    for who in ("officer", "auditor"):
        page = client.get(f"/v1/privacy/disclosures?partner={locker}", headers=officers[who])
        assert page.status_code == 200
        (item,) = page.get_json()["items"]
        assert {k: item[k] for k in ("partner", "shipment_id", "fields", "basis")} == {
            "partner": locker, "shipment_id": shp["id"], "fields": ["recipient.phone"], "basis": "contract"}
        assert item["at"] and item["partner_name"] == "丰巢智能柜" and page.get_json()["next_cursor"] is None
        for value in (RECIPIENT["phone"], RECIPIENT["name"], handover_code, notice_code):
            assert value not in page.get_data(as_text=True)
    assert client.get("/v1/privacy/disclosures", headers=field_crew["courier"]).status_code == 403
    for code in (handover_code, notice_code):
        assert code not in database_dump(services) and code not in r.get_data(as_text=True)


def test_station_deliveries_check_kind_and_agreement(client: Any, merchant: Any, services: Any,
                                                     field_crew: Any, officers: Any) -> None:
    station = make_partner(services, "station", "菜鸟驿站（科技园）")
    franchise = make_partner(services, "franchise", "加盟网点南山店")
    locker = make_partner(services, "locker", "丰巢智能柜")
    authority = make_partner(services, "authority", "南山区邮政管理局")
    expired = make_partner(services, "station", "旧驿站")
    with services.session_factory() as s:
        s.execute(update(Partner).where(Partner.id == expired)
                  .values(agreement_expires=day_of(utcnow()) - timedelta(days=1)))
        s.commit()
    shp = _out(client, merchant, field_crew, "LM-P2")
    for partner_id in (locker, authority, "ptn_00000000000000000000000000", "nobody"):
        r = deliver(client, field_crew["courier"], shp["id"], method="station", partner_id=partner_id)
        assert r.status_code == 422 and r.get_json()["error"]["field"] == "partner_id", partner_id
    r = deliver(client, field_crew["courier"], shp["id"], method="locker", partner_id=station, locker_id="L-1")
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "partner_id"
    r = deliver(client, field_crew["courier"], shp["id"], method="station")
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "partner_id"
    r = deliver(client, field_crew["courier"], shp["id"], method="station", partner_id=expired)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "partner_agreement_expired"
    items = client.get("/v1/partners", headers=field_crew["courier"]).get_json()["items"]
    listed = {i["id"]: i["active"] for i in items}
    assert listed[expired] is False and listed[station] is True
    with services.session_factory() as s:
        assert s.scalars(select(Disclosure).where(Disclosure.shipment_id == shp["id"])).all() == []
    # Another courier cannot name a partner for it: the same 404 as any foreign shipment.
    assert deliver(client, field_crew["courier2"], shp["id"], method="station",
                   partner_id=station).status_code == 404
    assert deliver(client, field_crew["courier"], shp["id"], method="station", partner_id=station).status_code == 200
    # A franchise outlet may run a station.
    other = _out(client, merchant, field_crew, "LM-P3")
    assert deliver(client, field_crew["courier"], other["id"], method="station",
                   partner_id=franchise).status_code == 200
    page = client.get("/v1/privacy/disclosures?limit=1", headers=officers["officer"]).get_json()
    assert [i["shipment_id"] for i in page["items"]] == [other["id"]] and page["next_cursor"]
    rest = client.get(f"/v1/privacy/disclosures?limit=1&cursor={page['next_cursor']}",
                      headers=officers["officer"]).get_json()
    assert [i["shipment_id"] for i in rest["items"]] == [shp["id"]] and rest["next_cursor"] is None
    assert rest["items"][0]["fields"] == ["recipient.name", "recipient.phone"]
    for query, field in (("limit=0", "limit"), ("cursor=x", "cursor"), ("partner=x", "partner"), ("q=1", "q")):
        r = client.get(f"/v1/privacy/disclosures?{query}", headers=officers["auditor"])
        assert r.status_code == 422 and r.get_json()["error"]["field"] == field


def test_the_recipient_sees_the_disclosure_and_forgetting_removes_the_codes(
        client: Any, merchant: Any, services: Any, field_crew: Any) -> None:
    station = make_partner(services, "station", "菜鸟驿站（科技园）")
    shp = _out(client, merchant, field_crew, "LM-P4")
    assert deliver(client, field_crew["courier"], shp["id"], method="station", partner_id=station).status_code == 200
    subject = subject_session(client, services, shp["waybill_no"], RECIPIENT["phone"])
    headers = {"Authorization": f"Bearer {subject['access_token']}"}
    log = client.get("/v1/subject/access-log", headers=headers).get_json()["items"]
    (item,) = [i for i in log if i["action"] == "partner.disclose"]
    assert item["partner"] == "菜鸟驿站（科技园）" and item["partner_kind"] == "station"
    assert item["fields"] == ["recipient.name", "recipient.phone"] and item["purpose"] == "contract" and item["at"]
    assert item["role"] == "courier" and "ptn_" not in str(item)
    data = client.get("/v1/subject/data", headers=headers).get_json()
    (told,) = [d for d in data["disclosed_to"] if d["kind"] == "partner"]
    assert told["recipient"] == "菜鸟驿站（科技园）" and told["partner_kind"] == "station"
    assert told["fields"] == ["recipient.name", "recipient.phone"] and told["last_at"]
    assert not [d for d in data["disclosed_to"] if d["kind"] == "role" and d["recipient"] == "courier"
                and "recipient.name" in d["fields"]]
    # Destroying the recipient's data deletes the codes; the disclosure record (ids, field names) stays.
    with services.session_factory() as s:
        lifecycle.remove_attachments(s, [shp["id"]], "recipient")
        s.commit()
        assert s.scalars(select(PickupCode).where(PickupCode.shipment_id == shp["id"])).all() == []
        assert len(s.scalars(select(Disclosure).where(Disclosure.shipment_id == shp["id"])).all()) == 1
