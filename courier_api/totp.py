"""Time-based one-time passwords (RFC 6238 over RFC 4226): 30 s steps, 6 digits, HMAC-SHA-1, via ``pyotp``.

The codes themselves come from pyotp (secret generation, HOTP computation and truncation). What this module adds
is :func:`matching_step`: *which* step within the drift window a code belongs to, which the login stores to
refuse a code that was already used (``StaffUser.totp_last_step``; see ``courier_api.staff``). It checks
every step of the window and compares in constant time, and accepts only six ASCII digits (pyotp's own
comparison NFKC-normalises, so it would take full-width digits).
"""

from __future__ import annotations

import hmac

import pyotp

STEP_S = 30
DIGITS = 6
# One step either side absorbs clock drift between the server and the authenticator app.
WINDOW = 1
SECRET_CHARS = 32  # base32 characters: 160 bits, the size RFC 4226 recommends for HMAC-SHA-1


def _totp(secret_b32: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret_b32, digits=DIGITS, interval=STEP_S)


def new_secret() -> str:
    """A fresh base32 secret (32 characters, no padding, from :mod:`secrets`), as authenticator apps expect."""
    return pyotp.random_base32(SECRET_CHARS)


def step_at(unix_time: float) -> int:
    """The RFC 6238 time step counter ``T`` for a Unix time (what ``pyotp.TOTP.timecode`` computes)."""
    return int(unix_time // STEP_S)


def code_at_step(secret_b32: str, step: int) -> str:
    """The HOTP value (RFC 4226 dynamic truncation) for counter ``step``."""
    return _totp(secret_b32).generate_otp(step)


def matching_step(secret_b32: str, code: str, unix_time: float, *, window: int = WINDOW) -> int | None:
    """The step within ``±window`` of ``unix_time`` whose code equals ``code``, or ``None``.

    Every candidate is computed and compared in constant time, so timing does not say which
    step (if any) matched.
    """
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    otp = _totp(secret_b32)
    current = step_at(unix_time)  # not otp.timecode: before pyotp 2.12 that takes a datetime only
    found: int | None = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(otp.generate_otp(step).encode(), code.encode()) and found is None:
            found = step
    return found
