"""Operational endpoints: liveness (``/healthz``), readiness (``/readyz``) and Prometheus metrics (``/metrics``).

None of them takes a merchant's or a staff member's credentials: a load balancer and a scraper have none.
``/metrics`` can require a bearer token of its own (``WAYBILL_METRICS_TOKEN_FILE``): its series hold no
personal data, but they do show business volumes (labels printed, scans, refusals), so when the service port
is reachable from outside the operators' network the token keeps them for the scraper.
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy.exc import DBAPIError

from waybill import outbox
from waybill.schemas import OutModel
from waybill.services import Services
from waybill.settings import SettingsError
from waybill.uow import unit_of_work
from waybill.web import errors as api_errors
from waybill.web.context import services
from waybill.web.openapi import operation, respond

bp = Blueprint("operations", __name__)
TOKEN_KEY = "waybill_metrics_token"  # noqa: S105 (a registry key, not a secret)
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{32,512}$")
TAGS = ("operations",)


class HealthOut(OutModel):
    ok: bool


class CheckOut(OutModel):
    """From :class:`waybill.readiness.CheckResult`: ``error`` (the failure's type) only when it failed."""

    omit_none = frozenset({"error"})

    ok: bool
    error: str | None = None


class ReadinessOut(OutModel):
    ok: bool
    checks: dict[str, CheckOut]


def load_metrics_token(path: Path) -> bytes:
    """The scraper's bearer token from its file: owner-only, at least 32 URL-safe characters."""
    try:
        st = path.stat()
        raw = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise SettingsError("WAYBILL_METRICS_TOKEN_FILE cannot be read") from None
    if st.st_mode & 0o077:
        raise SettingsError("WAYBILL_METRICS_TOKEN_FILE must be readable by its owner only (chmod 600)")
    if not _TOKEN.match(raw):
        raise SettingsError("WAYBILL_METRICS_TOKEN_FILE must hold one token of at least 32 URL-safe characters")
    return raw.encode()


def install(app: Flask, svc: Services) -> None:
    """Register the blueprint; a bad metrics token file stops the start, like any bad setting."""
    token_file = svc.settings.metrics_token_file
    app.extensions[TOKEN_KEY] = load_metrics_token(token_file) if token_file is not None else None
    app.register_blueprint(bp)


@bp.get("/healthz")
@operation(summary="存活探针：进程能应答 HTTP（不访问数据库）", tags=TAGS, response=HealthOut, security=None)
def healthz() -> Response:
    """Liveness: the process answers HTTP. It touches nothing else (a database outage must not restart it)."""
    return respond(HealthOut, HealthOut(ok=True))


@bp.get("/readyz")
@operation(summary="就绪探针：数据库、密钥库与 Redis（如已配置）均可用时 200，否则 503", tags=TAGS,
           response=ReadinessOut, also=(503,), security=None)
def readyz() -> Response:
    """Readiness: 200 when the database, the key store and Redis (if configured) answer, else 503."""
    ok, checks = services().readiness.run()
    resp = respond(ReadinessOut, ReadinessOut(ok=ok, checks={name: CheckOut.model_validate(result)
                                                             for name, result in checks.items()}),
                   200 if ok else 503)
    if not ok:
        resp.headers["Retry-After"] = "5"
    return resp


@bp.get("/metrics")
@operation(summary="Prometheus 指标（可要求独立的 Bearer 令牌：WAYBILL_METRICS_TOKEN_FILE）", tags=TAGS,
           security=None, errors=(401,), content_types=("text/plain",))
def metrics() -> Response:
    expected: bytes | None = current_app.extensions.get(TOKEN_KEY)
    if expected is not None:
        header = request.headers.get("Authorization", "")
        given = header[len("Bearer "):].strip().encode() if header.startswith("Bearer ") else b""
        if not hmac.compare_digest(given, expected):
            resp = jsonify(api_errors.error_payload("unauthenticated", "身份验证失败"))
            api_errors.note_code("unauthenticated")
            resp.status_code = 401
            resp.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return resp
    svc = services()
    try:
        with unit_of_work(svc.session_factory) as tx:
            svc.metrics.outbox_depth.set(outbox.backlog(tx.session))
    except DBAPIError:
        pass  # the database is down: /readyz says so; the other series are still worth a scrape
    return Response(svc.metrics.exposition(), mimetype=None, content_type=svc.metrics.content_type)
