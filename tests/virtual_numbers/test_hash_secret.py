"""Endpoint and caller hashes have their own purpose secret (``phone_hash``), not the blind-index one.

Regression (issue 11, item 20): the hashes of binding endpoints and callers were keyed from the blind-index
secret, so a leak or rotation of one purpose's secret touched the other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import secrets

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select, update

from tests.conftest import run
from tests.virtual_numbers.conftest import HOUR, X1, A, B
from waybill import keyfile
from waybill.services import initialise
from waybill.virtual_numbers import BuiltinProvider, add_numbers, derive_endpoint_key
from waybill.virtual_numbers.models import VnBindingEndpoint, VnCall
from waybill.virtual_numbers.store import ENDPOINT_KEY_VERSION


def _legacy_key(keys: keyfile.KeyMaterial) -> bytes:
    # How endpoint keys were derived before: from the blind-index secret.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"waybill virtual-number endpoint hash v1").derive(keys.secret("blind_index"))


def test_the_endpoint_key_depends_on_its_own_secret_only(services):
    keys = services.keys
    assert keys.secret("phone_hash") != keys.secret("blind_index")
    other_index = dataclasses.replace(keys, secrets={**keys.secrets, "blind_index": secrets.token_bytes(32)})
    other_phone = dataclasses.replace(keys, secrets={**keys.secrets, "phone_hash": secrets.token_bytes(32)})
    assert derive_endpoint_key(other_index) == derive_endpoint_key(keys)  # the blind index has no say
    assert derive_endpoint_key(other_phone) != derive_endpoint_key(keys)
    assert derive_endpoint_key(keys) != _legacy_key(keys)


def _drop_phone_hash(path):
    doc = json.loads(path.read_bytes())
    del doc["secrets"]["phone_hash"]
    path.write_text(json.dumps(doc))
    path.chmod(0o600)


def test_an_older_key_file_gets_the_secret_outside_production_and_is_refused_in_production(tmp_path, cli_env):
    path = tmp_path / "keys.json"
    keyfile.create(path, keyfile.generate())
    _drop_phone_hash(path)
    with pytest.raises(keyfile.KeyFileError, match="waybill keys add-secrets"):
        keyfile.load(path)
    with pytest.raises(keyfile.KeyFileError, match="phone_hash"):  # production never generates key material
        keyfile.load_or_create(path, allow_create=False)
    before = json.loads(path.read_bytes())
    material, created = keyfile.load_or_create(path, allow_create=True)  # development: completed in place
    assert not created and len(material.secret("phone_hash")) == 32
    after = json.loads(path.read_bytes())
    assert {k: v for k, v in after["secrets"].items() if k != "phone_hash"} == before["secrets"]
    assert after["master_keys"] == before["master_keys"]

    # The production path: the operator's command, once, and it changes nothing when run again.
    prod = tmp_path / "prod-keys.json"
    keyfile.create(prod, keyfile.generate())
    _drop_phone_hash(prod)
    env = {**cli_env, "WAYBILL_KEY_FILE": str(prod)}
    first = run(["keys", "add-secrets"], env)
    again = run(["keys", "add-secrets"], env)
    assert json.loads(first.stdout.strip().splitlines()[-1]) == {"ok": True, "added": ["phone_hash"]}
    assert json.loads(again.stdout.strip().splitlines()[-1]) == {"ok": True, "added": []}
    assert len(keyfile.load(prod).secret("phone_hash")) == 32


def test_init_rekeys_hashes_made_with_the_blind_index_key(fresh_env):
    env = fresh_env()
    svc = env.services()
    provider = BuiltinProvider.from_services(svc)
    with svc.session_factory() as s:
        add_numbers(s, [X1])
        binding = provider.bind_axe(s, A, B, ttl=HOUR, ref="shp_1")
        provider.route_call(s, B, X1, None, call_id="c1", at=binding.expires_at - HOUR / 2)
        s.commit()
    # What an installation from before migration 0012 holds: hashes under the blind-index-derived key.
    legacy = _legacy_key(svc.keys)
    with svc.session_factory() as s:
        for row in s.scalars(select(VnBindingEndpoint)).all():
            number = A if row.role == "a" else B
            s.execute(update(VnBindingEndpoint).where(VnBindingEndpoint.binding_id == row.binding_id,
                                                      VnBindingEndpoint.role == row.role)
                      .values(endpoint_hash=hmac.new(legacy, number.encode(), hashlib.sha256).digest(),
                              key_version=1))
        s.execute(update(VnCall).values(caller_hash=hmac.new(legacy, B.encode(), hashlib.sha256).digest(),
                                        key_version=1))
        s.commit()
    at = binding.expires_at - HOUR / 2
    with svc.session_factory() as s:  # under the new key the legacy rows route nowhere
        assert not provider.route_call(s, A, X1, binding.extension, call_id="c2", at=at).routed
        s.rollback()

    initialise(env.settings)  # every start runs it; the re-keying happens once
    with svc.session_factory() as s:
        rows = s.scalars(select(VnBindingEndpoint)).all()
        assert {r.key_version for r in rows} == {ENDPOINT_KEY_VERSION}
        assert {r.role: bytes(r.endpoint_hash) for r in rows} == {"a": provider.endpoint_hash(A),
                                                                  "b": provider.endpoint_hash(B)}
        call = s.get(VnCall, "c1")
        assert call.caller_hash is None and call.key_version == ENDPOINT_KEY_VERSION  # not recomputable
        assert provider.route_call(s, A, X1, binding.extension, call_id="c3", at=at).callee == B
        s.commit()
