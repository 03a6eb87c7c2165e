"""The current request's services and session: what blueprints use, in a module of its own so that the
blueprints never import the app factory that imports them."""

from __future__ import annotations

from flask import Flask, current_app, g, request
from sqlalchemy.orm import Session

from waybill import audit
from waybill.services import Services
from waybill.uow import UnitOfWork
from waybill.web.client import resolve_client

EXTENSION_KEY = "waybill"  # app.extensions[...] holding the Services of the app


def services() -> Services:
    """The app's service registry (set by the app factory)."""
    return services_of(current_app)


def services_of(app: Flask) -> Services:
    """The service registry of ``app``."""
    svc = app.extensions[EXTENSION_KEY]
    if not isinstance(svc, Services):
        raise RuntimeError("the app has no waybill services (build it with create_app)")
    return svc


def current_uow() -> UnitOfWork:
    """The request's unit of work, created on first use with its audit context (the app ends it)."""
    tx: UnitOfWork | None = g.get("uow")
    if tx is None:
        tx = g.uow = UnitOfWork(services().session_factory,
                                audit.AuditContext(request_id=g.request_id, client_addr=client_address()))
    return tx


def client_address() -> str | None:
    """The request's client: the socket peer, or what a trusted proxy forwarded (waybill.web.client)."""
    return resolve_client(request.remote_addr, request.headers.get("X-Forwarded-For"),
                          services().settings.trusted_proxies)


def db_session() -> Session:
    """The request's session (its unit of work's), opened on first use."""
    return current_uow().session
