"""Aliyun as the configured provider: settings, credentials file, and the call-receipt push endpoint."""

from __future__ import annotations

import json
import logging
import os
import secrets

import pytest
from sqlalchemy import select

from courier_api.deps import delivery_deps
from tests.conftest import run
from tests.virtual_numbers.conftest import HOUR, A, B, C
from tests.virtual_numbers.fake_aliyun import FakeAliyun
from waybill.models import AuditEvent
from waybill.settings import SettingsError, load_settings
from waybill.virtual_numbers.aliyun import RECEIPT_ACK, AliyunProvider, CredentialsError, load_credentials
from waybill.virtual_numbers.models import VnBinding, VnCall

SECRET = "fake-secret-123"


@pytest.fixture
def fake():
    with FakeAliyun(access_key_secret=SECRET) as server:
        yield server


def _credentials(tmp_path, fake, *, mode=0o600, **changes):
    doc = {"access_key_id": fake.access_key_id, "access_key_secret": SECRET, "pool_key": fake.pool_key,
           "receipt_token": secrets.token_urlsafe(32)}
    doc.update(changes)
    path = tmp_path / f"aliyun-{secrets.token_hex(3)}.json"
    path.write_text(json.dumps(doc))
    path.chmod(mode)
    return path, doc


@pytest.fixture
def aliyun_app(tmp_path, fake, fresh_env):
    path, doc = _credentials(tmp_path, fake)
    env = fresh_env(phone_provider="aliyun", aliyun_credentials_file=path, aliyun_endpoint=fake.url)
    app = env.app()
    return app, app.extensions["waybill"], doc["receipt_token"]


def _push(fake, x_number, subs_id, call_ids=("c-0001", "c-0002")):
    return json.dumps([
        {"pool_key": fake.pool_key, "sub_id": int(subs_id), "call_id": call_ids[0], "phone_no": A,
         "secret_no": x_number, "peer_no": B, "call_type": 0, "call_time": "2026-11-23 12:00:00",
         "start_time": "2026-11-23 12:00:10", "release_time": "2026-11-23 12:01:40", "release_cause": 16},
        {"pool_key": fake.pool_key, "call_id": call_ids[1], "phone_no": C, "secret_no": x_number, "peer_no": B,
         "call_type": 4, "call_time": "2026-11-23 12:05:00", "release_time": "2026-11-23 12:05:00"},
    ])


def test_the_service_uses_the_configured_provider_and_takes_its_receipts_once(aliyun_app, fake, caplog):
    caplog.set_level(logging.DEBUG)
    app, svc, token = aliyun_app
    provider = delivery_deps(svc).provider
    assert isinstance(provider, AliyunProvider) and provider.client.endpoint == fake.url
    assert SECRET not in repr(provider.client) and token not in repr(load_credentials)
    with svc.session_factory() as s:
        binding = provider.bind_axb(s, A, B, ttl=HOUR, ref="shp_1")
        subs_id = s.get(VnBinding, binding.id).provider_ref
        s.commit()
    client = app.test_client()
    body = _push(fake, binding.x_number, subs_id)
    first = client.post(f"/v1/phone/receipts/{token}", data=body, content_type="application/json")
    again = client.post(f"/v1/phone/receipts/{token}", data=body, content_type="application/json")
    assert first.status_code == again.status_code == 200
    # Aliyun stops re-sending on code 0; the rest says what became of each record.
    assert {k: first.get_json()[k] for k in RECEIPT_ACK} == RECEIPT_ACK
    assert (first.get_json()["accepted"], again.get_json()["accepted"], again.get_json()["duplicates"]) == (2, 0, 2)
    with svc.session_factory() as s:
        calls = {c.call_id: c for c in s.scalars(select(VnCall))}
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "phone.receipts")
                           .order_by(AuditEvent.seq)).all()
    assert set(calls) == {"c-0001", "c-0002"}
    assert (calls["c-0001"].binding_id, calls["c-0001"].duration_s, calls["c-0001"].outcome) == (binding.id, 90,
                                                                                                  "routed")
    assert calls["c-0002"].outcome == "out_of_session"
    assert [(e.actor, e.outcome, e.purpose) for e in events] == [
        ("provider:aliyun", "ok", "received=2 new=2 sms=0 rejected=0"),
        ("provider:aliyun", "ok", "received=2 new=0 sms=0 rejected=0")]
    # Receipts carry real numbers: none of them is kept, logged or audited in the clear.
    trail = json.dumps([[e.actor, e.purpose, e.object_id] for e in events])
    # Every field of every log record (the JSON log line is built from them), not just the message.
    logged = json.dumps([{k: str(v) for k, v in vars(r).items()} for r in caplog.records], ensure_ascii=False)
    assert "/v1/phone/receipts/<token>" in logged  # the request log has the route pattern...
    assert token not in logged  # ...never the secret path
    for number in (A, B, C):
        assert number not in trail and number not in logged


