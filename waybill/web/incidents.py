"""The incident register's HTTP: record (privacy officers), read (privacy officers, auditors), notify, report.

Thin views over :mod:`waybill.incidents`. No answer holds an affected subject's personal data: subjects are
counts; the officer's own free texts are answered to privacy officers and auditors (and in the report).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from waybill.errors import ValidationFailed
from waybill.incidents import domain, report
from waybill.incidents.models import Incident
from waybill.permissions import Permission
from waybill.schemas import OutModel, UtcTimestamp, _no_control_chars, iso_utc, parse
from waybill.web import query
from waybill.web.auth import authenticate, requires
from waybill.web.context import db_session, services
from waybill.web.merchant import json_body
from waybill.web.openapi import operation, respond

bp = Blueprint("incidents", __name__)
TAGS = ("incidents",)
_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True, populate_by_name=False)
TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})$"
ACTOR = r"^(staff|merchant|system|subject):[A-Za-z0-9_.-]{1,64}$"
Kind = Literal["leak", "unauthorised_access", "tamper", "loss", "drill"]
Severity = Literal["general", "significant", "major", "critical"]
Category = Literal["name", "phone", "address", "parcel_description", "masked_waybill", "pickup_code", "other"]


class ScopeIn(BaseModel):
    """An actor (optional: anyone) and a window, or shipment ids."""

    model_config = _STRICT

    actor: str | None = Field(default=None, pattern=ACTOR, description="审计日志中的操作者，如 staff:usr_…")
    from_: str | None = Field(default=None, alias="from", pattern=TIMESTAMP, description="时间窗起点（含时区）")
    to: str | None = Field(default=None, pattern=TIMESTAMP, description="时间窗终点（含时区）")
    shipment_ids: list[str] | None = Field(default=None, min_length=1, max_length=domain.MAX_SHIPMENTS)


def _text(max_length: int, description: str) -> Any:
    return Field(default=None, min_length=1, max_length=max_length, description=description)


class IncidentIn(BaseModel):
    """GB/T 35273 10.1 c: who found it, when, where, which data, how many people, which system, effects."""

    model_config = _STRICT

    title: str = Field(min_length=1, max_length=200, description="事件名称（加密保存）")
    kind: Kind
    severity: Severity = Field(default="significant", description="一般/较大/重大/特别重大")
    detected_at: str = Field(pattern=TIMESTAMP, description="发现时间（含时区）")
    scope: ScopeIn
    found_by: str | None = _text(200, "发现人（加密保存）")
    location: str | None = _text(200, "发生地点（加密保存）")
    data_categories: list[Category] = Field(default_factory=list, max_length=7,
                                            description="涉及的个人信息种类；不填时按审计日志推断")
    system: str | None = _text(200, "涉及的信息系统（加密保存）")
    connected_effects: str | None = _text(1000, "对相连系统的影响（加密保存）")
    law_enforcement_contacted: bool = Field(default=False, description="是否已报警")
    cause: str | None = _text(1000, "原因（加密保存）")
    possible_harm: str | None = _text(1000, "可能造成的危害（加密保存）")
    remedies: str | None = _text(1000, "已采取的补救措施（加密保存）")

    _clean = field_validator("title", "found_by", "location", "system", "connected_effects", "cause",
                             "possible_harm", "remedies")(lambda v: None if v is None else _no_control_chars(v))


class TimelineIn(BaseModel):
    model_config = _STRICT

    action: Literal["note", "contained", "reported_to_regulator", "closed"]
    note: str | None = _text(1000, "说明（加密保存）")

    _clean = field_validator("note")(lambda v: None if v is None else _no_control_chars(v))


class CreatedOut(OutModel):
    id: str
    status: str
    affected_subjects: int = Field(description="受影响的个人（运单当事人）数")
    report_due_at: UtcTimestamp | None = Field(description="向主管部门报告的时限；一般事件与演练为 null")


class TimelineOut(OutModel):
    at: UtcTimestamp
    action: str
    actor: str


class NoticesOut(OutModel):
    sent: int
    unreachable: int = Field(description="固定电话或无法接收短信的号码：未通知")
    destroyed: int = Field(description="个人信息已销毁：无法通知")
    pending: int


class IncidentOut(OutModel):
    id: str
    title: str | None
    kind: str
    severity: str
    status: str
    detected_at: UtcTimestamp
    created_at: UtcTimestamp
    scope: dict[str, Any]
    data_categories: list[str]
    law_enforcement_contacted: bool
    affected_subjects: int
    notices: NoticesOut
    report_rule: str = Field(description="所适用的报告时限规则")
    report_due_at: UtcTimestamp | None
    reported_at: UtcTimestamp | None
    timeline: list[TimelineOut]


class IncidentItem(OutModel):
    id: str
    kind: str
    severity: str
    status: str
    detected_at: UtcTimestamp
    affected_subjects: int
    report_due_at: UtcTimestamp | None


class IncidentPage(OutModel):
    items: list[IncidentItem]
    next_cursor: str | None


class NotifiedOut(OutModel):
    notified: int = Field(description="本次发出的通知数（已通知的不再重复；演练为 0）")


class ReportOut(OutModel):
    """PIPL Art. 57: categories, cause, possible harm, remedies, what individuals can do, contact."""

    incident_id: str
    title: str | None
    kind: str
    severity: str
    status: str
    detected_at: str
    report_rule: str
    report_due_at: str | None
    categories_of_data: list[dict[str, str]]
    affected_subjects: int
    notices: NoticesOut
    cause: str
    possible_harm: str
    remedies_taken: dict[str, Any]
    what_individuals_can_do: str
    contact: str
    found_by: str | None
    location: str | None
    system: str | None
    connected_effects: str | None
    law_enforcement_contacted: bool


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed("时间无效", field=name) from None
    if moment.tzinfo is None:
        raise ValidationFailed("时间须带时区", field=name)
    try:
        # In UTC here, as the database stores it: an offset at the calendar's edge (0001-01-01T00:00+01:00)
        # has no UTC instant, which must be the caller's 422, not the insert's OverflowError.
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValidationFailed("时间超出范围", field=name) from None


def _scope(data: ScopeIn) -> domain.Scope:
    if data.shipment_ids is not None:
        extra = next((n for n, v in (("actor", data.actor), ("from", data.from_), ("to", data.to)) if v), None)
        if extra:
            raise ValidationFailed("shipment_ids 不能与 actor/from/to 同时给出", field=f"scope.{extra}")
        return domain.Scope(shipment_ids=data.shipment_ids)
    if data.from_ is None:
        raise ValidationFailed("scope 须给出 from 与 to，或 shipment_ids", field="scope.from")
    if data.to is None:
        raise ValidationFailed("scope 须给出 from 与 to，或 shipment_ids", field="scope.to")
    return domain.Scope(actor=data.actor, start=_when(data.from_, "scope.from"), end=_when(data.to, "scope.to"))


def _out(incident: Incident) -> dict[str, Any]:
    session = db_session()
    scope: dict[str, Any] = ({"actor": incident.scope_actor, "from": iso_utc(incident.scope_from),
                              "to": iso_utc(incident.scope_to) if incident.scope_to else None}
                             if incident.scope_from is not None else {"shipment_ids": domain.held_shipments(
                                 session, incident.id)})
    return {"id": incident.id, "title": domain.open_text(services().codec, incident, "title"), "kind": incident.kind,
            "severity": incident.severity, "status": incident.status, "detected_at": incident.detected_at,
            "created_at": incident.created_at, "scope": scope, "data_categories": incident.data_categories,
            "law_enforcement_contacted": incident.law_enforcement_contacted,
            "affected_subjects": incident.affected_count, "notices": domain.notice_counts(session, incident.id),
            "report_rule": incident.report_rule, "report_due_at": incident.report_due_at,
            "reported_at": incident.reported_at, "timeline": domain.timeline(session, incident.id)}


@bp.post("/v1/incidents")
@operation(summary="隐私官：登记个人信息安全事件（受影响的个人按审计日志计算）", tags=TAGS, body=IncidentIn,
           response=CreatedOut, status=201)
@requires(Permission.INCIDENT_MANAGE)
def create() -> Response:
    data: IncidentIn = parse(IncidentIn, json_body())
    detected = _when(data.detected_at, "detected_at")
    assert detected is not None
    texts = {"found_by": data.found_by, "location": data.location, "system": data.system,
             "connected_effects": data.connected_effects, "cause": data.cause, "harm": data.possible_harm,
             "remedies": data.remedies}
    new = domain.NewIncident(title=data.title, kind=data.kind, severity=data.severity, detected_at=detected,
                             scope=_scope(data.scope), data_categories=data.data_categories,
                             law_enforcement_contacted=data.law_enforcement_contacted,
                             texts={k: v for k, v in texts.items() if v is not None})
    svc = services()
    row = domain.create(db_session(), svc.codec, authenticate(), new, report_hours=svc.settings.incident_report_hours)
    return respond(CreatedOut, {"id": row.id, "status": row.status, "affected_subjects": row.affected_count,
                                "report_due_at": row.report_due_at}, status=201)


@bp.get("/v1/incidents")
@operation(summary="安全事件列表（新的在前，游标分页）", tags=TAGS, response=IncidentPage, errors=(422,),
           query=(("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "每页条数"),
                  ("cursor", {"type": "string", "pattern": "^inc_[0-9A-HJKMNP-TV-Z]{26}$"}, "上一页的 next_cursor")))
@requires(Permission.INCIDENT_READ)
def list_() -> Response:
    query.only("limit", "cursor")
    limit, cursor = query.limit(maximum=200), query.id_cursor("inc")
    rows = domain.list_incidents(db_session(), authenticate(), limit=limit, before=cursor)
    more, rows = len(rows) > limit, rows[:limit]
    items = [{"id": r.id, "kind": r.kind, "severity": r.severity, "status": r.status, "detected_at": r.detected_at,
              "affected_subjects": r.affected_count, "report_due_at": r.report_due_at} for r in rows]
    return respond(IncidentPage, {"items": items, "next_cursor": rows[-1].id if more and rows else None})


@bp.get("/v1/incidents/<incident_id>")
@operation(summary="安全事件：记录、时间线、报告时限与受影响人数（不含个人信息）", tags=TAGS, response=IncidentOut,
           errors=(404,))
@requires(Permission.INCIDENT_READ)
def get(incident_id: str) -> Response:
    return respond(IncidentOut, _out(domain.get(db_session(), authenticate(), incident_id)))


@bp.post("/v1/incidents/<incident_id>/timeline")
@operation(summary="隐私官：记录处置动作（说明、已控制、已报告主管部门、结案）", tags=TAGS, body=TimelineIn,
           response=IncidentOut, status=201, errors=(404,))
@requires(Permission.INCIDENT_MANAGE)
def add_timeline(incident_id: str) -> Response:
    session, principal = db_session(), authenticate()
    domain.get(session, principal, incident_id)  # an unknown incident is 404 before the body is judged
    data: TimelineIn = parse(TimelineIn, json_body())
    domain.record_action(session, services().codec, principal, incident_id, data.action, data.note)
    return respond(IncidentOut, _out(domain.get(session, principal, incident_id)), status=201)


@bp.post("/v1/incidents/<incident_id>/notify")
@operation(summary="隐私官：短信通知每位受影响的个人（已通知的不重复；演练不通知任何人）", tags=TAGS,
           response=NotifiedOut, errors=(404,))
@requires(Permission.INCIDENT_MANAGE)
def notify(incident_id: str) -> Response:
    svc = services()
    sent = domain.notify(db_session(), svc, authenticate(), incident_id, contact=svc.settings.incident_contact)
    return respond(NotifiedOut, {"notified": sent})


@bp.get("/v1/incidents/<incident_id>/report")
@operation(summary="隐私官：向主管部门的报告（个人信息保护法第五十七条各项；?format=pdf 为 PDF）", tags=TAGS,
           response=ReportOut, errors=(404, 422),
           query=(("format", {"type": "string", "enum": ["json", "pdf"], "default": "json"}, "报告格式"),),
           content_types=("application/json", "application/pdf"))
@requires(Permission.INCIDENT_MANAGE)
def report_(incident_id: str) -> Response:
    fmt = request.args.get("format", "json")
    unknown = set(request.args) - {"format"}
    if unknown:
        raise ValidationFailed("不支持的查询参数", field=sorted(unknown)[0])
    if fmt not in ("json", "pdf"):
        raise ValidationFailed("format 须为 json 或 pdf", field="format")
    session, svc, principal = db_session(), services(), authenticate()
    incident = domain.get(session, principal, incident_id)
    domain.add_event(session, svc.codec, incident, principal.actor, "report_generated")
    session.flush()
    body = report.report(session, svc.codec, incident, contact=svc.settings.incident_contact)
    if fmt == "pdf":
        resp = Response(report.report_pdf(body), mimetype="application/pdf")
        resp.headers["Content-Disposition"] = f'attachment; filename="{incident.id}.pdf"'
        return resp
    return respond(ReportOut, body)
