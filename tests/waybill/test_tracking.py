"""The status graph and the tracking events: edges, per-shipment numbering, concurrency of the numbering,
and the merchant's history (GET /v1/shipments/{id}/events)."""

from __future__ import annotations

import json
import threading
import typing

import pytest
from sqlalchemy import select

from tests.conftest import RECIPIENT, SENDER, shipment_body
from waybill import tracking
from waybill.errors import InvalidStatusTransition, ValidationFailed
from waybill.models import Shipment, TrackingEvent
from waybill.permissions import Principal
from waybill.schemas import ShipmentOut, ShipmentStatus
from waybill.web.tracking import TrackingEventOut

SORTER = Principal("staff", "usr_sorter", "sorter", "755-W012")


def test_the_edges_are_the_documented_graph():
    assert set(tracking.EDGES) == set(tracking.STATUSES)
    assert all(nexts <= set(tracking.STATUSES) for nexts in tracking.EDGES.values())
    assert {"delivered", "cancelled", "returned"} == tracking.TERMINAL
    # Every status is reachable from created, and from every status an end is reachable.
    assert _reachable("created") == set(tracking.STATUSES)
    for status in tracking.STATUSES:
        assert _reachable(status) & tracking.TERMINAL, status
    for refused in (("delivered", "out_for_delivery"), ("returned", "in_transit"), ("in_transit", "cancelled"),
                    ("created", "in_transit"), ("returning", "out_for_delivery"), ("printed", "printed"),
                    ("out_for_delivery", "returning"), ("nonsense", "created")):
        assert not tracking.can_move(*refused), refused
    assert tracking.can_move("delivery_failed", "out_for_delivery") and tracking.can_move("returning", "returned")


def _reachable(start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in tracking.EDGES[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_schemas_know_every_status():
    assert set(typing.get_args(ShipmentStatus)) == set(tracking.STATUSES)
    for model in (ShipmentOut, TrackingEventOut):
        assert model.model_fields["status"].annotation == ShipmentStatus


def _shipment(client, merchant, order="TRK-1"):
    r = client.post("/v1/shipments", json=shipment_body(order), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_moves_and_scans_are_numbered_one_by_one_and_a_refused_move_changes_nothing(client, merchant, services):
    shp = _shipment(client, merchant)
    with services.session_factory() as s:
        row = s.get(Shipment, shp["id"])
        assert row is not None and row.event_seq == 1
        with pytest.raises(InvalidStatusTransition):
            tracking.move(s, SORTER, row, "delivered")
        assert row.status == "created"
        tracking.move(s, SORTER, row, "printed")
        assert row.event_seq == 2  # the loaded row knows its number without reading it again
        tracking.move(s, SORTER, row, "in_transit", station="755-W012")
        tracking.record_scan(s, SORTER, row, "arrival", station="755-W012")
        with pytest.raises(ValidationFailed):
            tracking.record_scan(s, SORTER, row, "lost", station="755-W012")
        s.commit()
    with services.session_factory() as s:
        events = tracking.history(s, shp["id"])
        assert [(e.seq, e.kind, e.previous_status, e.status, e.event) for e in events] == [
            (1, "status", None, "created", None), (2, "status", "created", "printed", None),
            (3, "status", "printed", "in_transit", None), (4, "scan", None, "in_transit", "arrival")]
        assert s.scalar(select(Shipment.event_seq).where(Shipment.id == shp["id"])) == 4


def test_numbers_drawn_from_a_locked_row_and_atomic_ones_mix_without_a_gap_or_a_repeat(client, merchant, services):
    shp = _shipment(client, merchant, "TRK-L")
    with services.session_factory() as s:
        row = s.execute(select(Shipment).where(Shipment.id == shp["id"]).with_for_update()
                        .execution_options(populate_existing=True)).scalar_one()
        tracking.move(s, SORTER, row, "printed", locked=True)
        tracking.record_scan(s, SORTER, row, "arrival", station="755-W012", locked=True)
        tracking.record_scan(s, SORTER, row, "departure", station="755-W012")  # flushes the in-memory one first
        tracking.record_scan(s, SORTER, row, "arrival", station="755-W012", locked=True)
        s.commit()
    with services.session_factory() as s:
        assert [e.seq for e in tracking.history(s, shp["id"])] == [1, 2, 3, 4, 5]
        assert s.scalar(select(Shipment.event_seq).where(Shipment.id == shp["id"])) == 5


def test_concurrent_events_of_one_shipment_never_share_a_number(fresh_env):
    """Real transactions on their own connections (PostgreSQL: row lock; SQLite: the single writer)."""
    from tests.conftest import make_merchant

    env = fresh_env()
    svc = env.services()
    merchant = make_merchant(svc, "并发商户")
    client = create_client(env, svc)
    sid = _shipment(client, merchant, "TRK-C")["id"]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def scan_many() -> None:
        try:
            barrier.wait()
            for _ in range(10):
                with svc.session_factory() as s:
                    row = s.get(Shipment, sid)
                    assert row is not None
                    tracking.record_scan(s, SORTER, row, "arrival", station="755-W012")
                    s.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=scan_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with svc.session_factory() as s:
        seqs = list(s.scalars(select(TrackingEvent.seq).where(TrackingEvent.shipment_id == sid)
                              .order_by(TrackingEvent.seq)))
        assert seqs == list(range(1, 42))
        assert s.scalar(select(Shipment.event_seq).where(Shipment.id == sid)) == 41


def create_client(env, svc):
    from waybill.web.app import create_app

    return create_app(env.settings, services_override=svc).test_client()


def test_the_merchant_reads_the_history_in_order_without_personal_data_or_actors(client, merchant, other_merchant,
                                                                                 services):
    shp = _shipment(client, merchant)
    assert client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers).status_code == 200
    r = client.get(f"/v1/shipments/{shp['id']}/events", headers=merchant.headers)
    assert r.status_code == 200, r.get_json()
    items = r.get_json()["items"]
    assert [(i["seq"], i["kind"], i["status"]) for i in items] == [(1, "status", "created"),
                                                                   (2, "status", "cancelled")]
    assert items[0]["station"] and "station" not in items[1] and items[1]["previous_status"] == "created"
    assert all(i["at"].endswith("Z") or i["at"].endswith("+00:00") for i in items)
    text = r.get_data(as_text=True)
    assert "actor" not in text and merchant.id not in text
    for plain in (RECIPIENT["name"], RECIPIENT["phone"], RECIPIENT["address"], SENDER["name"], SENDER["phone"]):
        assert plain not in text
    # Another merchant's shipment and an unknown id answer the same 404.
    foreign = client.get(f"/v1/shipments/{shp['id']}/events", headers=other_merchant.headers)
    unknown = client.get("/v1/shipments/shp_01M8SFAT8YYWH11MK71BBNJQ30/events", headers=other_merchant.headers)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.get_json() == unknown.get_json() and foreign.get_json()["error"]["code"] == "not_found"
    assert json.loads(client.get(f"/v1/shipments/{shp['id']}/events", headers=merchant.headers).data) == r.get_json()
