"""The one table mapping domain exceptions to HTTP answers, and the JSON error handlers."""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, Response, g, has_request_context, jsonify
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from printing.errors import LabelError
from waybill.crypto.kms import KeyServiceUnavailable
from waybill.crypto.vault import CryptoError, DataDestroyed
from waybill.errors import (
    AlertResolved,
    AuditWalkFailed,
    AuthenticationFailed,
    Conflict,
    DomainError,
    DuplicateMerchantOrder,
    IdempotencyConflict,
    InDelivery,
    InvalidCode,
    InvalidRegion,
    InvalidStatusTransition,
    LegallyHeld,
    LimitsUnavailable,
    NotApproved,
    NotFound,
    ObligationsLapsed,
    PartnerAgreementExpired,
    PermissionDenied,
    PersonalDataDestroyed,
    PickupCodeUnavailable,
    PickupLocked,
    RateLimited,
    ReprintLimitReached,
    RequestAlreadyOpen,
    SandboxShipment,
    TooManyConcurrentRequests,
    Unavailable,
    ValidationFailed,
)
from waybill.messages.base import ProviderError as MessageProviderError
from waybill.virtual_numbers.base import NoAvailableNumber, ProviderError

log = logging.getLogger("waybill.web")

# Most specific first; the first isinstance match wins.
ERROR_TABLE: list[tuple[type[Exception], int, str]] = [
    (InvalidRegion, 422, "invalid_region"),
    (ValidationFailed, 422, "validation_error"),
    (NoAvailableNumber, 503, "no_available_number"),
    (AuditWalkFailed, 503, "audit_walk_failed"),
    (LimitsUnavailable, 503, "limits_unavailable"),
    (ProviderError, 502, "provider_error"),
    (MessageProviderError, 502, "provider_error"),
    (NotFound, 404, "not_found"),
    (PersonalDataDestroyed, 410, "destroyed"),
    (InDelivery, 409, "in_delivery"),
    (LegallyHeld, 409, "held"),
    (IdempotencyConflict, 409, "idempotency_conflict"),
    (RequestAlreadyOpen, 409, "request_open"),
    (DuplicateMerchantOrder, 409, "duplicate_merchant_order_id"),
    (InvalidStatusTransition, 409, "invalid_status"),
    (NotApproved, 409, "not_approved"),
    (ReprintLimitReached, 409, "reprint_limit_reached"),
    (SandboxShipment, 409, "test_mode"),
    (PickupLocked, 409, "pickup_locked"),
    (PickupCodeUnavailable, 409, "pickup_code_unavailable"),
    (PartnerAgreementExpired, 409, "partner_agreement_expired"),
    (AlertResolved, 409, "alert_resolved"),
    (Conflict, 409, "conflict"),
    (InvalidCode, 401, "invalid_code"),
    (AuthenticationFailed, 401, "unauthenticated"),
    (ObligationsLapsed, 403, "obligations_lapsed"),
    (PermissionDenied, 403, "forbidden"),
    (TooManyConcurrentRequests, 429, "too_many_concurrent_requests"),
    (RateLimited, 429, "rate_limited"),
    (DomainError, 400, "bad_request"),
]

# A dependency that is down, restarting or saturated: answered at once with 503 and Retry-After (seconds), never
# a 500 or a hang; nothing of the request committed (its transaction rolled back, or never began), so the client
# retries (a create with its Idempotency-Key gets the original answer if the commit did land). Most specific first.
# The pool discards the dead connections (waybill/db.py: pre-ping, a disconnect invalidates the pool), so the
# first request after the database is back is served again without a restart.
DEPENDENCY_TABLE: list[tuple[type[Exception], str, str, int]] = [
    # Cannot connect, the server shut down or restarted mid-transaction, a connection dropped (psycopg raises
    # OperationalError for each; SQLite's "database is locked" after its busy timeout is one too).
    (sa_exc.OperationalError, "database_unavailable", "数据库暂时不可用，请稍后重试", 2),
    # A connection that was closed under the driver (a socket the server dropped between statements).
    (sa_exc.InterfaceError, "database_unavailable", "数据库暂时不可用，请稍后重试", 2),
    # Every pooled connection busy for pool_timeout: the database is too slow to keep up (overload).
    (sa_exc.TimeoutError, "database_busy", "数据库繁忙，请稍后重试", 2),
]
DATABASE_UNAVAILABLE = DEPENDENCY_TABLE[0]

HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 411: "length_required",
              413: "payload_too_large", 415: "unsupported_media_type", 429: "rate_limited"}
HTTP_MESSAGES = {404: "对象不存在", 405: "不支持该请求方法", 413: "请求体过大", 415: "请求体须为 JSON",
                 400: "请求格式错误", 401: "身份验证失败", 403: "无权执行此操作"}


