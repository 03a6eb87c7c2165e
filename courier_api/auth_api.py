"""Staff authentication endpoints: ``POST /v1/auth/token`` (login) and ``POST /v1/auth/logout``."""

from __future__ import annotations

import logging
from typing import Literal

from flask import Blueprint, Flask, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from courier_api import staff
from courier_api.services import courier_services
from waybill import audit
from waybill.alerts import store as alert_store
from waybill.errors import AuthenticationFailed, PermissionDenied, RateLimited
from waybill.schemas import OutModel, parse
from waybill.uow import keep_on_error
from waybill.web.auth import authenticate, bearer_token
from waybill.web.context import client_address, db_session, services
from waybill.web.merchant import json_body
from waybill.web.openapi import operation, respond

bp = Blueprint("staff_auth", __name__)
log = logging.getLogger("waybill.alerts")
TAGS = ("auth",)


class TokenRequest(BaseModel):
    """Login body. Not whitespace-stripped: a password is taken exactly as typed."""

    model_config = ConfigDict(extra="forbid", strict=True)

    username: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$", description="用户名")
    password: str = Field(min_length=1, max_length=staff.PASSWORD_MAX_LEN, description="密码")
    totp: str | None = Field(default=None, pattern=r"^[0-9]{6}$",
                             description="动态验证码（RFC 6238，6 位）；审计员、隐私官、管理员必填")


class TokenResponse(OutModel):
    access_token: str = Field(description="访问令牌，放在 Authorization: Bearer 中")
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the scheme name)
    expires_in: int = Field(description="有效期（秒）")
    role: str = Field(description="角色")


def install(app: Flask) -> None:
    """Register the blueprint (its login throttle lives in the courier registry)."""
    app.register_blueprint(bp)


def _setting(name: str, default: int) -> int:
    # The settings gain these knobs later; until then the domain's constants apply.
    return int(getattr(services().settings, name, default))


def _alert(session: Session, patterns: list[str]) -> None:
    """Record each newly raised login alert (deduplicated by the throttle: once per window and key)."""
    for pattern in patterns:
        # The client address is on the event (audit context); the username never is (it may be a typo'd
        # password, or someone's name), so the event says the pattern only.
        audit.record(session, None, "alert.login_failures", outcome="alert", purpose=f"pattern={pattern}",
                     durable=True)
        log.warning("login failure alert", extra={"pattern": pattern})


@bp.post("/v1/auth/token")
@operation(summary="员工登录，换取短期访问令牌", tags=TAGS, body=TokenRequest, response=TokenResponse,
           security=None, errors=(401, 422, 429))
def token() -> Response:
    throttle = courier_services().login
    client = client_address() or "unknown"
    body: TokenRequest = parse(TokenRequest, json_body())
    # Before the password hash is computed: a throttled client costs no Argon2 work and writes nothing.
    wait = throttle.begin(body.username, client)
    if wait is not None:
        raise RateLimited(wait)
    session = db_session()
    svc = services()
    try:
        result = staff.login(session, body.username, body.password, body.totp,
                             secret=svc.keys.secret("session_token"), codec=svc.codec,
                             ttl_s=_setting("staff_token_ttl_s", staff.ACCESS_TOKEN_TTL_S))
    except staff.LoginFailed:
        _alert(session, throttle.failed(body.username, client))
        if throttle.stuffing(body.username, client):
            # The client address is the alert's object: what security staff block, and already on every audit
            # event of the request; the usernames tried are not kept anywhere (digests in the counter only).
            alert_store.fire(session, None, "credential_stuffing", object_type="client", object_id=client[:64],
                             detail="distinct usernames over threshold")
            log.warning("credential stuffing alert", extra={"client": client})
        # The refusal's own work (failure counter, audit events) must outlive the 401, and this
        # request did nothing else: the unit of work commits it although the answer is an error.
        keep_on_error(session)
        raise
    throttle.succeeded(body.username, client)
    resp = respond(TokenResponse, TokenResponse(access_token=result.access_token, expires_in=result.expires_in,
                                                role=result.role))
    resp.headers["Pragma"] = "no-cache"
    return resp


@bp.post("/v1/auth/logout")
@operation(summary="注销：吊销当前访问令牌", tags=TAGS, status=204)
def logout() -> tuple[str, int]:
    principal = authenticate()
    if principal.kind != "staff":
        raise PermissionDenied()
    session = db_session()
    if not staff.revoke_token(session, bearer_token(), secret=services().keys.secret("session_token")):
        raise AuthenticationFailed()  # unreachable in practice: authenticate() just accepted it
    audit.record(session, principal, "auth.logout", object_type="staff_user", object_id=principal.id)
    return "", 204
