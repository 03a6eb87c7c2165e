"""Deliveries to a loopback receiver: signatures (checked by the standardwebhooks package), order, retries, 410,
rotation, redirects, idempotence, and no personal data in what is sent."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import RECIPIENT, SENDER
from waybill import outbox, tasks, webhooks
from waybill.models import OutboxMessage, TrackingEvent, utcnow
from waybill.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from waybill.webhooks.prune import KEEP

LATER = timedelta(seconds=10)  # past the first retry's wait (5 s + 10 % jitter)


def _events(hooks, shipment_id):
    with hooks.svc.session_factory() as s:
        return {e.seq: e for e in s.scalars(select(TrackingEvent).where(TrackingEvent.shipment_id == shipment_id))}


def test_a_status_change_is_delivered_signed_and_verifies_with_standardwebhooks(hooks, receiver):
    hook = hooks.endpoint(receiver.url)
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["shipment.status_changed"]
    sid = hooks.shipment("WH-1")
    hooks.move(sid, "printed")
    assert receiver.received == []  # committed, not sent: the outbox holds it
    assert hooks.drain() >= 1
    (got,) = receiver.received
    assert got.path == "/hook"
    payload = Webhook(hook["secret"]).verify(got.body, got.headers)
    (event,) = [e for e in _events(hooks, sid).values() if e.status == "printed"]
    assert got.headers["webhook-id"] == event.id
    assert payload["type"] == "shipment.status_changed"
    assert set(payload["data"]) == {"shipment_id", "waybill_no", "merchant_order_id", "status", "seq", "at"}
    assert payload["data"]["shipment_id"] == sid and payload["data"]["status"] == "printed"
    assert payload["data"]["seq"] == event.seq and payload["data"]["merchant_order_id"] == "WH-1"
    assert payload["timestamp"] == payload["data"]["at"]
    with pytest.raises(WebhookVerificationError):
        Webhook(base64.b64encode(b"x" * 32).decode()).verify(got.body, got.headers)
    log = hooks.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=hooks.merchant.headers).get_json()
    assert [(i["event_id"], i["status_code"], i["ok"]) for i in log["items"]] == [(event.id, 200, True)]


def test_a_500_then_a_success_sends_the_same_id_and_body_and_logs_both(hooks, receiver):
    hook = hooks.endpoint(receiver.url)
    receiver.answer(500)
    sid = hooks.shipment("WH-2")
    hooks.move(sid, "printed")
    hooks.drain()
    assert len(receiver.received) == 1
    hooks.drain()  # the retry is not due yet
    assert len(receiver.received) == 1
    with hooks.svc.session_factory() as s:  # nor for a duplicate message of the task: no early retry
        (delivery,) = s.scalars(select(WebhookDelivery)).all()
        outbox.enqueue(s, webhooks.TOPIC, {"delivery_id": delivery.id})
        s.commit()
    hooks.drain()
    assert len(receiver.received) == 1
    hooks.drain(at=utcnow() + LATER)
    first, second = receiver.received
    assert (first.body, first.headers["webhook-id"]) == (second.body, second.headers["webhook-id"])
    Webhook(hook["secret"]).verify(second.body, second.headers)
    log = hooks.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=hooks.merchant.headers).get_json()
    assert [(i["status_code"], i["ok"]) for i in log["items"]] == [(200, True), (500, False)]  # newest first
    assert log["items"][1]["error"] == "status"


def test_order_is_kept_per_shipment_while_an_earlier_event_is_retried(hooks, receiver):
    hooks.endpoint(receiver.url)
    receiver.answer(503)
    a, b = hooks.shipment("WH-3A"), hooks.shipment("WH-3B")
    hooks.move(a, "printed", "in_transit", "out_for_delivery")
    hooks.move(b, "printed")
    hooks.drain()
    # A's first event failed: its later events wait; B's, another shipment, goes.
    sent = [(r.json["data"]["shipment_id"], r.json["data"]["seq"]) for r in receiver.received]
    first = min(_events(hooks, a))  # the creation's event (not a change: no webhook)
    assert sent == [(a, first + 1), (b, first + 1)]
    hooks.drain(at=utcnow() + LATER)
    sent = [(r.json["data"]["shipment_id"], r.json["data"]["seq"]) for r in receiver.received]
    assert [seq - first for sid, seq in sent if sid == a] == [1, 1, 2, 3]
    assert [r.json["data"]["status"] for r in receiver.received if r.json["data"]["shipment_id"] == a][1:] == [
        "printed", "in_transit", "out_for_delivery"]


def test_410_disables_the_endpoint_and_nothing_more_is_sent(hooks, receiver):
    hook = hooks.endpoint(receiver.url)
    receiver.answer(410)
    sid = hooks.shipment("WH-4")
    hooks.move(sid, "printed", "in_transit")
    hooks.drain()
    assert len(receiver.received) == 1
    listed = hooks.client.get("/v1/webhooks", headers=hooks.merchant.headers).get_json()["items"]
    assert [(h["id"], h["status"], h["disabled_reason"]) for h in listed] == [(hook["id"], "disabled", "gone")]
    assert "secret" not in listed[0]
    hooks.move(sid, "out_for_delivery")
    hooks.drain(at=utcnow() + timedelta(days=2))
    assert len(receiver.received) == 1
    with hooks.svc.session_factory() as s:
        states = sorted(d.status for d in s.scalars(select(WebhookDelivery)))
    assert states == ["cancelled", "failed"]  # in_transit cancelled; out_for_delivery never made


def test_rotation_signs_with_both_secrets_for_24_hours_then_only_the_new(hooks, receiver):
    hook = hooks.endpoint(receiver.url)
    old = hook["secret"]
    r = hooks.client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=hooks.merchant.headers)
    assert r.status_code == 200
    new = r.get_json()["secret"]
    assert new.startswith("whsec_") and new != old
    sid = hooks.shipment("WH-5")
    hooks.move(sid, "printed")
    hooks.drain()
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(got.body, got.headers)
    Webhook(new).verify(got.body, got.headers)
    # 24 hours on (the rotation moved back a day; the signature's timestamp must stay current for verify()).
    with hooks.svc.session_factory() as s:
        s.execute(update(WebhookEndpoint).values(previous_expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    hooks.move(sid, "in_transit")
    hooks.drain()
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(got.body, got.headers)


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(hooks, receiver):
    hook = hooks.endpoint(receiver.url)
    receiver.answer(302)
    sid = hooks.shipment("WH-6")
    hooks.move(sid, "printed")
    hooks.drain()
    assert [r.path for r in receiver.received] == ["/hook"]  # /elsewhere never asked for
    log = hooks.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=hooks.merchant.headers).get_json()
    assert [(i["status_code"], i["ok"], i["error"]) for i in log["items"]] == [(302, False, "redirect")]
    hooks.drain(at=utcnow() + LATER)
    assert [r.path for r in receiver.received] == ["/hook", "/hook"]


def test_a_duplicate_task_for_a_delivered_event_sends_nothing(hooks, receiver):
    hooks.endpoint(receiver.url)
    sid = hooks.shipment("WH-7")
    hooks.move(sid, "printed")
    hooks.drain()
    assert len(receiver.received) == 1
    with hooks.svc.session_factory() as s:
        (delivery,) = s.scalars(select(WebhookDelivery)).all()
        done = s.scalars(select(OutboxMessage).where(OutboxMessage.topic == webhooks.TOPIC)).all()
    # The same message handed over again, and a second message for the same delivery: nothing more is sent.
    table = tasks.handlers(hooks.svc)
    assert outbox.run_message(hooks.svc.session_factory, table, done[0].id) is False
    with hooks.svc.session_factory() as s:
        outbox.enqueue(s, webhooks.TOPIC, {"delivery_id": delivery.id})
        s.commit()
    hooks.drain()
    assert len(receiver.received) == 1
    with hooks.svc.session_factory() as s:
        assert s.query(WebhookAttempt).count() == 1


def test_a_run_meeting_an_attempt_in_flight_sends_nothing_and_checks_again_after_its_lease(hooks, receiver):
    """Another worker holds the delivery's lease (its request is out): this run sends nothing now; once the lease
    has run out (that worker died mid-request) the delivery is sent, with the same id and body."""
    from waybill.webhooks.delivery import LEASE

    hooks.endpoint(receiver.url)
    sid = hooks.shipment("WH-LEASE")
    hooks.move(sid, "printed")
    with hooks.svc.session_factory() as s:
        s.execute(update(WebhookDelivery).values(not_before=utcnow() + LEASE))
        s.commit()
    hooks.drain()
    assert receiver.received == []
    hooks.drain(at=utcnow() + LEASE + LATER)
    assert len(receiver.received) == 1
    with hooks.svc.session_factory() as s:
        (delivery,) = s.scalars(select(WebhookDelivery)).all()
        assert (delivery.status, delivery.attempts, delivery.not_before) == ("succeeded", 1, None)


def test_the_address_is_checked_again_at_delivery(hooks, receiver):
    """Created while loopback was allowed; delivered by a process where it is not: refused, logged, not sent."""
    import dataclasses

    hook = hooks.endpoint(receiver.url)
    strict = dataclasses.replace(hooks.svc, settings=dataclasses.replace(hooks.svc.settings,
                                                                         webhook_allow_private=False))
    sid = hooks.shipment("WH-8")
    hooks.move(sid, "printed")
    hooks.drain(svc=strict)
    assert receiver.received == []
    log = hooks.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=hooks.merchant.headers).get_json()
    assert [(i["status_code"], i["ok"], i["error"]) for i in log["items"]] == [(None, False, "blocked_address")]


def test_no_personal_data_in_what_is_sent(hooks, receiver):
    hooks.endpoint(receiver.url)
    sid = hooks.shipment("WH-9")
    hooks.move(sid, "printed", "in_transit", "out_for_delivery", "delivered")
    hooks.drain()
    assert len(receiver.received) == 4
    raw = b"".join(r.raw_headers + r.body for r in receiver.received)
    for party in (RECIPIENT, SENDER):
        for key in ("name", "phone", "address"):
            value = party[key]
            assert value.encode() not in raw, key
            assert value.encode("unicode_escape") not in raw, key
        assert party["phone"][-4:].encode() not in raw
    with hooks.svc.session_factory() as s:
        assert all(RECIPIENT["phone"] not in d.body for d in s.scalars(select(WebhookDelivery)))


def test_a_removed_endpoint_gets_nothing_more(hooks, receiver):
    hook = hooks.endpoint(receiver.url)
    receiver.answer(500)
    sid = hooks.shipment("WH-10")
    hooks.move(sid, "printed")
    hooks.drain()
    r = hooks.client.delete(f"/v1/webhooks/{hook['id']}", headers=hooks.merchant.headers)
    assert r.status_code == 200 and r.get_json()["status"] == "deleted"
    hooks.move(sid, "in_transit")
    hooks.drain(at=utcnow() + timedelta(days=2))
    assert len(receiver.received) == 1
    assert hooks.client.get("/v1/webhooks", headers=hooks.merchant.headers).get_json()["items"] == []
    with hooks.svc.session_factory() as s:
        row = s.get(WebhookEndpoint, hook["id"])
        assert row.secret_ct is None and row.previous_secret_ct is None


def test_test_mode_shipments_are_delivered_too(hooks, receiver):
    """A test-mode key's shipments notify the merchant's endpoints like live ones (the integration is tested)."""
    from waybill.merchants import rotate_keys
    from waybill.permissions import SYSTEM

    with hooks.svc.session_factory() as s:
        key = rotate_keys(s, SYSTEM, hooks.merchant.id, api_key_secret=hooks.svc.keys.secret("api_key"),
                          grace=timedelta(hours=1), mode="test")
        s.commit()
    test_headers = {"Authorization": f"Bearer {key.api_key}"}
    hooks.endpoint(receiver.url)
    sid = hooks.shipment("WH-T1", headers=test_headers)
    r = hooks.client.post(f"/v1/shipments/{sid}/cancel", headers=test_headers)
    assert r.status_code == 200
    hooks.drain()
    assert [r.json["data"]["status"] for r in receiver.received] == ["cancelled"]


def test_a_failing_event_is_retried_for_a_day_then_given_up_and_the_next_one_goes(hooks, receiver):
    hooks.endpoint(receiver.url)
    receiver.answer(*[500] * 30)
    sid = hooks.shipment("WH-DAY")
    hooks.move(sid, "printed", "in_transit")
    start = utcnow()
    at = start
    for _ in range(40):  # the clock jumps ahead past each wait (the longest is 10 h + 10 %)
        hooks.drain(at=at)
        with hooks.svc.session_factory() as s:
            first = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.seq)).first()
        if first.status != "pending":
            break
        at += timedelta(hours=11)
    assert first.status == "failed" and first.attempts >= 8
    with hooks.svc.session_factory() as s:
        times = sorted(a.at for a in s.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == first.id)))
    assert times[-1] - times[0] >= timedelta(hours=24)
    # Given up: the shipment's next event is no longer held back (it meets the rest of the 500s, then a 200).
    seqs = [r.json["data"]["seq"] for r in receiver.received]
    assert seqs[-1] == first.seq + 1 and set(seqs[:first.attempts]) == {first.seq}
    assert hooks.client.get("/v1/webhooks", headers=hooks.merchant.headers).get_json()["items"][0]["status"] == \
        "active"


def test_retries_last_at_least_24_hours_after_the_first_failure():
    start = utcnow()
    low, high = (lambda: 0.0), (lambda: 0.999999)
    at, attempts = start, 1
    while (delay := webhooks.next_delay(attempts, start, at, low)) is not None:
        at += timedelta(seconds=delay)
        attempts += 1
    assert at - start >= timedelta(hours=24)
    assert attempts >= 8
    # Exponential growth with jitter: each wait within 10 % of the schedule, never shorter than the one before.
    waits = [webhooks.next_delay(n, start, start, low) for n in range(1, 8)]
    assert waits == sorted(waits) and waits[0] == pytest.approx(4.5)
    assert webhooks.next_delay(1, start, start, high) == pytest.approx(5.5)
    assert webhooks.next_delay(30, start, start + timedelta(hours=25)) is None


def test_secrets_are_never_stored_or_logged_in_plaintext(hooks, receiver, caplog):
    import logging

    from sqlalchemy import text

    from tests.conftest import BACKEND

    caplog.set_level(logging.DEBUG)
    hook = hooks.endpoint(receiver.url)
    rotated = hooks.client.post(f"/v1/webhooks/{hook['id']}/rotate-secret",
                                headers=hooks.merchant.headers).get_json()["secret"]
    sid = hooks.shipment("WH-SECRET")
    hooks.move(sid, "printed")
    hooks.drain()
    assert len(receiver.received) == 1
    needles = [s.encode() for secret in (hook["secret"], rotated)
               for s in (secret, secret.removeprefix("whsec_"))]
    needles += [base64.b64decode(secret.removeprefix("whsec_")) for secret in (hook["secret"], rotated)]
    if BACKEND == "sqlite":
        path = hooks.env.settings.database_url.removeprefix("sqlite:///")
        raw = b"".join(Path(p).read_bytes() for p in (path, path + "-wal") if Path(p).exists())
    else:
        with hooks.env.engine.connect() as conn:
            tables = [r[0] for r in conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))]
            raw = b"".join(repr(conn.execute(text(f'SELECT * FROM "{t}"')).all()).encode() for t in tables)
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records).encode()
    for needle in needles:
        assert needle not in raw
        assert needle not in logged


def test_finished_deliveries_are_forgotten_after_30_days(hooks, receiver):
    hook = hooks.endpoint(receiver.url)
    receiver.answer(500)
    sid = hooks.shipment("WH-PRUNE")
    hooks.move(sid, "printed", "in_transit")
    hooks.drain()  # the first fails (retry pending: kept), the second waits behind it
    hooks.drain(at=utcnow() + LATER)
    with hooks.svc.session_factory() as s:
        assert webhooks.prune_deliveries(s, now=utcnow() + timedelta(days=29)) == 0
        assert webhooks.prune_deliveries(s, now=utcnow() + KEEP + LATER) == 2
        s.commit()
        assert s.query(WebhookDelivery).count() == 0 and s.query(WebhookAttempt).count() == 0
    log = hooks.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=hooks.merchant.headers).get_json()
    assert log == {"items": []}


def test_the_in_process_relay_is_woken_by_the_commit(hooks, receiver):
    """A relay polling once an hour still delivers at once: the commit that enqueued the delivery wakes it."""
    import time

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(receiver.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    hooks.endpoint(receiver.url)
    sid = hooks.shipment("WH-WAKE")
    runner = tasks.BackgroundRunner(hooks.svc, tasks.InProcessQueue(hooks.svc), job_list=[], interval_s=3600)
    runner.start()
    try:
        hooks.move(sid, "printed")  # delivered by the first round (at start) or by a wake-up
        wait_for(1)
        hooks.move(sid, "in_transit")  # the first round is over: only a wake-up can deliver this one
        wait_for(2)
    finally:
        runner.stop()
    assert [r.json["data"]["status"] for r in receiver.received] == ["printed", "in_transit"]
