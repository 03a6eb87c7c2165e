"""The leaks this industry had, replayed against the write-path alert rules (issue 14's Proof).

- a rented courier account driven from a second client while its owner works: ``new_client`` (critical) fires,
  the account is suspended and both sessions answer 401;
- a dispatcher (a clerk) and a sorter reaching for other stations' shipments: ``foreign_station``;
- a script guessing QR tokens: ``not_found_burst`` first, then ``scan_quota``;
- a client trying many usernames: ``credential_stuffing``, its object the client's address.

Each asserts the alert row (rule, severity, count), the suspension where critical, and that no personal data of
the shipments involved is in the alert row or in anything logged meanwhile.
"""

from __future__ import annotations

import logging
import secrets

import pytest
from sqlalchemy import select

from courier_api import sorting
from courier_api.staff import set_phone
from tests.conftest import RECIPIENT, SENDER
from tests.courier_api import bearer, login, make_staff
from tests.courier_api.last_mile_helpers import STATION, assign, printed
from tests.courier_api.movement_helpers import make_shipments
from waybill.alerts.counters import Watch
from waybill.alerts.models import AccountSuspension, Alert
from waybill.alerts.settings import AlertSettings
from waybill.permissions import SYSTEM, Principal
from waybill.virtual_numbers import add_numbers

PLAIN = [RECIPIENT["name"], RECIPIENT["phone"], RECIPIENT["address"], SENDER["name"], SENDER["phone"],
         SENDER["address"]]
OWNER_SIDE = {"REMOTE_ADDR": "198.51.100.20"}
RENTER_SIDE = {"REMOTE_ADDR": "203.0.113.99"}
COLUMNS = [c.name for c in Alert.__table__.columns]


@pytest.fixture
def people(client, services):
    """Staff at the test recipient's station (their NewUser records, passwords included) and one elsewhere."""
    with services.session_factory() as s:
        add_numbers(s, ["17000000031", "17000000032"])
        s.commit()
    made = {
        "sorter": make_staff(services, "lk_sorter", "sorter", STATION),
        "dispatcher": make_staff(services, "lk_disp", "dispatcher", STATION),
        "courier": make_staff(services, "lk_courier", "courier", STATION),
        "far_dispatcher": make_staff(services, "lk_disp_far", "dispatcher", "010-W001"),
    }
    with services.session_factory() as s:
        set_phone(s, SYSTEM, "lk_courier", "13700004444", services.codec)
        s.commit()
    return made


def _token(client, new, environ=None):
    r = login(client, new, environ_base=environ) if environ else login(client, new)
    assert r.status_code == 200, r.get_json()
    return bearer(r.get_json()["access_token"])


def _login_from(client, new, environ):
    r = client.post("/v1/auth/token", json={"username": new.user.username, "password": new.password},
                    environ_base=environ)
    assert r.status_code == 200, r.get_json()
    return bearer(r.get_json()["access_token"])


def _scan(client, headers, token, environ):
    return client.post("/v1/courier/scan", json={"token": token}, headers=headers, environ_base=environ)


def _alerts(services, rule):
    with services.session_factory() as s:
        return s.scalars(select(Alert).where(Alert.rule == rule)).all()


def _suspensions(services, actor):
    with services.session_factory() as s:
        return s.scalars(select(AccountSuspension).where(AccountSuspension.actor == actor)).all()


def _no_personal_data(alerts, caplog):
    """Nothing of the shipments' parties in the alert rows (every column) or in any log record (message, args,
    extras)."""
    rows = " ".join(repr({c: getattr(a, c) for c in COLUMNS}) for a in alerts)
    logged = " ".join(repr(r.__dict__) for r in caplog.records) + caplog.text
    for value in PLAIN:
        assert value not in rows
        assert value not in logged


