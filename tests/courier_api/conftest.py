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
