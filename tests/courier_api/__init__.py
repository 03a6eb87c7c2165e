"""Tests of the courier side. Helpers here make staff users and log them in.

MFA users: a TOTP code is accepted once per 30 s step, so log such a user in at most once per
test unless the test passes ``now`` to the domain.
"""

from __future__ import annotations

from typing import Any

import pyotp

from courier_api.staff import NewUser, create_user
from waybill.permissions import SYSTEM
from waybill.services import Services

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
