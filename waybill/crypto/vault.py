"""Envelope encryption of personal-data fields, and the phone blind index.

Ciphertext layout (all integers big-endian)::

    version (1 byte) | algorithm id (1) | data-key id (4) | nonce (12) | ciphertext + GCM tag (16)

The first six bytes are the header. The associated data is ``header || table || 0 || column || 0 ||
row id``, so a ciphertext copied to another row or column, or with any header bit changed, fails
authentication instead of decrypting to something wrong.

Data keys (DEKs) are random, stored in the ``data_keys`` table wrapped (AEAD) by a master key
(:mod:`waybill.crypto.kms`: the key file's, or a KMS's transit key). Rotation (:mod:`waybill.crypto.rotation`)
adds a master key and re-wraps the DEKs, keeping the previous wrapping until retired; ciphertexts never change.

Format 2 is the same with an 8-byte id of a *subject key* (one party's own data key,
:mod:`waybill.crypto.subject_keys`) in place of the 4-byte data-key id: every party's personal data is sealed
under its own key, so that destroying that key (retention, a subject's deletion) destroys exactly that data::

    2 (1 byte) | algorithm id (1) | subject-key id (8) | nonce (12) | ciphertext + GCM tag (16)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, func, insert, select

from waybill import keyfile
from waybill.crypto.aead import (
    KEY_LEN,
    NONCE,
    TAG,
    Sealer,
    _hkdf,
    _open,
    _seal,
)

# The errors are the vault's API: re-exported for the modules that catch them.
from waybill.crypto.aead import CryptoError as CryptoError
from waybill.crypto.aead import DecryptionFailed as DecryptionFailed
from waybill.crypto.aead import KeyUnavailable as KeyUnavailable
from waybill.crypto.aead import MalformedCiphertext as MalformedCiphertext
from waybill.crypto.aead import UnknownKeyId as UnknownKeyId
from waybill.crypto.keystore import KeyStore, LocalKeyStore, NoKeyStore
from waybill.crypto.kms import FileMasterKeys, MasterKeys

# The key file's wrapping under its names of before waybill.crypto.kms (tests build old revisions' rows with it).
from waybill.crypto.kms import unwrap_local as _unwrap  # noqa: F401
from waybill.crypto.kms import wrap_aad as _wrap_aad  # noqa: F401
from waybill.crypto.kms import wrap_local as _wrap  # noqa: F401
from waybill.crypto.subject_keys import SubjectKeyGone, SubjectKeyring, connect
from waybill.models import DataKey, utcnow

VERSION = 1
SUBJECT_VERSION = 2
ALGORITHMS = {"aes-256-gcm": 1, "sm4-gcm": 2}
_ALG_NAMES = {v: k for k, v in ALGORITHMS.items()}
_KEY_LEN = KEY_LEN
_HEADER = struct.Struct(">BBI")
_HEADER2 = struct.Struct(">BBQ")
_NONCE = NONCE
_TAG = TAG
# --- the phone blind index width, from the numbers ---------------------------------------------------------
# Who can enumerate: someone holding the database AND the index secret (the HMAC is keyed, so without the
# secret nothing can be tested). The masked snapshot is encrypted (see waybill/masked.py), so all they see
# next to an index value is the merchant id and the plaintext region (province, city, district).
#   - Mobile number space: 56 issued three-digit prefixes (130-139, 145-149, 150-153, 155-159, 162, 165-167,
#     170-178, 180-189, 190-193, 195-199) x 10^8 = 5.6e9 numbers (normalize_phone accepts 7e9).
#   - Narrowed by the plaintext region: number segments (first 7 digits) are allocated per city; 5.6e5
#     segments over ~340 prefecture-level cities is ~1.6e7 numbers for an average city, ~2e6 for a small one.
#   - At w bits each index value stands for space / 2^w numbers. w = 14 (16,384 values):
#       any mobile number           5.6e9 / 16384 ~= 340,000 candidates per value
#       an average city's numbers   1.6e7 / 16384 ~= 1,000
#       a small prefecture's        2.0e6 / 16384 ~= 120   (>= 100: not reversible to one person)
#   - For the merchant searching its own shipments (the index is scoped per merchant and role), a lookup
#     returns n / 2^w false positives besides the real matches: 6 for 100,000 shipments, 61 for 1,000,000,
#     each one AES-GCM decryption (microseconds) to drop.
#   - Not covered by the width: someone who also holds the printed label (3 + 2 digits shown) is left with
#     10^6 / 16384 ~= 61 candidates. What protects that case is the index secret living in the key file only.
# The setting may choose 10..16 bits: 16 still leaves ~30 candidates in a small prefecture; 24 bits (the
# old default) left 0.1, i.e. the phone itself.
BLIND_INDEX_BITS = 14
BLIND_INDEX_MIN_BITS = 10
BLIND_INDEX_MAX_BITS = 16
# Re-read the active data key this often, so servers pick up a rotation without a restart: the bound on how long
# a node keeps writing under a data key a rotation deactivated (WAYBILL_KEY_CACHE_TTL_S sets it).
ACTIVE_TTL_S = 60.0


class DataDestroyed(UnknownKeyId):
    """The ciphertext's subject key was destroyed: the personal data it held is gone for good."""


