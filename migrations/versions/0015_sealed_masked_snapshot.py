"""Encrypt the masked snapshots, narrow the phone blind index, keep the previous data-key wrapping.

- ``shipments.<role>_masked`` (plaintext JSON: with its five visible phone digits the index secret reversed
  the blind index) becomes ``<role>_masked_ct``, sealed under the row's own data key (the one its phone
  ciphertext names) and bound to ``shipments.<role>_masked`` and the row id.
- ``<role>_phone_bidx`` is recomputed from the decrypted phone at the configured width (default 14 bits; the
  arithmetic is in waybill/crypto/vault.py). Recomputing is exact whatever width the rows were made with.
- ``data_keys.previous_master_key_id`` / ``previous_wrapped``: the wrapping a rotation replaced, kept until
  ``waybill keys retire``.

Existing shipments need the key file: ``waybill init`` (and ``waybill db upgrade``) pass it in. Without it
a table with rows is refused, never left half-converted.

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op
from alembic.util import CommandError

from waybill import masked
from waybill.crypto.vault import BLIND_INDEX_BITS, Vault, blind_index_key, blind_index_value, key_id_of

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None

ROLES = ("sender", "recipient")
CHUNK = 500
# The width the code before this revision used by default: what a downgrade recomputes the index at.
OLD_BLIND_INDEX_BITS = 24

_shipments = sa.table(
    "shipments", sa.column("id", sa.String), sa.column("merchant_id", sa.String),
    *(sa.column(f"{r}_masked", sa.JSON) for r in ROLES), *(sa.column(f"{r}_masked_ct", sa.LargeBinary) for r in ROLES),
    *(sa.column(f"{r}_phone_ct", sa.LargeBinary) for r in ROLES), *(sa.column(f"{r}_phone_bidx", sa.BigInteger)
                                                                    for r in ROLES),
)


def _vault(bind: sa.Connection) -> Vault:
    attrs: dict[str, Any] = context.config.attributes
    keys = attrs.get("keys")
    if keys is None:
        raise CommandError("revision 0015 encrypts existing shipments' masked snapshots and needs the key file: "
                           "run `waybill init` (or `waybill db upgrade` with WAYBILL_KEY_FILE readable)")
    # Only explicit data keys are used (each row's own), so the cipher named here merely has to be valid.
    return Vault.over_connection(bind, keys, attrs.get("cipher") or "aes-256-gcm")


def _chunks(bind: sa.Connection, columns: list[str]) -> Any:
    """The shipments in id order, CHUNK rows at a time (keyset: no OFFSET scans)."""
    last = ""
    while True:
        rows = bind.execute(sa.select(*(_shipments.c[c] for c in ["id", "merchant_id", *columns]))
                            .where(_shipments.c.id > last).order_by(_shipments.c.id).limit(CHUNK)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def _index(vault: Vault, secret_keys: dict[str, bytes], bits: int, row: Any, role: str) -> int:
    phone = vault.decrypt(getattr(row, f"{role}_phone_ct"), table="shipments", column=f"{role}_phone", row_id=row.id)
    # waybill.phone_index.phone_index, spelled out so that the downgrade can use the old, wider width.
    return blind_index_value(secret_keys[role], f"{row.merchant_id}|{phone}", bits)


def upgrade() -> None:
    with op.batch_alter_table("data_keys") as batch:
        batch.add_column(sa.Column("previous_master_key_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("previous_wrapped", sa.LargeBinary(128), nullable=True))
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    for role in ROLES:
        # SQLite can only make a column NOT NULL by copying the table, and qr_tokens (among others) refer to
        # shipments with foreign keys enforced: there, add it NOT NULL at once with an empty default instead
        # (every row is filled below; an empty value would fail to decrypt, never pass for a snapshot).
        op.add_column("shipments", sa.Column(f"{role}_masked_ct", sa.LargeBinary(), nullable=not sqlite,
                                             server_default=sa.text("''") if sqlite else None))
    if bind.execute(sa.select(_shipments.c.id).limit(1)).first() is not None:
        bits = context.config.attributes.get("blind_index_bits") or BLIND_INDEX_BITS
        vault = _vault(bind)
        secret = context.config.attributes["keys"].secret("blind_index")
        index_keys = {r: blind_index_key(secret, f"{r}_phone") for r in ROLES}
        columns = [f"{r}_{c}" for r in ROLES for c in ("masked", "phone_ct")]
        for rows in _chunks(bind, columns):
            for row in rows:
                values: dict[str, Any] = {}
                for role in ROLES:
                    # Sealed under the row's own data key: destroying that key destroys the snapshot too.
                    dek = key_id_of(getattr(row, f"{role}_phone_ct"))
                    values[f"{role}_masked_ct"] = vault.encrypt(
                        masked.encode(getattr(row, f"{role}_masked")), table="shipments",
                        column=masked.column(role), row_id=row.id, key_id=dek)
                    values[f"{role}_phone_bidx"] = _index(vault, index_keys, bits, row, role)
                bind.execute(sa.update(_shipments).where(_shipments.c.id == row.id).values(**values))
    for role in ROLES:
        if not sqlite:
            op.alter_column("shipments", f"{role}_masked_ct", existing_type=sa.LargeBinary(), nullable=False)
        op.drop_column("shipments", f"{role}_masked")  # SQLite >= 3.35 drops a plain column in place


def downgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    for role in ROLES:
        op.add_column("shipments", sa.Column(f"{role}_masked", sa.JSON(), nullable=not sqlite,
                                             server_default=sa.text("'{}'") if sqlite else None))
    if bind.execute(sa.select(_shipments.c.id).limit(1)).first() is not None:
        vault = _vault(bind)
        secret = context.config.attributes["keys"].secret("blind_index")
        index_keys = {r: blind_index_key(secret, f"{r}_phone") for r in ROLES}
        columns = [f"{r}_{c}" for r in ROLES for c in ("masked_ct", "phone_ct")]
        for rows in _chunks(bind, columns):
            for row in rows:
                values: dict[str, Any] = {}
                for role in ROLES:
                    values[f"{role}_masked"] = masked.unseal(vault, row.id, role, getattr(row, f"{role}_masked_ct"))
                    values[f"{role}_phone_bidx"] = _index(vault, index_keys, OLD_BLIND_INDEX_BITS, row, role)
                bind.execute(sa.update(_shipments).where(_shipments.c.id == row.id).values(**values))
    for role in ROLES:
        if not sqlite:
            op.alter_column("shipments", f"{role}_masked", existing_type=sa.JSON(), nullable=False)
        op.drop_column("shipments", f"{role}_masked_ct")
    with op.batch_alter_table("data_keys") as batch:
        batch.drop_column("previous_wrapped")
        batch.drop_column("previous_master_key_id")
