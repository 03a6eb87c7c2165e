"""Sorting-centre scans (POST /v1/sorting/scans): scope, statuses, per-item results, the return to the sender."""

from __future__ import annotations

import json
import typing

import pytest
from sqlalchemy import select

from courier_api import attempts, delivery, sorting
from courier_api.deps import delivery_deps
from courier_api.movement_views import SortingScanResult
from tests.conftest import RECIPIENT, SENDER
from tests.courier_api import make_partner
from tests.courier_api.movement_helpers import (
    HUB,
    ORIGIN,
    STATION,
    events_of,
    live_tokens,
    make_crew,
    make_shipments,
    scan,
    status_of,
)
from waybill import lifecycle
from waybill.errors import InDelivery, PermissionDenied, ValidationFailed
from waybill.models import AuditEvent, Shipment
from waybill.permissions import SYSTEM, Principal
from waybill.schemas import ShipmentStatus
from waybill.waybill_no import new_waybill_no

PLAIN = [RECIPIENT["name"], RECIPIENT["phone"], RECIPIENT["address"], SENDER["name"], SENDER["phone"],
         SENDER["address"]]


@pytest.fixture
def crew(client, services):
    return make_crew(client, services)


def test_first_scan_moves_printed_to_in_transit_and_every_scan_is_an_event(client, services, merchant, crew):
    (shp,) = make_shipments(services, merchant, 1)
    r = scan(client, crew.headers["sorter"], [shp.waybill_no], "arrival")
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"results": [{"waybill_no": shp.waybill_no, "status": "in_transit"}]}
    r = scan(client, crew.headers["sorter"], [shp.waybill_no], "departure")
    assert r.get_json()["results"] == [{"waybill_no": shp.waybill_no, "status": "in_transit"}]
    events = events_of(services, shp.id)
    assert [(e.seq, e.kind, e.status, e.event, e.station) for e in events] == [
        (1, "status", "created", None, ORIGIN),
        (2, "status", "printed", None, None),
        (3, "status", "in_transit", None, STATION),  # the move first...
        (4, "scan", "in_transit", "arrival", STATION),  # ...then the scan that caused it
        (5, "scan", "in_transit", "departure", STATION),
    ]
    assert events[2].previous_status == "printed"
    assert status_of(services, shp.id) == "in_transit"


def test_sorters_scope_station_hub_and_elsewhere(client, services, merchant, crew):
    a, b, c = make_shipments(services, merchant, 3)
    # The origin's sorter and the destination hub's act for it; a sorter of another station does not.
    ok = scan(client, crew.headers["origin_sorter"], [a.waybill_no]).get_json()["results"]
    assert ok == [{"waybill_no": a.waybill_no, "status": "in_transit"}]
    hub = scan(client, crew.headers["hub_sorter"], [b.waybill_no]).get_json()["results"]
    assert hub == [{"waybill_no": b.waybill_no, "status": "in_transit"}]
    assert events_of(services, b.id)[-1].station == HUB
    far = scan(client, crew.headers["far_sorter"], [c.waybill_no])
    nobody = scan(client, crew.headers["far_sorter"], [new_waybill_no()])
    assert far.status_code == nobody.status_code == 200
    (item,) = far.get_json()["results"]
    assert item["error"]["code"] == "not_found" and "status" not in item
    # Not theirs looks exactly like a number nobody issued (but the number differs, so compare the rest).
    assert json.dumps(item["error"]) == json.dumps(nobody.get_json()["results"][0]["error"])
    assert status_of(services, c.id) == "printed" and len(events_of(services, c.id)) == 2
    with services.session_factory() as s:  # the probe left a trace for the auditors
        denied = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "sorting.scan",
                                                         AuditEvent.object_id == c.id)))
    assert [e.outcome for e in denied] == ["denied"]


