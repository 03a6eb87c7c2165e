"""The webhook endpoints API: validation (422 field url/events), the SSRF guard at creation, ownership (404),
listing without secrets, secrets encrypted at rest."""

from __future__ import annotations

import ipaddress

import pytest
from sqlalchemy import select

from tests.conftest import make_merchant
from tests.webhooks.receiver import Receiver
from waybill.webhooks import guard
from waybill.webhooks.models import WebhookEndpoint
from waybill.webhooks.transport import HttpTransport

PUBLIC = "https://93.184.215.14/hooks/waybill?source=pw"  # a literal public address: no DNS needed

REFUSED = [
    "http://127.0.0.1/hook", "http://127.1.2.3:8080/hook", "http://10.1.2.3/hook", "http://172.16.0.9/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/hook", "http://[fd00:ec2::254]/",
    "http://localhost/hook", "http://localhost:9000/hook", "http://[::ffff:127.0.0.1]/", "http://[::ffff:10.0.0.1]/",
    "http://100.64.0.1/", "http://0.0.0.0/", "http://224.0.0.1/", "http://[fe80::1]/", "http://240.0.0.1/",
    "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/", "http://100.100.100.200/",
]


def _post(client, headers, body):
    return client.post("/v1/webhooks", json=body, headers=headers)


@pytest.mark.parametrize("url", REFUSED)
def test_private_loopback_link_local_and_metadata_addresses_are_refused(client, merchant, url):
    r = _post(client, merchant.headers, {"url": url, "events": ["shipment.status_changed"]})
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["error"]["field"] == "url"
    assert url not in r.get_data(as_text=True)  # never echoed


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "ftp://93.184.215.14/x", "events": ["shipment.status_changed"]}, "url"),
    ({"url": "https://user:pw@93.184.215.14/x", "events": ["shipment.status_changed"]}, "url"),
    ({"url": "https://93.184.215.14/x#frag", "events": ["shipment.status_changed"]}, "url"),
    ({"url": "https://93.184.215.14/" + "a" * 2048, "events": ["shipment.status_changed"]}, "url"),
    ({"url": "https:///nohost", "events": ["shipment.status_changed"]}, "url"),
    ({"url": "https://93.184.215.14:99999/", "events": ["shipment.status_changed"]}, "url"),
    ({"url": "https://例子.测试/", "events": ["shipment.status_changed"]}, "url"),
    ({"url": "https://no-such-host.invalid/", "events": ["shipment.status_changed"]}, "url"),
    ({"url": 5, "events": ["shipment.status_changed"]}, "url"),
    ({"url": PUBLIC, "events": []}, "events"),
    ({"url": PUBLIC, "events": ["shipment.created"]}, "events[0]"),
    ({"url": PUBLIC}, "events"),
    ({"url": PUBLIC, "events": ["shipment.status_changed"], "secret": "mine"}, "secret"),
])
def test_bad_bodies_name_the_field(client, merchant, body, field):
    r = _post(client, merchant.headers, body)
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["error"]["field"] == field


def test_loopback_is_allowed_when_the_setting_says_so(fresh_env):
    from tests.webhooks.conftest import Hooks
    from waybill.web.app import create_app

    env = fresh_env(webhook_allow_private=True)
    svc = env.services()
    hooks = Hooks(env, svc, create_app(env.settings, services_override=svc).test_client(), make_merchant(svc))
    for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/", "http://10.0.0.5/"):
        assert hooks.endpoint(url)["url"] == url


def test_the_setting_is_read_from_the_environment(tmp_path):
    from waybill.settings import SettingsError, load_settings

    base = {"WAYBILL_DATA_DIR": str(tmp_path)}
    assert load_settings(environ=base).webhook_allow_private is False
    assert load_settings(environ={**base, "WAYBILL_WEBHOOK_ALLOW_PRIVATE": "1"}).webhook_allow_private is True
    assert load_settings(environ={**base, "WAYBILL_WEBHOOK_ALLOW_PRIVATE": "0"}).webhook_allow_private is False
    with pytest.raises(SettingsError, match="WAYBILL_WEBHOOK_ALLOW_PRIVATE"):
        load_settings(environ={**base, "WAYBILL_WEBHOOK_ALLOW_PRIVATE": "maybe"})


