"""Object scope of label work: which shipments a principal may print, reprint or see the label of.

- a merchant: its own shipments;
- a sorter of a station (``755-W012``): shipments whose origin or destination station is that station;
- a sorter of a hub (created with the hub's code, ``755``: the staff of its transit centre, who sort for every
  station of the hub): shipments whose origin or destination station belongs to that hub;
- an operator at the service's own shell (``waybill print --operator``, kind ``cli``): every shipment; they
  hold the service's keys and database, which a scope could not keep from them (every print is audited);
- anyone else: nothing (deny by default).

A station belongs to the hub named by its code's first segment (the register checks that its ``hub`` column
says the same, see :mod:`waybill.stations`). Used as a condition of the lookup itself, so a shipment out of
scope is not loaded at all and answers exactly like one that does not exist.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, false, or_, true

from waybill.models import Shipment
from waybill.permissions import Principal
from waybill.stations import HUB_RE, STATION_RE

__all__ = ["label_scope", "sorter_scope"]


def sorter_scope(station: str | None) -> ColumnElement[bool]:
    """Shipments a sorter of ``station`` (a station or a hub code) acts for."""
    if station is None:
        return false()
    if HUB_RE.fullmatch(station):
        prefix = f"{station}-"
        return or_(Shipment.origin_station.startswith(prefix, autoescape=True),
                   Shipment.destination_station.startswith(prefix, autoescape=True))
    if STATION_RE.fullmatch(station):
        return or_(Shipment.origin_station == station, Shipment.destination_station == station)
    return false()  # an account made before stations were checked, with a code of no station: nothing


def label_scope(principal: Principal) -> ColumnElement[bool]:
    """The condition a shipment must meet for ``principal`` to print, reprint or see its label."""
    if principal.kind == "merchant":
        return and_(Shipment.merchant_id == principal.id, Shipment.test_mode == principal.test_mode)
    if principal.role == "sorter":
        if principal.kind == "staff":
            return sorter_scope(principal.station)
        if principal.kind == "cli":
            return true()
    return false()
