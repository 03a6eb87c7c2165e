"""The courier side as an extension of the service (entry point ``waybill.extensions: courier_api``).

Importing this module registers the staff tables on the metadata (through :mod:`courier_api.models`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import click
from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session

from courier_api import (
    auth_api,
    handheld,
    models,
    movement_views,
    partner_views,
    pickup_codes,
    privacy_views,
    report_views,
    retention_views,
    staff,
    subjects,
    views,
)
from courier_api import services as courier_registry
from courier_api.cli import users
from waybill.extensions import TOKEN_RESOLVERS
from waybill.outbox import Handler, Job
from waybill.permissions import Principal
from waybill.services import Services
from waybill.web.context import services_of

__all__ = ["CourierExtension", "extension", "models"]


def _staff_principal(session: Session, token: str, svc: Services) -> Principal:
    return staff.authenticate_token(session, token, secret=svc.keys.secret("session_token"),
                                    new_client_window_s=(svc.settings.alerts.threshold("new_client", "window_s")
                                                         if svc.settings.alerts.enabled else None),
                                    training_valid_days=svc.settings.training_valid_days)


class CourierExtension:
    """Staff authentication, dispatch, scan, calls, delivery, audit access, privacy officers' requests and the
    data subjects' self-service, and the couriers' handheld web app."""

    name = "courier_api"

    def init_app(self, app: Flask) -> None:
        courier_registry.install(app, services_of(app))
        app.extensions.setdefault(TOKEN_RESOLVERS, {})[staff.TOKEN_PREFIX + "_"] = _staff_principal
        auth_api.install(app)
        views.install(app)
        movement_views.install(app)
        privacy_views.install(app)
        subjects.install(app, services_of(app))
        retention_views.install(app)
        handheld.install(app)
        partner_views.install(app)
        report_views.install(app)

    def cli_commands(self) -> Sequence[click.Command]:
        return (users,)

    def task_handlers(self, services: Services) -> Mapping[str, Handler]:
        return dict(subjects.task_handlers(services))

    def forget_parties(self, session: Session, shipment_ids: Sequence[str], party: str | None) -> None:
        subjects.forget(session, shipment_ids, party)
        if party in (None, "recipient"):  # pickup codes are the recipient's; disclosure records hold no data
            pickup_codes.forget(session, list(shipment_ids))
        # An emergency filing's reason is an officer's free text about the shipment's people: it goes too.
        session.execute(update(models.PersonalDataRequest)
                        .where(models.PersonalDataRequest.shipment_id.in_(list(shipment_ids)))
                        .values(reason_ct=None).execution_options(synchronize_session=False))

    def periodic_jobs(self) -> Sequence[Job]:
        return subjects.jobs()


extension = CourierExtension()