def test_a_rented_courier_account_used_from_a_second_client_is_suspended(client, services, merchant, people, caplog):
    caplog.set_level(logging.DEBUG)
    courier = people["courier"]
    dispatcher = _token(client, people["dispatcher"])
    shp, qr = printed(client, merchant, _token(client, people["sorter"]), order="LK-RENT")
    assert assign(client, dispatcher, shp["id"], "lk_courier").status_code == 201
    owner = _login_from(client, courier, OWNER_SIDE)
    assert _scan(client, owner, qr, OWNER_SIDE).status_code == 200
    # The renter logs in with the owner's credentials on another client and reads the parcel: to the service
    # this looks like the owner's own re-login (the old session unused since), so it passes...
    renter = _login_from(client, courier, RENTER_SIDE)
    assert _scan(client, renter, qr, RENTER_SIDE).status_code == 200
    assert _alerts(services, "new_client") == []
    # ...until the owner works on: two live sessions, both used within the window. Refused at once.
    r = _scan(client, owner, qr, OWNER_SIDE)
    assert r.status_code == 401, r.get_json()
    actor = f"staff:{courier.user.id}"
    (alert,) = _alerts(services, "new_client")
    assert (alert.rule, alert.severity, alert.count, alert.actor, alert.status) == (
        "new_client", "critical", 1, actor, "open")
    (suspension,) = _suspensions(services, actor)
    assert (suspension.rule, suspension.alert_id, suspension.lifted_at) == ("new_client", alert.id, None)
    # Both sessions stop working, for every request.
    assert _scan(client, renter, qr, RENTER_SIDE).status_code == 401
    assert _scan(client, owner, qr, OWNER_SIDE).status_code == 401
    assert client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=renter).status_code == 401
    assert len(_alerts(services, "new_client")) == 1  # refused requests raise nothing more
    _no_personal_data(_alerts(services, "new_client"), caplog)


def test_a_courier_logging_in_again_on_the_same_handheld_is_not_a_new_client(client, services, merchant, people):
    courier = people["courier"]
    shp, qr = printed(client, merchant, _token(client, people["sorter"]), order="LK-RELOGIN")
    assert assign(client, _token(client, people["dispatcher"]), shp["id"], "lk_courier").status_code == 201
    first = _login_from(client, courier, OWNER_SIDE)
    assert _scan(client, first, qr, OWNER_SIDE).status_code == 200
    # The app lost its token (restart, update): a new login on the same handheld, the old session left unused.
    second = _login_from(client, courier, OWNER_SIDE)
    for _ in range(3):
        assert _scan(client, second, qr, OWNER_SIDE).status_code == 200
    # Even from another address (the handheld moved from Wi-Fi to the mobile network).
    third = _login_from(client, courier, RENTER_SIDE)
    assert _scan(client, third, qr, RENTER_SIDE).status_code == 200
    assert client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=third).status_code == 200
    assert _alerts(services, "new_client") == []
    assert _suspensions(services, f"staff:{courier.user.id}") == []


def test_a_clerk_reaching_for_other_stations_shipments_raises_foreign_station(client, services, merchant, people,
                                                                             caplog):
    caplog.set_level(logging.DEBUG)
    far = _token(client, people["far_dispatcher"])
    theirs = make_shipments(services, merchant, 4, prefix="LK-FAR")
    answers = [assign(client, far, s.id, "lk_courier").status_code for s in theirs[:2]]
    assert answers == [404, 404] and _alerts(services, "foreign_station") == []  # below the threshold (3)
    assert client.post(f"/v1/dispatch/shipments/{theirs[2].id}/pickup-code", headers=far).status_code == 404
    (alert,) = _alerts(services, "foreign_station")
    actor = f"staff:{people['far_dispatcher'].user.id}"
    assert (alert.severity, alert.count, alert.actor) == ("warning", 1, actor)
    assert assign(client, far, theirs[3].id, "lk_courier").status_code == 404
    (alert,) = _alerts(services, "foreign_station")
    assert alert.count == 2  # the same burst: one alert, counted
    # An unknown id is a miss, not another station's: it does not count here.
    assert assign(client, far, "shp_" + "0" * 26, "lk_courier").status_code == 404
    assert _alerts(services, "foreign_station")[0].count == 2
    assert _suspensions(services, actor) == []  # a warning: looked at, not suspended
    _no_personal_data(_alerts(services, "foreign_station"), caplog)


def test_a_sorter_scanning_other_stations_parcels_raises_foreign_station(services, merchant, caplog):
    caplog.set_level(logging.DEBUG)
    watch = Watch(AlertSettings())
    theirs = make_shipments(services, merchant, 3, prefix="LK-SORT")
    far = Principal("staff", "usr_lk_far_sorter", "sorter", "010-W001")
    with services.session_factory() as s:
        results = sorting.scan_batch(s, far, [x.waybill_no for x in theirs] + [theirs[0].waybill_no], "arrival",
                                     keyring=services.subject_keys, watch=watch)
        s.commit()
    assert [type(r.error).__name__ for r in results] == ["NotFound"] * 4
    (alert,) = _alerts(services, "foreign_station")
    assert (alert.severity, alert.count, alert.actor) == ("warning", 1, far.actor)
    assert _alerts(services, "not_found_burst") == []  # they exist: not misses
    _no_personal_data([alert], caplog)


