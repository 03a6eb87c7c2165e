"""HTTP of the data subjects' self-service (``/v1/subject/...``) and of the privacy office's request queue.

Every subject answer carries ``Cache-Control: no-store`` (it is someone's personal data, or a step to it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import Blueprint, Flask, Response, request
from pydantic import BaseModel, ConfigDict, Field

from courier_api.subjects import access, requests, verify
from courier_api.subjects.service import subject_services
from waybill.errors import InvalidCode, ValidationFailed
from waybill.permissions import Permission
from waybill.phones import InvalidPhone, normalize_phone
from waybill.schemas import OutModel, UtcTimestamp, parse
from waybill.uow import keep_on_error
from waybill.waybill_no import is_valid_waybill_no
from waybill.web import query
from waybill.web.auth import authenticate, record_failure, refuse_spent_client, requires
from waybill.web.context import client_address, db_session, services
from waybill.web.merchant import json_body
from waybill.web.openapi import operation, respond

bp = Blueprint("subjects", __name__)
_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
TAGS = ("subject",)
OFFICE_TAGS = ("privacy",)


class ChallengeIn(BaseModel):
    model_config = _STRICT
    waybill_no: str = Field(min_length=1, max_length=32, description="运单号")
    phone: str = Field(min_length=1, max_length=40, description="运单上寄件人或收件人的电话")


class ChallengeOut(OutModel):
    challenge_id: str
    expires_at: UtcTimestamp


class SessionIn(BaseModel):
    model_config = _STRICT
    challenge_id: str = Field(min_length=1, max_length=64)
    code: str = Field(pattern=r"^[0-9]{6}$", description="短信验证码（6 位）")


class SessionOut(OutModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the scheme name)
    expires_in: int
    party: Literal["sender", "recipient"]
    waybill_no: str


class PersonalDataOut(OutModel):
    name: str
    phone: str
    province: str
    city: str
    district: str
    address: str


class DisclosureOut(OutModel):
    omit_none = frozenset({"partner_kind"})

    kind: Literal["provider", "role", "partner"]
    recipient: str = Field(description="接收方：服务商类别、岗位（不含员工姓名或编号）或合作方名称")
    description: str
    fields: list[str]
    last_at: UtcTimestamp
    partner_kind: str | None = Field(default=None, description="合作方类型：locker / station / franchise / authority")


class PurposeOut(OutModel):
    id: str
    name: str
    required: bool
    active: bool


class SubjectDataOut(OutModel):
    waybill_no: str
    party: Literal["sender", "recipient"]
    personal_data: PersonalDataOut | None = Field(description="完整个人信息；已销毁时为 null")
    personal_data_status: Literal["available", "destroyed"]
    status: str
    purposes: list[PurposeOut]
    retained_until: UtcTimestamp | None
    retention_note: str
    disclosed_to: list[DisclosureOut]


class AccessItemOut(OutModel):
    omit_none = frozenset({"station", "partner", "partner_kind"})

    at: UtcTimestamp
    role: str
    action: str
    purpose: str | None
    fields: list[str]
    station: str | None = None
    partner: str | None = None
    partner_kind: str | None = None


class AccessLogOut(OutModel):
    items: list[AccessItemOut]


class RequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["correct", "delete", "withdraw_consent", "complaint"]
    changes: dict[str, Any] | None = Field(default=None, description="更正内容：字段名 -> 新值（仅 correct）")
    text: str | None = Field(default=None, max_length=requests.TEXT_MAX, description="说明（投诉必填）")


class RequestOut(OutModel):
    omit_none = frozenset({"reason", "changes", "text"})

    id: str
    type: str
    status: Literal["received", "completed", "rejected"]
    received_at: UtcTimestamp
    due_at: UtcTimestamp
    due_fallback: bool = Field(description="截止日期按仅周末推算（该年节假日安排尚未公布）")
    decided_at: UtcTimestamp | None
    reason: str | None = None
    changes: dict[str, Any] | None = Field(default=None, description="申请人提交的更正内容（仅申请人与隐私官可见）")
    text: str | None = Field(default=None, description="申请人的说明（仅申请人与隐私官可见）")


class QueueItem(RequestOut):
    days_left: int
    overdue: bool


class QueuePage(OutModel):
    items: list[QueueItem]
    next_cursor: str | None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    decision: Literal["complete", "reject"]
    reason: str | None = Field(default=None, max_length=requests.TEXT_MAX, description="理由（驳回必填，告知申请人）")


def install(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.after_request
def _no_store(resp: Response) -> Response:
    if request.path.startswith("/v1/subject/"):
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Pragma"] = "no-cache"
    return resp


@bp.post("/v1/subject/challenge")
@operation(summary="个人信息主体：用运单号和电话申请短信验证码（无论是否匹配，答复相同）", tags=TAGS, body=ChallengeIn,
           response=ChallengeOut, status=202, security=None, errors=(422, 429))
def challenge() -> Response:
    data: ChallengeIn = parse(ChallengeIn, json_body())
    if not is_valid_waybill_no(data.waybill_no):
        raise ValidationFailed("运单号格式不正确", field="waybill_no")
    try:
        phone = normalize_phone(data.phone).number
    except InvalidPhone as exc:
        raise ValidationFailed(str(exc), field="phone") from None
    sub = subject_services()
    sub.throttle(data.waybill_no, phone, client_address() or "unknown")
    session = db_session()
    # The code goes out from the outbox (courier_api.subjects.service.send_code), after this commits.
    sent = verify.challenge(session, sub.verify, data.waybill_no, phone)
    return respond(ChallengeOut, ChallengeOut(challenge_id=sent.challenge.id, expires_at=sent.challenge.expires_at))


@bp.post("/v1/subject/session")
@operation(summary="个人信息主体：以验证码换取短期访问令牌（错 5 次验证码作废）", tags=TAGS, body=SessionIn,
           response=SessionOut, security=None, errors=(401, 422, 429))
def open_session() -> Response:
    refuse_spent_client()
    data: SessionIn = parse(SessionIn, json_body())
    session = db_session()
    try:
        opened = verify.open_session(session, subject_services().verify, data.challenge_id, data.code)
    except InvalidCode:
        keep_on_error(session)  # the counted attempt must outlive the 401
        record_failure(session, "subject.session")
        raise
    return respond(SessionOut, SessionOut(access_token=opened.token, expires_in=opened.expires_in,
                                          party=opened.party,
                                          waybill_no=opened.waybill_no))


@bp.get("/v1/subject/data")
@operation(summary="个人信息主体：查阅、复制本人在该运单上的个人信息、用途、保存期限和接收方", tags=TAGS,
           response=SubjectDataOut, errors=(404,))
@requires(Permission.SUBJECT_DATA_READ)
def data() -> Response:
    found = access.view(db_session(), services().codec, authenticate(),
                        retention_days=services().settings.retention_days, notice=services().privacy_notice)
    return respond(SubjectDataOut, found)


@bp.get("/v1/subject/access-log")
@operation(summary="个人信息主体：本人信息的每次访问与提供记录（只含岗位和站点）", tags=TAGS,
           response=AccessLogOut)
@requires(Permission.SUBJECT_LOG_READ)
def access_log() -> Response:
    return respond(AccessLogOut, AccessLogOut(items=[AccessItemOut.model_validate(i)
                                                     for i in access.access_log(db_session(), authenticate())]))


def _request_out(model: type[RequestOut], req: Any, now: datetime | None = None, *, content: bool = False) -> Any:
    return model.model_validate(requests.present(services().codec, req, now, content=content))


@bp.post("/v1/subject/requests")
@operation(summary="个人信息主体：提出更正、删除、撤回同意或投诉（30 天内答复）", tags=TAGS, body=RequestIn,
           response=RequestOut, status=201, errors=(404, 409))
@requires(Permission.SUBJECT_REQUEST)
def file_request() -> Response:
    body = json_body()
    data: RequestIn = parse(RequestIn, body)
    req = requests.file_request(db_session(), services(), authenticate(), data.type, data.changes, data.text)
    return respond(RequestOut, _request_out(RequestOut, req))


@bp.get("/v1/subject/requests/<request_id>")
@operation(summary="个人信息主体：本人申请的处理状态（驳回时含理由）", tags=TAGS, response=RequestOut, errors=(404,))
@requires(Permission.SUBJECT_REQUEST)
def get_request(request_id: str) -> Response:
    req = requests.own_request(db_session(), authenticate(), request_id)
    return respond(RequestOut, _request_out(RequestOut, req, content=True))


@bp.get("/v1/privacy/subject-requests")
@operation(summary="隐私官：个人信息主体申请队列（截止日期、剩余天数、是否逾期）", tags=OFFICE_TAGS,
           response=QueuePage, errors=(422,),
           query=(("status", {"type": "string", "enum": list(requests.STATUSES)}, "按状态过滤"),
                  ("limit", lambda s: {"type": "integer", "minimum": 1, "maximum": s.page_max, "default": 50},
                   "每页条数"),
                  ("cursor", "string", "上一页的 next_cursor")))
@requires(Permission.SUBJECT_REQUEST_DECIDE)
def office_queue() -> Response:
    query.only("status", "limit", "cursor")
    status = query.choice("status", requests.STATUSES, "status 须为 " + " / ".join(requests.STATUSES))
    rows, cursor = requests.queue(db_session(), authenticate(), status=status, limit=query.limit(),
                                  cursor=request.args.get("cursor"))
    return respond(QueuePage, QueuePage(items=[_request_out(QueueItem, r) for r in rows], next_cursor=cursor))


@bp.get("/v1/privacy/subject-requests/<request_id>")
@operation(summary="隐私官：查看一项申请及其内容（更正内容、说明），以便办理；读取留审计", tags=OFFICE_TAGS,
           response=QueueItem, errors=(404,))
@requires(Permission.SUBJECT_REQUEST_DECIDE)
def office_request(request_id: str) -> Response:
    req = requests.office_request(db_session(), services().codec, authenticate(), request_id)
    return respond(QueueItem, _request_out(QueueItem, req, content=True))


@bp.post("/v1/privacy/subject-requests/<request_id>/decision")
@operation(summary="隐私官：办结（执行更正/删除/撤回同意）或驳回（须说明理由）个人信息主体申请", tags=OFFICE_TAGS,
           body=DecisionIn, response=QueueItem, errors=(404, 409))
@requires(Permission.SUBJECT_REQUEST_DECIDE)
def decide(request_id: str) -> Response:
    data: DecisionIn = parse(DecisionIn, json_body())
    req = requests.decide(db_session(), services(), authenticate(), request_id, data.decision, data.reason)
    return respond(QueueItem, _request_out(QueueItem, req))
