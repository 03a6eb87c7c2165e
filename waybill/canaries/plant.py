"""Planting canaries: ordinary-looking shipments at a station, made and printed the way a merchant's are.

A canary is created through the same domain functions as any shipment (:func:`waybill.shipments.create_shipment`,
then :func:`waybill.labels.issue_label`), so every view, label, listing, audit event and tracking event of it looks
like those of a real one: ``printed``, waiting at its station for dispatch. It belongs to an internal merchant
(created with the first canary, with an ordinary shop's name), and its parties have realistic names and addresses
in a district the routing table sends to the station, and phones from the canary range (:data:`waybill.phones.
CANARY_MOBILE_PREFIX`, never issued to a person; no message is ever sent to it). Which shipments are canaries is
stored in ``canaries`` only (:mod:`waybill.canaries.models`), and nothing about the planting goes into the audit
log beyond what any merchant's shipment leaves there (auditors are insiders too).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from waybill import audit, labels, merchants, shipments
from waybill.canaries.models import Canary
from waybill.errors import DuplicateMerchantOrder, ValidationFailed
from waybill.labels import LabelDeps
from waybill.models import utcnow
from waybill.permissions import SYSTEM, Principal
from waybill.phones import CANARY_MOBILE_PREFIX
from waybill.regions import Region, RegionTable
from waybill.routing import RoutingTable, UnknownProvince
from waybill.schemas import ShipmentIn, parse
from waybill.shipments import ShipmentDeps
from waybill.stations import STATION_RE, station_code

MAX_COUNT = 100
MERCHANT_NAME = "鸿运优选生活馆"
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂英华玉兰萍鹏辉玲燕晨宇浩然欣怡子涵梓轩雨婷俊杰思远佳琪"
_ROADS = ("人民路", "建设路", "中山路", "解放路", "新华路", "文化路", "和平路", "幸福路", "学府路", "科技路", "滨河路",
          "青年路", "光明路", "友谊路", "朝阳路")
_ESTATES = ("阳光花园", "锦绣家园", "翠苑小区", "世纪新城", "幸福里", "金色家园", "碧水湾", "和谐雅苑", "华府名邸",
            "绿城小区")
_GOODS = ("服装", "图书", "日用品", "食品", "数码配件", "化妆品", "鞋", "玩具", "家居用品", None)


@dataclass(frozen=True)
class Planted:
    """What a planting made: the shipments (ids) and the internal merchant they belong to."""

    merchant_id: str
    shipment_ids: list[str]


def _internal_merchant(session: Session, api_key_secret: bytes) -> str:
    """The canaries' merchant: the one earlier canaries belong to, else a new one (its API key is never shown)."""
    found = session.scalar(select(Canary.merchant_id).order_by(Canary.created_at).limit(1))
    if found is not None:
        return found
    return merchants.create_merchant(session, SYSTEM, MERCHANT_NAME, api_key_secret=api_key_secret).merchant_id


def districts_of(station: str, routing: RoutingTable, regions: RegionTable) -> list[Region]:
    """Every district of the divisions that the routing table sends to ``station`` (``HUB-STATION``)."""
    seen: dict[tuple[str, str, str], Region] = {}
    for region in regions.districts.values():
        key = (region.province, region.city, region.district)
        if key in seen:
            continue
        try:
            route = routing.route(region.province, region.city, region.district)
        except UnknownProvince:
            continue
        if station_code(route) == station:
            seen[key] = region
    return sorted(seen.values(), key=lambda r: (r.province, r.city, r.district))


def _name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2))))


def _phone(rng: random.Random) -> str:
    return CANARY_MOBILE_PREFIX + "".join(rng.choice("0123456789") for _ in range(11 - len(CANARY_MOBILE_PREFIX)))


def _address(rng: random.Random) -> str:
    return (f"{rng.choice(_ROADS)}{rng.randint(1, 399)}号{rng.choice(_ESTATES)}{rng.randint(1, 30)}栋"
            f"{rng.randint(1, 4)}单元{rng.randint(1, 33)}{rng.randint(1, 4):02d}室")


def _party(rng: random.Random, region: Region) -> dict[str, str]:
    return {"name": _name(rng), "phone": _phone(rng), "province": region.province, "city": region.city,
            "district": region.district, "address": _address(rng)}


def _body(rng: random.Random, recipient: Region, sender: Region, now: datetime) -> ShipmentIn:
    goods = rng.choice(_GOODS)
    return parse(ShipmentIn, {
        "merchant_order_id": f"SO{now:%Y%m%d}{rng.randint(10**7, 10**8 - 1)}",
        "sender": _party(rng, sender), "recipient": _party(rng, recipient),
        "parcel": {"weight_g": rng.randint(150, 4800), "pieces": 1,
                   **({"description": goods} if goods is not None else {})}})


def plant(session: Session, deps: ShipmentDeps, label_deps: LabelDeps, *, station: str, count: int,
          api_key_secret: bytes, senders: Iterable[Region] | None = None, rng: random.Random | None = None) -> Planted:
    """Make ``count`` (1..:data:`MAX_COUNT`) printed canary shipments whose recipients ``station`` delivers.

    ``ValidationFailed`` names ``station`` (malformed, or no district routes to it) or ``count``; nothing is written
    then. Senders are drawn from ``senders`` (default: the station's own districts). Flushes, never commits.
    """
    station = station.strip().upper() if isinstance(station, str) else ""
    if STATION_RE.fullmatch(station) is None:
        raise ValidationFailed("站点编码须为 HUB-STATION 格式，如 755-W012", field="station")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ValidationFailed(f"count 须为 1-{MAX_COUNT} 的整数", field="count")
    areas = districts_of(station, deps.routing, deps.regions)
    if not areas:
        raise ValidationFailed("路由表中没有派往该站点的区县", field="station")
    origins = list(senders) if senders is not None else areas
    rng = rng or random.SystemRandom()
    merchant = Principal(kind="merchant", id=_internal_merchant(session, api_key_secret), role="merchant")
    made: list[str] = []
    outer = session.info.get(audit.CONTEXT_INFO)
    for _ in range(count):
        now = utcnow()
        # Each canary's events carry a request id of their own, shaped like the web's: a merchant's shipments are
        # made by requests, and an auditor listing shipment.create events would otherwise find the canaries as
        # the merchant's shipments without one.
        session.info[audit.CONTEXT_INFO] = audit.AuditContext(request_id=secrets.token_hex(8))
        for attempt in range(3):
            try:
                shipment, _created = shipments.create_shipment(
                    session, deps, merchant, _body(rng, rng.choice(areas), rng.choice(origins), now))
                break
            except DuplicateMerchantOrder:  # a random order number drawn twice (1 in 10^8): draw again
                if attempt == 2:
                    raise
        labels.issue_label(session, label_deps, merchant, shipment.id)  # printed, its QR token issued
        session.add(Canary(shipment_id=shipment.id, merchant_id=merchant.id, station=station, created_at=now))
        made.append(shipment.id)
        session.flush()
    if outer is None:
        session.info.pop(audit.CONTEXT_INFO, None)
    else:
        session.info[audit.CONTEXT_INFO] = outer
    return Planted(merchant_id=merchant.id, shipment_ids=made)