class FieldCodec(Protocol):
    """What the shipment store needs from a vault; lets the benchmark swap in an identity codec."""

    def encrypt(self, plaintext: str, *, table: str, column: str, row_id: str,
                subject_key: int | None = None) -> bytes: ...

    def decrypt(self, blob: bytes, *, table: str, column: str, row_id: str) -> str: ...

    def blind_index(self, field: str, normalised: str) -> int: ...

    def encrypt_fields(self, fields: Sequence[tuple[str, str]], *, table: str, row_id: str,
                       subject_key: int) -> list[bytes]:
        """What :meth:`encrypt` gives for each ``(column, plaintext)`` of one row under one subject key."""
        ...


def key_id_of(blob: bytes) -> int:
    """The data-key id a format-1 ciphertext names in its header (a :class:`MalformedCiphertext` if it has none)."""
    blob = bytes(blob)
    if len(blob) < _HEADER.size:
        raise MalformedCiphertext("ciphertext too short")
    return int(_HEADER.unpack_from(blob)[2])


def subject_key_of(blob: bytes) -> int | None:
    """The subject-key id a format-2 ciphertext names (None for a format-1 one)."""
    blob = bytes(blob)
    if len(blob) < _HEADER2.size or blob[0] != SUBJECT_VERSION:
        return None
    return int(_HEADER2.unpack_from(blob)[2])


def _aad(header: bytes, table: str, column: str, row_id: str) -> bytes:
    return b"".join((header, table.encode(), b"\0", column.encode(), b"\0", row_id.encode()))


@dataclass(frozen=True)
class _Dek:
    id: int
    algorithm: str
    key: bytes


