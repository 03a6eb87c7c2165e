"""The key store: named, destroyable key-encryption keys that live outside the database.

Personal data is crypto-shredded by destroying keys here (see :mod:`waybill.crypto.subject_keys`): a key that
exists only in the database would come back with any restored copy of it, so every key that ever wrapped a
subject's data key is kept in the store and nowhere else.

Key ids name what a key is for:

- ``ap-YYYYMMDD`` wraps the data keys of the shipments created on that day (China Standard Time) while
  their contract runs (the *active period* key);
- ``ed-YYYYMMDD-gN`` wraps the data keys of the shipments whose contract ended on that day; a new
  generation ``N+1`` replaces a generation whose day lost a shipment early (a subject's deletion, a hold).

:class:`KeyStore` is the one interface; :class:`LocalKeyStore` keeps the keys in a file beside the key file
(owner-only, replaced atomically, changes serialised by a lock): one host's. The store every node shares is
:class:`waybill.crypto.vault_kms.KvKeyStore` (Vault/OpenBao KV v2).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from waybill import keyfile

KEY_ID = re.compile(r"(ap-[0-9]{8}|ed-[0-9]{8}-g[0-9]{1,6})")
FORMAT = 1
# Re-read the file this often for keys this process has cached: another process may have destroyed one
# (WAYBILL_KEY_CACHE_TTL_S sets it).
REFRESH_S = 60.0


class KeyStoreError(RuntimeError):
    """The key store is unreadable, malformed or too permissive."""


class KeyDestroyed(KeyError):
    """The key is not in the store: destroyed (or never made). What it protected is gone."""


class KeyStore(Protocol):
    """Named 32-byte keys that can be created, read and destroyed; nothing else about them is shared."""

    def get(self, key_id: str) -> bytes:
        """The key, or :class:`KeyDestroyed`."""
        ...

    def ensure(self, key_id: str) -> bytes:
        """The key, made first when it does not exist yet (any number of processes may ask at once)."""
        ...

    def destroy(self, key_ids: Iterable[str]) -> list[str]:
        """Destroy the keys (absent ones are skipped); returns the ids that were destroyed now."""
        ...

    def ids(self) -> list[str]:
        """Every key id in the store, sorted."""
        ...


class LocalKeyStore:
    """The embedded default: one JSON file, ``{"format": 1, "keys": {id: base64}}``, owner-only.

    Destroying rewrites the file without the key and syncs it to disk: the live copy no longer holds it. What
    copies of the file exist elsewhere (backups) is the operator's part: see README "Retention".
    """

    def __init__(self, path: Path, *, refresh_s: float = REFRESH_S) -> None:
        self.path = path
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}
        self._loaded_at = float("-inf")

    # -- file -------------------------------------------------------------------------------------------------
    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with keyfile.exclusive(self.path):  # the same lock-beside-the-file as the key file's
            yield

    def _read(self) -> dict[str, bytes]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        if st.st_mode & 0o077:
            raise KeyStoreError(f"key store {self.path} must be readable by its owner only (chmod 600)")
        try:
            doc = json.loads(self.path.read_bytes())
            if doc.get("format") != FORMAT:
                raise KeyStoreError(f"key store {self.path}: unsupported format")
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in doc["keys"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"key store {self.path} is malformed ({type(exc).__name__})") from None
        if any(len(v) != 32 or KEY_ID.fullmatch(k) is None for k, v in keys.items()):
            raise KeyStoreError(f"key store {self.path}: bad key id or key length")
        return keys

    def _write(self, keys: dict[str, bytes]) -> None:
        doc = {"format": FORMAT, "keys": {k: base64.b64encode(v).decode() for k, v in sorted(keys.items())}}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".period-keys-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(doc, indent=1).encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename (and so the destruction) survives a power cut
        finally:
            os.close(dir_fd)

    def _reload(self) -> None:
        keys = self._read()
        with self._lock:
            self._keys = keys
            self._loaded_at = time.monotonic()

    # -- KeyStore -----------------------------------------------------------------------------------------------
    def get(self, key_id: str) -> bytes:
        if time.monotonic() - self._loaded_at > self._refresh_s or key_id not in self._keys:
            self._reload()
        key = self._keys.get(key_id)
        if key is None:
            raise KeyDestroyed(key_id)
        return key

    def ensure(self, key_id: str) -> bytes:
        if KEY_ID.fullmatch(key_id) is None:
            raise ValueError("bad key id")
        # The cache answers only while fresh (as for get): another process may have destroyed the key since,
        # and wrapping new data under a destroyed key would lose that data.
        key = self._keys.get(key_id)
        if key is not None and time.monotonic() - self._loaded_at <= self._refresh_s:
            return key
        with self._exclusive():
            keys = self._read()
            if key_id not in keys:
                keys[key_id] = secrets.token_bytes(32)
                self._write(keys)
        self._reload()
        return self._keys[key_id]

    def destroy(self, key_ids: Iterable[str]) -> list[str]:
        wanted = set(key_ids)
        if not wanted:
            return []
        with self._exclusive():
            keys = self._read()
            gone = sorted(k for k in wanted if k in keys)
            if gone:
                self._write({k: v for k, v in keys.items() if k not in wanted})
        self._reload()
        return gone

    def ids(self) -> list[str]:
        self._reload()
        return sorted(self._keys)


class NoKeyStore:
    """For a vault that never handles subject keys (a data migration of before them): holds nothing, makes nothing."""

    def get(self, key_id: str) -> bytes:
        raise KeyDestroyed(key_id)

    def ensure(self, key_id: str) -> bytes:
        raise KeyStoreError("this vault has no key store")

    def destroy(self, key_ids: Iterable[str]) -> list[str]:
        return []

    def ids(self) -> list[str]:
        return []
