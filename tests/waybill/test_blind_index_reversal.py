"""Issue 11 item 10: the database plus the index secret must not give a phone back.

The attack as reported: the masked phone (``138******78``: five digits) sat in plaintext next to a 24-bit
blind index, so with the index secret the 10^6 numbers that fit the mask came down to one. Now the snapshot
is sealed and the index is 14 bits wide (arithmetic in waybill/crypto/vault.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import MetaData, select

from tests.conftest import RECIPIENT, make_merchant, shipment_body
from waybill.crypto.vault import BLIND_INDEX_BITS
from waybill.settings import SettingsError, load_settings

# One block of numbers an attacker might narrow a recipient to (the 10^6 numbers 13812000000-13812999999:
# about a hundred number segments, what the plaintext region might leave). The real phone is in it.
BLOCK = "13812"
BLOCK_SIZE = 10**6
# Expected candidates per index value in the block: 10^6 / 2^14 ~= 61. A Poisson(61) count below 30 has a
# probability around 1e-6: the bound cannot fail by bad luck, and a 24-bit index (expected 0.06) fails it.
MIN_CANDIDATES = 30


def _attacker_index(secret: bytes, merchant_id: str, phone: str, bits: int) -> int:
    """The blind index recomputed from the index secret alone (no data key, no master key)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"waybill bidx recipient_phone").derive(secret)
    digest = hmac.new(key, f"{merchant_id}|{phone}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - bits)


def _shipment_rows(env) -> list[dict[str, object]]:
    md = MetaData()
    md.reflect(env.engine, only=["shipments"])
    with env.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(md.tables["shipments"]))]


def test_database_and_index_secret_leave_many_candidates(fresh_env):
    env = fresh_env()
    svc = env.services()
    m = make_merchant(svc)
    client = env.app().test_client()
    r = client.post("/v1/shipments", json=shipment_body("REV-1"), headers=m.headers)
    assert r.status_code == 201
    assert r.get_json()["recipient"]["phone"] == "138******78"  # the merchant still sees the masked view

    # What the attacker holds: every column of the row, and the key file's blind_index secret only.
    (row,) = _shipment_rows(env)
    secret = base64.b64decode(json.loads(env.settings.key_file.read_text())["secrets"]["blind_index"])

    # 1. The masked digits are no longer readable from the database.
    text = repr(row)
    assert "138******78" not in text and "******" not in text
    assert not any(isinstance(v, dict) and "phone" in v for v in row.values())
    assert not any(isinstance(v, str) and re.search(r"1[3-9]\d\*+\d", v) for v in row.values())

    # 2. Enumerating a block that holds the phone: many numbers fit the stored index value, not one.
    bits = env.settings.blind_index_bits
    assert bits == BLIND_INDEX_BITS == 14
    target = row["recipient_phone_bidx"]
    assert _attacker_index(secret, m.id, RECIPIENT["phone"], bits) == target  # the attacker's index is right
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"waybill bidx recipient_phone").derive(secret)
    base = hmac.new(key, digestmod=hashlib.sha256)
    prefix = f"{m.id}|{BLOCK}".encode()
    shift = 64 - bits
    candidates = []
    for n in range(BLOCK_SIZE):
        h = base.copy()
        h.update(prefix + b"%06d" % n)
        if int.from_bytes(h.digest()[:8], "big") >> shift == target:
            candidates.append(n)
    assert int(RECIPIENT["phone"][len(BLOCK):]) in candidates
    assert len(candidates) >= MIN_CANDIDATES, f"only {len(candidates)} numbers fit the index value"


@pytest.mark.parametrize("bits", ["24", "17", "63", "9"])
def test_reversible_widths_are_refused(bits):
    # 17 bits and more leave fewer than ~15 numbers of a small prefecture per value (see the arithmetic).
    with pytest.raises(SettingsError, match="WAYBILL_BLIND_INDEX_BITS"):
        load_settings(environ={"WAYBILL_BLIND_INDEX_BITS": bits})