def test_every_resolved_address_is_checked():
    """One private address among the host's A/AAAA records is enough to refuse it (and the first is connected)."""
    v6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
    with pytest.raises(guard.BlockedAddress):
        guard.resolve("https://hooks.example/", allow_private=False,
                      resolver=lambda host, port: ["93.184.215.14", v6, "10.0.0.1"])
    target = guard.resolve("https://hooks.example:8443/a?b=1", allow_private=False,
                           resolver=lambda host, port: ["93.184.215.14", v6])
    assert (target.host, target.port, target.path, target.address) == ("hooks.example", 8443, "/a?b=1",
                                                                        "93.184.215.14")


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"])
def test_public_addresses_pass(address):
    assert guard.refusal(ipaddress.ip_address(address)) is None


def test_the_connection_goes_to_the_checked_address_with_the_name_in_host():
    """No second resolution: the name below does not even exist; the request reaches the pinned address."""
    receiver = Receiver()
    try:
        target = guard.Target(scheme="http", host="hooks.example.invalid", port=receiver.port, path="/pinned",
                              address="127.0.0.1")
        answer = HttpTransport().post(target, {"webhook-id": "x"}, b"{}")
        assert answer.status_code == 200
        (got,) = receiver.received
        assert got.path == "/pinned" and got.headers["host"] == f"hooks.example.invalid:{receiver.port}"
    finally:
        receiver.close()


def test_create_list_rotate_delete_and_ownership(client, merchant, other_merchant, session):
    made = _post(client, merchant.headers, {"url": PUBLIC, "events": ["shipment.status_changed"]})
    assert made.status_code == 201
    hook = made.get_json()
    assert set(hook) >= {"id", "url", "events", "secret"} and hook["url"] == PUBLIC and hook["status"] == "active"
    listed = client.get("/v1/webhooks", headers=merchant.headers).get_json()["items"]
    assert [h["id"] for h in listed] == [hook["id"]] and all("secret" not in h for h in listed)
    assert client.get("/v1/webhooks", headers=other_merchant.headers).get_json()["items"] == []
    for method, path in (("delete", f"/v1/webhooks/{hook['id']}"), ("post", f"/v1/webhooks/{hook['id']}/rotate-secret"),
                         ("get", f"/v1/webhooks/{hook['id']}/deliveries")):
        foreign = getattr(client, method)(path, headers=other_merchant.headers)
        unknown = getattr(client, method)(path.replace(hook["id"], "whk_" + "0" * 26), headers=other_merchant.headers)
        assert foreign.status_code == 404 and foreign.get_json()["error"]["code"] == "not_found"
        assert (foreign.status_code, foreign.data) == (unknown.status_code, unknown.data)
    rotated = client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=merchant.headers).get_json()["secret"]
    # At rest: the secrets are ciphertexts; the plaintext is nowhere in the row.
    row = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.id == hook["id"])).one()
    for secret in (hook["secret"], rotated):
        for blob in (row.secret_ct, row.previous_secret_ct):
            assert secret.encode() not in blob and secret.removeprefix("whsec_").encode() not in blob
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=merchant.headers).status_code == 200
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=merchant.headers).status_code == 404
    assert client.get("/v1/webhooks", headers=merchant.headers).get_json()["items"] == []


def test_the_delivery_log_pages_and_checks_its_parameters(client, merchant):
    hook = _post(client, merchant.headers, {"url": PUBLIC, "events": ["shipment.status_changed"]}).get_json()
    base = f"/v1/webhooks/{hook['id']}/deliveries"
    assert client.get(base, headers=merchant.headers).get_json() == {"items": []}
    for query, field in (("?limit=0", "limit"), ("?limit=x", "limit"), ("?cursor=nope", "cursor"), ("?x=1", "x")):
        r = client.get(base + query, headers=merchant.headers)
        assert r.status_code == 422 and r.get_json()["error"]["field"] == field


def test_at_most_ten_endpoints(client, merchant):
    for n in range(10):
        assert _post(client, merchant.headers, {"url": f"{PUBLIC}&n={n}", "events": ["shipment.status_changed"]}
                     ).status_code == 201
    r = _post(client, merchant.headers, {"url": PUBLIC, "events": ["shipment.status_changed"]})
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "url"
