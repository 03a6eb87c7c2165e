"""Public identifiers: a prefix plus a time-ordered, unguessable ULID-style body."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


# Two characters (10 bits) per lookup: every id of a batch of shipments, keys and events is drawn here.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = range(120, -1, -10)


def ulid() -> str:
    """26 chars: 48-bit millisecond timestamp then 80 random bits; sorts by creation time."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"


def looks_like(prefix: str, value: str) -> bool:
    body = value[len(prefix) + 1:]
    return value.startswith(prefix + "_") and len(body) == 26 and all(c in _ALPHABET for c in body)