def test_a_wrong_token_is_a_404_like_any_unknown_path_and_is_audited(aliyun_app, fake):
    app, svc, token = aliyun_app
    client = app.test_client()
    wrong = client.post(f"/v1/phone/receipts/{secrets.token_urlsafe(32)}", data="[]",
                        content_type="application/json")
    almost = client.post(f"/v1/phone/receipts/{token[:-1]}", data="[]", content_type="application/json")
    assert wrong.status_code == almost.status_code == 404 and wrong.data == almost.data
    assert wrong.get_json()["error"]["code"] == "not_found"
    with svc.session_factory() as s:
        outcomes = s.scalars(select(AuditEvent.outcome).where(AuditEvent.action == "phone.receipts")).all()
        assert outcomes == ["denied", "denied"] and not s.scalars(select(VnCall)).all()


@pytest.mark.parametrize("body", ["not json", "[" * 5000])
def test_a_body_that_is_no_json_is_422_and_records_nothing(aliyun_app, body):
    app, svc, token = aliyun_app
    r = app.test_client().post(f"/v1/phone/receipts/{token}", data=body, content_type="application/json")
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "body"
    with svc.session_factory() as s:
        assert not s.scalars(select(VnCall)).all()


def test_the_builtin_provider_takes_no_pushed_receipts(client):
    r = client.post(f"/v1/phone/receipts/{secrets.token_urlsafe(32)}", data="[]", content_type="application/json")
    assert r.status_code == 404


