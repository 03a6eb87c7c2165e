"""HashiCorp Vault / OpenBao: the transit engine for master keys, KV v2 for the destroyable period keys.

One source of keys for every node (README "Keys on more than one machine"):

- :class:`TransitMasterKeys` wraps data keys with ``transit/encrypt`` of one *derived* transit key (the
  derivation context is the data key's id and algorithm, so a wrapping copied to another row fails as with
  the key file), unwraps with ``transit/decrypt``, re-wraps with ``transit/rewrap`` (no plaintext leaves the
  KMS for that), rotates with ``keys/<name>/rotate`` and retires old versions by raising the key's
  ``min_decryption_version``. Ids are ``vault:<key>:v<N>``.
- :class:`KvKeyStore` keeps the period keys (:class:`waybill.crypto.keystore.KeyStore`) in KV v2, one secret
  per key id; ``ensure`` creates with check-and-set 0 (two nodes asking at once agree on one key) and
  ``destroy`` deletes the secret's *metadata*, which removes every version permanently (a soft delete or a
  version destroy would leave something to undelete or another version behind).

Why KV v2 and not transit keys for the period keys: they are key-encryption keys the service applies locally
(AES-256-GCM or SM4-GCM, which transit lacks) to a dozen subject keys per shipment and whole pages at once; a
transit key per day would cost an HTTP round trip per wrapping and per listing, and deleting a transit key
needs ``deletion_allowed`` set on each first. The price: the period keys are in the nodes' memory (as with the
local file), for at most the cache TTL after a destruction elsewhere.

The HTTP client is the standard library's; the token comes from a file (a Vault Agent sink rewrites it: it is
re-read once on a 403). Messages never include a key, a token, or a server's error text.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from waybill.crypto.aead import DecryptionFailed, KeyUnavailable
from waybill.crypto.keystore import KEY_ID, KeyDestroyed, KeyStoreError
from waybill.crypto.kms import FileMasterKeys, KeyServiceUnavailable, RetireRefused, wrap_aad

TIMEOUT_S = 5.0
_VERSION_ID = re.compile(r"vault:([A-Za-z0-9_.-]+):v([0-9]{1,9})")
_CIPHERTEXT = re.compile(r"vault:v([0-9]{1,9}):[A-Za-z0-9+/=]+")


class VaultError(KeyServiceUnavailable):
    """Vault answered an error status; ``status`` and the path (never the body) say which."""

    def __init__(self, status: int, path: str) -> None:
        super().__init__(f"vault answered {status} to {path}")
        self.status = status


def read_token(path: Path) -> str:
    """The Vault token in ``path`` (owner-only, one line)."""
    try:
        if path.stat().st_mode & 0o077:
            raise KeyStoreError(f"vault token file {path} must be readable by its owner only (chmod 600)")
        token = path.read_text().strip()
    except OSError:
        raise KeyStoreError(f"vault token file {path} cannot be read") from None
    if not token or not token.isprintable() or len(token) > 1024:
        raise KeyStoreError(f"vault token file {path} must hold one token")
    return token


class VaultClient:
    """JSON requests to one Vault/OpenBao server with the token of a file."""

    def __init__(self, addr: str, token_file: Path, *, namespace: str | None = None, ca_file: Path | None = None,
                 timeout: float = TIMEOUT_S) -> None:
        self.addr = addr.rstrip("/")
        self._token_file = token_file
        self._token = read_token(token_file)
        self._namespace = namespace
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                missing_ok: bool = False) -> dict[str, Any] | None:
        """The answer's JSON (``{}`` for 204); ``None`` for a 404 when ``missing_ok``; else :class:`VaultError`."""
        for attempt in (0, 1):
            try:
                return self._once(method, path, body)
            except VaultError as exc:
                if exc.status == 404 and missing_ok:
                    return None
                if exc.status == 403 and attempt == 0:
                    self._token = read_token(self._token_file)  # an agent may have renewed it
                    continue
                raise
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        headers = {"X-Vault-Token": self._token, "Accept": "application/json"}
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        # The address is an http(s) URL (checked by the settings).
        req = urllib.request.Request(f"{self.addr}/v1/{path}", data=data, method=method,  # noqa: S310
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self._timeout, context=self._context) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            # The status and the path only: the body may quote what was sent.
            raise VaultError(exc.code, path) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise KeyServiceUnavailable(f"vault unreachable ({type(exc).__name__})") from None
        if not raw:
            return {}
        try:
            doc = json.loads(raw)
        except ValueError:
            raise KeyServiceUnavailable("vault answered something that is not JSON") from None
        if not isinstance(doc, dict):
            raise KeyServiceUnavailable("vault answered something that is not a JSON object")
        return doc


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class TransitMasterKeys:
    """Master keys as versions of one derived transit key (see the module docstring).

    ``legacy`` opens data keys still wrapped by the key file (``mk-...``) after a move to the KMS: the next
    ``waybill keys rotate`` re-wraps them under the transit key.
    """

    def __init__(self, client: VaultClient, mount: str, key: str, *, legacy: FileMasterKeys | None = None) -> None:
        self.client = client
        self.mount = mount
        self.key = key
        self.legacy = legacy

    # -- ids ----------------------------------------------------------------------------------------------------
    def version_id(self, version: int) -> str:
        return f"vault:{self.key}:v{version}"

    def _version(self, master_key_id: str) -> int:
        match = _VERSION_ID.fullmatch(master_key_id)
        if match is None or match.group(1) != self.key:
            raise KeyUnavailable("the data key is wrapped by a master key this KMS does not hold")
        return int(match.group(2))

    def _is_legacy(self, master_key_id: str) -> bool:
        return master_key_id.startswith("mk-")

    def _from_answer(self, answer: dict[str, Any] | None) -> tuple[str, bytes]:
        ciphertext = str(((answer or {}).get("data") or {}).get("ciphertext", ""))
        match = _CIPHERTEXT.fullmatch(ciphertext)
        if match is None:
            raise KeyServiceUnavailable("vault answered no transit ciphertext")
        return self.version_id(int(match.group(1))), ciphertext.encode()

    # -- the key ------------------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The transit key's metadata (``latest_version``, ``min_decryption_version``, ``derived``, ``type``)."""
        answer = self.client.request("GET", f"{self.mount}/keys/{self.key}", missing_ok=True)
        if answer is None:
            raise KeyUnavailable(f"transit key {self.key} does not exist (create it: see README)")
        return dict(answer.get("data") or {})

    def check(self) -> None:
        """The key exists, is an AES-GCM key and is derived (the context binds each wrapping to its data key)."""
        info = self.describe()
        if not info.get("derived") or info.get("type") not in ("aes256-gcm96", "aes128-gcm96", "chacha20-poly1305"):
            raise KeyUnavailable(f"transit key {self.key} must be an AEAD key created with derived=true")

    # -- MasterKeys ---------------------------------------------------------------------------------------------
    def primary(self) -> str:
        return self.version_id(int(self.describe()["latest_version"]))

    def wrap(self, dek_id: int, algorithm: str, key: bytes) -> tuple[str, bytes]:
        # No key_version: transit encrypts under its latest version, so every node follows a rotation at once.
        return self._from_answer(self.client.request("POST", f"{self.mount}/encrypt/{self.key}", {
            "plaintext": _b64(key), "context": _b64(wrap_aad(dek_id, algorithm))}))

    def wrap_under(self, master_key_id: str, dek_id: int, algorithm: str, key: bytes) -> bytes:
        if self._is_legacy(master_key_id) and self.legacy is not None:
            return self.legacy.wrap_under(master_key_id, dek_id, algorithm, key)
        return self._from_answer(self.client.request("POST", f"{self.mount}/encrypt/{self.key}", {
            "plaintext": _b64(key), "context": _b64(wrap_aad(dek_id, algorithm)),
            "key_version": self._version(master_key_id)}))[1]

    def unwrap(self, master_key_id: str, dek_id: int, algorithm: str, wrapped: bytes) -> bytes:
        if self._is_legacy(master_key_id):
            if self.legacy is None:
                raise KeyUnavailable("the data key is wrapped by a key file master key and no key file is read")
            return self.legacy.unwrap(master_key_id, dek_id, algorithm, wrapped)
        version = self._version(master_key_id)
        try:
            answer = self.client.request("POST", f"{self.mount}/decrypt/{self.key}", {
                "ciphertext": wrapped.decode("ascii", "replace"), "context": _b64(wrap_aad(dek_id, algorithm))})
        except VaultError as exc:
            if exc.status != 400:
                raise
            # 400: the version is below min_decryption_version (retired), or authentication failed.
            if version < int(self.describe().get("min_decryption_version") or 1):
                raise KeyUnavailable("the data key's master key version is retired") from None
            raise DecryptionFailed("the data key's wrapping failed authentication") from None
        try:
            return base64.b64decode(str((answer or {}).get("data", {}).get("plaintext", "")), validate=True)
        except (ValueError, AttributeError):
            raise KeyServiceUnavailable("vault answered no plaintext") from None

    def rewrap(self, master_key_id: str, dek_id: int, algorithm: str, wrapped: bytes) -> tuple[str, bytes]:
        if self._is_legacy(master_key_id):
            return self.wrap(dek_id, algorithm, self.unwrap(master_key_id, dek_id, algorithm, wrapped))
        version = self._version(master_key_id)
        try:
            return self._from_answer(self.client.request("POST", f"{self.mount}/rewrap/{self.key}", {
                "ciphertext": wrapped.decode("ascii", "replace"), "context": _b64(wrap_aad(dek_id, algorithm))}))
        except VaultError as exc:
            if exc.status != 400:
                raise
            if version < int(self.describe().get("min_decryption_version") or 1):
                raise KeyUnavailable("the data key's master key version is retired") from None
            raise DecryptionFailed("the data key's wrapping failed authentication") from None

    def rotate(self) -> str:
        self.client.request("POST", f"{self.mount}/keys/{self.key}/rotate", {})
        return self.primary()  # Vault stores the new version before it answers: durable for every node

    def exclusive(self) -> AbstractContextManager[object]:
        # Interleaved rotations are harmless here (each re-wraps under the latest version; older ones stay until
        # retired), and retire re-reads every data key under the KMS's own view.
        return nullcontext()

    def retirable(self, in_use: set[str], key_ids: Sequence[str]) -> tuple[str, ...]:
        info = self.describe()
        latest, floor = int(info["latest_version"]), int(info.get("min_decryption_version") or 1)
        used = {self._version(k) for k in in_use if not self._is_legacy(k)}
        # min_decryption_version is a floor: retiring version k retires every version below it too.
        lowest_used = min(used | {latest})
        for key_id in key_ids:
            if self._is_legacy(key_id):
                raise RetireRefused("key_file", "key file master keys are not retired through the KMS")
            try:
                version = self._version(key_id)
            except KeyUnavailable:
                raise RetireRefused("key_file", f"no master key {key_id}") from None
            if version == latest:
                raise RetireRefused("key_file", "the primary master key cannot be retired")
            if not floor <= version < latest:
                raise RetireRefused("key_file", f"no master key {key_id}")
            if version >= lowest_used:
                raise RetireRefused("key_in_use", "data keys still use it (or a version below it); rotate first")
        top = max((self._version(k) for k in key_ids), default=lowest_used - 1)
        retiring = [self.version_id(v) for v in range(floor, top + 1)]
        if not key_ids and self.legacy is not None:
            # After a move from the key file: its master keys no data key uses any more are retired too (their
            # previous wrappings dropped); the key file itself is left as it is (it still holds the secrets).
            retiring += sorted(k for k in self.legacy.ids() if k not in in_use)
        return tuple(retiring)

    def remove(self, key_ids: Iterable[str]) -> None:
        versions = [self._version(k) for k in key_ids if not self._is_legacy(k)]
        if versions:
            self.client.request("POST", f"{self.mount}/keys/{self.key}/config",
                                {"min_decryption_version": max(versions) + 1})


