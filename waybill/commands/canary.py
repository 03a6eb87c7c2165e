"""`waybill canary create --station S [--count N]`: plant canary shipments (waybill/canaries).

Prints ``{"created": N, "shipment_ids": [...]}``. Keep the ids where the security team keeps its secrets: nothing in
the API tells a canary from any other shipment, and an alert ``canary`` names the one that was opened.
"""

from __future__ import annotations

import click

from waybill.canaries import plant
from waybill.commands.common import emit, fail, read_settings, ready_services
from waybill.errors import ValidationFailed
from waybill.uow import unit_of_work


@click.group("canary")
def canary() -> None:
    """Canary shipments: planted to catch insiders who open shipments they have no business with."""


@canary.command("create")
@click.option("--station", required=True, help="the station (HUB-STATION, e.g. 755-W012) whose area the canaries "
              "are addressed to; they wait there, printed, like any parcel")
@click.option("--count", default="1", show_default=True, help=f"how many (1-{plant.MAX_COUNT})")
def canary_create(station: str, count: str) -> None:
    """Plant canary shipments at a station; prints their ids once."""
    if not count.isascii() or not count.isdigit() or len(count) > 4:
        fail({"ok": False, "error": {"code": "validation_error",
                                     "message": f"count 须为 1-{plant.MAX_COUNT} 的整数", "field": "count"}}, 2)
    svc = ready_services(read_settings())
    with unit_of_work(svc.session_factory) as tx:
        try:
            planted = plant.plant(tx.session, svc.shipment_deps, svc.label_deps, station=station, count=int(count),
                                  api_key_secret=svc.keys.secret("api_key"))
        except ValidationFailed as exc:
            fail({"ok": False, "error": {"code": "validation_error", "message": exc.message, "field": exc.field}}, 2)
    emit({"created": len(planted.shipment_ids), "shipment_ids": planted.shipment_ids})


def register(group: click.Group) -> None:
    """Add ``canary`` to the ``waybill`` command."""
    group.add_command(canary)