class Vault:
    """AEAD field encryption with data keys wrapped by master keys (the key file's, or a KMS's)."""

    def __init__(self, engine: Engine | None, key_file: Path | None, algorithm: str, *,
                 blind_index_bits: int = BLIND_INDEX_BITS, material: keyfile.KeyMaterial | None = None,
                 connection: Connection | None = None, keystore: KeyStore | None = None,
                 master_keys: MasterKeys | None = None, key_cache_ttl_s: float = ACTIVE_TTL_S) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {algorithm}")
        if not BLIND_INDEX_MIN_BITS <= blind_index_bits <= BLIND_INDEX_MAX_BITS:
            raise ValueError(f"blind_index_bits must be within {BLIND_INDEX_MIN_BITS}..{BLIND_INDEX_MAX_BITS}")
        if (engine is None) == (connection is None):
            raise ValueError("give either an engine or a connection")
        if material is None:
            if key_file is None:
                raise ValueError("give the key material or the key file")
            material = keyfile.load(key_file)
        self._engine = engine
        # A data migration's vault reads the data keys through the migration's own connection (and transaction).
        self._connection = connection
        self._material = material
        #: Where the data keys' wrapping keys are: the key file's master keys unless a KMS is given.
        self.master_keys: MasterKeys = master_keys or FileMasterKeys(key_file, material)
        self._ttl_s = key_cache_ttl_s
        self.algorithm = algorithm
        self._bidx_bits = blind_index_bits
        self._deks: dict[int, _Dek] = {}
        self._active: _Dek | None = None
        self._active_checked = 0.0
        self._lock = threading.Lock()
        self._bidx_keys: dict[str, bytes] = {}
        if keystore is None:
            # The default store lies beside the key file; a migration's vault of before 0016 has none.
            keystore = NoKeyStore() if key_file is None else LocalKeyStore(key_file.with_name("period-keys.json"))
        #: Each party's own data key (format 2): made, re-wrapped and destroyed through this.
        self.subject_keys = SubjectKeyring(keystore, algorithm, engine, connection=connection)

    @classmethod
    def over_connection(cls, connection: Connection, material: keyfile.KeyMaterial, algorithm: str, *,
                        blind_index_bits: int = BLIND_INDEX_BITS, keystore: KeyStore | None = None,
                        master_keys: MasterKeys | None = None) -> Vault:
        """A vault that reads data keys through ``connection`` (a data migration's), never opening its own."""
        return cls(None, None, algorithm, blind_index_bits=blind_index_bits, material=material,
                   connection=connection, keystore=keystore, master_keys=master_keys)

    # -- data keys ---------------------------------------------------------------------------
    def _connect(self) -> AbstractContextManager[Connection]:
        return connect(self._engine, self._connection)

    def _unwrap(self, dek_id: int, algorithm: str, master_key_id: str, wrapped: bytes) -> _Dek:
        return _Dek(dek_id, algorithm, self.master_keys.unwrap(master_key_id, dek_id, algorithm, wrapped))

    def _dek(self, dek_id: int) -> _Dek:
        dek = self._deks.get(dek_id)
        if dek is not None:
            return dek
        if not 0 < dek_id < 2**31:  # the column is a 32-bit signed integer; don't ask the database
            raise UnknownKeyId("ciphertext refers to an unknown data key")
        with self._connect() as conn:
            row = conn.execute(
                select(DataKey.algorithm, DataKey.master_key_id, DataKey.wrapped).where(DataKey.id == dek_id)
            ).first()
            if row is None:
                raise UnknownKeyId("ciphertext refers to an unknown data key")
            try:
                dek = self._unwrap(dek_id, row.algorithm, row.master_key_id, bytes(row.wrapped))
            except KeyUnavailable:
                # The wrapping a rotation replaced stays until `waybill keys retire`: it still opens the data
                # key when the key file lost the new master key (a power cut undid its rename) or is older.
                prev = conn.execute(select(DataKey.previous_master_key_id, DataKey.previous_wrapped)
                                    .where(DataKey.id == dek_id)).one()
                if prev.previous_master_key_id is None or prev.previous_wrapped is None:
                    raise
                dek = self._unwrap(dek_id, row.algorithm, prev.previous_master_key_id, bytes(prev.previous_wrapped))
        with self._lock:
            self._deks[dek_id] = dek
        return dek

    def _active_dek(self) -> _Dek:
        now = time.monotonic()
        if self._active is not None and now - self._active_checked < self._ttl_s:
            return self._active
        with self._connect() as conn:
            dek_id = conn.execute(
                select(func.max(DataKey.id)).where(DataKey.active.is_(True),
                                                   DataKey.algorithm == self.algorithm)
            ).scalar()
        if dek_id is None:
            raise KeyUnavailable(f"no active {self.algorithm} data key: run `waybill init`")
        self._active = self._dek(dek_id)
        self._active_checked = now
        return self._active

    # -- fields --------------------------------------------------------------------------------
    def encrypt(self, plaintext: str, *, table: str, column: str, row_id: str, key_id: int | None = None,
                subject_key: int | None = None) -> bytes:
        """Encrypt one field value, bound to its table, column and row.

        ``subject_key`` seals it under a party's own data key (format 2): every piece of a party's personal
        data goes this way. ``key_id`` picks a format-1 data key other than the active one.
        """
        if subject_key is not None:
            try:
                algorithm, key = self.subject_keys.get(subject_key)
            except SubjectKeyGone:
                raise DataDestroyed("the party's data key is destroyed") from None
            header = _HEADER2.pack(SUBJECT_VERSION, ALGORITHMS[algorithm], subject_key)
            nonce = os.urandom(_NONCE)
            return header + nonce + _seal(algorithm, key, nonce, plaintext.encode(),
                                          _aad(header, table, column, row_id))
        dek = self._active_dek() if key_id is None else self._dek(key_id)
        header = _HEADER.pack(VERSION, ALGORITHMS[dek.algorithm], dek.id)
        nonce = os.urandom(_NONCE)
        return header + nonce + _seal(dek.algorithm, dek.key, nonce, plaintext.encode(),
                                      _aad(header, table, column, row_id))

    def encrypt_fields(self, fields: Sequence[tuple[str, str]], *, table: str, row_id: str,
                       subject_key: int) -> list[bytes]:
        """:meth:`encrypt` of each ``(column, plaintext)`` of one row under one subject key (format 2), the
        key looked up and its cipher made once for them all: a party's fields cost one AES-GCM object."""
        try:
            algorithm, key = self.subject_keys.get(subject_key)
        except SubjectKeyGone:
            raise DataDestroyed("the party's data key is destroyed") from None
        header = _HEADER2.pack(SUBJECT_VERSION, ALGORITHMS[algorithm], subject_key)
        sealer = Sealer(algorithm, key)
        out: list[bytes] = []
        for column, plaintext in fields:
            nonce = os.urandom(_NONCE)
            out.append(header + nonce + sealer.seal(nonce, plaintext.encode(), _aad(header, table, column, row_id)))
        return out

    def decrypt(self, blob: bytes, *, table: str, column: str, row_id: str) -> str:
        """Decrypt a field value; any mismatch is a typed :class:`CryptoError`, never garbage."""
        blob = bytes(blob)
        if blob[:1] == bytes([SUBJECT_VERSION]):
            return self._decrypt_subject(blob, table, column, row_id)
        if len(blob) < _HEADER.size + _NONCE + _TAG:
            raise MalformedCiphertext("ciphertext too short")
        version, alg_id, dek_id = _HEADER.unpack_from(blob)
        if version != VERSION:
            raise MalformedCiphertext("unsupported ciphertext version")
        algorithm = _ALG_NAMES.get(alg_id)
        if algorithm is None:
            raise MalformedCiphertext("unknown algorithm id")
        dek = self._dek(dek_id)
        if dek.algorithm != algorithm:
            raise DecryptionFailed("ciphertext failed authentication")
        header = blob[:_HEADER.size]
        nonce = blob[_HEADER.size:_HEADER.size + _NONCE]
        data = _open(algorithm, dek.key, nonce, blob[_HEADER.size + _NONCE:],
                     _aad(header, table, column, row_id))
        try:
            return data.decode()
        except UnicodeDecodeError:  # authenticated, so only a programming error gets here
            raise DecryptionFailed("decrypted value is not text") from None

    def _decrypt_subject(self, blob: bytes, table: str, column: str, row_id: str) -> str:
        if len(blob) < _HEADER2.size + _NONCE + _TAG:
            raise MalformedCiphertext("ciphertext too short")
        _version, alg_id, key_id = _HEADER2.unpack_from(blob)
        algorithm = _ALG_NAMES.get(alg_id)
        if algorithm is None:
            raise MalformedCiphertext("unknown algorithm id")
        try:
            key_algorithm, key = self.subject_keys.get(key_id)
        except SubjectKeyGone:
            raise DataDestroyed("the party's data key is destroyed") from None
        if key_algorithm != algorithm:
            raise DecryptionFailed("ciphertext failed authentication")
        header = blob[:_HEADER2.size]
        data = _open(algorithm, key, blob[_HEADER2.size:_HEADER2.size + _NONCE], blob[_HEADER2.size + _NONCE:],
                     _aad(header, table, column, row_id))
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise DecryptionFailed("decrypted value is not text") from None

    def blind_index(self, field: str, normalised: str) -> int:
        """Truncated keyed hash of a normalised value, for equality search without decryption.

        The width (default :data:`BLIND_INDEX_BITS`) is planned so that the database plus the index secret
        do not give a phone back: the arithmetic is in the comment above ``BLIND_INDEX_BITS``. Callers
        decrypt the candidates a lookup finds and drop the false positives.
        """
        key = self._bidx_keys.get(field)
        if key is None:
            key = blind_index_key(self._material.secret("blind_index"), field)
            self._bidx_keys[field] = key
        return blind_index_value(key, normalised, self._bidx_bits)


