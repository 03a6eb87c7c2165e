"""Data subjects' self-service: a sender or recipient proves control of the phone on a waybill by SMS, then
sees their own party's data, who accessed or received it, and files requests the privacy office decides.

Registered by the courier extension (:mod:`courier_api.extension`): the blueprint, the ``wbd_`` token
resolver, the overdue-alert task and its periodic job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session

from courier_api.subjects import models, service, views
from courier_api.subjects.requests import raise_overdue_alerts
from courier_api.subjects.verify import SEND_CODE_TOPIC, TOKEN_PREFIX, authenticate
from waybill.extensions import TOKEN_RESOLVERS
from waybill.outbox import Handler, Job
from waybill.permissions import Principal
from waybill.services import Services
from waybill.uow import UnitOfWork

__all__ = ["OVERDUE_TOPIC", "forget", "install", "jobs", "models", "task_handlers"]

OVERDUE_TOPIC = "subjects.overdue_alerts"
OVERDUE_EVERY_S = 3600


def _resolve(session: Session, token: str, svc: Services) -> Principal:
    return authenticate(session, token, key=svc.keys.secret("subject_token"))


def forget(session: Session, shipment_ids: Sequence[str], party: str | None) -> None:
    """Erase what the subjects' requests hold of these parties' personal data (the changes asked for, the texts,
    the reasons given to them); the requests themselves stay: the record of each request is kept."""
    stmt = update(models.SubjectRequest).where(models.SubjectRequest.shipment_id.in_(list(shipment_ids)))
    if party is not None:
        stmt = stmt.where(models.SubjectRequest.party == party)
    session.execute(stmt.values(changes_ct=None, text_ct=None, reason_ct=None)
                    .execution_options(synchronize_session=False))


def install(app: Flask, svc: Services) -> None:
    service.install(app, svc)
    app.extensions.setdefault(TOKEN_RESOLVERS, {})[TOKEN_PREFIX + "_"] = _resolve
    views.install(app)


def task_handlers(svc: Services) -> Mapping[str, Handler]:
    def overdue(tx: UnitOfWork, _payload: Mapping[str, Any]) -> None:
        warn_days = svc.settings.alerts.threshold("subject_request_overdue", "warn_days")
        raise_overdue_alerts(tx.session, warn_days=warn_days)

    def code(tx: UnitOfWork, payload: Mapping[str, Any]) -> None:
        service.send_code(tx.session, svc, str(payload["challenge_id"]))

    return {OVERDUE_TOPIC: overdue, SEND_CODE_TOPIC: code}


def jobs() -> tuple[Job, ...]:
    return (Job(OVERDUE_TOPIC, OVERDUE_EVERY_S, OVERDUE_TOPIC, {}),)
