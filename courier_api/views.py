"""Courier-side HTTP: dispatch, scan, call, deliver, and the auditors' endpoints."""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path
from typing import Any, Literal

from flask import Blueprint, Flask, Response, request
from pydantic import BaseModel, ConfigDict, Field

from courier_api import delivery
from courier_api.services import courier_services
from waybill import audit
from waybill import witnesses as witness
from waybill.audit import checkpoints, logcheck
from waybill.errors import RateLimited, ValidationFailed
from waybill.permissions import Permission
from waybill.schemas import OutModel, ShipmentOut, UtcTimestamp, parse
from waybill.web import query
from waybill.web.auth import authenticate, hold_heavy_slot, requires
from waybill.web.context import current_uow, db_session, services
from waybill.web.merchant import json_body, shipment_out
from waybill.web.openapi import operation, respond

bp = Blueprint("courier", __name__)
log = logging.getLogger("waybill.alerts")
_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class AssignIn(BaseModel):
    model_config = _STRICT
    shipment_id: str = Field(min_length=1, max_length=64)
    courier: str = Field(min_length=1, max_length=64, description="快递员用户名")


class AssignOut(OutModel):
    assignment_id: str
    shipment_id: str
    courier: str
    status: Literal["out_for_delivery"]
    assigned_at: UtcTimestamp


class ScanIn(BaseModel):
    model_config = _STRICT
    token: str = Field(min_length=1, max_length=256, description="二维码内容（原样）")


class CourierRecipient(OutModel):
    name: str
    phone: str
    province: str
    city: str
    district: str
    address: str


class CourierView(OutModel):
    """From :class:`courier_api.delivery.ScannedShipment`."""

    shipment_id: str
    waybill_no: str
    status: str
    sorting_code: str
    recipient: CourierRecipient


class CallOut(OutModel):
    virtual_number: str
    extension: str | None
    expires_at: UtcTimestamp


class DeliverIn(BaseModel):
    model_config = _STRICT
    method: Literal["handover", "locker", "station"]
    # Its form (6 digits) is checked by the domain after the lock: a locked parcel answers pickup_locked to anything.
    pickup_code: str | None = Field(default=None, max_length=32,
                                    description="当面签收：收件人短信收到的 6 位取件码")
    partner_id: str | None = Field(default=None, max_length=64, description="快递柜、驿站签收：登记的合作方编号")
    locker_id: str | None = Field(default=None, min_length=1, max_length=64, description="快递柜签收：柜号")


class PickupCodeOut(OutModel):
    shipment_id: str
    sent: bool = Field(description="是否已向收件人发送短信（固定电话或当小时短信额度用尽时为 false）")


class AuditItem(OutModel):
    """From :class:`waybill.models.AuditEvent`."""

    seq: int = Field(description="在整个审计日志中的位置（按写入顺序；分页游标用它）")
    shard: int = Field(description="所属哈希链（分片）编号：同一对象的事件总在同一条链上")
    shard_seq: int = Field(description="在该分片哈希链中的序号（1、2、3……，受哈希保护）")
    at: UtcTimestamp
    actor: str
    role: str
    action: str
    object_type: str | None
    object_id: str | None
    purpose: str | None
    fields: list[str]
    outcome: str
    request_id: str | None


class AuditPage(OutModel):
    items: list[AuditItem]
    next_cursor: str | None


class ShardVerifyOut(OutModel):
    """From :class:`waybill.audit.verify.ShardResult`."""

    shard: int = Field(description="分片编号")
    ok: bool
    events: int = Field(description="本次校验的该分片事件数")
    head_seq: int = Field(description="该分片链头的序号（链上事件数）")
    from_seq: int = Field(description="从该分片的哪个序号之后开始校验（0：从头）")
    first_bad: dict[str, Any] | None = Field(description="该分片第一个有问题的事件：shard、seq（分片内序号）、reason")


class CheckpointVerdict(OutModel):
    checked: int = Field(description="校验过的检查点数")
    latest: int | None = Field(description="对照的最新检查点编号")
    from_checkpoint: int | None = Field(description="增量校验的起点（已确认的检查点），全量校验为 null")
    witness: int | None = Field(description="见证文件中的检查点数；未配置见证文件为 null")
    problems: list[dict[str, Any]]


class VerifyOut(OutModel):
    """From :meth:`waybill.audit.logcheck.LogVerdict.as_dict`."""

    ok: bool
    events: int = Field(description="本次校验的事件总数")
    head_seq: int = Field(description="各分片链头序号之和（完好日志中的事件数）")
    first_bad: dict[str, Any] | None = Field(
        description="编号最小的有问题分片中第一个有问题的事件：shard（分片）、seq（分片内序号）、reason")
    shards: list[ShardVerifyOut] = Field(description="每个分片（哈希链）的校验结果")
    checkpoints: CheckpointVerdict