def test_statuses_a_scan_makes_no_sense_for(client, services, merchant, crew):
    (unprinted,) = make_shipments(services, merchant, 1, prefix="U", printed=False)
    (sandbox,) = make_shipments(services, merchant, 1, prefix="T", printed=False, test_mode=True)
    cancelled, out, delivered = make_shipments(services, merchant, 3, prefix="S")
    assert client.post(f"/v1/shipments/{cancelled.id}/cancel", headers=merchant.headers).status_code == 200
    for shp in (out, delivered):
        with services.session_factory() as s:
            delivery.assign(s, crew.principals["dispatcher"], shp.id, "mv_courier", provider=services.provider,
                            pickup=delivery_deps(services).pickup)
            s.commit()
    with services.session_factory() as s:
        delivery.deliver(s, delivery_deps(services), crew.principals["courier"], delivered.id, "station",
                         partner_id=make_partner(services))
        s.commit()
    numbers = [unprinted.waybill_no, sandbox.waybill_no, cancelled.waybill_no, out.waybill_no,
               delivered.waybill_no]
    results = scan(client, crew.headers["sorter"], numbers).get_json()["results"]
    assert [(r["waybill_no"], r["error"]["code"]) for r in results] == [
        (unprinted.waybill_no, "invalid_status"), (sandbox.waybill_no, "test_mode"),
        (cancelled.waybill_no, "invalid_status"), (out.waybill_no, "invalid_status"),
        (delivered.waybill_no, "invalid_status")]
    assert [status_of(services, s.id) for s in (unprinted, cancelled, out, delivered)] == [
        "created", "cancelled", "out_for_delivery", "delivered"]


def test_a_batch_of_1000_with_mixed_errors_answers_each_in_input_order(client, services, merchant,
                                                                        other_merchant, crew):
    mine = make_shipments(services, merchant, 990)
    (theirs_far,) = make_shipments(services, other_merchant, 1, prefix="O", printed=False)
    numbers = [s.waybill_no for s in mine]
    # Interleaved: unknown numbers, garbage, an unprinted parcel, and a duplicate (scanned twice, two events).
    numbers[10:10] = [new_waybill_no(), "not-a-waybill-number", theirs_far.waybill_no]
    numbers[500:500] = [new_waybill_no() for _ in range(5)]
    numbers.append(mine[0].waybill_no)
    numbers.append("  " + new_waybill_no())
    assert len(numbers) == 1000
    r = scan(client, crew.headers["sorter"], numbers)
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    results = r.get_json()["results"]
    assert [x["waybill_no"] for x in results[:-1]] == numbers[:-1]  # input order (the last one was stripped)
    codes = [x["error"]["code"] if "error" in x else x["status"] for x in results]
    assert codes.count("in_transit") == 991
    assert codes[10:13] == ["not_found", "not_found", "invalid_status"]
    assert codes[500:505] == ["not_found"] * 5 and codes[-1] == "not_found"
    assert all(status_of(services, s.id) == "in_transit" for s in (mine[0], mine[500], mine[-1]))
    assert [e.kind for e in events_of(services, mine[0].id)][-3:] == ["status", "scan", "scan"]
    with services.session_factory() as s:
        batch = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "sorting.scan",
                                                        AuditEvent.object_id.is_(None))))
    assert len(batch) == 1 and batch[0].outcome == "partial" and "991 scanned, 9 refused" in (batch[0].purpose or "")


def test_more_than_1000_or_none_or_a_bad_event_is_refused_whole(client, crew):
    too_many = scan(client, crew.headers["sorter"], [new_waybill_no() for _ in range(1001)])
    assert too_many.status_code == 422 and too_many.get_json()["error"]["field"] == "waybill_nos"
    assert scan(client, crew.headers["sorter"], []).status_code == 422
    bad = client.post("/v1/sorting/scans", json={"waybill_nos": ["1"], "event": "lost"}, headers=crew.headers["sorter"])
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "event"


def test_scan_results_know_every_status():
    assert typing.get_args(SortingScanResult.model_fields["status"].annotation)[0] == ShipmentStatus