def blind_index_key(secret: bytes, field: str) -> bytes:
    """The per-field HMAC key of the blind index, derived from the key file's ``blind_index`` secret."""
    return _hkdf(secret, b"waybill bidx " + field.encode())


def blind_index_value(key: bytes, normalised: str, bits: int) -> int:
    """The top ``bits`` bits of HMAC-SHA256(key, value): a narrower index is a prefix of a wider one."""
    digest = hmac.new(key, normalised.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - bits)


def ensure_active_data_key(engine: Engine, keys: keyfile.KeyMaterial | MasterKeys, algorithm: str) -> int:
    """Create a data key for ``algorithm`` under the primary master key if none is active."""
    master_keys = FileMasterKeys(None, keys) if isinstance(keys, keyfile.KeyMaterial) else keys
    with engine.begin() as conn:
        existing = conn.execute(
            select(func.max(DataKey.id)).where(DataKey.active.is_(True), DataKey.algorithm == algorithm)
        ).scalar()
        if existing is not None:
            return int(existing)
        return _insert_data_key(conn, master_keys, algorithm)


def _insert_data_key(conn: Connection, master_keys: MasterKeys, algorithm: str, *,
                     previous_master_key_id: str | None = None) -> int:
    """A new active data key under the primary master key (and, if named, also under a previous one)."""
    dek_id = int(conn.execute(select(func.coalesce(func.max(DataKey.id), 0))).scalar_one()) + 1
    key = os.urandom(_KEY_LEN[algorithm])
    mk, wrapped = master_keys.wrap(dek_id, algorithm, key)
    previous = (None if previous_master_key_id is None or previous_master_key_id == mk
                else master_keys.wrap_under(previous_master_key_id, dek_id, algorithm, key))
    conn.execute(insert(DataKey).values(
        id=dek_id, algorithm=algorithm, master_key_id=mk, wrapped=wrapped, active=True, created_at=utcnow(),
        previous_master_key_id=None if previous is None else previous_master_key_id, previous_wrapped=previous))
    return dek_id


class IdentityCodec:
    """No encryption at all. Exists only so the benchmark can measure the vault's overhead."""

    def encrypt(self, plaintext: str, *, table: str, column: str, row_id: str,
                subject_key: int | None = None) -> bytes:
        return plaintext.encode()

    def decrypt(self, blob: bytes, *, table: str, column: str, row_id: str) -> str:
        return bytes(blob).decode()

    def encrypt_fields(self, fields: Sequence[tuple[str, str]], *, table: str, row_id: str,
                       subject_key: int) -> list[bytes]:
        return [plaintext.encode() for _, plaintext in fields]

    def blind_index(self, field: str, normalised: str) -> int:
        return int.from_bytes(hashlib.sha256(normalised.encode()).digest()[:4], "big")
