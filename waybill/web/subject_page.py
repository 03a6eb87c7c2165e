"""The data subjects' self-service page ``GET /my/`` and its static files.

The page is a static document plus one script and one style sheet, all served from the package
(``waybill/web/my/``): nothing is loaded from another origin, and the Content-Security-Policy says so.
The script talks to the ``/v1/subject/...`` API; the personal data it shows never passes through
this module. The only value rendered into the page is the complaint contact (a setting), escaped.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from flask import Blueprint, Response, render_template_string

from waybill.errors import NotFound
from waybill.web.context import services
from waybill.web.openapi import operation

bp = Blueprint("my", __name__)
TAGS = ("data subjects",)
# Same origin only; no inline script or style (the script sets no style attributes either), no plugins, no
# <base> tricks, forms post to this service only, and no framing (clickjacking a page that files requests).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# The files the page needs, and nothing else of the folder (the page template is served at /my/ only).
ASSETS = {"my.js": "text/javascript", "my.css": "text/css", "icon.svg": "image/svg+xml"}


@cache
def _read(name: str) -> bytes:
    return (resources.files("waybill.web") / "my" / name).read_bytes()


def _secured(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = PAGE_CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


@bp.get("/my/")
@operation(summary="数据主体自助页面（查询、访问记录、提出请求）", tags=TAGS, security=None,
           content_types=("text/html",))
def page() -> Response:
    contact = services().settings.complaint_contact
    html = render_template_string(_read("index.html").decode("utf-8"), complaint_contact=contact)
    resp = _secured(Response(html, mimetype="text/html"))
    # The page shows personal data once verified: never kept by the browser or any cache on the way.
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/my/assets/<name>")
@operation(summary="自助页面的脚本、样式与图标", tags=TAGS, security=None, errors=(404,),
           content_types=tuple(sorted(set(ASSETS.values()))))
def asset(name: str) -> Response:
    mimetype = ASSETS.get(name)
    if mimetype is None:
        raise NotFound()
    resp = _secured(Response(_read(name), mimetype=mimetype))
    # Static and free of personal data; revalidated so a new release's script is picked up at once.
    resp.headers["Cache-Control"] = "no-cache"
    return resp