def test_settings_require_a_credentials_file_for_aliyun(tmp_path):
    with pytest.raises(SettingsError, match="WAYBILL_ALIYUN_CREDENTIALS_FILE"):
        load_settings(environ={"WAYBILL_PHONE_PROVIDER": "aliyun", "WAYBILL_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match="WAYBILL_PHONE_PROVIDER"):
        load_settings(environ={"WAYBILL_PHONE_PROVIDER": "twilio", "WAYBILL_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match="WAYBILL_ALIYUN_ENDPOINT"):
        load_settings(environ={"WAYBILL_ALIYUN_ENDPOINT": "ftp://x", "WAYBILL_DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize(("mode", "changes", "message"), [
    (0o644, {}, "owner only"),
    (0o600, {"pool_key": ""}, "pool_key is missing"),
    (0o600, {"receipt_token": "short"}, "receipt_token"),
    (0o600, {"receipt_token": "x" * 31 + "/"}, "receipt_token"),
])
def test_a_bad_credentials_file_is_refused_by_name(tmp_path, fake, mode, changes, message):
    path, doc = _credentials(tmp_path, fake, mode=mode, **changes)
    with pytest.raises(CredentialsError, match=message) as caught:
        load_credentials(path)
    assert SECRET not in str(caught.value)


def test_serve_refuses_to_start_with_a_bad_credentials_file(tmp_path, fake, cli_env):
    path, _ = _credentials(tmp_path, fake, mode=0o644)
    proc = run(["serve", "--port", "1"], {**cli_env, "WAYBILL_PHONE_PROVIDER": "aliyun",
                                         "WAYBILL_ALIYUN_CREDENTIALS_FILE": str(path)}, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["error"]["code"] == "provider_credentials"
    assert SECRET not in proc.stdout + proc.stderr
    assert os.stat(path).st_mode & 0o777 == 0o644  # the file is left as it was


def test_the_receipt_acknowledgement_matches_the_openapi_document(aliyun_app, fake):
    # The one documented answer tests/courier_api/test_openapi_answers.py leaves to a provider that takes receipts.
    from tests.openapi_check import AnswerRecorder, check_answer

    app, svc, token = aliyun_app
    recorded = AnswerRecorder(app)
    provider = delivery_deps(svc).provider
    with svc.session_factory() as s:
        binding = provider.bind_axb(s, A, B, ttl=HOUR, ref="shp_1")
        subs_id = s.get(VnBinding, binding.id).provider_ref
        s.commit()
    client = app.test_client()
    r = client.post(f"/v1/phone/receipts/{token}", data=_push(fake, binding.x_number, subs_id),
                    content_type="application/json")
    assert r.status_code == 200
    assert client.post("/v1/phone/receipts/wrong-token", data="[]", content_type="application/json").status_code == 404
    doc = client.get("/openapi.json").get_json()
    answers = [a for a in recorded.answers if a.path == "/v1/phone/receipts/{token}"]
    assert [a.status for a in answers] == [200, 404]
    for answer in answers:
        check_answer(doc, answer)


def _record(call_id, **changes):
    record = {"pool_key": "FC100000", "call_id": call_id, "phone_no": A, "secret_no": "17100000001", "peer_no": B,
              "call_type": 0, "call_time": "2026-11-23 12:00:00", "start_time": "2026-11-23 12:00:10",
              "release_time": "2026-11-23 12:01:40", "release_cause": 16}
    record.update(changes)
    return record


def test_one_malformed_record_costs_the_batch_nothing_and_is_reported(aliyun_app):
    """Regression: one bad record made the whole batch 422; Aliyun re-pushes at 1, 5 and 10 minutes and
    then drops it, good records included. Now the good ones are stored and each bad one is named."""
    app, svc, token = aliyun_app
    batch = [_record("good-1"), _record("bad-time", call_time="yesterday"), "not a record",
             _record("bad-type", call_type="video"), {"call_type": 0, "phone_no": A}, _record("good-2", call_type=1)]
    r = app.test_client().post(f"/v1/phone/receipts/{token}", data=json.dumps(batch),
                               content_type="application/json")
    assert r.status_code == 200
    body = r.get_json()
    assert (body["code"], body["accepted"], body["duplicates"]) == (0, 2, 0)  # code 0: Aliyun stops re-sending
    assert body["rejected"] == [{"index": 1, "call_id": "bad-time", "field": "call_time"},
                                {"index": 2, "call_id": None, "field": "record"},
                                {"index": 3, "call_id": "bad-type", "field": "call_type"},
                                {"index": 4, "call_id": None, "field": "call_id"}]
    assert A not in r.get_data(as_text=True) and B not in r.get_data(as_text=True)
    with svc.session_factory() as s:
        assert sorted(s.scalars(select(VnCall.call_id))) == ["good-1", "good-2"]
        alerts = s.scalars(select(AuditEvent).where(AuditEvent.action == "alert.phone_receipts_rejected")).all()
    expected = ("alert", "rejected=4 fields=call_id,call_time,call_type,record")
    assert [(a.outcome, a.purpose) for a in alerts] == [expected]


@pytest.mark.parametrize("sms_type", [2, 3, 5])
def test_legacy_sms_records_are_not_logged_as_calls(aliyun_app, sms_type):
    app, svc, token = aliyun_app
    batch = [_record("sms-1", call_type=sms_type, sms_number=1), _record("call-1")]
    r = app.test_client().post(f"/v1/phone/receipts/{token}", data=json.dumps(batch),
                               content_type="application/json")
    assert r.status_code == 200 and (r.get_json()["accepted"], r.get_json()["sms_skipped"]) == (1, 1)
    with svc.session_factory() as s:
        assert s.scalars(select(VnCall.call_id)).all() == ["call-1"]
