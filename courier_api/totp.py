"""Time-based one-time passwords (RFC 6238 over RFC 4226): 30 s steps, 6 digits, HMAC-SHA-1.

Small enough to own: :func:`matching_step` returns *which* step a code belongs to, which the
login needs to refuse a code that was already used (pyotp's ``verify`` only says yes or no).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct

STEP_S = 30
DIGITS = 6
# One step either side absorbs clock drift between the server and the authenticator app.
WINDOW = 1
SECRET_BYTES = 20  # 160 bits, the size RFC 4226 recommends for HMAC-SHA-1


def new_secret() -> str:
    """A fresh base32 secret (32 characters, no padding), as authenticator apps expect."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _key(secret_b32: str) -> bytes:
    padded = secret_b32.upper() + "=" * (-len(secret_b32) % 8)
    return base64.b32decode(padded)


def step_at(unix_time: float) -> int:
    """The RFC 6238 time step counter ``T`` for a Unix time."""
    return int(unix_time // STEP_S)


def code_at_step(secret_b32: str, step: int) -> str:
    """The HOTP value (RFC 4226 dynamic truncation) for counter ``step``."""
    digest = hmac.new(_key(secret_b32), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def matching_step(secret_b32: str, code: str, unix_time: float, *, window: int = WINDOW) -> int | None:
    """The step within ``±window`` of ``unix_time`` whose code equals ``code``, or ``None``.

    Every candidate is computed and compared in constant time, so timing does not say which
    step (if any) matched.
    """
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    current = step_at(unix_time)
    found: int | None = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(code_at_step(secret_b32, step), code) and found is None:
            found = step
    return found