class CheckpointHeadOut(OutModel):
    shard: int
    seq: int = Field(description="该分片链中的位置")
    hash: str = Field(description="该位置事件的哈希（十六进制）")


class CheckpointItem(OutModel):
    """From :func:`waybill.audit.checkpoints.document`."""

    id: int
    at: str = Field(description="签名时间（UTC，精确到秒）")
    tree_size: int = Field(description="各分片位置之和：日志中的事件数")
    heads: list[CheckpointHeadOut]
    prev_hash: str = Field(description="上一个检查点的哈希（十六进制；第一个为 64 个 0）")
    hash: str = Field(description="本检查点签名报文的 SHA-256（十六进制）")
    key_id: str
    signature: str = Field(description="Ed25519 签名（base64），签名对象为 signed 的 UTF-8 字节")
    signed: str = Field(description="被签名的报文原文（格式见 README「Audit checkpoints」）")


class CheckpointPage(OutModel):
    public_key: str = Field(description="检查点签名公钥（Ed25519 原始 32 字节，base64）")
    key_id: str
    items: list[CheckpointItem]
    next_cursor: str | None


def install(app: Flask) -> None:
    """Register the blueprint (the scan quota lives in the courier registry)."""
    app.register_blueprint(bp)


@bp.post("/v1/dispatch/assignments")
@operation(summary="派件：把本站运单分配给本站快递员", tags=("dispatch",), body=AssignIn, response=AssignOut,
           status=201, errors=(404, 409))
@requires(Permission.DISPATCH_ASSIGN)
def assign() -> Response:
    data: AssignIn = parse(AssignIn, json_body())
    deps = courier_services().delivery
    a = delivery.assign(db_session(), authenticate(), data.shipment_id, data.courier, provider=deps.provider,
                        pickup=deps.pickup, watch=deps.watch)
    return respond(AssignOut, AssignOut(assignment_id=a.id, shipment_id=a.shipment_id, courier=data.courier,
                                        status="out_for_delivery", assigned_at=a.assigned_at))


@bp.post("/v1/courier/scan")
@operation(summary="快递员扫码：仅限被分配的快递员、签收前；限额", tags=("courier",), body=ScanIn, response=CourierView,
           errors=(404,))
@requires(Permission.COURIER_SCAN)
def scan() -> Response:
    principal = authenticate()
    wait = courier_services().scan_quota.hit(principal.id)
    if wait is not None:
        # Bulk lookups by one account are how rented or stolen accounts leak data: alert on it.
        audit.record(db_session(), principal, "alert.scan_quota", outcome="alert", durable=True)
        log.warning("scan quota exceeded", extra={"actor": principal.actor})
        services().metrics.scan_quota_alerts.inc()
        services().metrics.courier_scans.labels("quota_exceeded").inc()
        raise RateLimited(wait)
    data: ScanIn = parse(ScanIn, json_body())
    return respond(CourierView, delivery.scan(db_session(), courier_services().delivery, principal, data.token))


@bp.post("/v1/courier/shipments/<shipment_id>/call")
@operation(summary="获取隐私号（虚拟号码 + 分机号）联系收件人", tags=("courier",), response=CallOut, errors=(404, 409))
@requires(Permission.COURIER_CALL)
def call(shipment_id: str) -> Response:
    binding = delivery.call(db_session(), courier_services().delivery, authenticate(), shipment_id)
    return respond(CallOut, CallOut(virtual_number=binding.x_number, extension=binding.extension,
                                    expires_at=binding.expires_at))


@bp.post("/v1/courier/shipments/<shipment_id>/deliver")
@operation(summary="签收：当面（短信取件码）、快递柜或驿站（登记的合作方）", tags=("courier",), body=DeliverIn,
           response=ShipmentOut, errors=(404, 409))
@requires(Permission.COURIER_DELIVER)
def deliver(shipment_id: str) -> Response:
    data: DeliverIn = parse(DeliverIn, json_body())
    if data.method == "handover" and data.pickup_code is None:
        raise ValidationFailed("当面签收须提供取件码", field="pickup_code")
    if data.method == "locker" and not data.locker_id:
        raise ValidationFailed("快递柜签收须提供柜号", field="locker_id")
    if data.method in ("locker", "station") and not data.partner_id:
        raise ValidationFailed("快递柜、驿站签收须提供合作方编号", field="partner_id")
    shipment = delivery.deliver(db_session(), courier_services().delivery, authenticate(), shipment_id, data.method,
                                data.pickup_code, partner_id=data.partner_id, locker_id=data.locker_id)
    return respond(ShipmentOut, shipment_out(shipment))