def test_a_sorter_without_a_station_cannot_scan(session, services):
    nowhere = Principal("staff", "usr_x", "sorter", None)
    with pytest.raises(PermissionDenied):
        sorting.scan_batch(session, nowhere, [new_waybill_no()], "arrival", keyring=services.subject_keys)
    legacy = Principal("staff", "usr_y", "sorter", "A001")  # an account from before stations were checked
    with pytest.raises(PermissionDenied):
        sorting.scan_batch(session, legacy, [new_waybill_no()], "arrival", keyring=services.subject_keys)
    with pytest.raises(ValidationFailed):
        sorting.scan_batch(session, Principal("staff", "usr_z", "sorter", STATION), [new_waybill_no()], "lost",
                           keyring=services.subject_keys)


def _refused_to_returning(services, crew, shp):
    with services.session_factory() as s:
        delivery.assign(s, crew.principals["dispatcher"], shp.id, "mv_courier", provider=services.provider,
                            pickup=delivery_deps(services).pickup)
        attempts.record_attempt(s, delivery_deps(services), crew.principals["courier"], shp.id, "refused",
                                max_attempts=3)
        s.commit()
    assert status_of(services, shp.id) == "returning"


def test_returning_parcels_stay_returning_until_their_arrival_at_the_senders_station(client, services, merchant,
                                                                                      crew):
    (shp,) = make_shipments(services, merchant, 1)
    scan(client, crew.headers["sorter"], [shp.waybill_no])
    _refused_to_returning(services, crew, shp)
    assert live_tokens(services, shp.id) == 1
    with services.session_factory() as s:  # still under way: a party's data may not be deleted yet
        row = s.get(Shipment, shp.id)
        with pytest.raises(InDelivery):
            lifecycle.destroy_party(s, services.subject_keys, row, "recipient", principal=SYSTEM)
    # On the way back: the destination's departure, the hub, and a departure at the origin keep it returning.
    for who, event in (("sorter", "departure"), ("hub_sorter", "arrival"), ("origin_sorter", "departure")):
        assert scan(client, crew.headers[who], [shp.waybill_no], event).get_json()["results"] == [
            {"waybill_no": shp.waybill_no, "status": "returning"}]
    r = scan(client, crew.headers["origin_sorter"], [shp.waybill_no], "arrival")
    assert r.get_json()["results"] == [{"waybill_no": shp.waybill_no, "status": "returned"}]
    with services.session_factory() as s:
        row = s.get(Shipment, shp.id)
        assert row is not None and row.ended_at is not None  # the contract ended: retention counts from here
    assert live_tokens(services, shp.id) == 0  # the label stops resolving
    events = events_of(services, shp.id)
    assert [(e.kind, e.status, e.event) for e in events[-2:]] == [("status", "returned", None),
                                                                 ("scan", "returned", "arrival")]
    # Returned ends the way: another scan is refused, and the merchant sees it as ended.
    again = scan(client, crew.headers["origin_sorter"], [shp.waybill_no]).get_json()["results"]
    assert again[0]["error"]["code"] == "invalid_status"
    body = client.get(f"/v1/shipments/{shp.id}", headers=merchant.headers).get_json()
    assert body["status"] == "returned" and body["ended_at"]
    with services.session_factory() as s:  # ended: the party's data may now be deleted
        row = s.get(Shipment, shp.id)
        lifecycle.destroy_party(s, services.subject_keys, row, "recipient", principal=SYSTEM)
        s.commit()
    assert client.get(f"/v1/shipments/{shp.id}", headers=merchant.headers).get_json()["recipient"] is None


def test_no_personal_data_in_answers_events_or_audit(client, services, merchant, crew):
    (shp,) = make_shipments(services, merchant, 1)
    r = scan(client, crew.headers["sorter"], [shp.waybill_no, new_waybill_no()])
    with services.session_factory() as s:
        audit_rows = list(s.scalars(select(AuditEvent).where(AuditEvent.action.like("sorting.%"))))
    dumped = r.get_data(as_text=True) + json.dumps(
        [[e.kind, e.status, e.event, e.station, e.actor] for e in events_of(services, shp.id)], ensure_ascii=False
    ) + json.dumps([[a.purpose, a.outcome, a.object_id] for a in audit_rows], ensure_ascii=False)
    for plain in PLAIN:
        assert plain not in dumped
