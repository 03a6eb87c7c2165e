"""The local key file: master keys (key-encryption keys) and one secret per purpose.

Layout (JSON, owner-only permissions)::

    {"format": 1,
     "primary_master_key": "mk-...",
     "master_keys": {"mk-...": "<base64 32 bytes>", ...},
     "secrets": {"blind_index": "<b64>", "audit_chain": "<b64>", ...}}

Each purpose has its own random secret so that a leak or a rotation of one never touches the
others (one secret per token purpose, as Warehouse does it).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PURPOSES = ("blind_index", "audit_chain", "api_key", "idempotency", "qr_token", "session_token", "phone_hash",
            "sms_phone", "subject_code", "subject_token", "pickup_code", "alert_webhook", "audit_checkpoint")
#: Purposes added after key files were first written. A key file without them is completed by
#: :func:`add_missing_secrets`: automatically outside production, by `waybill keys add-secrets` in production
#: (a secret generated separately on each node would make the nodes disagree).
ADDED_PURPOSES = ("phone_hash", "sms_phone", "subject_code", "subject_token", "pickup_code", "alert_webhook",
                  "audit_checkpoint")
FORMAT = 1


class KeyFileError(RuntimeError):
    """The key file is missing, unreadable, malformed or too permissive."""


@dataclass(frozen=True)
class KeyMaterial:
    """Parsed key file contents (immutable)."""

    primary_master_key: str
    master_keys: dict[str, bytes]
    secrets: dict[str, bytes]

    def secret(self, purpose: str) -> bytes:
        """Return the secret for ``purpose``; unknown purposes are a programming error."""
        if purpose not in PURPOSES:
            raise KeyError(purpose)
        return self.secrets[purpose]


def new_master_key_id() -> str:
    return "mk-" + secrets.token_hex(6)


def _encode(material: KeyMaterial) -> bytes:
    doc = {
        "format": FORMAT,
        "primary_master_key": material.primary_master_key,
        "master_keys": {k: base64.b64encode(v).decode() for k, v in material.master_keys.items()},
        "secrets": {k: base64.b64encode(v).decode() for k, v in material.secrets.items()},
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def generate() -> KeyMaterial:
    """Fresh key material: one master key and a random secret per purpose."""
    mk = new_master_key_id()
    return KeyMaterial(
        primary_master_key=mk,
        master_keys={mk: secrets.token_bytes(32)},
        secrets={p: secrets.token_bytes(32) for p in PURPOSES},
    )


def _fsync_dir(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable: without this a power cut can undo it, leaving the
    database naming a master key that no key file on disk holds."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(path: Path, material: KeyMaterial) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keys-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(_encode(material))
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return tmp


def write(path: Path, material: KeyMaterial) -> None:
    """Atomically and durably replace the key file; it is created owner-read/write only."""
    tmp = _write_temp(path, material)
    try:
        # rename is atomic: a running server re-reading the file sees the old or the new one.
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def create(path: Path, material: KeyMaterial) -> bool:
    """Create the key file only if there is none (durably); False when another process created it first.

    A hard link fails if the name exists, so two first starts at once cannot both "create" and have the
    second overwrite the keys the first one already used.
    """
    tmp = _write_temp(path, material)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def _read(path: Path) -> KeyMaterial:
    """Read the key file and check what every version of it has (permissions, format, master keys)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file not found: {path}") from None
    if st.st_mode & 0o077:
        raise KeyFileError(f"key file {path} must be readable by its owner only (chmod 600)")
    try:
        doc = json.loads(path.read_bytes())
        if doc.get("format") != FORMAT:
            raise KeyFileError(f"key file {path}: unsupported format")
        master = {k: base64.b64decode(v, validate=True) for k, v in doc["master_keys"].items()}
        secs = {k: base64.b64decode(v, validate=True) for k, v in doc["secrets"].items()}
        primary = doc["primary_master_key"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"key file {path} is malformed ({type(exc).__name__})") from None
    if primary not in master:
        raise KeyFileError(f"key file {path}: primary master key is missing")
    if any(len(v) != 32 for v in master.values()):
        raise KeyFileError(f"key file {path}: master keys must be 32 bytes")
    return KeyMaterial(primary_master_key=primary, master_keys=master, secrets=secs)


def load(path: Path) -> KeyMaterial:
    """Read and validate the key file: every purpose has its secret."""
    material = _read(path)
    missing = [p for p in PURPOSES if len(material.secrets.get(p, b"")) < 32]
    if missing:
        hint = (" (run `waybill keys add-secrets` once, then give every node the completed file)"
                if set(missing) <= set(ADDED_PURPOSES) else "")
        raise KeyFileError(f"key file {path}: missing or short secrets: {', '.join(missing)}{hint}")
    return material


def add_missing_secrets(path: Path) -> list[str]:
    """Give a key file written before a purpose existed a random secret for it; returns the purposes added.

    Only purposes of :data:`ADDED_PURPOSES` are added (a missing original secret means a damaged file).
    Hold :func:`exclusive` around it. Nothing else in the file changes.
    """
    current = _read(path)
    missing = [p for p in ADDED_PURPOSES if len(current.secrets.get(p, b"")) < 32]
    if missing:
        secs = {**current.secrets, **{p: secrets.token_bytes(32) for p in missing}}
        write(path, KeyMaterial(current.primary_master_key, current.master_keys, secs))
    return missing


def load_or_create(path: Path, *, allow_create: bool) -> tuple[KeyMaterial, bool]:
    """Load the key file, generating it first when allowed (never in production)."""
    if not path.exists():
        if not allow_create:
            raise KeyFileError(f"key file not found: {path} (production never generates keys)")
        created = create(path, generate())
        return load(path), created
    if allow_create:
        with exclusive(path):
            add_missing_secrets(path)
    return load(path), False


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the key file (read-modify-write of it must not interleave)."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def add_master_key(path: Path) -> tuple[KeyMaterial, str]:
    """Add a new master key to the file and make it primary; old keys stay for unwrapping."""
    current = load(path)
    mk = new_master_key_id()
    updated = KeyMaterial(
        primary_master_key=mk,
        master_keys={**current.master_keys, mk: secrets.token_bytes(32)},
        secrets=current.secrets,
    )
    write(path, updated)
    return updated, mk


def remove_master_key(path: Path, key_id: str) -> KeyMaterial:
    """Retire a (non-primary) master key from the file."""
    current = load(path)
    if key_id == current.primary_master_key:
        raise KeyFileError("the primary master key cannot be retired")
    if key_id not in current.master_keys:
        raise KeyFileError(f"no master key {key_id}")
    keys = {k: v for k, v in current.master_keys.items() if k != key_id}
    updated = KeyMaterial(current.primary_master_key, keys, current.secrets)
    write(path, updated)
    return updated
