"""Public identifiers: a prefix plus a time-ordered, unguessable ULID-style body."""

from __future__ import annotations

import base64
import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


# RFC 4648 base32 -> Crockford: the same 5-bit groups, the ULID alphabet (no I, L, O, U).
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def ulid() -> str:
    """26 chars: 48-bit millisecond timestamp then 80 random bits; sorts by creation time."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    # 26 characters are 130 bits, the value's 128 below two zero bits: shifted to the top of 160 bits (20 bytes,
    # 32 base32 characters), the first 26 characters are the ULID. One C-level encode instead of 26 divmods:
    # batch paths (print jobs, batch create) draw thousands of ids a request.
    return base64.b32encode((value << 30).to_bytes(20, "big")).translate(_TO_CROCKFORD)[:26].decode()


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"


def looks_like(prefix: str, value: str) -> bool:
    body = value[len(prefix) + 1:]
    return value.startswith(prefix + "_") and len(body) == 26 and all(c in _ALPHABET for c in body)
