"""Master keys: where the data keys' wrapping keys live, behind one small Protocol.

:class:`MasterKeys` is what the vault and ``waybill keys rotate``/``retire`` need from a key-encryption-key
service: wrap a data key, unwrap it by the id of the master key (version) that wrapped it, re-wrap it under
the primary, promote a new primary, and retire versions no data key uses. Two implementations:

- :class:`FileMasterKeys`, the embedded default: the master keys of the key file (``waybill/keyfile.py``);
- :class:`waybill.crypto.vault_kms.TransitMasterKeys`: HashiCorp Vault's or OpenBao's transit engine, one source
  of master keys for every node (the key material never leaves the KMS).

Ids are what ``data_keys.master_key_id`` stores: ``mk-<hex>`` for the key file's keys, ``vault:<key>:v<N>`` for
a transit key's versions, so a database with data keys of both kinds (a move from the file to a KMS) opens each
with the right one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

from waybill import keyfile
from waybill.crypto.aead import NONCE, CryptoError, KeyUnavailable, _open, _seal, _wrap_key


class RetireRefused(CryptoError):
    """Retiring now could leave a data key that nothing opens; ``code`` says why (for the CLI's JSON)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class KeyServiceUnavailable(KeyUnavailable):
    """The KMS did not answer (network, timeout, 5xx) or refused the token: nothing was decided about the key."""


def wrap_aad(dek_id: int, algorithm: str) -> bytes:
    """What a data key's wrapping is bound to: its id and algorithm (a wrapping moved to another row fails)."""
    return f"waybill-dek|{dek_id}|{algorithm}".encode()


def wrap_local(master: bytes, dek_id: int, algorithm: str, key: bytes) -> bytes:
    """Wrap a data key under a key file master key (AEAD of the data key's own algorithm)."""
    nonce = os.urandom(NONCE)
    return nonce + _seal(algorithm, _wrap_key(master, algorithm), nonce, key, wrap_aad(dek_id, algorithm))


def unwrap_local(master: bytes, dek_id: int, algorithm: str, wrapped: bytes) -> bytes:
    """Open what :func:`wrap_local` wrapped (a wrong key or a moved row: ``DecryptionFailed``)."""
    return _open(algorithm, _wrap_key(master, algorithm), wrapped[:NONCE], wrapped[NONCE:],
                 wrap_aad(dek_id, algorithm))


class MasterKeys(Protocol):
    """The key-encryption keys of the data keys (see the module docstring)."""

    def primary(self) -> str:
        """The id new wrappings go under (read from the source now, not from a cache)."""
        ...

    def wrap(self, dek_id: int, algorithm: str, key: bytes) -> tuple[str, bytes]:
        """``(master key id, wrapped)`` of ``key`` under the primary."""
        ...

    def wrap_under(self, master_key_id: str, dek_id: int, algorithm: str, key: bytes) -> bytes:
        """``key`` wrapped under a named (older) master key: a new data key's second wrapping."""
        ...

    def unwrap(self, master_key_id: str, dek_id: int, algorithm: str, wrapped: bytes) -> bytes:
        """The data key; :class:`KeyUnavailable` when that master key is not (or no longer) available."""
        ...

    def rewrap(self, master_key_id: str, dek_id: int, algorithm: str, wrapped: bytes) -> tuple[str, bytes]:
        """The same data key wrapped under the primary: ``(primary id, wrapped)``."""
        ...

    def rotate(self) -> str:
        """Promote a new primary, durably, before any data key names it; returns its id."""
        ...

    def exclusive(self) -> AbstractContextManager[object]:
        """Held around a rotation or retirement: two interleaved ones could lose a key the other wrapped under."""
        ...

    def retirable(self, in_use: set[str], key_ids: Sequence[str]) -> tuple[str, ...]:
        """The master keys to retire (``key_ids``, or every unused non-primary one); :class:`RetireRefused`
        naming why when one of ``key_ids`` must stay."""
        ...

    def remove(self, key_ids: Iterable[str]) -> None:
        """Retire the keys :meth:`retirable` returned: nothing opens a wrapping under them afterwards."""
        ...


class FileMasterKeys:
    """The embedded default: the key file's master keys (``mk-...``), re-read when an id is not known yet."""

    def __init__(self, key_file: Path | None, material: keyfile.KeyMaterial | None = None) -> None:
        if material is None:
            if key_file is None:
                raise ValueError("give the key material or the key file")
            material = keyfile.load(key_file)
        self.key_file = key_file
        self._material = material

    def _reload(self) -> None:
        if self.key_file is not None:
            self._material = keyfile.load(self.key_file)

    def _key(self, master_key_id: str) -> bytes:
        key = self._material.master_keys.get(master_key_id)
        if key is None and self.key_file is not None:
            # A rotation by another process of this host may have added it: re-read the file once.
            self._reload()
            key = self._material.master_keys.get(master_key_id)
        if key is None:
            raise KeyUnavailable("the master key protecting this data key is not available")
        return key

    def primary(self) -> str:
        self._reload()
        return self._material.primary_master_key

    def ids(self) -> list[str]:
        """Every master key id of the key file."""
        return sorted(self._material.master_keys)

    def wrap(self, dek_id: int, algorithm: str, key: bytes) -> tuple[str, bytes]:
        mk = self._material.primary_master_key
        return mk, wrap_local(self._key(mk), dek_id, algorithm, key)

    def wrap_under(self, master_key_id: str, dek_id: int, algorithm: str, key: bytes) -> bytes:
        return wrap_local(self._key(master_key_id), dek_id, algorithm, key)

    def unwrap(self, master_key_id: str, dek_id: int, algorithm: str, wrapped: bytes) -> bytes:
        return unwrap_local(self._key(master_key_id), dek_id, algorithm, wrapped)

    def rewrap(self, master_key_id: str, dek_id: int, algorithm: str, wrapped: bytes) -> tuple[str, bytes]:
        return self.wrap(dek_id, algorithm, self.unwrap(master_key_id, dek_id, algorithm, wrapped))

    def rotate(self) -> str:
        if self.key_file is None:
            raise keyfile.KeyFileError("no key file to rotate")
        # add_master_key re-reads the file under the lock (another process may have rotated since this one
        # started) and writes it durably before anything in the database names the new key.
        _, mk = keyfile.add_master_key(self.key_file)
        on_disk = keyfile.load(self.key_file)  # wrap only under what the disk really holds
        if on_disk.primary_master_key != mk or mk not in on_disk.master_keys:
            raise keyfile.KeyFileError("the key file on disk does not hold the new master key")
        self._material = on_disk
        return mk

    def exclusive(self) -> AbstractContextManager[object]:
        return nullcontext() if self.key_file is None else keyfile.exclusive(self.key_file)

    def retirable(self, in_use: set[str], key_ids: Sequence[str]) -> tuple[str, ...]:
        self._reload()
        material = self._material
        primary = material.primary_master_key
        for key_id in key_ids:
            if key_id == primary:
                raise RetireRefused("key_file", "the primary master key cannot be retired")
            if key_id not in material.master_keys:
                raise RetireRefused("key_file", f"no master key {key_id}")
            if key_id in in_use:
                raise RetireRefused("key_in_use", "data keys still use it; rotate first")
        return tuple(sorted(key_ids or (k for k in material.master_keys if k != primary and k not in in_use)))

    def remove(self, key_ids: Iterable[str]) -> None:
        gone = set(key_ids)
        if not gone or self.key_file is None:
            return
        current = keyfile.load(self.key_file)
        keys = {k: v for k, v in current.master_keys.items() if k not in gone}
        keyfile.write(self.key_file, keyfile.KeyMaterial(current.primary_master_key, keys, current.secrets))
        self._material = keyfile.load(self.key_file)
