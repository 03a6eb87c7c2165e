"""Reassignment releases the previous courier's number; remote binds and unbinds never run under row locks.

Regressions (issue 11, items 2 and 11): after a reassignment the first courier's number and extension still
reached the recipient, the new courier got 409 for up to 48 hours, and a courier's fifth call on a 4-number
pool got 503.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from courier_api.models import Assignment
from courier_api.staff import set_phone
from tests.conftest import RECIPIENT, make_merchant, shipment_body
from tests.courier_api import bearer, login, make_staff
from tests.courier_api.test_delivery_flow import COURIER_PHONE, STATION, _assign, _printed
from tests.virtual_numbers.fake_aliyun import FakeAliyun
from tests.virtual_numbers.locks import LockProbe
from tests.virtual_numbers.test_receipt_push import SECRET, _credentials
from waybill import outbox
from waybill.models import OutboxMessage, utcnow
from waybill.permissions import SYSTEM
from waybill.tasks import InProcessQueue
from waybill.virtual_numbers import add_numbers
from waybill.virtual_numbers.models import VnBinding

COURIER2_PHONE = "13700005678"


def _crew(client, services, pool):
    with services.session_factory() as s:
        add_numbers(s, pool)
        s.commit()
    people = {
        "sorter": make_staff(services, "sorter1", "sorter", STATION),
        "dispatcher": make_staff(services, "disp1", "dispatcher", STATION),
        "courier": make_staff(services, "courier1", "courier", STATION),
        "courier2": make_staff(services, "courier2", "courier", STATION),
    }
    with services.session_factory() as s:
        set_phone(s, SYSTEM, "courier1", COURIER_PHONE, services.codec)
        set_phone(s, SYSTEM, "courier2", COURIER2_PHONE, services.codec)
        s.commit()
    return {key: bearer(login(client, new).get_json()["access_token"]) for key, new in people.items()}


def _call(client, crew, shp, who="courier"):
    return client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=crew[who])


def _dial(services, caller, number, extension=None, call_id="c"):
    with services.session_factory() as s:
        route = services.provider.route_call(s, caller, number["virtual_number"], extension, call_id=call_id,
                                             at=utcnow())
        s.commit()
    return route


def test_reassignment_releases_the_old_binding_and_the_new_courier_calls_at_once(client, services):
    crew = _crew(client, services, ["17000000001", "17000000002"])
    merchant = make_merchant(services, "商户甲")
    shp, _qr = _printed(client, merchant, crew)
    assert _assign(client, crew, shp).status_code == 201
    first = _call(client, crew, shp).get_json()
    assert _dial(services, COURIER_PHONE, first, first["extension"], "c1").callee == RECIPIENT["phone"]

    assert _assign(client, crew, shp, courier="courier2").status_code == 201
    # The first courier's number and extension reach nobody any more; they lost the shipment too.
    assert not _dial(services, COURIER_PHONE, first, first["extension"], "c2").routed
    assert _call(client, crew, shp).status_code == 404
    # The new courier gets a number at once (was 409 bind_conflict until the old binding expired).
    second = _call(client, crew, shp, "courier2")
    assert second.status_code == 200, second.get_json()
    number = second.get_json()
    assert _dial(services, COURIER2_PHONE, number, number["extension"], "c3").callee == RECIPIENT["phone"]
    assert _dial(services, RECIPIENT["phone"], number, None, "c4").callee == COURIER2_PHONE
    with services.session_factory() as s:
        ended = s.scalars(select(Assignment).where(Assignment.shipment_id == shp["id"],
                                                   Assignment.end_reason == "reassigned")).one()
        old = s.get(VnBinding, ended.binding_id)
        assert old.active is False and old.released_at is not None


def test_a_courier_is_not_limited_by_the_pool_size(client, services):
    """Four numbers, one courier, six recipients: every call gets a number (the fifth was 503)."""
    crew = _crew(client, services, [f"1700000000{i}" for i in range(1, 5)])
    merchant = make_merchant(services, "商户甲")
    numbers = []
    for i in range(6):
        body = shipment_body(f"P-{i}")
        body["recipient"] = {**body["recipient"], "phone": f"1390000{i:04d}"}
        shp = client.post("/v1/shipments", json=body, headers=merchant.headers).get_json()
        printed = client.post("/v1/print-jobs", json={"shipment_ids": [shp["id"]], "format": "pdf"},
                              headers=crew["sorter"])
        assert printed.status_code == 200 and printed.data  # the labels are issued as the stream is read
        r = _assign(client, crew, shp)
        assert r.status_code == 201, r.get_json()
        r = _call(client, crew, shp)
        assert r.status_code == 200, (i, r.get_json())
        numbers.append((f"1390000{i:04d}", r.get_json()))
    assert len({n["virtual_number"] for _, n in numbers}) <= 4
    for i, (recipient, number) in enumerate(numbers):
        # X plus the extension reaches exactly this recipient; the recipient calling X reaches the courier.
        assert _dial(services, COURIER_PHONE, number, number["extension"], f"a{i}").callee == recipient
        assert _dial(services, recipient, number, None, f"b{i}").callee == COURIER_PHONE
        assert not _dial(services, COURIER_PHONE, number, None, f"n{i}").routed  # X alone: no guess


@pytest.fixture
def fake():
    with FakeAliyun(access_key_secret=SECRET, pool=["17100000001", "17100000002"]) as server:
        yield server


@pytest.fixture
def aliyun(tmp_path, fake, fresh_env):
    path, _doc = _credentials(tmp_path, fake)
    env = fresh_env(phone_provider="aliyun", aliyun_credentials_file=path, aliyun_endpoint=fake.url)
    app = env.app()
    client = app.test_client()
    probe = LockProbe(env.engine)
    fake.on_request = lambda params: (params["Action"], probe.held())
    yield client, app.extensions["waybill"], fake
    probe.remove()


def _remote_parties(fake):
    # AXN extension: PhoneNoA (the recipient) is reached by X plus the extension, PhoneNoB is the courier.
    return sorted((b["a"], b["b"]) for b in fake.bindings.values())


def test_with_aliyun_reassignment_unbinds_remotely_after_commit_and_never_under_a_lock(aliyun):
    client, svc, fake = aliyun
    crew = _crew(client, svc, [])
    merchant = make_merchant(svc, "商户甲")
    shp, qr = _printed(client, merchant, crew)
    assert _assign(client, crew, shp).status_code == 201
    # The courier scans first (as on the street): the token bookkeeping is written then, not during the call.
    assert client.post("/v1/courier/scan", json={"token": qr}, headers=crew["courier"]).status_code == 200
    assert _call(client, crew, shp).status_code == 200
    assert _remote_parties(fake) == [(RECIPIENT["phone"], COURIER_PHONE)]

    assert _assign(client, crew, shp, courier="courier2").status_code == 201
    assert _remote_parties(fake) == []  # Aliyun no longer connects the first courier
    assert client.post("/v1/courier/scan", json={"token": qr}, headers=crew["courier2"]).status_code == 200
    r = _call(client, crew, shp, "courier2")
    assert r.status_code == 200, r.get_json()
    assert _remote_parties(fake) == [(RECIPIENT["phone"], COURIER2_PHONE)]

    # Every request of the courier and dispatcher reached Aliyun while no transaction held a row lock.
    actions = [action for action, _held in fake.observed]
    assert actions == ["BindAxnExtension", "UnbindSubscription", "BindAxnExtension"]
    for action, held in fake.observed:
        assert held == [], (action, held)

    # The release is also an outbox job, so a provider that was unreachable after the commit still hears of
    # it; run now it finds the binding gone already, which is the goal reached.
    with svc.session_factory() as s:
        # Besides it, each assignment queued the recipient's pickup-code SMS (sent by the built-in provider here).
        topics = [m.topic for m in s.scalars(select(OutboxMessage))]
        assert sorted(topics) == ["messages.send", "messages.send", "virtual_numbers.release"]
    fake.observed.clear()
    assert outbox.relay_once(svc.session_factory, InProcessQueue(svc)) == 3
    with svc.session_factory() as s:
        assert all(m.done_at is not None for m in s.scalars(select(OutboxMessage)))
    assert _remote_parties(fake) == [(RECIPIENT["phone"], COURIER2_PHONE)]
    # The job holds its own outbox row while it runs (the relay skips locked rows); no business row.
    ((action, held),) = fake.observed
    assert action == "UnbindSubscription" and all("outbox_messages" in h for h in held), held


def test_a_remote_unbind_failing_after_commit_is_retried_by_the_outbox(aliyun):
    client, svc, fake = aliyun
    crew = _crew(client, svc, [])
    merchant = make_merchant(svc, "商户甲")
    shp, _qr = _printed(client, merchant, crew)
    assert _assign(client, crew, shp).status_code == 201
    assert _call(client, crew, shp).status_code == 200
    fake.fail_next = "isp.SYSTEM_ERROR"  # the unbind right after the reassignment's commit fails
    assert _assign(client, crew, shp, courier="courier2").status_code == 201
    assert _remote_parties(fake) == [(RECIPIENT["phone"], COURIER_PHONE)]
    # The release job, and the two assignments' pickup-code SMS.
    assert outbox.relay_once(svc.session_factory, InProcessQueue(svc)) == 3
    assert _remote_parties(fake) == []


def test_a_call_that_loses_a_race_with_reassignment_leaves_no_remote_binding(aliyun):
    """The bind reaches Aliyun before the shipment is locked; a reassignment committed meanwhile makes the
    call fail its re-check under the lock, roll back, and give the remote binding back."""
    client, svc, fake = aliyun
    if svc.engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises whole transactions (BEGIN IMMEDIATE): the race cannot happen there")
    crew = _crew(client, svc, [])
    merchant = make_merchant(svc, "商户甲")
    shp, _qr = _printed(client, merchant, crew)
    assert _assign(client, crew, shp).status_code == 201

    def reassign_during_bind(params):
        if params["Action"] == "BindAxnExtension":
            assert _assign(client.application.test_client(), crew, shp, courier="courier2").status_code == 201
        return params["Action"], []

    fake.on_request = reassign_during_bind
    r = _call(client, crew, shp)
    assert r.status_code == 404
    assert _remote_parties(fake) == []  # the compensation unbound it
    with svc.session_factory() as s:
        assert s.scalars(select(VnBinding)).all() == []
