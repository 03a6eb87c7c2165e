"""A critical alert suspends the staff account at once: its live tokens answer 401 (checked in the database, so on
every worker and node), a new login is refused, and lifting the suspension lets the account in again."""

from __future__ import annotations

from tests.courier_api import bearer, login, make_staff
from waybill.alerts import store
from waybill.permissions import SYSTEM, Principal


def test_a_critical_alert_stops_live_tokens_and_lifting_restores_them(client, services):
    new = make_staff(services, "sus_courier", "courier")
    token = login(client, new).get_json()["access_token"]
    assert client.get("/v1/partners", headers=bearer(token)).status_code == 200
    principal = Principal(kind="staff", id=new.user.id, role="courier", station=new.user.station)
    with services.session_factory() as s:
        store.fire(s, principal, "new_client")
        s.commit()
    r = client.get("/v1/partners", headers=bearer(token))
    assert r.status_code == 401, r.get_json()
    with services.session_factory() as s:
        assert store.lift(s, SYSTEM, principal.actor) == 1
        s.commit()
    assert client.get("/v1/partners", headers=bearer(token)).status_code == 200
