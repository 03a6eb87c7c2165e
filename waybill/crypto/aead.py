"""AEAD primitives shared by the vault and the subject keys: AES-256-GCM and SM4-GCM, key wrapping, errors.

Messages never include key or plaintext material.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_LEN = {"aes-256-gcm": 32, "sm4-gcm": 16}
NONCE = 12
TAG = 16


class CryptoError(Exception):
    """Base of every vault failure. Messages never include key or plaintext material."""


class MalformedCiphertext(CryptoError):
    """Too short, unknown format version or unknown algorithm id."""


class UnknownKeyId(CryptoError):
    """The ciphertext names a data key that does not exist (or was destroyed)."""


class KeyUnavailable(CryptoError):
    """The data key's master key is not in the key file (rotated away or wrong key file)."""


class DecryptionFailed(CryptoError):
    """Authentication failed: wrong key, tampered bytes, or a ciphertext moved to another row/column."""


def _seal(algorithm: str, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
    if algorithm == "aes-256-gcm":
        return AESGCM(key).encrypt(nonce, data, aad)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    return enc.update(data) + enc.finalize() + enc.tag


def _open(algorithm: str, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
    try:
        if algorithm == "aes-256-gcm":
            return AESGCM(key).decrypt(nonce, data, aad)
        if len(data) < TAG:
            raise DecryptionFailed("ciphertext failed authentication")
        dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, data[-TAG:])).decryptor()
        dec.authenticate_additional_data(aad)
        return dec.update(data[:-TAG]) + dec.finalize()
    except InvalidTag:
        raise DecryptionFailed("ciphertext failed authentication") from None


class Sealer:
    """Sealing under one key with its cipher object made once: many fields (or keys) under one key cost one
    AES-GCM object, not one each (SM4-GCM has no reusable object: it is made per value as before)."""

    __slots__ = ("_aes", "_key", "algorithm")

    def __init__(self, algorithm: str, key: bytes) -> None:
        self.algorithm = algorithm
        self._key = key
        self._aes = AESGCM(key) if algorithm == "aes-256-gcm" else None

    def seal(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        """What :func:`_seal` returns for this key: ciphertext and tag."""
        if self._aes is not None:
            return self._aes.encrypt(nonce, data, aad)
        return _seal(self.algorithm, self._key, nonce, data, aad)


def _hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def _wrap_key(master: bytes, algorithm: str) -> bytes:
    # Master keys are 32 random bytes; derive the wrapping key per algorithm so one master key
    # never serves two ciphers directly.
    return _hkdf(master, b"waybill dek wrap " + algorithm.encode(), KEY_LEN[algorithm])


def seal_key(kek: bytes, algorithm: str, key: bytes, aad: bytes) -> bytes:
    """Wrap a subject key under a key store key (the wrapping key is derived per algorithm, as for DEKs)."""
    return key_sealer(kek, algorithm)(key, aad)


def key_sealer(kek: bytes, algorithm: str) -> Callable[[bytes, bytes], bytes]:
    """:func:`seal_key` under one key store key for many keys: the wrapping key derived and its cipher made
    once (a batch of shipments wraps two keys each under the same day's key)."""
    sealer = Sealer(algorithm, _wrap_key(kek, algorithm))

    def seal(key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + sealer.seal(nonce, key, aad)

    return seal


def open_key(kek: bytes, algorithm: str, wrapped: bytes, aad: bytes) -> bytes:
    """Unwrap what :func:`seal_key` wrapped; a wrong key or a moved row is :class:`DecryptionFailed`."""
    return _open(algorithm, _wrap_key(kek, algorithm), wrapped[:NONCE], wrapped[NONCE:], aad)


