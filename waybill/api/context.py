"""The current request's services and session: what blueprints use, in a module of its own so that the
blueprints never import the app factory that imports them."""

from __future__ import annotations

from flask import current_app, g, request
from sqlalchemy.orm import Session

from waybill import audit
from waybill.services import Services

EXTENSION_KEY = "waybill"  # app.extensions[...] holding the Services of the app


def services() -> Services:
    """The app's service registry (set by the app factory)."""
    svc = current_app.extensions[EXTENSION_KEY]
    if not isinstance(svc, Services):
        raise RuntimeError("the app has no waybill services (build it with create_app)")
    return svc


def db_session() -> Session:
    """The request's session, opened on first use with its audit context."""
    session: Session | None = g.get("db")
    if session is None:
        session = services().session_factory()
        session.info[audit.CONTEXT_INFO] = audit.AuditContext(request_id=g.request_id,
                                                              client_addr=request.remote_addr)
        g.db = session
    return session
