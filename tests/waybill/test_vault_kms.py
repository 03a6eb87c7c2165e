"""The Vault/OpenBao adapter against a fake Vault HTTP server (tests/fake_vault.py): transit wrapping with key
versions, rewrap on rotation, retirement by min_decryption_version, the KV v2 period-key store, settings."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.fake_vault import FakeVault, running_vault
from waybill.crypto.aead import DecryptionFailed, KeyUnavailable
from waybill.crypto.keystore import KeyDestroyed, KeyStoreError
from waybill.crypto.kms import KeyServiceUnavailable, RetireRefused
from waybill.crypto.vault_kms import KvKeyStore, TransitMasterKeys, VaultClient, read_token
from waybill.settings import SettingsError, load_settings

KEY = bytes(range(32))


def token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "vault-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def vault():
    with running_vault() as v:
        v.create_transit_key("waybill-data-keys")
        yield v


@pytest.fixture
def client(vault: FakeVault, tmp_path: Path) -> VaultClient:
    return VaultClient(vault.url, token_file(tmp_path, vault.token))


def transit(client: VaultClient) -> TransitMasterKeys:
    keys = TransitMasterKeys(client, "transit", "waybill-data-keys")
    keys.check()
    return keys


def test_wrap_unwrap_is_bound_to_the_data_key(client):
    keys = transit(client)
    mk, wrapped = keys.wrap(7, "aes-256-gcm", KEY)
    assert mk == "vault:waybill-data-keys:v1" and wrapped.startswith(b"vault:v1:") and KEY not in wrapped
    assert keys.unwrap(mk, 7, "aes-256-gcm", wrapped) == KEY
    for dek_id, algorithm in ((8, "aes-256-gcm"), (7, "sm4-gcm")):  # moved to another row, or another cipher
        with pytest.raises(DecryptionFailed):
            keys.unwrap(mk, dek_id, algorithm, wrapped)
    with pytest.raises(KeyUnavailable):  # another transit key's id is not this KMS's
        keys.unwrap("vault:other-key:v1", 7, "aes-256-gcm", wrapped)


def test_rotate_rewrap_and_retire_by_min_decryption_version(vault, client):
    keys = transit(client)
    mk1, w1 = keys.wrap(1, "aes-256-gcm", KEY)
    assert keys.rotate() == "vault:waybill-data-keys:v2" == keys.primary()
    mk2, w2 = keys.rewrap(mk1, 1, "aes-256-gcm", w1)
    assert mk2 == "vault:waybill-data-keys:v2" and ("POST", "/v1/transit/rewrap/waybill-data-keys") in vault.requests
    assert keys.unwrap(mk2, 1, "aes-256-gcm", w2) == KEY == keys.unwrap(mk1, 1, "aes-256-gcm", w1)
    with pytest.raises(RetireRefused) as err:  # version 1 still wraps a data key
        keys.retirable({mk1, mk2}, [mk1])
    assert err.value.code == "key_in_use"
    with pytest.raises(RetireRefused) as err:
        keys.retirable({mk2}, [mk2])
    assert err.value.code == "key_file"  # the primary
    assert keys.retirable({mk2}, []) == (mk1,)
    keys.remove([mk1])
    assert vault.transit["waybill-data-keys"].min_decryption_version == 2
    with pytest.raises(KeyUnavailable) as gone:
        keys.unwrap(mk1, 1, "aes-256-gcm", w1)
    assert not isinstance(gone.value, KeyServiceUnavailable)
    assert keys.unwrap(mk2, 1, "aes-256-gcm", w2) == KEY
    assert keys.retirable({mk2}, []) == ()


def test_a_key_that_is_not_derived_or_missing_is_refused(vault, client):
    vault.create_transit_key("plain", derived=False)
    with pytest.raises(KeyUnavailable, match="derived"):
        TransitMasterKeys(client, "transit", "plain").check()
    with pytest.raises(KeyUnavailable, match="does not exist"):
        TransitMasterKeys(client, "transit", "nope").check()


def test_vault_down_or_token_refused_is_key_service_unavailable(vault, client, tmp_path):
    keys = transit(client)
    mk, wrapped = keys.wrap(1, "aes-256-gcm", KEY)
    vault.down = True
    with pytest.raises(KeyServiceUnavailable):
        keys.unwrap(mk, 1, "aes-256-gcm", wrapped)
    vault.down = False
    vault.token = "s.renewed"  # the agent renewed the token and rewrote the sink file: read again once
    token_file(tmp_path, "s.renewed")
    assert keys.unwrap(mk, 1, "aes-256-gcm", wrapped) == KEY
    vault.token = "s.revoked"
    with pytest.raises(KeyServiceUnavailable):
        keys.unwrap(mk, 1, "aes-256-gcm", wrapped)
    stopped = FakeVault()  # never started: nothing listens
    stopped.stop()
    with pytest.raises(KeyServiceUnavailable):
        TransitMasterKeys(VaultClient(stopped.url, token_file(tmp_path, "t")), "transit", "k").check()


def test_token_file_must_be_owner_only(tmp_path):
    path = token_file(tmp_path, "s.x")
    path.chmod(0o644)
    with pytest.raises(KeyStoreError, match="owner only"):
        read_token(path)


def test_kv_store_shared_by_two_nodes(vault, client, tmp_path):
    a = KvKeyStore(client, "secret", "waybill/period-keys", ttl_s=0.2)
    b = KvKeyStore(VaultClient(vault.url, token_file(tmp_path, vault.token)), "secret", "waybill/period-keys",
                   ttl_s=0.2)
    key = a.ensure("ap-20261201")
    assert b.get("ap-20261201") == key == b.ensure("ap-20261201")
    b.ensure("ed-20261201-g1")
    assert a.ids() == ["ap-20261201", "ed-20261201-g1"]
    assert a.destroy(["ap-20261201", "ed-20991231-g1"]) == ["ap-20261201"]
    assert ("DELETE", "/v1/secret/metadata/waybill/period-keys/ap-20261201") in vault.requests
    assert "waybill/period-keys/ap-20261201" not in vault.kv  # every version gone, nothing to undelete
    with pytest.raises(KeyDestroyed):
        a.get("ap-20261201")
    import time

    time.sleep(0.25)  # b's cache is older than the TTL: it asks again and learns of the destruction
    with pytest.raises(KeyDestroyed):
        b.get("ap-20261201")
    assert b.ids() == ["ed-20261201-g1"]


def test_kv_concurrent_first_use_agrees_on_one_key(vault, tmp_path):
    stores = [KvKeyStore(VaultClient(vault.url, token_file(tmp_path, vault.token)), "secret", "p") for _ in range(6)]
    got: list[bytes] = []
    barrier = threading.Barrier(len(stores))

    def first_use(store: KvKeyStore) -> None:
        barrier.wait()
        got.append(store.ensure("ap-20261202"))

    threads = [threading.Thread(target=first_use, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6 and len(set(got)) == 1
    assert vault.kv["p/ap-20261202"].current == 1  # check-and-set: one write won, the others read it


@pytest.mark.parametrize("env,message", [
    ({"WAYBILL_KEY_PROVIDER": "vault"}, "WAYBILL_VAULT_ADDR and WAYBILL_VAULT_TOKEN_FILE are required"),
    ({"WAYBILL_KEY_PROVIDER": "kms"}, "WAYBILL_KEY_PROVIDER must be one of"),
    ({"WAYBILL_VAULT_ADDR": "ftp://vault"}, "WAYBILL_VAULT_ADDR must be an http"),
    ({"WAYBILL_VAULT_TRANSIT_KEY": "a" * 25}, "WAYBILL_VAULT_TRANSIT_KEY must be 1-24"),
    ({"WAYBILL_VAULT_KV_PREFIX": "../x"}, "WAYBILL_VAULT_KV_PREFIX must be a path"),
    ({"WAYBILL_KEY_CACHE_TTL_S": "0"}, "WAYBILL_KEY_CACHE_TTL_S must be between"),
    ({"WAYBILL_ENV": "production", "WAYBILL_KEY_FILE": "/k", "WAYBILL_VAULT_ADDR": "http://vault:8200"},
     "https:// in production"),
])
def test_settings_are_validated(tmp_path, env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(environ={"WAYBILL_DATA_DIR": str(tmp_path), **env})


def test_settings_frozen_with_defaults(tmp_path):
    s = load_settings(environ={"WAYBILL_DATA_DIR": str(tmp_path), "WAYBILL_KEY_PROVIDER": "vault",
                               "WAYBILL_VAULT_ADDR": "http://127.0.0.1:8200", "WAYBILL_VAULT_TOKEN_FILE": "/t",
                               "WAYBILL_KEY_CACHE_TTL_S": "2.5"})
    assert (s.key_provider, s.vault_transit_mount, s.vault_transit_key, s.vault_kv_mount, s.vault_kv_prefix,
            s.key_cache_ttl_s) == ("vault", "transit", "waybill-data-keys", "secret", "waybill/period-keys", 2.5)
    with pytest.raises(AttributeError):
        s.key_provider = "builtin"  # type: ignore[misc]
