"""Merchant API: a shipment's tracking history (every status change and sorting scan, numbered)."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response

from waybill import shipments
from waybill.permissions import Permission
from waybill.schemas import OutModel, ShipmentStatus, UtcTimestamp
from waybill.web.auth import authenticate, requires
from waybill.web.context import db_session
from waybill.web.openapi import operation, respond

bp = Blueprint("tracking", __name__)


class TrackingEventOut(OutModel):
    """From :class:`waybill.models.TrackingEvent`, without its actor (who moved it is for oversight only)."""

    omit_none = frozenset({"station", "previous_status", "event"})

    seq: int
    kind: Literal["status", "scan"]
    status: ShipmentStatus  # the status after this event
    at: UtcTimestamp
    station: str | None = None
    # a status change's previous status
    previous_status: str | None = None
    # a scan's arrival/departure; a failed attempt's reason (not_home, refused, address_problem, other); why a
    # parcel goes back (refused, max_attempts)
    event: str | None = None


class TrackingPage(OutModel):
    items: list[TrackingEventOut]


@bp.get("/v1/shipments/<shp:shipment_id>/events")
@operation(summary="运单轨迹：每次状态变化与分拣扫描，按序号排列（不含个人信息）", tags=("merchant",),
           response=TrackingPage, errors=(404,))
@requires(Permission.TRACKING_READ)
def events(shipment_id: str) -> Response:
    rows = shipments.shipment_events(db_session(), authenticate(), shipment_id)
    return respond(TrackingPage, TrackingPage(items=[TrackingEventOut.model_validate(r) for r in rows]))