class KvKeyStore:
    """The period keys in KV v2: ``<mount>/data/<prefix>/<key id>`` = ``{"key": base64}`` (see the module)."""

    def __init__(self, client: VaultClient, mount: str, prefix: str, *, ttl_s: float = 60.0) -> None:
        self.client = client
        self.mount = mount
        self.prefix = prefix.strip("/")
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[bytes, float]] = {}

    def _path(self, kind: str, key_id: str) -> str:
        if KEY_ID.fullmatch(key_id) is None:
            raise ValueError("bad key id")
        return f"{self.mount}/{kind}/{self.prefix}/{key_id}"

    def _cached(self, key_id: str) -> bytes | None:
        with self._lock:
            hit = self._keys.get(key_id)
        # Only while fresh: another node may have destroyed the key since (README: the cache TTL bounds it).
        return hit[0] if hit is not None and time.monotonic() - hit[1] <= self.ttl_s else None

    def _remember(self, key_id: str, key: bytes) -> bytes:
        with self._lock:
            self._keys[key_id] = (key, time.monotonic())
        return key

    def _read(self, key_id: str) -> bytes | None:
        answer = self.client.request("GET", self._path("data", key_id), missing_ok=True)
        data = ((answer or {}).get("data") or {}).get("data")
        if not isinstance(data, dict):
            return None  # absent, or a soft-deleted version: nothing to open with
        try:
            key = base64.b64decode(str(data.get("key", "")), validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise KeyStoreError(f"key store secret {key_id} is malformed")
        return key

    def get(self, key_id: str) -> bytes:
        cached = self._cached(key_id)
        if cached is not None:
            return cached
        key = None if KEY_ID.fullmatch(key_id) is None else self._read(key_id)
        if key is None:
            with self._lock:
                self._keys.pop(key_id, None)
            raise KeyDestroyed(key_id)
        return self._remember(key_id, key)

    def ensure(self, key_id: str) -> bytes:
        cached = self._cached(key_id)
        if cached is not None:
            return cached
        key = self._read(key_id)
        if key is None:
            try:
                # cas=0: written only if the secret does not exist, so concurrent first uses agree on one key.
                self.client.request("POST", self._path("data", key_id),
                                    {"options": {"cas": 0}, "data": {"key": _b64(secrets.token_bytes(32))}})
            except VaultError as exc:
                if exc.status != 400:  # 400: check-and-set failed, another node made it first
                    raise
            key = self._read(key_id)
            if key is None:
                raise KeyStoreError(f"key store could not make {key_id}")
        return self._remember(key_id, key)

    def put(self, key_id: str, key: bytes) -> bool:
        """Store a key made elsewhere (a move from the local store); False when the store has it already.

        A different key under the same id is a :class:`KeyStoreError` (nothing is overwritten)."""
        if len(key) != 32:
            raise ValueError("period keys are 32 bytes")
        try:
            self.client.request("POST", self._path("data", key_id), {"options": {"cas": 0}, "data": {"key": _b64(key)}})
        except VaultError as exc:
            if exc.status != 400:
                raise
            if self._read(key_id) != key:
                raise KeyStoreError(f"key store already holds a different {key_id}") from None
            return False
        return True

    def destroy(self, key_ids: Iterable[str]) -> list[str]:
        gone: list[str] = []
        for key_id in sorted(set(key_ids)):
            exists = self.client.request("GET", self._path("metadata", key_id), missing_ok=True) is not None
            with self._lock:
                self._keys.pop(key_id, None)
            if exists:
                self.client.request("DELETE", self._path("metadata", key_id))
                gone.append(key_id)
        return gone

    def ids(self) -> list[str]:
        answer = self.client.request("LIST", f"{self.mount}/metadata/{self.prefix}", missing_ok=True)
        keys = ((answer or {}).get("data") or {}).get("keys") or []
        return sorted(str(k) for k in keys if KEY_ID.fullmatch(str(k)))

