"""Merchant API: webhook endpoints (create, list, remove, rotate the secret) and their delivery log.

Thin views over :mod:`waybill.webhooks`: parse, call the domain, answer through the documented models. The secret
appears in two answers only (creation and rotation), never in a list, a log or an audit event.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field

from waybill import webhooks
from waybill.permissions import Permission
from waybill.schemas import OutModel, UtcTimestamp, parse
from waybill.web import query
from waybill.web.auth import authenticate, requires
from waybill.web.context import db_session, services
from waybill.web.merchant import json_body
from waybill.web.openapi import operation, respond
from waybill.webhooks.guard import MAX_URL
from waybill.webhooks.models import WebhookEndpoint

bp = Blueprint("webhooks", __name__)
TAGS = ("webhooks",)
EventType = Literal["shipment.status_changed"]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    url: str = Field(min_length=1, max_length=MAX_URL,
                     description="接收地址（http/https，主机须解析为公网地址；不能包含用户名、密码或 #）")
    events: list[EventType] = Field(min_length=1, max_length=10, description="订阅的事件类型")


class WebhookOut(OutModel):
    """An endpoint as its merchant sees it: never its secret. ``status``: active, disabled (answered 410), deleted."""

    omit_none: ClassVar[frozenset[str]] = frozenset({"disabled_at", "disabled_reason"})

    id: str
    url: str
    events: list[str]
    status: Literal["active", "disabled", "deleted"]
    created_at: UtcTimestamp
    disabled_at: UtcTimestamp | None = None
    disabled_reason: str | None = None


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="签名密钥（whsec_ 开头），只在此处显示一次")


class WebhookListOut(OutModel):
    items: list[WebhookOut]


class SecretOut(OutModel):
    secret: str = Field(description="新的签名密钥；24 小时内投递同时带新旧两个签名")


class AttemptOut(OutModel):
    """One delivery attempt: ``status_code`` null when no answer came (``error`` says why)."""

    omit_none: ClassVar[frozenset[str]] = frozenset({"error"})

    event_id: str
    at: UtcTimestamp
    status_code: int | None
    ok: bool
    error: str | None = None
    duration_ms: int


class AttemptPage(OutModel):
    omit_none: ClassVar[frozenset[str]] = frozenset({"next_cursor"})

    items: list[AttemptOut]
    next_cursor: str | None = None


def _out(row: WebhookEndpoint) -> dict[str, object]:
    status = "deleted" if row.deleted_at is not None else "disabled" if row.disabled_at is not None else "active"
    at: datetime | None = row.disabled_at
    return {"id": row.id, "url": row.url, "events": list(row.events), "status": status,
            "created_at": row.created_at, "disabled_at": at, "disabled_reason": row.disabled_reason}


@bp.post("/v1/webhooks")
@operation(summary="创建 webhook 地址（密钥只返回一次）", tags=TAGS, body=WebhookIn, response=WebhookCreatedOut,
           status=201)
@requires(Permission.WEBHOOK_MANAGE)
def create() -> Response:
    data = parse(WebhookIn, json_body())
    made = webhooks.create_endpoint(db_session(), services(), authenticate(), data.url, data.events)
    return respond(WebhookCreatedOut, {**_out(made.endpoint), "secret": made.secret})


@bp.get("/v1/webhooks")
@operation(summary="列出本商户的 webhook 地址（不含密钥）", tags=TAGS, response=WebhookListOut)
@requires(Permission.WEBHOOK_MANAGE)
def list_() -> Response:
    rows = webhooks.list_endpoints(db_session(), authenticate())
    return respond(WebhookListOut, {"items": [_out(r) for r in rows]})


@bp.delete("/v1/webhooks/<webhook_id>")
@operation(summary="删除 webhook 地址（待投递的事件不再发送）", tags=TAGS, response=WebhookOut, errors=(404,))
@requires(Permission.WEBHOOK_MANAGE)
def delete(webhook_id: str) -> Response:
    return respond(WebhookOut, _out(webhooks.delete_endpoint(db_session(), authenticate(), webhook_id)))


@bp.post("/v1/webhooks/<webhook_id>/rotate-secret")
@operation(summary="轮换签名密钥（24 小时内新旧密钥同时签名）", tags=TAGS, response=SecretOut, errors=(404,))
@requires(Permission.WEBHOOK_MANAGE)
def rotate_secret(webhook_id: str) -> Response:
    secret = webhooks.rotate_secret(db_session(), services(), authenticate(), webhook_id)
    return respond(SecretOut, {"secret": secret})


@bp.get("/v1/webhooks/<webhook_id>/deliveries")
@operation(summary="投递记录（每次尝试，新的在前，游标分页）", tags=TAGS, response=AttemptPage,
           query=(("limit", lambda st: {"type": "integer", "minimum": 1, "maximum": st.page_max, "default": 50},
                    "每页条数"),
                  ("cursor", "string", "上一页返回的 next_cursor")),
           errors=(404, 422))
@requires(Permission.WEBHOOK_MANAGE)
def deliveries(webhook_id: str) -> Response:
    query.only("limit", "cursor")
    rows, cursor = webhooks.attempts(db_session(), authenticate(), webhook_id, limit=query.limit(),
                                     cursor=request.args.get("cursor") or None)
    return respond(AttemptPage, {"items": rows, "next_cursor": cursor})