@bp.post("/v1/dispatch/shipments/<shipment_id>/pickup-code")
@operation(summary="调度员：向收件人重发取件码（旧码作废，解除锁定）", tags=("dispatch",), response=PickupCodeOut,
           status=202, errors=(404, 409))
@requires(Permission.PICKUP_CODE_RESEND)
def resend_code(shipment_id: str) -> Response:
    sent = delivery.resend_code(db_session(), courier_services().delivery, authenticate(), shipment_id)
    return respond(PickupCodeOut, PickupCodeOut(shipment_id=shipment_id, sent=sent), status=202)


@bp.get("/v1/audit/events")
@operation(summary="审计事件（不含个人信息）", tags=("audit",), response=AuditPage, errors=(422,),
           query=(("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}, "每页条数"),
                  ("cursor", {"type": "string", "pattern": "^[0-9]{1,18}$"}, "上一页的 next_cursor"),
                  ("action", "string", "按动作过滤"), ("actor", "string", "按操作人过滤")))
@requires(Permission.AUDIT_READ)
def audit_events() -> Response:
    unknown = set(request.args) - {"limit", "cursor", "action", "actor"}
    if unknown:
        raise ValidationFailed("不支持的查询参数", field=sorted(unknown)[0])
    limit_raw, cursor = request.args.get("limit", "100"), request.args.get("cursor")
    if not limit_raw.isascii() or not limit_raw.isdigit() or not 1 <= int(limit_raw[:6]) <= 500:
        raise ValidationFailed("limit 须为 1-500 的整数", field="limit")
    if cursor is not None and (not cursor.isascii() or not cursor.isdigit() or len(cursor) > 18):
        raise ValidationFailed("分页游标无效", field="cursor")
    events, next_cursor = audit.list_events(db_session(), authenticate(), limit=int(limit_raw[:6]),
                                            after=int(cursor) if cursor else None,
                                            action=request.args.get("action"), actor=request.args.get("actor"))
    return respond(AuditPage, AuditPage(items=[AuditItem.model_validate(e) for e in events], next_cursor=next_cursor))


@bp.get("/v1/audit/verify")
@operation(summary="校验审计日志哈希链及已签名的检查点", tags=("audit",), response=VerifyOut, errors=(422,),
           query=(("since_checkpoint", {"type": "string", "enum": ["0", "1"], "default": "0"},
                   "1：从上次校验确认的检查点开始（增量）"),))
@requires(Permission.AUDIT_READ)
def audit_verify() -> Response:
    query.only("since_checkpoint")
    since = query.choice("since_checkpoint", ("0", "1"), "since_checkpoint 须为 0 或 1") == "1"
    principal = authenticate()
    # A walk reads the whole log and may start a walker process per CPU: an auditor has at most the heavy-request
    # number of them in flight (429 beyond), as a merchant's heavy batches.
    hold_heavy_slot(principal)
    # The walk reads in short transactions of its own; the request's transaction (on SQLite it holds the write
    # lock from authentication on) ends first, so no writer waits for a long walk.
    current_uow().commit_so_far()
    svc = services()
    signer = checkpoints.Signer(svc.keys)
    setting = svc.settings.audit_witness
    witness_file = Path(setting) if setting and not witness.is_url(setting) else None
    verdict = logcheck.check_log(svc.read_session_factory, svc.keys.secret("audit_chain"), signer.public_key,
                                 witness=witness_file, since_checkpoint=since)
    logcheck.record_confirmation(db_session(), signer, verdict)
    audit.record(db_session(), principal, "audit.verify", outcome="ok" if verdict.ok else "broken",
                 purpose="since checkpoint" if since else "full")
    return respond(VerifyOut, verdict.as_dict())


@bp.get("/v1/audit/checkpoints")
@operation(summary="已签名的审计检查点（最新在前）及签名公钥", tags=("audit",), response=CheckpointPage, errors=(422,),
           query=(("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "每页条数"),
                  ("cursor", {"type": "string", "pattern": "^[0-9]{1,9}$"}, "上一页的 next_cursor")))
@requires(Permission.AUDIT_READ)
def audit_checkpoints() -> Response:
    query.only("limit", "cursor")
    limit = query.limit(default=50, maximum=200)
    cursor = request.args.get("cursor")
    if cursor is not None and not re.fullmatch(r"[0-9]{1,9}", cursor):
        raise ValidationFailed("分页游标无效", field="cursor")
    signer = checkpoints.Signer(services().keys)
    items, next_cursor = checkpoints.list_checkpoints(db_session(), authenticate(), signer, limit=limit,
                                                      before=int(cursor) if cursor else None)
    return respond(CheckpointPage, {"public_key": base64.b64encode(signer.public_key).decode(),
                                    "key_id": signer.key_id, "items": items, "next_cursor": next_cursor})
