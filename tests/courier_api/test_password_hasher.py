"""Production's password hashing parameters (the suite itself hashes with cheaper ones: tests/conftest.py)."""

from __future__ import annotations

from argon2 import Type

from courier_api.staff import PRODUCTION_HASHER


def test_staff_passwords_are_hashed_with_argon2id_at_rfc_9106_strength() -> None:
    assert PRODUCTION_HASHER.type is Type.ID
    assert PRODUCTION_HASHER.memory_cost >= 64 * 1024  # KiB
    assert PRODUCTION_HASHER.time_cost >= 3 and PRODUCTION_HASHER.parallelism >= 1
    encoded = PRODUCTION_HASHER.hash("correct horse battery staple 2026")
    assert encoded.startswith("$argon2id$") and "m=65536,t=3" in encoded
    assert PRODUCTION_HASHER.verify(encoded, "correct horse battery staple 2026")
