"""Master-key rotation and retirement: data keys are re-wrapped, ciphertexts never change.

Crash safety, in the order things happen:

1. ``rotate`` writes the key file with the new master key durably (temporary file fsynced, renamed, directory
   fsynced: :func:`waybill.keyfile.write`), then reads it back from disk and wraps only under what is there.
2. Each data key is re-wrapped in its own short transaction, and the wrapping it replaces is kept beside it
   (``previous_master_key_id``, ``previous_wrapped``). A crash anywhere leaves every data key openable: by the
   new master key if the file kept it, else by the previous one (the vault falls back), so neither a power cut
   that undid the key file's rename nor a database restored from before the rotation is left with a data
   key that no master key opens.
3. ``retire`` is the explicit end of a rotation: only once every data key's current wrapping opens with the
   key file on disk does it drop previous wrappings, then the master keys no data key is wrapped by any more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select, update

from waybill import keyfile
from waybill.crypto.vault import CryptoError, KeyUnavailable, _insert_data_key, _unwrap, _wrap
from waybill.models import DataKey, utcnow


class RetireRefused(CryptoError):
    """Retiring now could leave a data key that nothing opens; ``code`` says why (for the CLI's JSON)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RotationReport:
    new_master_key: str
    rewrapped: int
    new_data_key: int


@dataclass(frozen=True)
class RetireReport:
    retired: tuple[str, ...]
    dropped_previous: int


def _open_with(material: keyfile.KeyMaterial, dek_id: int, algorithm: str,
               candidates: Sequence[tuple[str | None, bytes | None]]) -> tuple[str, bytes, bytes]:
    """The first (master key id, wrapped, data key) among ``candidates`` that the key file opens."""
    for master_key_id, wrapped in candidates:
        if master_key_id is None or wrapped is None:
            continue
        master = material.master_keys.get(master_key_id)
        if master is not None:
            return master_key_id, wrapped, _unwrap(master, dek_id, algorithm, wrapped)
    raise KeyUnavailable("a data key's master key is missing from the key file")


def rotate(engine: Engine, key_file: Path, algorithm: str, *,
           progress: Callable[[int, int], None] | None = None) -> RotationReport:
    """Promote a new master key, re-wrap every data key under it (keeping the old wrapping), start a new data key.

    Each data key is re-wrapped in its own short transaction (no long lock; servers keep running) and only
    wrapped key material is ever written. ``progress(done, total)`` is told after each data key (the CLI draws
    a progress bar with it).
    """
    # One rotation at a time: two interleaved rotations could re-wrap data keys under a master key
    # that the other one's write of the key file then drops — leaving data undecryptable.
    with keyfile.exclusive(key_file):
        # add_master_key re-reads the file under the lock (another process may have rotated since this one
        # started) and writes it durably before anything in the database names the new key.
        old_primary = keyfile.load(key_file).primary_master_key
        _, mk = keyfile.add_master_key(key_file)
        # Wrap only under what the disk really holds.
        on_disk = keyfile.load(key_file)
        if on_disk.primary_master_key != mk or mk not in on_disk.master_keys:
            raise keyfile.KeyFileError("the key file on disk does not hold the new master key")
        new_master = on_disk.master_keys[mk]
        count = 0
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(select(DataKey.id).order_by(DataKey.id))]
        for dek_id in ids:
            with engine.begin() as conn:
                row = conn.execute(
                    select(DataKey.algorithm, DataKey.master_key_id, DataKey.wrapped, DataKey.previous_master_key_id,
                           DataKey.previous_wrapped).where(DataKey.id == dek_id).with_for_update()
                ).one()
                # The wrapping kept as "previous" is one the file on disk was just seen to open.
                used_id, used_wrapped, key = _open_with(on_disk, dek_id, row.algorithm, [
                    (row.master_key_id, bytes(row.wrapped)),
                    (row.previous_master_key_id, None if row.previous_wrapped is None else bytes(row.previous_wrapped)),
                ])
                conn.execute(update(DataKey).where(DataKey.id == dek_id).values(
                    wrapped=_wrap(new_master, dek_id, row.algorithm, key), master_key_id=mk,
                    previous_master_key_id=used_id, previous_wrapped=used_wrapped, rewrapped_at=utcnow()))
                count += 1
            if progress is not None:
                progress(count, len(ids))
        with engine.begin() as conn:
            conn.execute(update(DataKey).where(DataKey.algorithm == algorithm).values(active=False))
            # The new data key is wrapped under the old primary too: if the key file loses the new master key,
            # what is encrypted after the rotation stays readable like everything before it.
            new_id = _insert_data_key(conn, on_disk, algorithm, previous_master_key_id=old_primary)
        return RotationReport(new_master_key=mk, rewrapped=count, new_data_key=new_id)


def retire(engine: Engine, key_file: Path, key_ids: Sequence[str] = ()) -> RetireReport:
    """End a rotation: drop previous wrappings, and remove master keys no data key is wrapped by any more.

    ``key_ids`` names the master keys to retire (each must be unused, and not the primary); empty means every
    non-primary key no data key is wrapped by. Refused (:class:`RetireRefused`, nothing changed) unless every
    data key's current wrapping opens with the key file on disk: otherwise the previous wrapping may be the
    only way left to that data key.
    """
    with keyfile.exclusive(key_file):
        material = keyfile.load(key_file)
        with engine.connect() as conn:
            rows = conn.execute(select(DataKey.id, DataKey.algorithm, DataKey.master_key_id, DataKey.wrapped)).all()
        for row in rows:
            master = material.master_keys.get(row.master_key_id)
            if master is None:
                raise RetireRefused("key_missing", f"data key {row.id} is wrapped by a master key the key file "
                                    "lacks: restore the key file (or rotate) before retiring")
            try:
                _unwrap(master, row.id, row.algorithm, bytes(row.wrapped))
            except CryptoError:
                raise RetireRefused("key_mismatch", f"data key {row.id} does not open with the key file's "
                                    "master key: restore the key file before retiring") from None
        in_use = {row.master_key_id for row in rows}
        primary = material.primary_master_key
        for key_id in key_ids:
            if key_id == primary:
                raise RetireRefused("key_file", "the primary master key cannot be retired")
            if key_id not in material.master_keys:
                raise RetireRefused("key_file", f"no master key {key_id}")
            if key_id in in_use:
                users = sum(row.master_key_id == key_id for row in rows)
                raise RetireRefused("key_in_use", f"{users} data keys still use it; rotate first")
        retiring = tuple(sorted(key_ids or (k for k in material.master_keys if k != primary and k not in in_use)))
        dropped = 0
        if retiring:
            # Database first: a crash before the file write leaves keys nothing refers to, harmless.
            with engine.begin() as conn:
                dropped = conn.execute(update(DataKey).where(DataKey.previous_master_key_id.in_(retiring)).values(
                    previous_master_key_id=None, previous_wrapped=None)).rowcount or 0
            keys = {k: v for k, v in material.master_keys.items() if k not in retiring}
            keyfile.write(key_file, keyfile.KeyMaterial(primary, keys, material.secrets))
        return RetireReport(retired=retiring, dropped_previous=dropped)
