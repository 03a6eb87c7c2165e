"""Master-key rotation and retirement: data keys are re-wrapped, ciphertexts never change.

The master keys are a :class:`waybill.crypto.kms.MasterKeys`: the key file's (the embedded default) or a
KMS's transit key (one source for every node). Crash safety, in the order things happen:

1. ``rotate`` makes the new primary durable first: the key file is written with it (temporary file fsynced,
   renamed, directory fsynced: :func:`waybill.keyfile.write`) and read back, and only what is on disk is wrapped
   under; a transit key's new version is stored by the KMS before it answers.
2. Each data key is re-wrapped in its own short transaction, and the wrapping it replaces is kept beside it
   (``previous_master_key_id``, ``previous_wrapped``). A crash anywhere leaves every data key openable: by the
   new master key if the file kept it, else by the previous one (the vault falls back), so neither a power cut
   that undid the key file's rename nor a database restored from before the rotation is left with a data
   key that no master key opens. The new data key is wrapped under the previous primary too, so a node whose
   key file does not have the new master key yet still opens it (README "Keys on more than one machine").
3. ``retire`` is the explicit end of a rotation: only once every data key's current wrapping opens with the
   master keys as they are now does it drop previous wrappings, then the master keys no data key is wrapped
   by any more (a transit key's versions below the lowest in use: its ``min_decryption_version``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select, update

from waybill.crypto.kms import FileMasterKeys, KeyServiceUnavailable, MasterKeys, RetireRefused
from waybill.crypto.vault import CryptoError, KeyUnavailable, _insert_data_key
from waybill.models import DataKey, utcnow

__all__ = ["RetireRefused", "RetireReport", "RotationReport", "retire", "rotate"]


@dataclass(frozen=True)
class RotationReport:
    new_master_key: str
    rewrapped: int
    new_data_key: int


@dataclass(frozen=True)
class RetireReport:
    retired: tuple[str, ...]
    dropped_previous: int


def _master_keys(keys: Path | MasterKeys) -> MasterKeys:
    return FileMasterKeys(keys) if isinstance(keys, Path) else keys


def _rewrap(master_keys: MasterKeys, dek_id: int, algorithm: str,
            candidates: Sequence[tuple[str | None, bytes | None]]) -> tuple[str, bytes, str, bytes]:
    """``(used id, used wrapping, new id, new wrapping)``: the first of ``candidates`` the master keys open,
    re-wrapped under the primary."""
    for master_key_id, wrapped in candidates:
        if master_key_id is None or wrapped is None:
            continue
        try:
            new_id, new_wrapped = master_keys.rewrap(master_key_id, dek_id, algorithm, wrapped)
        except KeyServiceUnavailable:
            raise  # the KMS did not answer: nothing is known about this wrapping
        except KeyUnavailable:
            continue
        return master_key_id, wrapped, new_id, new_wrapped
    raise KeyUnavailable("a data key's master key is missing from the key file")


def rotate(engine: Engine, keys: Path | MasterKeys, algorithm: str, *,
           progress: Callable[[int, int], None] | None = None) -> RotationReport:
    """Promote a new master key, re-wrap every data key under it (keeping the old wrapping), start a new data key.

    ``keys`` is the key file (its master keys) or a KMS. Each data key is re-wrapped in its own short
    transaction (no long lock; servers keep running) and only wrapped key material is ever written.
    ``progress(done, total)`` is told after each data key (the CLI draws a progress bar with it).
    """
    master_keys = _master_keys(keys)
    # One rotation at a time (the key file's lock): two interleaved rotations could re-wrap data keys under a
    # master key that the other one's write of the key file then drops, leaving data undecryptable.
    with master_keys.exclusive():
        old_primary = master_keys.primary()
        mk = master_keys.rotate()
        count = 0
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(select(DataKey.id).order_by(DataKey.id))]
        for dek_id in ids:
            with engine.begin() as conn:
                row = conn.execute(
                    select(DataKey.algorithm, DataKey.master_key_id, DataKey.wrapped, DataKey.previous_master_key_id,
                           DataKey.previous_wrapped).where(DataKey.id == dek_id).with_for_update()
                ).one()
                # The wrapping kept as "previous" is one the master keys were just seen to open.
                used_id, used_wrapped, new_mk, new_wrapped = _rewrap(master_keys, dek_id, row.algorithm, [
                    (row.master_key_id, bytes(row.wrapped)),
                    (row.previous_master_key_id, None if row.previous_wrapped is None else bytes(row.previous_wrapped)),
                ])
                conn.execute(update(DataKey).where(DataKey.id == dek_id).values(
                    wrapped=new_wrapped, master_key_id=new_mk,
                    previous_master_key_id=used_id, previous_wrapped=used_wrapped, rewrapped_at=utcnow()))
                count += 1
            if progress is not None:
                progress(count, len(ids))
        with engine.begin() as conn:
            conn.execute(update(DataKey).where(DataKey.algorithm == algorithm).values(active=False))
            # The new data key is wrapped under the old primary too: if the key file loses the new master key (or
            # another host's file does not have it yet), what is encrypted after the rotation stays readable.
            new_dek = _insert_data_key(conn, master_keys, algorithm, previous_master_key_id=old_primary)
        return RotationReport(new_master_key=mk, rewrapped=count, new_data_key=new_dek)


def retire(engine: Engine, keys: Path | MasterKeys, key_ids: Sequence[str] = ()) -> RetireReport:
    """End a rotation: drop previous wrappings, and remove master keys no data key is wrapped by any more.

    ``key_ids`` names the master keys to retire (each must be unused, and not the primary); empty means every
    non-primary key no data key is wrapped by. Refused (:class:`RetireRefused`, nothing changed) unless every
    data key's current wrapping opens with the master keys as they are now: otherwise the previous wrapping
    may be the only way left to that data key.
    """
    master_keys = _master_keys(keys)
    with master_keys.exclusive():
        with engine.connect() as conn:
            rows = conn.execute(select(DataKey.id, DataKey.algorithm, DataKey.master_key_id, DataKey.wrapped)).all()
        for row in rows:
            try:
                master_keys.unwrap(row.master_key_id, row.id, row.algorithm, bytes(row.wrapped))
            except KeyServiceUnavailable:
                raise
            except KeyUnavailable:
                raise RetireRefused("key_missing", f"data key {row.id} is wrapped by a master key the key file "
                                    "lacks: restore the key file (or rotate) before retiring") from None
            except CryptoError:
                raise RetireRefused("key_mismatch", f"data key {row.id} does not open with the key file's "
                                    "master key: restore the key file before retiring") from None
        in_use = {row.master_key_id for row in rows}
        retiring = master_keys.retirable(in_use, key_ids)
        dropped = 0
        if retiring:
            # Database first: a crash before the key source changes leaves keys nothing refers to, harmless.
            with engine.begin() as conn:
                dropped = conn.execute(update(DataKey).where(DataKey.previous_master_key_id.in_(retiring)).values(
                    previous_master_key_id=None, previous_wrapped=None)).rowcount or 0
            master_keys.remove(retiring)
        return RetireReport(retired=retiring, dropped_previous=dropped)
