"""Merchant webhooks (Standard Webhooks): endpoints and secrets, fan-out, delivery, the SSRF guard.

- :mod:`.endpoints`: create / list / remove / rotate, and the delivery log (``WEBHOOK_MANAGE``, own only);
- :mod:`.fanout`: :func:`publish`, called by :func:`waybill.tracking.move` in the change's transaction;
- :mod:`.delivery`: the ``webhooks.deliver`` task (signatures, retries, order, ``410``);
- :mod:`.guard`: which hosts may be reached; :mod:`.transport`: the HTTP request to the checked address;
- :mod:`.security`: the security endpoint, where the ``alerts.deliver`` task POSTs new alerts (same signing,
  guard and transport; its own secret and allow-private switch);
- :mod:`.prune`: finished deliveries and their attempts are forgotten after 30 days;
- :mod:`.models`: the tables (migration 0021). The HTTP views are in :mod:`waybill.web.webhooks`.
"""

from __future__ import annotations

from waybill.webhooks.delivery import handler, headers, next_delay, sign
from waybill.webhooks.endpoints import (
    EVENT_TYPES,
    ROTATION_OVERLAP,
    Created,
    attempts,
    create_endpoint,
    delete_endpoint,
    list_endpoints,
    rotate_secret,
)
from waybill.webhooks.fanout import TOPIC, publish
from waybill.webhooks.prune import TOPIC as PRUNE_TOPIC
from waybill.webhooks.prune import handler as prune_handler
from waybill.webhooks.prune import prune as prune_deliveries

__all__ = [
    "EVENT_TYPES",
    "PRUNE_TOPIC",
    "ROTATION_OVERLAP",
    "TOPIC",
    "Created",
    "attempts",
    "create_endpoint",
    "delete_endpoint",
    "handler",
    "headers",
    "list_endpoints",
    "next_delay",
    "prune_deliveries",
    "prune_handler",
    "publish",
    "rotate_secret",
    "sign",
]
