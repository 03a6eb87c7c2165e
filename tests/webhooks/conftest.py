"""Fixtures: an installation that may reach loopback (``webhook_allow_private``), its app, a receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import Env, MerchantCreds, make_merchant, shipment_body
from tests.webhooks.receiver import Receiver
from waybill import outbox, tasks, tracking, webhooks
from waybill.models import Shipment, utcnow
from waybill.permissions import SYSTEM
from waybill.services import Services
from waybill.uow import unit_of_work
from waybill.web.app import create_app


@dataclass
class Hooks:
    env: Env
    svc: Services
    client: Any
    merchant: MerchantCreds

    def endpoint(self, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = self.client.post("/v1/webhooks", json={"url": url, "events": ["shipment.status_changed"]},
                             headers=headers or self.merchant.headers)
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    def shipment(self, order_id: str, headers: dict[str, str] | None = None, **changes: Any) -> str:
        r = self.client.post("/v1/shipments", json=shipment_body(order_id, **changes),
                             headers=headers or self.merchant.headers)
        assert r.status_code == 201, r.get_json()
        return str(r.get_json()["id"])

    def move(self, shipment_id: str, *statuses: str) -> None:
        """Each status in its own committed transaction, through tracking.move (as every status change goes)."""
        for status in statuses:
            with unit_of_work(self.svc.session_factory) as tx:
                shipment = tx.session.get(Shipment, shipment_id)
                tracking.move(tx.session, SYSTEM, shipment, status)

    def drain(self, *, now: datetime | None = None, svc: Services | None = None, rounds: int = 20,
              clock: Callable[[], datetime] | None = None, at: datetime | None = None) -> int:
        """Relay and run due messages in this thread until none is due at ``now``; returns how many ran.

        ``clock``: the time the delivery task sees (default: the real one); ``at``: both, fixed at that time."""
        if at is not None:
            now, clock = at, (lambda: at)
        svc = svc or self.svc
        table = tasks.handlers(svc)
        if clock is not None:
            table[webhooks.TOPIC] = webhooks.handler(svc, clock=clock)
        queue = tasks.InProcessQueue(svc, table)
        total = 0
        for _ in range(rounds):
            sent = outbox.relay_once(svc.session_factory, queue, now=now or utcnow())
            total += sent
            if not sent:
                break
        return total


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


@pytest.fixture
def hooks(fresh_env: Any) -> Hooks:
    env = fresh_env(webhook_allow_private=True)
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    return Hooks(env, svc, client, make_merchant(svc, "钩子商户"))
