"""`waybill messages show`, and no message plaintext at rest, in task payloads or in logs (real commits)."""

from __future__ import annotations

import io
import json
import logging

from tests.conftest import make_merchant, run, shipment_body
from tests.waybill.test_privacy_at_rest import _raw_storage, _variants
from waybill import logs, messages, outbox, tasks
from waybill.uow import unit_of_work

MOBILE = "13687654321"
CODE = "905172"


def _env_vars(env, **extra):
    return {"WAYBILL_DATA_DIR": str(env.settings.data_dir), "WAYBILL_DATABASE_URL": env.settings.database_url,
            "WAYBILL_KEY_FILE": str(env.settings.key_file), "WAYBILL_ENV": "test", **extra}


def _send_and_deliver(svc, **kwargs):
    with unit_of_work(svc.session_factory) as tx:
        mid = messages.send(tx.session, svc, phone=MOBILE, template="subject_code",
                            params={"code": CODE, "minutes": "10"}, **kwargs)
    outbox.relay_once(svc.session_factory, tasks.InProcessQueue(svc))
    return mid


def test_messages_show_prints_the_outbox_and_is_refused_in_production(fresh_env):
    env = fresh_env()
    svc = env.services()
    _send_and_deliver(svc)
    out = json.loads(run(["messages", "show", "--phone", "+86 136 8765 4321"], _env_vars(env)).stdout)
    assert len(out["messages"]) == 1
    assert out["messages"][0]["template"] == "subject_code" and CODE in out["messages"][0]["text"]
    empty = json.loads(run(["messages", "show", "--phone", "13600000000"], _env_vars(env)).stdout)
    assert empty == {"messages": []}
    bad = run(["messages", "show", "--phone", "021-64321234"], _env_vars(env), check=False)
    assert bad.returncode == 2 and json.loads(bad.stdout)["error"]["field"] == "phone"
    assert "64321234" not in bad.stdout
    prod = run(["messages", "show", "--phone", MOBILE], _env_vars(env, WAYBILL_ENV="production"), check=False)
    assert prod.returncode == 2 and json.loads(prod.stdout)["error"]["code"] == "refused"
    assert CODE not in prod.stdout


def test_no_message_plaintext_at_rest_in_payloads_or_logs(fresh_env):
    stream = io.StringIO()
    env = fresh_env(log_level="DEBUG")
    logs.configure("DEBUG", stream)
    logging.getLogger("waybill").debug("capture started")
    svc = env.services()
    m = make_merchant(svc)
    client = env.app().test_client()
    sid = client.post("/v1/shipments", json=shipment_body("M-1"), headers=m.headers).get_json()["id"]
    _send_and_deliver(svc)
    with unit_of_work(svc.session_factory) as tx:
        messages.send(tx.session, svc, phone=MOBILE, template="partner_pickup_notice",
                      params={"tail": "7788", "partner": "丰巢柜", "code": "314159"}, shipment_id=sid,
                      party="recipient")
    outbox.relay_once(svc.session_factory, tasks.InProcessQueue(svc))
    with svc.session_factory() as s:
        assert len(messages.sent_to(s, svc, MOBILE)) == 2  # positive control: the texts are there, encrypted
    raw = _raw_storage(env)
    text = messages.TEMPLATES["subject_code"].render({"code": CODE, "minutes": "10"})
    for value in (MOBILE, CODE, "314159", "丰巢柜", text[:12]):
        for form in _variants(value) + [value.encode().hex().encode()]:
            assert form not in raw, f"plaintext {value!r} found at rest"
    out = stream.getvalue()
    assert "capture started" in out
    for value in (MOBILE, CODE, "314159", "丰巢柜", "验证码"):
        assert value not in out
