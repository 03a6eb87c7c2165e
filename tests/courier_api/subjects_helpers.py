"""Helpers of the data subjects' tests: a shipment, its SMS code as the built-in provider "sent" it, a session."""

from __future__ import annotations

import re
from typing import Any

from courier_api.subjects import verify
from courier_api.subjects.service import build as build_subject_services
from tests.conftest import shipment_body
from waybill import messages
from waybill.models import Shipment
from waybill.outbox import relay_once
from waybill.services import Services
from waybill.tasks import InProcessQueue

_CODE = re.compile(r"验证码为([0-9]{6})")


def make_shipment(client: Any, merchant: Any, order: str = "SUBJ-1", **changes: Any) -> dict[str, Any]:
    r = client.post("/v1/shipments", json=shipment_body(order, **changes), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    body: dict[str, Any] = r.get_json()
    return body


def challenge(client: Any, waybill_no: str, phone: str, addr: str = "198.51.100.7") -> Any:
    return client.post("/v1/subject/challenge", json={"waybill_no": waybill_no, "phone": phone},
                       environ_base={"REMOTE_ADDR": addr})


def deliver_messages(services: Services) -> None:
    """Run the queued tasks until none is left: a challenge's ``subjects.send_code``, then the ``messages.send`` it
    queues (the built-in provider keeps what it "sends")."""
    queue = InProcessQueue(services)
    for _ in range(5):
        if relay_once(services.session_factory, queue) == 0:
            return


def codes_sent_to(services: Services, phone: str) -> list[str]:
    deliver_messages(services)
    with services.session_factory() as s:
        found = messages.sent_to(s, services, phone)
    return [m.group(1) for item in found if item["template"] == "subject_code"
            for m in [_CODE.search(item["text"])] if m]


def subject_session(client: Any, services: Services, waybill_no: str, phone: str,
                    addr: str = "198.51.100.7") -> dict[str, Any]:
    """Challenge, read the code from the outbox, open a session: the answer's JSON."""
    r = challenge(client, waybill_no, phone, addr)
    assert r.status_code == 202, r.get_json()
    code = codes_sent_to(services, phone)[0]
    r = client.post("/v1/subject/session", json={"challenge_id": r.get_json()["challenge_id"], "code": code},
                    environ_base={"REMOTE_ADDR": addr})
    assert r.status_code == 200, r.get_json()
    body: dict[str, Any] = r.get_json()
    return body


def direct_token(services: Services, shipment_id: str, party: str) -> dict[str, str]:
    """A subject session made by the domain (a landline party cannot receive the SMS code)."""
    deps = build_subject_services(services).verify
    with services.session_factory() as s:
        from courier_api.subjects.models import SubjectChallenge

        ch = SubjectChallenge(id=verify.new_id("sch"), code_hash=bytes(32), shipment_id=shipment_id, party=party,
                              created_at=verify.utcnow(), expires_at=verify.utcnow(), attempts=0,
                              used_at=verify.utcnow())
        s.add(ch)
        s.flush()
        raw, _ = verify.issue_token(s, deps, ch.id, shipment_id, party)
        s.commit()
    return {"Authorization": f"Bearer {raw}"}


def shipment_row(services: Services, shipment_id: str) -> Shipment:
    with services.session_factory() as s:
        row = s.get(Shipment, shipment_id)
        assert row is not None
        s.expunge(row)
        return row
