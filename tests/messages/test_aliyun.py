"""The Aliyun SMS adapter against a local fake Dysmsapi that verifies every signature independently."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket

import pytest
from sqlalchemy import select

from tests.messages.fake_dysms import TEMPLATE_CODES, FakeDysms, expected_signature
from waybill import messages, outbox, tasks
from waybill.messages.aliyun import AliyunMessageProvider, CredentialsError, error_for, load_credentials
from waybill.messages.models import SmsMessage
from waybill.models import OutboxMessage, utcnow
from waybill.settings import SettingsError, load_settings
from waybill.uow import unit_of_work

MOBILE = "13912345678"
CODE = "739164"


@pytest.fixture
def fake():
    with FakeDysms() as server:
        yield server


def _provider(fake, **changes) -> AliyunMessageProvider:
    values = {"access_key_id": fake.access_key_id, "access_key_secret": fake.secret, "sign_name": fake.sign_name,
              "template_codes": TEMPLATE_CODES, "endpoint": fake.url, "timeout": 5.0, **changes}
    return AliyunMessageProvider(**values)


@pytest.fixture
def svc(services, fake):
    return dataclasses.replace(services, messages=_provider(fake))


def _send(svc, template="subject_code", params=None, phone=MOBILE) -> str:
    with unit_of_work(svc.session_factory) as tx:
        return messages.send(tx.session, svc, phone=phone, template=template,
                             params=params or {"code": CODE, "minutes": "5"})


def _relay(svc, now=None) -> int:
    return outbox.relay_once(svc.session_factory, tasks.InProcessQueue(svc), now=now)


def _row(svc, mid) -> SmsMessage:
    with svc.session_factory() as s:
        row = s.get(SmsMessage, mid)
        s.expunge(row)
        return row


def test_send_sms_is_signed_and_the_text_is_erased_once_accepted(svc, fake):
    mid = _send(svc)
    assert _relay(svc) == 1
    assert len(fake.requests) == 1 and not fake.rejected
    req = fake.requests[0]
    assert req["PhoneNumbers"] == MOBILE and req["SignName"] == "隐私快递"
    assert req["TemplateCode"] == "SMS_100000001" and req["OutId"] == mid
    assert json.loads(req["TemplateParam"]) == {"code": CODE, "minutes": "5"}
    assert "+" not in fake.raw_queries[0]  # RFC 3986 percent-encoding: spaces are %20, never '+'
    row = _row(svc, mid)
    assert row.status == "sent" and row.provider == "aliyun" and row.provider_ref.endswith("^0")
    # Only metadata stays: the text does not outlive its delivery.
    assert row.text_ct is None and row.params_ct is None and row.phone_ct is None
    with svc.session_factory() as s:
        assert messages.sent_to(s, svc, MOBILE) == []


def test_the_fake_checks_signatures_for_real(fake):
    wrong = _provider(fake, access_key_secret="not-the-secret")
    with pytest.raises(messages.ProviderError) as exc:
        wrong.call("SendSms", {"PhoneNumbers": MOBILE})
    assert exc.value.code == "SignatureDoesNotMatch" and not exc.value.retryable
    params = {"Action": "SendSms", "A b": "中文 ~*'", "Signature": "x"}
    assert expected_signature("GET", params, "s") == expected_signature("GET", {**params, "Signature": "y"}, "s")


@pytest.mark.parametrize(("code", "kind", "retryable"), [
    ("isv.BUSINESS_LIMIT_CONTROL", messages.Throttled, True),
    ("isv.MOBILE_NUMBER_ILLEGAL", messages.InvalidPhone, False),
    ("isv.TEMPLATE_MISSING_PARAMETERS", messages.ProviderError, False),
    ("isv.SMS_TEMPLATE_ILLEGAL", messages.ProviderError, False),
    ("isv.SMS_SIGNATURE_ILLEGAL", messages.ProviderError, False),
    ("InvalidAccessKeyId.NotFound", messages.ProviderError, False),
    ("SignatureDoesNotMatch", messages.ProviderError, False),
    ("isp.SYSTEM_ERROR", messages.ProviderError, True),
])
def test_error_codes_map_to_named_errors(code, kind, retryable):
    error = error_for(code)
    assert type(error) is kind
    if isinstance(error, messages.ProviderError):
        assert error.code == code and error.retryable is retryable
        assert "fake error" not in error.message  # the provider's own message is never passed on


def test_permanent_refusals_fail_the_message_without_retrying(svc, fake):
    fake.fail_next = "isv.SMS_TEMPLATE_ILLEGAL"
    mid = _send(svc)
    assert _relay(svc) == 1
    row = _row(svc, mid)
    assert row.status == "failed" and row.last_error_type == "isv.SMS_TEMPLATE_ILLEGAL"
    assert row.text_ct is None and row.phone_ct is None
    with svc.session_factory() as s:
        assert s.scalars(select(OutboxMessage.done_at)).one() is not None  # done: not retried
    assert _relay(svc, now=utcnow().replace(year=utcnow().year + 1)) == 0
    assert len(fake.requests) == 1


def test_a_number_the_provider_calls_illegal_fails_for_good(svc, fake):
    fake.fail_next = "isv.MOBILE_NUMBER_ILLEGAL"
    mid = _send(svc)
    _relay(svc)
    assert _row(svc, mid).status == "failed" and _row(svc, mid).last_error_type == "invalid_phone"


def test_throttling_and_network_errors_are_retried_by_the_outbox(svc, fake):
    fake.fail_next = "isv.BUSINESS_LIMIT_CONTROL"
    mid = _send(svc)
    assert _relay(svc) == 1
    row = _row(svc, mid)
    assert row.status == "queued" and row.attempts == 1 and row.last_error_type == "throttled"
    assert row.text_ct is not None  # still needed for the retry
    with svc.session_factory() as s:
        task = s.scalars(select(OutboxMessage)).one()
        assert task.done_at is None and task.attempts == 1 and task.last_error_type == "Throttled"
    # The provider is unreachable next time: still retried.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    down = dataclasses.replace(svc, messages=_provider(fake, endpoint=dead))
    later = utcnow().replace(year=utcnow().year + 1)
    assert _relay(down, now=later) == 1
    assert _row(svc, mid).attempts == 2 and _row(svc, mid).last_error_type == "network"
    # And then it goes through.
    assert _relay(svc, now=later.replace(year=later.year + 1)) == 1
    row = _row(svc, mid)
    assert row.status == "sent" and row.attempts == 3 and row.last_error_type is None and row.text_ct is None
    assert len(fake.requests) == 2


def test_no_plaintext_in_logs_or_rows(svc, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.fail_next = "isp.SYSTEM_ERROR"
    mid = _send(svc, template="pickup_code", params={"tail": "4321", "code": CODE})
    _relay(svc)
    _relay(svc, now=utcnow().replace(year=utcnow().year + 1))
    assert _row(svc, mid).status == "sent"
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "message_id" in logged or "task failed" in logged  # the failure was logged (by id only)
    for secret in (MOBILE, CODE, "取件码"):
        assert secret not in logged
    with svc.session_factory() as s:
        raw = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                       for row in s.execute(select(SmsMessage.__table__)).all() for v in row if v is not None)
        tasks_raw = json.dumps([p for p in s.scalars(select(OutboxMessage.payload))])
    for secret in (MOBILE, CODE, "4321"):
        assert secret.encode() not in raw and secret not in tasks_raw


def _aliyun_env(tmp_path, creds=None, mode=0o600, **extra):
    path = tmp_path / "sms.json"
    path.write_text(json.dumps(creds if creds is not None else {"access_key_id": "id", "access_key_secret": "s"}))
    path.chmod(mode)
    env = {"WAYBILL_SMS_PROVIDER": "aliyun", "WAYBILL_SMS_CREDENTIALS_FILE": str(path),
           "WAYBILL_SMS_SIGN_NAME": "隐私快递", "WAYBILL_SMS_TEMPLATE_CODES": json.dumps(TEMPLATE_CODES),
           "WAYBILL_DATA_DIR": str(tmp_path), **extra}
    return {k: v for k, v in env.items() if v is not None}


def test_settings_build_the_adapter_and_check_every_template_has_a_code(tmp_path):
    provider = messages.make_provider(load_settings(_aliyun_env(tmp_path)))
    assert isinstance(provider, AliyunMessageProvider) and "s" not in repr(provider).split("key=")[1]
    partial = dict(list(TEMPLATE_CODES.items())[:2])
    with pytest.raises(SettingsError, match="no code for"):
        messages.make_provider(load_settings(_aliyun_env(tmp_path, WAYBILL_SMS_TEMPLATE_CODES=json.dumps(partial))))
    with pytest.raises(SettingsError, match="unknown templates"):
        messages.make_provider(load_settings(_aliyun_env(
            tmp_path, WAYBILL_SMS_TEMPLATE_CODES=json.dumps({**TEMPLATE_CODES, "marketing": "SMS_1234"}))))
    for bad in ("[]", '{"pickup_code": "12345"}', "not json"):
        with pytest.raises(SettingsError, match="WAYBILL_SMS_TEMPLATE_CODES"):
            load_settings(_aliyun_env(tmp_path, WAYBILL_SMS_TEMPLATE_CODES=bad))
    with pytest.raises(SettingsError, match="WAYBILL_SMS_SIGN_NAME"):
        load_settings(_aliyun_env(tmp_path, WAYBILL_SMS_SIGN_NAME=None))
    with pytest.raises(SettingsError, match="WAYBILL_SMS_PROVIDER"):
        load_settings({"WAYBILL_SMS_PROVIDER": "twilio"})
    assert isinstance(messages.make_provider(load_settings({})), messages.BuiltinMessageProvider)


def test_credentials_file_must_be_owner_only_and_complete(tmp_path):
    env = _aliyun_env(tmp_path, mode=0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        messages.make_provider(load_settings(env))
    env = _aliyun_env(tmp_path, creds={"access_key_id": "id"})
    with pytest.raises(CredentialsError, match="access_key_secret"):
        load_credentials(tmp_path / "sms.json")


def test_serve_refuses_to_start_with_a_bad_sms_configuration(tmp_path, cli_env):
    from tests.conftest import run

    env = {**cli_env, **_aliyun_env(tmp_path, mode=0o644)}
    env["WAYBILL_DATA_DIR"] = cli_env["WAYBILL_DATA_DIR"]
    proc = run(["serve", "--port", "1"], env, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["error"]["code"] == "sms_provider"
    env = {**env, **_aliyun_env(tmp_path, WAYBILL_SMS_TEMPLATE_CODES="{}")}
    env["WAYBILL_DATA_DIR"] = cli_env["WAYBILL_DATA_DIR"]
    proc = run(["serve", "--port", "1"], env, check=False)
    assert proc.returncode == 2 and "no code for" in proc.stdout
