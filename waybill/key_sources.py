"""The key sources the settings choose: the embedded key file and local key store, or Vault/OpenBao.

Everything that needs the master keys or the period-key store gets them here, so that every process of every
node reads the same source (README "Keys on more than one machine").
"""

from __future__ import annotations

from waybill import keyfile
from waybill.crypto.keystore import KeyStore, LocalKeyStore
from waybill.crypto.kms import FileMasterKeys, MasterKeys
from waybill.crypto.vault_kms import KvKeyStore, TransitMasterKeys, VaultClient
from waybill.settings import Settings


def vault_client(settings: Settings) -> VaultClient:
    """A client of the configured Vault/OpenBao (its token read from the token file now)."""
    assert settings.vault_addr is not None and settings.vault_token_file is not None  # the settings checked it
    return VaultClient(settings.vault_addr, settings.vault_token_file, namespace=settings.vault_namespace,
                       ca_file=settings.vault_ca_file)


def make_master_keys(settings: Settings, material: keyfile.KeyMaterial | None = None,
                     client: VaultClient | None = None) -> MasterKeys:
    """The master keys of the data keys: the key file's, or the transit key (checked now: a missing or
    non-derived key stops the start, not the first write)."""
    legacy = FileMasterKeys(settings.key_file, material)
    if settings.key_provider != "vault":
        return legacy
    transit = TransitMasterKeys(client or vault_client(settings), settings.vault_transit_mount,
                                settings.vault_transit_key, legacy=legacy)
    transit.check()
    return transit


def make_keystore(settings: Settings, client: VaultClient | None = None) -> KeyStore:
    """The store of the destroyable period keys: the local file, or KV v2 shared by every node."""
    if settings.key_provider != "vault":
        return LocalKeyStore(settings.period_key_file, refresh_s=settings.key_cache_ttl_s)
    return KvKeyStore(client or vault_client(settings), settings.vault_kv_mount, settings.vault_kv_prefix,
                      ttl_s=settings.key_cache_ttl_s)
