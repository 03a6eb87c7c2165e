"""Tests of the courier side. Helpers here make staff users and log them in.

MFA users: a TOTP code is accepted once per 30 s step, so log such a user in at most once per
test unless the test passes ``now`` to the domain.
"""

from __future__ import annotations

import re
from typing import Any

import pyotp

from courier_api.staff import NewUser, create_user
from waybill import messages
from waybill.outbox import relay_once
from waybill.permissions import SYSTEM
from waybill.services import Services
from waybill.tasks import InProcessQueue

STATIONS = {"courier": "A001", "dispatcher": "A001", "sorter": "755-W012"}  # a sorter's: registered


def make_staff(services: Services, username: str, role: str, station: str | None = None,
               password: str | None = None) -> NewUser:
    """Create and commit a staff user (station defaults: ``A001``; a sorter's ``755-W012``, registered)."""
    with services.session_factory() as s:
        new = create_user(s, SYSTEM, username, role, station or STATIONS.get(role), password, services.codec)
        s.commit()
    return new


def totp_now(secret: str, at: float | None = None) -> str:
    """The current code, computed by pyotp (an implementation independent of ours)."""
    return pyotp.TOTP(secret).at(at) if at is not None else pyotp.TOTP(secret).now()


def login(client: Any, new: NewUser, *, totp: str | None = None, **extra: Any) -> Any:
    """POST /v1/auth/token for ``new``; adds a fresh TOTP code for MFA users unless given."""
    body: dict[str, Any] = {"username": new.user.username, "password": new.password}
    if new.totp_secret is not None or totp is not None:
        body["totp"] = totp or totp_now(new.totp_secret or "")
    body.update(extra)
    return client.post("/v1/auth/token", json=body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


_PICKUP = re.compile(r"取件码([0-9]{6})")


def sent_codes(services: Services, phone: str, template: str = "pickup_code") -> list[str]:
    """The 6-digit codes of ``template`` the built-in SMS provider "sent" to ``phone``, newest first (the queued
    ``messages.send`` tasks are run first, as the service's worker would)."""
    queue = InProcessQueue(services)
    for _ in range(5):
        if relay_once(services.session_factory, queue) == 0:
            break
    with services.session_factory() as s:
        found = messages.sent_to(s, services, phone)
    return [m.group(1) for item in found if item["template"] == template for m in [_PICKUP.search(item["text"])] if m]


def pickup_code(services: Services, phone: str = "13812345678") -> str:
    """The newest handover pickup code sent to ``phone`` (default: the test recipient's)."""
    codes = sent_codes(services, phone)
    assert codes, "no pickup code was sent"
    return codes[0]


def make_partner(services: Services, kind: str = "station", name: str = "菜鸟驿站（科技园店）",
                 expires: str = "2099-12-31") -> str:
    """Register a partner through the domain (as an admin would) and commit; returns its id."""
    from courier_api import partners
    from waybill.permissions import Principal

    admin = Principal(kind="staff", id="usr_test_admin", role="admin")
    with services.session_factory() as s:
        partner = partners.create(s, admin, name=name, kind=kind, agreement_ref="AGR-2026/001",
                                  agreement_expires=expires)
        s.commit()
        return partner.id
