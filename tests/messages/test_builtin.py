"""Messages through the built-in provider: validation, the stored row, the outbox task, reading back, forgetting."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import RECIPIENT, shipment_body
from waybill import messages, outbox, tasks
from waybill.messages import templates
from waybill.messages.models import SmsMessage
from waybill.models import OutboxMessage, utcnow
from waybill.uow import unit_of_work

MOBILE = "13912340000"
CODE = "482915"


def _send(svc, phone=MOBILE, template="subject_code", params=None, **kwargs) -> str:
    with unit_of_work(svc.session_factory) as tx:
        return messages.send(tx.session, svc, phone=phone, template=template,
                             params=params or {"code": CODE, "minutes": "10"}, **kwargs)


def _relay(svc, now=None) -> int:
    return outbox.relay_once(svc.session_factory, tasks.InProcessQueue(svc), now=now)


def _row(svc, message_id) -> SmsMessage:
    with svc.session_factory() as s:
        row = s.get(SmsMessage, message_id)
        assert row is not None
        s.expunge(row)
        return row


def _sent_to(svc, phone=MOBILE):
    with svc.session_factory() as s:
        return messages.sent_to(s, svc, phone)


def test_templates_render_their_declared_parameters_only():
    text = templates.render("pickup_code", {"tail": "5678", "code": "123456"})
    assert "5678" in text and "123456" in text and "${" not in text
    for name, tpl in templates.TEMPLATES.items():
        assert tpl.name == name and tpl.params
    with pytest.raises(templates.TemplateError, match="missing"):
        templates.render("pickup_code", {"tail": "5678"})
    with pytest.raises(templates.TemplateError, match="unexpected"):
        templates.render("pickup_code", {"tail": "5678", "code": "1", "name": "张三"})
    with pytest.raises(templates.TemplateError):
        templates.render("no_such_template", {})
    with pytest.raises(templates.TemplateError):
        templates.Template("x", "您好${a}", frozenset({"a", "b"}))  # declaration differs from the text
    with pytest.raises(templates.TemplateError):
        templates.render("pickup_code", {"tail": "56\n78", "code": "1"})
    assert {"subject_code", "pickup_code", "incident_notice", "partner_pickup_notice"} <= set(templates.TEMPLATES)


def test_send_stores_an_encrypted_row_and_an_id_only_task(services):
    mid = _send(services)
    row = _row(services, mid)
    assert row.status == "queued" and row.template == "subject_code" and row.provider == "builtin"
    assert row.phone_hash == messages.phone_hash(services.keys, MOBILE) and len(row.phone_hash) == 32
    for blob in (row.phone_ct, row.text_ct, row.params_ct):
        assert blob and MOBILE.encode() not in blob and CODE.encode() not in blob
    with services.session_factory() as s:
        task = s.scalars(select(OutboxMessage).where(OutboxMessage.topic == "messages.send")).one()
    assert task.payload == {"message_id": mid}
    assert _sent_to(services) == []  # queued, not sent yet


def test_the_task_delivers_and_the_outbox_reads_it_back(services):
    first = _send(services, params={"code": "111111", "minutes": "10"})
    assert _relay(services) == 1
    second = _send(services, template="pickup_code", params={"tail": "0042", "code": "222222"})
    assert _relay(services) == 1
    assert _row(services, first).status == "sent" and _row(services, first).attempts == 1
    row = _row(services, second)
    assert row.sent_at is not None and row.text_ct is not None  # the built-in provider keeps the text
    got = _sent_to(services, "+86 139 1234 0000")  # any spelling of the number
    assert [m["template"] for m in got] == ["pickup_code", "subject_code"]  # newest first
    assert "222222" in got[0]["text"] and "0042" in got[0]["text"] and "111111" in got[1]["text"]
    assert got[0]["at"].endswith("Z")
    assert _sent_to(services, "13700000000") == []
    # Running the task again (at-least-once delivery) changes nothing.
    with unit_of_work(services.session_factory) as tx:
        assert messages.deliver(tx, services, second) == "skipped"
    assert services.metrics.sms_messages.labels("pickup_code", "sent")._value.get() == 1


def test_landlines_and_bad_numbers_are_refused_naming_the_field(services):
    with pytest.raises(messages.NotMobile) as landline:
        _send(services, phone="021-64321234")
    assert landline.value.field == "phone" and "64321234" not in landline.value.message
    with pytest.raises(messages.InvalidPhone) as bad:
        _send(services, phone="1391234000")
    assert bad.value.field == "phone" and not isinstance(bad.value, messages.NotMobile)
    with services.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(SmsMessage)) == 0
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_bad_parameters_are_a_programming_error_and_store_nothing(services):
    with pytest.raises(templates.TemplateError):
        _send(services, params={"code": CODE})
    with pytest.raises(ValueError):
        _send(services, shipment_id="shp_01JAAAAAAAAAAAAAAAAAAAAAAA")  # a party is needed with a shipment
    with services.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(SmsMessage)) == 0


def test_one_number_gets_a_bounded_number_of_messages_per_hour(services):
    svc = dataclasses.replace(services, settings=dataclasses.replace(services.settings, sms_per_phone_per_hour=3))
    for _ in range(3):
        _send(svc)
    with pytest.raises(messages.Throttled) as exc:
        _send(svc)
    assert 1 <= exc.value.retry_after <= 3600
    _send(svc, phone="13700000000")  # another number is not affected
    later = utcnow() + timedelta(hours=1, seconds=5)
    with unit_of_work(svc.session_factory) as tx:
        messages.send(tx.session, svc, phone=MOBILE, template="subject_code", params={"code": CODE, "minutes": "5"},
                      now=later)


def test_throttled_answers_429_with_retry_after_on_a_request_path(services):
    from flask import Flask

    from waybill.web import errors as api_errors

    app = Flask("t")
    api_errors.register(app)

    @app.get("/x")
    def view():
        raise messages.Throttled(42.5)

    resp = app.test_client().get("/x")
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "43"
    assert resp.get_json()["error"]["code"] == "rate_limited"


def test_party_messages_belong_to_the_shipment_and_are_forgotten_with_it(services, client, merchant):
    sid = client.post("/v1/shipments", json=shipment_body(), headers=merchant.headers).get_json()["id"]
    other = client.post("/v1/shipments", json=shipment_body("ORD-2"), headers=merchant.headers).get_json()["id"]
    queued = _send(services, phone=RECIPIENT["phone"], template="pickup_code",
                   params={"tail": "5678", "code": "654321"}, shipment_id=sid, party="recipient")
    _send(services, phone="13900001111", template="pickup_code", params={"tail": "5678", "code": "1"},
          shipment_id=sid, party="sender")
    kept = _send(services, phone=RECIPIENT["phone"], template="pickup_code", params={"tail": "9999", "code": "2"},
                 shipment_id=other, party="recipient")
    assert _row(services, queued).shipment_id == sid and _row(services, queued).party == "recipient"
    with unit_of_work(services.session_factory) as tx:
        assert messages.forget(tx.session, [sid], party="recipient") == 1
    with unit_of_work(services.session_factory) as tx:
        assert messages.forget(tx.session, [sid, sid]) == 1
        assert messages.forget(tx.session, []) == 0
    # The forgotten message's task finds no row and sends nothing; the other shipment's goes out.
    assert _relay(services) == 3
    assert [m["text"] for m in _sent_to(services, RECIPIENT["phone"])] == [
        templates.render("pickup_code", {"tail": "9999", "code": "2"})]
    assert _row(services, kept).status == "sent"
    with pytest.raises(ValueError):
        _send(services, shipment_id="shp_01JAAAAAAAAAAAAAAAAAAAAAAA", party="recipient")  # unknown shipment


def test_a_message_that_cannot_be_decrypted_fails_without_retrying(services):
    mid = _send(services)
    with unit_of_work(services.session_factory) as tx:
        row = tx.session.get(SmsMessage, mid)
        row.text_ct = row.phone_ct  # a ciphertext moved to another column fails authentication
    assert _relay(services) == 1
    row = _row(services, mid)
    assert row.status == "failed" and row.last_error_type == "undecryptable"
    assert row.text_ct is None and row.phone_ct is None and row.params_ct is None
    with services.session_factory() as s:
        assert s.scalars(select(OutboxMessage.done_at)).one() is not None


def test_messages_expire_after_the_keeping_period_by_the_periodic_job(services):
    old = utcnow() - messages.store.KEEP - timedelta(minutes=1)
    with unit_of_work(services.session_factory) as tx:
        gone = messages.send(tx.session, services, phone=MOBILE, template="subject_code",
                             params={"code": CODE, "minutes": "10"}, now=old)
    kept = _send(services)
    assert "messages.expire" in {job.topic for job in tasks.jobs()}
    handler = tasks.handlers(services)[messages.EXPIRE_TOPIC]
    with unit_of_work(services.session_factory) as tx:
        handler(tx, {})
    with services.session_factory() as s:
        assert s.get(SmsMessage, gone) is None and s.get(SmsMessage, kept) is not None
