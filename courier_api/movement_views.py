"""Movement through the network over HTTP: sorting-centre scans and couriers' failed delivery attempts."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, Flask, Response
from pydantic import BaseModel, ConfigDict, Field

from courier_api import attempts, sorting
from courier_api.services import courier_services
from waybill.permissions import Permission
from waybill.schemas import OutModel, ShipmentOut, ShipmentStatus, parse
from waybill.web.auth import authenticate, requires
from waybill.web.context import db_session
from waybill.web.errors import classify
from waybill.web.merchant import json_body, shipment_out
from waybill.web.openapi import operation, respond

bp = Blueprint("movement", __name__)
_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class SortingScanIn(BaseModel):
    model_config = _STRICT
    # Any string of a sane length: a number that is not a waybill number answers its own not_found.
    waybill_nos: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=sorting.MAX_BATCH, description="运单号（每批 1-1000 个，各自独立处理）")
    event: Literal["arrival", "departure"] = Field(description="到件 arrival / 发件 departure")


class ScanError(OutModel):
    code: str
    message: str


class SortingScanResult(OutModel):
    """From :class:`courier_api.sorting.ScanResult`: ``status`` when scanned, ``error`` when refused."""

    omit_none = frozenset({"status", "error"})

    waybill_no: str
    status: ShipmentStatus | None = None
    error: ScanError | None = None


class SortingScanOut(OutModel):
    results: list[SortingScanResult]


class AttemptIn(BaseModel):
    model_config = _STRICT
    reason: Literal["not_home", "refused", "address_problem", "other"] = Field(
        description="未送达原因：不在家、拒收、地址有误、其他")


def install(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("/v1/sorting/scans")
@operation(summary="分拣中心批量扫描（到件/发件）：每个运单号各自成败，结果按输入顺序", tags=("sorting",),
           body=SortingScanIn, response=SortingScanOut, errors=(403,))
@requires(Permission.SORTING_SCAN)
def sorting_scans() -> Response:
    data: SortingScanIn = parse(SortingScanIn, json_body())
    results = sorting.scan_batch(db_session(), authenticate(), data.waybill_nos, data.event,
                                 keyring=courier_services().base.subject_keys,
                                 watch=courier_services().delivery.watch)
    out = []
    for res in results:
        error = None
        if res.error is not None:
            error = ScanError(code=classify(res.error)[1], message=res.error.message)
        out.append(SortingScanResult(waybill_no=res.waybill_no, status=res.status, error=error))
    return respond(SortingScanOut, SortingScanOut(results=out))


@bp.post("/v1/courier/shipments/<shipment_id>/attempt")
@operation(summary="派送未成功（不在家、拒收、地址有误、其他）：可重新派送；达到次数上限或拒收则退回寄件人",
           tags=("courier",), body=AttemptIn, response=ShipmentOut, errors=(404,))
@requires(Permission.COURIER_ATTEMPT)
def attempt(shipment_id: str) -> Response:
    data: AttemptIn = parse(AttemptIn, json_body())
    registry = courier_services()
    shipment = attempts.record_attempt(db_session(), registry.delivery, authenticate(), shipment_id, data.reason,
                                       max_attempts=registry.base.settings.max_delivery_attempts)
    return respond(ShipmentOut, shipment_out(shipment))
