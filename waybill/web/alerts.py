"""Oversight's HTTP: the alert list (auditors, privacy officers, admins) and resolving an alert (privacy officers,
admins). Thin views over :mod:`waybill.alerts.review`.

An alert holds ids, rule names and counts, never personal data; an officer's resolution is free text, stored
encrypted and never answered (the answer says who resolved it and when).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from waybill.alerts import review
from waybill.alerts.models import ALERT_STATES, Alert
from waybill.alerts.rules import RULES, Severity
from waybill.permissions import Permission
from waybill.schemas import OutModel, UtcTimestamp, _no_control_chars, parse
from waybill.web import query
from waybill.web.auth import authenticate, requires
from waybill.web.context import db_session, services
from waybill.web.merchant import json_body
from waybill.web.openapi import operation, respond

bp = Blueprint("alerts", __name__)
TAGS = ("oversight",)
_ID = "^alr_[0-9A-HJKMNP-TV-Z]{26}$"


class AlertOut(OutModel):
    """One alert (deduplicated per burst: ``count`` firings between ``first_at`` and ``last_at``)."""

    omit_none: ClassVar[frozenset[str]] = frozenset({"object_type", "object_id", "resolved_at", "resolved_by"})

    id: str
    rule: str = Field(description="规则编号（README “Alerts” 列出全部规则）")
    severity: Severity
    actor: str = Field(description="触发告警的账号（staff:usr_...）或客户端")
    at: UtcTimestamp = Field(description="告警首次触发时间（同 first_at）")
    count: int = Field(description="本轮连续触发的次数（去重合并）")
    status: Literal["open", "resolved"]
    first_at: UtcTimestamp
    last_at: UtcTimestamp
    object_type: str | None = None
    object_id: str | None = None
    resolved_at: UtcTimestamp | None = None
    resolved_by: str | None = None


class AlertPage(OutModel):
    items: list[AlertOut]
    next_cursor: str | None


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    resolution: str = Field(min_length=1, max_length=review.RESOLUTION_MAX,
                            description="处理结论（加密保存，不出现在日志、审计或接口应答中）")

    _clean = field_validator("resolution")(_no_control_chars)


def _out(row: Alert) -> AlertOut:
    return AlertOut(id=row.id, rule=row.rule, severity=row.severity, actor=row.actor, at=row.first_at,
                    count=row.count, status=row.status,
                    first_at=row.first_at, last_at=row.last_at, object_type=row.object_type,
                    object_id=row.object_id, resolved_at=row.resolved_at, resolved_by=row.resolved_by)


@bp.get("/v1/alerts")
@operation(summary="告警列表（新的在前，按编号游标分页；可按状态、规则筛选）", tags=TAGS, response=AlertPage,
           errors=(422,),
           query=(("status", {"type": "string", "enum": list(ALERT_STATES)}, "open 未处理；resolved 已处理"),
                  ("rule", {"type": "string", "enum": sorted(RULES)}, "规则编号"),
                  ("limit", lambda st: {"type": "integer", "minimum": 1, "maximum": st.page_max, "default": 50},
                   "每页条数"),
                  ("cursor", {"type": "string", "pattern": _ID}, "上一页返回的 next_cursor")))
@requires(Permission.ALERT_READ)
def list_alerts() -> Response:
    query.only("status", "rule", "limit", "cursor")
    status = query.choice("status", ALERT_STATES, "status 须为 open 或 resolved")
    rule = query.choice("rule", RULES, "未知的告警规则")
    rows, cursor = review.list_alerts(db_session(), authenticate(), status=status, rule=rule, limit=query.limit(),
                                      cursor=request.args.get("cursor"))
    return respond(AlertPage, AlertPage(items=[_out(r) for r in rows], next_cursor=cursor))


@bp.post("/v1/alerts/<alert_id>/resolve")
@operation(summary="处理告警：记录处理结论（已处理的告警 409 alert_resolved；账号停用须另行 waybill users enable）",
           tags=TAGS, body=ResolveIn, response=AlertOut, errors=(404, 409))
@requires(Permission.ALERT_RESOLVE)
def resolve(alert_id: str) -> Response:
    data = parse(ResolveIn, json_body())
    row = review.resolve(db_session(), services().codec, authenticate(), alert_id, data.resolution)
    return respond(AlertOut, _out(row))
