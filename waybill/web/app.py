"""Application factory and the per-request unit of work.

One transaction per request: the session is opened lazily, committed in ``after_request`` when
the answer is a success and rolled back otherwise — in that one place. Audit events marked
durable (denied attempts) are written even when the request's own work is rolled back.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.routing import BaseConverter

import printing
from waybill import logs
from waybill.errors import Conflict
from waybill.extensions import load_extensions
from waybill.metrics import UNMATCHED, method_label
from waybill.services import Services, build
from waybill.settings import Settings, load_settings
from waybill.uow import CommitFailed, UnitOfWork
from waybill.web import errors as api_errors
from waybill.web.auth import rate_limit_headers, release_heavy_slots
from waybill.web.context import EXTENSION_KEY, services
from waybill.web.openapi import build_document

log = logging.getLogger("waybill.request")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CONVERTER = re.compile(r"<[a-z_]+:([a-zA-Z_]+)>")


def create_app(settings: Settings | None = None, *, services_override: Services | None = None,
               **overrides: Any) -> Flask:
    """Build the WSGI app. ``overrides`` are setting names (tests pass ``database_url=...``)."""
    settings = settings or load_settings(**overrides)
    svc = services_override or build(settings)
    app = Flask("waybill")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    # No automatic OPTIONS answers (an empty 200 the document does not describe, its Allow header listing
    # methods of routes that only share the path's shape): OPTIONS gets the 405 JSON error with Allow naming the
    # documented methods, like any method a path does not serve.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    # Shipment ids in paths (shp_...): /v1/shipments/search and /batch are not ids, so GET there is a 405 too.
    app.url_map.converters["shp"] = ShipmentIdConverter
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = svc
    logs.configure(settings.log_level)
    # A missing CJK font is a start-up error, never tofu boxes on a label.
    printing.check_fonts()

    api_errors.register(app)

    @app.errorhandler(CommitFailed)
    def _commit_failed(exc: CommitFailed) -> Response:
        # A view that ended part of its work early (UnitOfWork.commit_so_far) and could not commit it.
        return _commit_failure_response(exc)

    from waybill.web import operations
    from waybill.web.alerts import bp as alerts_bp
    from waybill.web.incidents import bp as incidents_bp
    from waybill.web.labels import bp as labels_bp
    from waybill.web.merchant import bp as merchant_bp
    from waybill.web.notice import bp as notice_bp
    from waybill.web.phone_receipts import bp as phone_bp
    from waybill.web.subject_page import bp as subject_page_bp
    from waybill.web.tracking import bp as tracking_bp
    from waybill.web.webhooks import bp as webhooks_bp

    app.register_blueprint(merchant_bp)
    app.register_blueprint(labels_bp)
    app.register_blueprint(phone_bp)
    app.register_blueprint(notice_bp)
    app.register_blueprint(subject_page_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(tracking_bp)
    app.register_blueprint(incidents_bp)
    app.register_blueprint(alerts_bp)
    operations.install(app, svc)
    # The courier side (and any other upper layer) plugs in through entry points; see waybill.extensions.
    for ext in load_extensions():
        ext.init_app(app)

    @app.before_request
    def _begin() -> None:
        rid = request.headers.get("X-Request-Id", "")
        g.request_id = rid if _REQUEST_ID.match(rid) else secrets.token_hex(8)
        g.t0 = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        tx: UnitOfWork | None = g.pop("uow", None)
        if tx is not None:
            response = _end_transaction(tx, response)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        rate_limit_headers(response)
        response.headers.setdefault("Cache-Control", "no-store")
        # Every answer: no content sniffing, no referrer leaks, and a CSP that allows nothing the API does not
        # serve (JSON and label files; the OpenAPI document is data, not a page).
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        response.headers.setdefault("X-Frame-Options", "DENY")
        principal = g.get("principal")
        # The route pattern, not the raw path: whatever a caller puts in a URL never reaches the log or metrics.
        # (Without converter names: /v1/shipments/<shipment_id>, however the segment is matched.)
        route = _CONVERTER.sub(r"<\1>", request.url_rule.rule) if request.url_rule is not None else UNMATCHED
        seconds = time.perf_counter() - g.get("t0", time.perf_counter())
        # gunicorn passes any token as a method ("BAD13812345678"): the log names the standard ones only.
        method = method_label(request.method)
        log.info("request", extra={
            "request_id": g.get("request_id"), "method": method, "path": route,
            "status": response.status_code, "actor": principal.actor if principal else None,
            "duration_ms": round(seconds * 1000, 2),
        })
        services().metrics.observe_request(route, method, response.status_code, seconds,
                                           g.get("error_code"))
        return response

    @app.teardown_request
    def _teardown(_exc: BaseException | None) -> None:
        tx: UnitOfWork | None = g.pop("uow", None)
        if tx is not None:  # after_request never ran (an error escaped): undo, keep what must survive.
            with contextlib.suppress(CommitFailed):  # logged already; the escaped error is the answer
                tx.finish(success=False)
        release_heavy_slots()  # after the commit above or in after_request: the heavy work is over

    @app.get("/openapi.json")
    def openapi() -> Response:
        doc = app.extensions.get("waybill_openapi")
        if doc is None:  # built once, on first request, when every blueprint is registered
            doc = app.extensions["waybill_openapi"] = build_document(app)
        return jsonify(doc)

    return app


class ShipmentIdConverter(BaseConverter):
    """A path segment that can be a shipment id (``shp_`` and more); whether it exists is the view's question."""

    regex = r"shp_[^/]+"


def _end_transaction(tx: UnitOfWork, response: Response) -> Response:
    """End the request's unit of work: commit a success, roll back anything else (see waybill.uow)."""
    try:
        tx.finish(success=response.status_code < 400)
    except CommitFailed as exc:
        return _commit_failure_response(exc)
    return response


def _commit_failure_response(exc: CommitFailed) -> Response:
    if exc.reason == "conflict":
        return api_errors.domain_error_response(Conflict())
    return _unavailable()


def _log_db_error(message: str, exc: Exception) -> None:
    logging.getLogger("waybill.db").error(message, extra={"error_type": type(exc).__name__})


def _unavailable() -> Response:
    # The commit itself failed on a database error (logged by the unit of work): the dependency table's answer.
    return api_errors.unavailable_response()