def test_a_script_guessing_tokens_raises_not_found_burst_then_scan_quota(client, services, people, caplog):
    caplog.set_level(logging.DEBUG)
    script = _token(client, people["courier"])
    answers = [_scan(client, script, "wb1." + secrets.token_urlsafe(24), OWNER_SIDE).status_code for _ in range(35)]
    # Defaults: not_found_burst at 20 misses in 10 minutes, the scan quota at 30 a minute.
    assert answers == [404] * 30 + [429] * 5
    (burst,) = _alerts(services, "not_found_burst")
    (quota,) = _alerts(services, "scan_quota")
    actor = f"staff:{people['courier'].user.id}"
    assert (burst.severity, burst.count, burst.actor) == ("warning", 11, actor)  # misses 20..30
    assert (quota.severity, quota.count, quota.actor) == ("warning", 5, actor)
    assert burst.first_at < quota.first_at  # the guessing is caught before the quota stops it
    assert _suspensions(services, actor) == []
    _no_personal_data([burst, quota], caplog)


def test_failed_logins_over_many_usernames_from_one_client_raise_credential_stuffing(client, services, people):
    attacker = {"REMOTE_ADDR": "203.0.113.77"}
    for i in range(9):
        r = client.post("/v1/auth/token", json={"username": f"guess{i}", "password": "wrong-password"},
                        environ_base=attacker)
        assert r.status_code == 401
    # The same username again, and a real user's wrong password from elsewhere, are not new usernames here.
    client.post("/v1/auth/token", json={"username": "guess0", "password": "again"}, environ_base=attacker)
    client.post("/v1/auth/token", json={"username": "lk_courier", "password": "wrong"}, environ_base=OWNER_SIDE)
    assert _alerts(services, "credential_stuffing") == []
    client.post("/v1/auth/token", json={"username": "lk_courier", "password": "wrong"}, environ_base=attacker)
    (alert,) = _alerts(services, "credential_stuffing")
    assert (alert.severity, alert.count, alert.actor) == ("warning", 1, "anonymous")
    assert (alert.object_type, alert.object_id) == ("client", "203.0.113.77")
    row = repr({c: getattr(alert, c) for c in COLUMNS})
    assert "lk_courier" not in row and "guess" not in row  # usernames are never kept


def test_the_pickup_code_failures_threshold_is_the_lock(fresh_env):
    from courier_api.deps import delivery_deps

    env = fresh_env(alerts=AlertSettings(thresholds={"pickup_code_failures.count": 3}))
    assert delivery_deps(env.services()).pickup.max_failures == 3


def test_reading_outside_the_stations_shift_raises_off_hours(client, services, merchant, people, caplog):
    import dataclasses
    from datetime import datetime, timedelta

    from courier_api import delivery
    from courier_api.deps import delivery_deps
    from waybill.alerts import shifts
    from waybill.settings import load_settings

    caplog.set_level(logging.DEBUG)
    now = datetime.now(shifts.SHANGHAI)

    def watch(start, end):
        raw = f"{STATION}={(now + start):%H}:00-{(now + end):%H}:00"
        return Watch(load_settings({"WAYBILL_ALERT_OFF_HOURS_SHIFTS": raw}).alerts)

    shp, qr = printed(client, merchant, _token(client, people["sorter"]), order="LK-NIGHT")
    assert assign(client, _token(client, people["dispatcher"]), shp["id"], "lk_courier").status_code == 201
    courier = Principal("staff", people["courier"].user.id, "courier", STATION)
    in_shift = dataclasses.replace(delivery_deps(services), watch=watch(timedelta(hours=-1), timedelta(hours=2)))
    off_shift = dataclasses.replace(delivery_deps(services), watch=watch(timedelta(hours=2), timedelta(hours=4)))
    with services.session_factory() as s:
        delivery.scan(s, in_shift, courier, qr)
        s.commit()
    assert _alerts(services, "off_hours") == []
    with services.session_factory() as s:
        delivery.scan(s, off_shift, courier, qr)
        delivery.call(s, off_shift, courier, shp["id"])
        s.commit()
    (alert,) = _alerts(services, "off_hours")
    assert (alert.severity, alert.count, alert.actor, alert.detail) == (
        "warning", 2, courier.actor, f"station={STATION}")
    _no_personal_data([alert], caplog)
