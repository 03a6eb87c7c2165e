"""X-Forwarded-For is believed only from WAYBILL_TRUSTED_PROXIES (address ranges checked against the peer)."""

from __future__ import annotations

import ipaddress

import pytest
from sqlalchemy import select

from waybill.models import AuditEvent
from waybill.settings import SettingsError, load_settings
from waybill.web.app import create_app
from waybill.web.client import resolve_client

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


@pytest.mark.parametrize(("peer", "xff", "client"), [
    ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # an untrusted peer cannot choose its address
    ("10.1.2.3", "198.51.100.7", "198.51.100.7"),  # one trusted proxy
    ("10.1.2.3", "198.51.100.7, 10.9.9.9", "198.51.100.7"),  # two trusted hops
    ("10.1.2.3", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # what the client itself put in front is ignored
    ("10.1.2.3", "garbage, 198.51.100.7", "198.51.100.7"),
    ("10.1.2.3", "198.51.100.7, not-an-ip", "10.1.2.3"),  # unparsable: stop at the last trusted hop
    ("10.1.2.3", None, "10.1.2.3"),
])
def test_resolve_client(peer, xff, client):
    assert resolve_client(peer, xff, PROXIES) == client
    assert resolve_client(peer, xff, ()) == peer  # nothing trusted: the socket peer, always


def test_setting_is_validated():
    assert load_settings({}, trusted_proxies="10.0.0.0/8, 192.168.1.1").trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.1/32"))
    with pytest.raises(SettingsError, match="WAYBILL_TRUSTED_PROXIES"):
        load_settings({"WAYBILL_TRUSTED_PROXIES": "10.0.0.0/33"})


def test_audit_records_the_forwarded_client_only_behind_a_trusted_proxy(fresh_env):
    for trusted, expected in (("127.0.0.1", "198.51.100.7"), (None, "127.0.0.1")):
        env = fresh_env(trusted_proxies=trusted)
        svc = env.services()
        client = create_app(env.settings, services_override=svc).test_client()
        r = client.get("/v1/shipments", headers={"Authorization": "Bearer nope",
                                                  "X-Forwarded-For": "198.51.100.7"})
        assert r.status_code == 401
        with svc.session_factory() as s:
            event = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.failed")).one()
        assert event.client_addr == expected
