"""Shared set-up of the movement tests: a crew along one parcel's way, and parcels made and printed in the domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from courier_api.staff import set_phone
from tests.conftest import shipment_body
from tests.courier_api import bearer, login, make_staff
from waybill import print_jobs, shipments
from waybill.models import QrToken, Shipment, TrackingEvent
from waybill.permissions import SYSTEM, Principal
from waybill.schemas import ShipmentIn, parse
from waybill.virtual_numbers import add_numbers

STATION = "755-W012"  # the recipient's (深圳市南山区): where the parcel is delivered from
ORIGIN = "021-W112"  # the sender's (上海市徐汇区): where a returned parcel ends
HUB = "755"  # the transit centre of the recipient's hub
FAR = "010-W201"  # 北京市朝阳区: nothing of these parcels

# key: (username, role, station)
CREW = {
    "sorter": ("mv_sorter", "sorter", STATION),
    "origin_sorter": ("mv_sorter_origin", "sorter", ORIGIN),
    "hub_sorter": ("mv_sorter_hub", "sorter", HUB),
    "far_sorter": ("mv_sorter_far", "sorter", FAR),
    "dispatcher": ("mv_disp", "dispatcher", STATION),
    "courier": ("mv_courier", "courier", STATION),
    "courier2": ("mv_courier2", "courier", STATION),
}


@dataclass
class Crew:
    headers: dict[str, dict[str, str]]
    principals: dict[str, Principal]


def make_crew(client: Any, services: Any) -> Crew:
    with services.session_factory() as s:
        add_numbers(s, ["17000000101", "17000000102", "17000000103"])
        s.commit()
    made = {key: make_staff(services, name, role, station) for key, (name, role, station) in CREW.items()}
    with services.session_factory() as s:
        set_phone(s, SYSTEM, "mv_courier", "13700002001", services.codec)
        set_phone(s, SYSTEM, "mv_courier2", "13700002002", services.codec)
        s.commit()
    headers = {}
    for key, new in made.items():
        r = login(client, new)
        assert r.status_code == 200, r.get_json()
        headers[key] = bearer(r.get_json()["access_token"])
    principals = {key: Principal("staff", new.user.id, new.user.role, new.user.station) for key, new in made.items()}
    return Crew(headers, principals)


def make_shipments(services: Any, merchant: Any, n: int, *, prefix: str = "MV", printed: bool = True,
                   test_mode: bool = False) -> list[Shipment]:
    """``n`` shipments of ``merchant`` (printed by the destination's sorter unless ``printed`` is false)."""
    owner = Principal("merchant", merchant.id, "merchant", test_mode=test_mode)
    with services.session_factory() as s:
        items = [parse(ShipmentIn, shipment_body(f"{prefix}-{i}")) for i in range(n)]
        ids = [r.shipment.id for r in shipments.create_batch(s, services.shipment_deps, owner, items)
               if r.shipment is not None]
        assert len(ids) == n
        if printed:
            sorter = Principal("staff", "mv-printer", "sorter", STATION)
            print_jobs.issue_print_job(s, services.label_deps, sorter, ids)
        s.commit()
        rows = list(s.scalars(select(Shipment).where(Shipment.id.in_(ids))))
    by_id = {r.id: r for r in rows}
    return [by_id[i] for i in ids]


def status_of(services: Any, shipment_id: str) -> str:
    with services.session_factory() as s:
        return str(s.scalar(select(Shipment.status).where(Shipment.id == shipment_id)))


def events_of(services: Any, shipment_id: str) -> list[TrackingEvent]:
    with services.session_factory() as s:
        return list(s.scalars(select(TrackingEvent).where(TrackingEvent.shipment_id == shipment_id)
                              .order_by(TrackingEvent.seq)))


def live_tokens(services: Any, shipment_id: str) -> int:
    with services.session_factory() as s:
        return len(list(s.scalars(select(QrToken.id).where(QrToken.shipment_id == shipment_id,
                                                          QrToken.revoked_at.is_(None)))))


def scan(client: Any, headers: dict[str, str], numbers: list[str], event: str = "arrival") -> Any:
    return client.post("/v1/sorting/scans", json={"waybill_nos": numbers, "event": event}, headers=headers)