def error_payload(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field, **extra}}


def note_code(code: str) -> None:
    """Remember the answer's error code for the request's metrics (a code from this module's tables)."""
    if has_request_context():
        g.error_code = code


def classify(exc: DomainError) -> tuple[int, str]:
    for cls, status, code in ERROR_TABLE:
        if isinstance(exc, cls):
            return status, code
    return 400, "bad_request"


def domain_error_response(exc: DomainError) -> Response:
    status, code = classify(exc)
    extra: dict[str, Any] = {}
    details = getattr(exc, "details", None)
    if details and len(details) > 1:
        extra["details"] = details
    resp = jsonify(error_payload(code, exc.message, exc.field, **extra))
    note_code(code)
    resp.status_code = status
    if isinstance(exc, RateLimited | Unavailable):
        resp.headers["Retry-After"] = str(max(1, math.ceil(min(exc.retry_after, 86400))))
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="waybill"'
    return resp


def dependency_failure(exc: BaseException) -> tuple[type[Exception], str, str, int] | None:
    """The :data:`DEPENDENCY_TABLE` row for ``exc`` (a database error that means "down, try again"), or None.

    Any other DBAPI error whose connection SQLAlchemy found dead (``connection_invalidated``) is the database's
    unavailability too; the rest (an integrity or programming error) are bugs and stay 500s.
    """
    for row in DEPENDENCY_TABLE:
        if isinstance(exc, row[0]):
            return row
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return DATABASE_UNAVAILABLE
    return None


def unavailable_response(row: tuple[type[Exception], str, str, int] = DATABASE_UNAVAILABLE,
                         exc: BaseException | None = None) -> Response:
    """``503`` with ``Retry-After`` for a failed dependency; the log names the error type only (its text may
    quote a host or a statement)."""
    _cls, code, message, retry_after = row
    log.error("dependency unavailable", extra={"error_code": code,
                                               "error_type": type(exc).__name__ if exc is not None else None})
    resp = jsonify(error_payload(code, message))
    note_code(code)
    resp.status_code = 503
    resp.headers["Retry-After"] = str(retry_after)
    return resp


def register(app: Flask) -> None:
    app.register_error_handler(DomainError, domain_error_response)

    @app.errorhandler(sa_exc.SQLAlchemyError)
    def _database(exc: sa_exc.SQLAlchemyError) -> Response:
        row = dependency_failure(exc)
        if row is None:
            return _internal("unhandled exception", exc, "internal_error", "服务内部错误", stack=True)
        return unavailable_response(row, exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = HTTP_CODES.get(status, "http_error")
        resp = jsonify(error_payload(code, HTTP_MESSAGES.get(status, "请求无法处理")))
        note_code(code)
        resp.status_code = status
        if status == 405 and exc.get_response().headers.get("Allow"):
            resp.headers["Allow"] = exc.get_response().headers["Allow"]
        return resp

    @app.errorhandler(LabelError)
    def _label(exc: LabelError) -> Response:
        # The renderer's release gate refused a label: a bug upstream, never the caller's input.
        return _internal("label refused by the renderer", exc, "label_refused", "面单生成失败")

    @app.errorhandler(DataDestroyed)
    def _destroyed(exc: DataDestroyed) -> Response:
        # A path that reached for destroyed data: the data is gone, which is the caller's answer (never a 500).
        return domain_error_response(PersonalDataDestroyed())

    @app.errorhandler(KeyServiceUnavailable)
    def _kms_down(exc: KeyServiceUnavailable) -> Response:
        # The KMS did not answer: nothing is wrong with the request or the data, so a retry later succeeds.
        log.error("key service unavailable", extra={"error_type": type(exc).__name__})
        resp = jsonify(error_payload("key_service_unavailable", "密钥服务暂不可用，请稍后重试"))
        note_code("key_service_unavailable")
        resp.status_code = 503
        resp.headers["Retry-After"] = "5"
        return resp

    @app.errorhandler(CryptoError)
    def _crypto(exc: CryptoError) -> Response:
        # Never says which key or value; the log line names the failure type only.
        return _internal("crypto failure", exc, "internal_error", "服务内部错误")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        return _internal("unhandled exception", exc, "internal_error", "服务内部错误", stack=True)


def _internal(what: str, exc: Exception, code: str, message: str, *, stack: bool = False) -> Response:
    """A 500 in the contract's shape; the log carries the failure type (and stack), never its text."""
    if stack:
        log.error(what, exc_info=exc)
    else:
        log.error(what, extra={"error_type": type(exc).__name__})
    resp = jsonify(error_payload(code, message))
    note_code(code)
    resp.status_code = 500
    return resp
