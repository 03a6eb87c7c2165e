"""Courier side: staff authentication, dispatch, scan, virtual-number calls, delivery, audit access."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Register the courier-side blueprints on ``app``."""
    # Imported here, not at the top: waybill.api.auth imports courier_api.staff, so importing the
    # web modules with the package would be circular.
    from courier_api import auth_api, privacy_views, views

    auth_api.install(app)
    views.install(app)
    privacy_views.install(app)
