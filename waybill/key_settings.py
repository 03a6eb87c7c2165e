"""The settings of where keys come from: the embedded key file and local key store, or Vault/OpenBao.

Read by :func:`waybill.settings.load_settings` (one function per group of settings, as for the alerts); a bad
value is a ``ValueError`` naming the variable, which the settings turn into a ``SettingsError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

KEY_PROVIDERS = ("builtin", "vault")
# A transit key's versions are stored as "vault:<key>:v<N>" in a 40-character column.
_TRANSIT_KEY = re.compile(r"[A-Za-z0-9_-]{1,24}")
_MOUNT = re.compile(r"[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,7}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,7}/?")
DEFAULTS: dict[str, Any] = {
    "key_provider": "builtin", "vault_addr": None, "vault_token_file": None, "vault_namespace": None,
    "vault_ca_file": None, "vault_transit_mount": "transit", "vault_transit_key": "waybill-data-keys",
    "vault_kv_mount": "secret", "vault_kv_prefix": "waybill/period-keys", "key_cache_ttl_s": 60.0,
}


def load(get: Callable[[str], str | None], mode: str) -> dict[str, Any]:
    """The key-source settings, validated (the variables: README "Keys on more than one machine")."""
    provider = (get("key_provider") or "builtin").lower()
    if provider not in KEY_PROVIDERS:
        raise ValueError(f"WAYBILL_KEY_PROVIDER must be one of {', '.join(KEY_PROVIDERS)}")
    values: dict[str, Any] = {"key_provider": provider}
    addr = get("vault_addr")
    if addr is not None:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\[\]:_-]+(:[0-9]{1,5})?/?", addr):
            raise ValueError("WAYBILL_VAULT_ADDR must be an http(s) URL of the server (scheme, host, port)")
        if mode == "production" and not addr.startswith("https://"):
            raise ValueError("WAYBILL_VAULT_ADDR must be https:// in production (the token goes with every request)")
    token = get("vault_token_file")
    if provider == "vault" and not (addr and token):
        raise ValueError("WAYBILL_VAULT_ADDR and WAYBILL_VAULT_TOKEN_FILE are required when WAYBILL_KEY_PROVIDER "
                         "is vault")
    values["vault_addr"] = addr
    values["vault_token_file"] = Path(token) if token else None
    ca = get("vault_ca_file")
    if ca is not None and not Path(ca).is_file():
        raise ValueError("WAYBILL_VAULT_CA_FILE must be an existing file")
    values["vault_ca_file"] = Path(ca) if ca else None
    namespace = get("vault_namespace")
    if namespace is not None and not _NAMESPACE.fullmatch(namespace):
        raise ValueError("WAYBILL_VAULT_NAMESPACE must be a namespace path like team/waybill")
    values["vault_namespace"] = namespace
    for name in ("vault_transit_mount", "vault_kv_mount", "vault_kv_prefix"):
        raw = get(name) or DEFAULTS[name]
        if not _MOUNT.fullmatch(raw):
            raise ValueError(f"WAYBILL_{name.upper()} must be a path of letters, digits, _ and - segments")
        values[name] = raw
    transit_key = get("vault_transit_key") or DEFAULTS["vault_transit_key"]
    if not _TRANSIT_KEY.fullmatch(transit_key):
        raise ValueError("WAYBILL_VAULT_TRANSIT_KEY must be 1-24 letters, digits, _ or -")
    values["vault_transit_key"] = transit_key
    ttl = get("key_cache_ttl_s")
    if ttl is not None:
        try:
            value = float(ttl)
        except ValueError:
            raise ValueError("WAYBILL_KEY_CACHE_TTL_S must be a number") from None
        if not 0.05 <= value <= 600:
            raise ValueError("WAYBILL_KEY_CACHE_TTL_S must be between 0.05 and 600")
        values["key_cache_ttl_s"] = value
    return values
