"""Batches: one task message per endpoint per transaction, sent in order over one kept-alive connection; a batch
cut short (a failure, its deadline) keeps per-shipment order and loses nothing; duplicate messages send nothing."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from sqlalchemy import select
from standardwebhooks import Webhook

from waybill import outbox, tracking, webhooks
from waybill.models import OutboxMessage, Shipment, utcnow
from waybill.permissions import SYSTEM
from waybill.uow import unit_of_work
from waybill.webhooks import delivery
from waybill.webhooks.models import WebhookAttempt, WebhookDelivery

PATH = ("printed", "in_transit", "out_for_delivery", "delivered")
LATER = timedelta(seconds=10)


def _move_all(hooks, shipment_ids, statuses):
    """Every shipment through ``statuses``, all in ONE transaction (as a sorting scan moves many parcels)."""
    with unit_of_work(hooks.svc.session_factory) as tx:
        for status in statuses:
            for sid in shipment_ids:
                tracking.move(tx.session, SYSTEM, tx.session.get(Shipment, sid), status)


def _sent(receiver):
    return [(r.json["data"]["shipment_id"], r.json["data"]["seq"], r.headers["webhook-id"]) for r in receiver.received]


def _in_order(sent):
    per = defaultdict(list)
    for sid, seq, _ in sent:
        per[sid].append(seq)
    return all(seqs == sorted(seqs) for seqs in per.values()), per


def test_300_events_to_one_endpoint_arrive_in_order_over_a_few_connections(hooks, receiver, monkeypatch):
    monkeypatch.setattr(delivery, "BATCH_DEADLINE_S", 3600.0)  # a slow machine must not cut the batches short
    hook = hooks.endpoint(receiver.url)
    sids = [hooks.shipment(f"WH-B{i:03d}") for i in range(75)]
    _move_all(hooks, sids, PATH)  # 300 deliveries, one transaction
    with hooks.svc.session_factory() as s:
        messages = s.scalars(select(OutboxMessage).where(OutboxMessage.topic == webhooks.TOPIC)).all()
    assert sorted(len(m.payload["delivery_ids"]) for m in messages) == [100, 200]  # BATCH ids per message
    hooks.drain()
    sent = _sent(receiver)
    assert len(sent) == 300 and len({w for _, _, w in sent}) == 300
    ordered, per = _in_order(sent)
    assert ordered and all(len(seqs) == 4 for seqs in per.values())
    # One connection per batch (first events, then each round of successors), not one per event.
    assert receiver.connections <= 10
    secret = hook["secret"]
    assert all(Webhook(secret).verify(r.body, r.headers) for r in receiver.received)
    with hooks.svc.session_factory() as s:
        assert {d.status for d in s.scalars(select(WebhookDelivery))} == {"succeeded"}
        assert s.query(WebhookAttempt).count() == 300


def test_a_failure_in_a_batch_keeps_the_order_and_is_retried_with_the_same_bytes(hooks, receiver):
    hooks.endpoint(receiver.url)
    a, b, c = (hooks.shipment(f"WH-F{x}") for x in "ABC")
    _move_all(hooks, [a, b, c], ("printed", "in_transit"))
    receiver.answer(200, 503, 200)  # the first batch: A1 ok, B1 fails, C1 ok
    hooks.drain()
    sent = _sent(receiver)
    assert [sid for sid, _, _ in sent[:3]] == [a, b, c]
    assert sorted(sid for sid, _, _ in sent[3:]) == sorted([a, c])  # successors of A and C; B2 waits for B1
    hooks.drain(at=utcnow() + LATER)
    sent = _sent(receiver)
    b_sent = [(seq, w) for sid, seq, w in sent if sid == b]
    assert len(b_sent) == 3 and b_sent[0] == b_sent[1] and b_sent[2][0] == b_sent[0][0] + 1
    b_bodies = [r.body for r in receiver.received if r.json["data"]["shipment_id"] == b]
    assert b_bodies[0] == b_bodies[1]
    assert _in_order(sent)[0]
    with hooks.svc.session_factory() as s:
        assert {d.status for d in s.scalars(select(WebhookDelivery))} == {"succeeded"}


def test_a_batch_past_its_deadline_releases_the_rest_uncounted_and_they_still_go_in_order(hooks, receiver,
                                                                                         monkeypatch):
    monkeypatch.setattr(delivery, "BATCH_DEADLINE_S", 0.0)  # one request per batch, the rest released
    hooks.endpoint(receiver.url)
    sids = [hooks.shipment(f"WH-D{i}") for i in range(4)]
    _move_all(hooks, sids, ("printed", "in_transit"))
    hooks.drain(rounds=50)
    sent = _sent(receiver)
    assert len(sent) == 8 and len({w for _, _, w in sent}) == 8 and _in_order(sent)[0]
    with hooks.svc.session_factory() as s:
        rows = s.scalars(select(WebhookDelivery)).all()
        assert {(d.status, d.attempts, d.not_before) for d in rows} == {("succeeded", 1, None)}


def test_a_connection_failure_ends_the_batch_and_every_delivery_is_tried_once(hooks, receiver):
    port = receiver.port
    receiver.close()  # nothing listens there any more: every connection is refused
    hook = hooks.endpoint(f"http://127.0.0.1:{port}/hook")
    sids = [hooks.shipment(f"WH-C{i}") for i in range(3)]
    _move_all(hooks, sids, ("printed",))
    hooks.drain()
    log = hooks.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=hooks.merchant.headers).get_json()
    assert sorted((i["status_code"], i["error"]) for i in log["items"]) == [(None, "connect")] * 3
    with hooks.svc.session_factory() as s:
        rows = s.scalars(select(WebhookDelivery)).all()
        assert {(d.status, d.attempts) for d in rows} == {("pending", 1)}
        assert all(d.not_before is not None and d.not_before > utcnow() for d in rows)  # their retry waits


def test_duplicate_and_stale_messages_send_nothing_twice(hooks, receiver):
    hooks.endpoint(receiver.url)
    sids = [hooks.shipment(f"WH-U{i}") for i in range(3)]
    _move_all(hooks, sids, ("printed", "in_transit"))
    with hooks.svc.session_factory() as s:
        ids = [d.id for d in s.scalars(select(WebhookDelivery))]
        # The same batch twice more, before anything ran, and each delivery on its own.
        for _ in range(2):
            outbox.enqueue(s, webhooks.TOPIC, {"delivery_ids": ids})
        for delivery_id in ids:
            outbox.enqueue(s, webhooks.TOPIC, {"delivery_id": delivery_id})
        s.commit()
    hooks.drain()
    hooks.drain(at=utcnow() + timedelta(hours=2))
    sent = _sent(receiver)
    assert len(sent) == 6 and len({w for _, _, w in sent}) == 6 and _in_order(sent)[0]
    with hooks.svc.session_factory() as s:
        assert s.query(WebhookAttempt).count() == 6
        pending = s.scalars(select(OutboxMessage).where(OutboxMessage.done_at.is_(None))).all()
        assert [m.topic for m in pending if m.topic == webhooks.TOPIC] == []


def test_a_backlog_of_one_change_transactions_still_goes_in_batches(hooks, receiver, monkeypatch):
    """120 transactions of one status change each (couriers signing off one parcel at a time): 120 messages of one
    delivery, yet the first run to go gathers the endpoint's other due deliveries, so they share connections and
    the later messages find nothing left to send."""
    monkeypatch.setattr(delivery, "BATCH_DEADLINE_S", 3600.0)
    hooks.endpoint(receiver.url)
    sids = [hooks.shipment(f"WH-G{i:03d}") for i in range(60)]
    for status in ("printed", "in_transit"):
        for sid in sids:
            _move_all(hooks, [sid], [status])  # one transaction each
    with hooks.svc.session_factory() as s:
        messages = s.scalars(select(OutboxMessage).where(OutboxMessage.topic == webhooks.TOPIC)).all()
    assert len(messages) == 120 and all(len(m.payload["delivery_ids"]) == 1 for m in messages)
    hooks.drain()
    sent = _sent(receiver)
    assert len(sent) == 120 and len({w for _, _, w in sent}) == 120  # each event once
    ordered, per = _in_order(sent)
    assert ordered and all(len(seqs) == 2 for seqs in per.values())
    assert receiver.connections <= 6, receiver.connections  # batches, not one connection per event
    with hooks.svc.session_factory() as s:
        assert {d.status for d in s.scalars(select(WebhookDelivery))} == {"succeeded"}
        assert len(s.scalars(select(WebhookAttempt)).all()) == 120  # no attempt twice


def test_gathering_skips_what_is_not_due(hooks, receiver):
    """A delivery waiting for its retry, or behind an earlier pending event of its shipment, is not gathered."""
    hooks.endpoint(receiver.url)
    early, other = hooks.shipment("WH-N1"), hooks.shipment("WH-N2")
    _move_all(hooks, [early], ["printed"])
    with hooks.svc.session_factory() as s:
        (first,) = s.scalars(select(WebhookDelivery)).all()
        first.not_before = utcnow() + LATER  # as after a failed attempt
        s.commit()
    _move_all(hooks, [early], ["in_transit"])  # behind the waiting one
    _move_all(hooks, [other], ["printed"])
    hooks.drain()
    assert [(sid, seq) for sid, seq, _ in _sent(receiver)] == [(other, 2)]
    hooks.drain(at=utcnow() + LATER + timedelta(seconds=2))
    sent = [(sid, seq) for sid, seq, _ in _sent(receiver)]
    assert sent == [(other, 2), (early, 2), (early, 3)], sent
