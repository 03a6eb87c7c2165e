"""Courier side: staff authentication, dispatch, scan, virtual-number calls, delivery, audit access."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Register the courier-side blueprints on ``app`` (none yet: staff auth lands next)."""
