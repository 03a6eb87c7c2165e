"""Raising ``canary`` when a staff member opens a canary shipment's personal data.

Every place that decrypts a shipment's personal data for a staff member (the courier's scan and call, a delivery
that hands it to a partner, the privacy officer's read) calls :func:`touched` after the decryption, in the request's
transaction. The check is one primary-key lookup on ``canaries`` (or none: the scan reads :func:`is_canary_clause` in
its own query). The alert is a durable ``alert.canary`` audit event; the alert store suspends the account when the
request commits (the rule is critical).

The request that touched the canary answers exactly as for any shipment: an insider is not warned by the answer, and
their tokens stop working from the next request on (``401``). Alert and audit event hold the actor and the shipment
id, never a field of the shipment.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from waybill.alerts import store as alert_store
from waybill.canaries.models import Canary
from waybill.permissions import Principal

RULE = "canary"
log = logging.getLogger("waybill.alerts")


def is_canary_clause(shipment_id: Any) -> Any:
    """A SQL condition: ``shipment_id`` (a column or expression) is a canary's (for a query that reads it anyway)."""
    return exists().where(Canary.shipment_id == shipment_id)


def is_canary(session: Session, shipment_id: str) -> bool:
    """Whether the shipment is a canary (one primary-key lookup)."""
    return session.connection().execute(
        select(Canary.shipment_id).where(Canary.shipment_id == shipment_id)).first() is not None


def touched(session: Session, principal: Principal | None, shipment_id: str, *, known: bool | None = None) -> bool:
    """After ``principal`` opened the personal data of ``shipment_id``: raise ``canary`` if it is one (``known``:
    already looked up). Returns whether it was. Never changes what the caller answers."""
    canary = is_canary(session, shipment_id) if known is None else known
    if canary:
        alert_store.fire(session, principal, RULE, object_type="shipment", object_id=shipment_id)
        log.warning("canary touched", extra={"actor": principal.actor if principal else "anonymous",
                                             "object_id": shipment_id})
    return canary
