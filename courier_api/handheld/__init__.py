"""The courier handheld web app ``GET /app/courier/`` and its built files.

The app is static: a page, a style sheet, one script bundle, the QR decoder's worker and ZXing's WebAssembly
module, all built from ``frontend/courier-handheld/`` (``npm ci && npm run build``) into ``static/`` here and
committed, so the service serves them without Node.js. Nothing is loaded from another origin, and the
Content-Security-Policy says so; the only relaxation is ``'wasm-unsafe-eval'`` in ``script-src``, which lets
the decoder compile its ``.wasm`` (never ``'unsafe-eval'``: no JavaScript is compiled from strings). The
script talks to the courier API (``/v1/auth/token``, ``/v1/courier/...``, ``/v1/partners``); no personal data
passes through this module.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from flask import Blueprint, Flask, Response

from waybill.errors import NotFound
from waybill.web.openapi import operation

bp = Blueprint("courier_handheld", __name__)
TAGS = ("courier",)
PREFIX = "/app/courier/"
# Same origin only: no inline script or style, no plugins, no <base>, forms post here only, no framing.
# 'wasm-unsafe-eval' lets the bundled ZXing decoder compile its .wasm; workers fall back to script-src.
PAGE_CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; media-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
# The camera for this origin (the QR scan); nothing else the app does not use.
PERMISSIONS_POLICY = "camera=(self), microphone=(), geolocation=(), payment=(), usb=()"
#: The built files the page loads, and nothing else of the folder (the page itself is served at PREFIX).
ASSETS = {"app.js": "text/javascript", "decoder.js": "text/javascript", "app.css": "text/css",
          "icon.svg": "image/svg+xml", "zxing_reader.wasm": "application/wasm"}


def install(app: Flask) -> None:
    """Register the blueprint."""
    app.register_blueprint(bp)


@cache
def _read(name: str) -> bytes:
    return (resources.files("courier_api.handheld") / "static" / name).read_bytes()


def _secured(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = PAGE_CSP
    resp.headers["Permissions-Policy"] = PERMISSIONS_POLICY
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return resp


@bp.get(PREFIX)
@operation(summary="快递员手持端网页（登录、扫码、联系、签收、投递失败）", tags=TAGS, security=None,
           content_types=("text/html",))
def page() -> Response:
    resp = _secured(Response(_read("index.html"), mimetype="text/html"))
    # The shell holds no data, but the app shows personal data once used: nothing of it is kept by caches.
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get(PREFIX + "<name>")
@operation(summary="手持端网页的脚本、解码器、样式与图标", tags=TAGS, security=None, errors=(404,),
           content_types=tuple(sorted(set(ASSETS.values()))))
def asset(name: str) -> Response:
    mimetype = ASSETS.get(name)
    if mimetype is None:
        raise NotFound()
    resp = _secured(Response(_read(name), mimetype=mimetype))
    # Static and free of personal data; revalidated so a new release's bundle is picked up at once.
    resp.headers["Cache-Control"] = "no-cache"
    return resp
