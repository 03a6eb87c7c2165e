"""Fixtures shared by the courier side's test modules."""

from __future__ import annotations

import pytest

from tests.courier_api import bearer, login, make_staff


@pytest.fixture
def officers(client, services):
    """Two privacy officers and an auditor, logged in (each once: a TOTP code is accepted once)."""
    made = {key: make_staff(services, name, role) for key, name, role in (
        ("officer", "po_one", "privacy_officer"), ("other", "po_two", "privacy_officer"),
        ("auditor", "aud_one", "auditor"))}
    headers = {}
    for key, new in made.items():
        r = login(client, new)
        assert r.status_code == 200, r.get_json()
        headers[key] = bearer(r.get_json()["access_token"])
    headers["users"] = made
    return headers


@pytest.fixture
def field_crew(client, services):
    """The last mile at the test recipient's station: a sorter, a dispatcher, two couriers; a dispatcher of another
    station; an admin. Logged in (headers by key); couriers have phones and virtual numbers exist."""
    from courier_api.staff import set_phone
    from tests.courier_api.last_mile_helpers import STATION
    from waybill.permissions import SYSTEM
    from waybill.virtual_numbers import add_numbers

    with services.session_factory() as s:
        add_numbers(s, ["17000000011", "17000000012"])
        s.commit()
    people = {
        "sorter": make_staff(services, "lm_sorter", "sorter", STATION),
        "dispatcher": make_staff(services, "lm_disp", "dispatcher", STATION),
        "courier": make_staff(services, "lm_courier", "courier", STATION),
        "courier2": make_staff(services, "lm_courier2", "courier", STATION),
        "far_dispatcher": make_staff(services, "lm_disp_far", "dispatcher", "010-W001"),
        "admin": make_staff(services, "lm_admin", "admin"),
    }
    with services.session_factory() as s:
        set_phone(s, SYSTEM, "lm_courier", "13700002222", services.codec)
        set_phone(s, SYSTEM, "lm_courier2", "13700003333", services.codec)
        s.commit()
    headers = {}
    for key, new in people.items():
        r = login(client, new)
        assert r.status_code == 200, r.get_json()
        headers[key] = bearer(r.get_json()["access_token"])
    return headers
