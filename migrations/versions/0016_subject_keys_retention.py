"""Subject keys, retention and legal holds: every party's personal data under its own destroyable key.

- ``subject_keys``: one data key per (shipment, party), wrapped by a key of the period-key store (outside the
  database, see waybill/crypto/keystore.py); ``pending_key_destructions``, ``destruction_records``,
  ``legal_holds`` and ``legal_hold_shipments``.
- ``shipments``: ``ended_at`` and the destruction times; the personal-data columns become nullable (a
  destroyed party's ciphertexts and blind-index values are removed, not blanked).
- Existing shipments are re-encrypted field by field from format 1 (the shared data key) to format 2 (the
  party's own key), and so is the recipient's phone in their virtual-number bindings; delivered and cancelled
  ones count as ended at their last update. Backups taken before this revision still hold format-1
  ciphertexts: README "Retention" says how `waybill keys rotate` + `retire` make them unreadable.

Needs the key file and the period-key store for existing rows (`waybill init` passes them in).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from alembic.util import CommandError

from waybill.crypto.subject_keys import PARTIES, active_key_id, day_of
from waybill.crypto.vault import Vault

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
CHUNK = 500
FIELDS = ("name", "phone", "address")
_PD_COLUMNS = [f"{p}_{f}_ct" for p in PARTIES for f in (*FIELDS, "masked")]

_shipments = sa.table(
    "shipments", sa.column("id", sa.String), sa.column("status", sa.String), sa.column("created_at", TS),
    sa.column("updated_at", TS), sa.column("ended_at", TS), sa.column("description_ct", sa.LargeBinary),
    *(sa.column(c, sa.LargeBinary) for c in _PD_COLUMNS),
)
_keys = sa.table(
    "subject_keys", sa.column("id", sa.BigInteger), sa.column("shipment_id", sa.String),
    sa.column("party", sa.String), sa.column("algorithm", sa.String), sa.column("wrapping_key_id", sa.String),
    sa.column("created_under", sa.String), sa.column("wrapped", sa.LargeBinary), sa.column("created_at", TS),
)
_bindings = sa.table("vn_bindings", sa.column("id", sa.String), sa.column("ref", sa.String),
                     sa.column("b_ct", sa.LargeBinary))


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite hands back text through a lightweight table
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _vault(bind: sa.Connection) -> Vault:
    attrs: dict[str, Any] = context.config.attributes
    keys, store = attrs.get("keys"), attrs.get("keystore")
    if keys is None or store is None:
        raise CommandError("revision 0016 re-encrypts existing shipments under their parties' own keys and needs "
                           "the key file and the period-key store: run `waybill init` (or `waybill db upgrade`)")
    return Vault.over_connection(bind, keys, attrs.get("cipher") or "aes-256-gcm", keystore=store)


def _chunks(bind: sa.Connection) -> Any:
    last = ""
    while True:
        rows = bind.execute(sa.select(_shipments).where(_shipments.c.id > last)
                            .order_by(_shipments.c.id).limit(CHUNK)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def upgrade() -> None:
    op.create_table(
        "subject_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False),
        sa.Column("shipment_id", sa.String(32),
                  sa.ForeignKey("shipments.id", name="fk_subject_keys_shipment_id_shipments"), nullable=False),
        sa.Column("party", sa.String(10), nullable=False),
        sa.Column("algorithm", sa.String(20), nullable=False),
        sa.Column("wrapping_key_id", sa.String(40), nullable=False),
        sa.Column("created_under", sa.String(40), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subject_keys"),
        sa.UniqueConstraint("shipment_id", "party", name="uq_subject_keys_shipment_id_party"),
    )
    op.create_index("ix_subject_keys_wrapping_key_id", "subject_keys", ["wrapping_key_id"])
    op.create_index("ix_subject_keys_created_under", "subject_keys", ["created_under"])
    op.create_table(
        "pending_key_destructions",
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("since", TS, nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_pending_key_destructions"),
    )
    op.create_table(
        "destruction_records",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("method", sa.String(200), nullable=False),
        sa.Column("shipments", sa.Integer(), nullable=False),
        sa.Column("key_ids", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_destruction_records"),
    )
    op.create_index("ix_destruction_records_at", "destruction_records", ["at"])
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("incident_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("released_at", TS, nullable=True),
        sa.Column("released_by", sa.String(80), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_legal_holds"),
    )
    op.create_table(
        "legal_hold_shipments",
        sa.Column("hold_id", sa.String(32),
                  sa.ForeignKey("legal_holds.id", name="fk_legal_hold_shipments_hold_id_legal_holds"), nullable=False),
        sa.Column("shipment_id", sa.String(32),
                  sa.ForeignKey("shipments.id", name="fk_legal_hold_shipments_shipment_id_shipments"), nullable=False),
        sa.PrimaryKeyConstraint("hold_id", "shipment_id", name="pk_legal_hold_shipments"),
    )
    op.create_index("ix_legal_hold_shipments_shipment_id", "legal_hold_shipments", ["shipment_id"])

    # SQLite changes a column's NOT NULL only by copying the table (foreign keys are off meanwhile: env.py).
    recreate = "always" if op.get_bind().dialect.name == "sqlite" else "auto"
    with op.batch_alter_table("shipments", recreate=recreate) as b:
        b.add_column(sa.Column("ended_at", TS, nullable=True))
        b.add_column(sa.Column("sender_destroyed_at", TS, nullable=True))
        b.add_column(sa.Column("recipient_destroyed_at", TS, nullable=True))
        b.add_column(sa.Column("personal_data_destroyed_at", TS, nullable=True))
        for column in _PD_COLUMNS:
            b.alter_column(column, existing_type=sa.LargeBinary(), nullable=True)
        for party in PARTIES:
            b.alter_column(f"{party}_phone_bidx", existing_type=sa.BigInteger(), nullable=True)
    op.create_index("ix_shipments_ended_at", "shipments", ["ended_at"])

    bind = op.get_bind()
    if bind.execute(sa.select(_shipments.c.id).limit(1)).first() is None:
        return
    vault = _vault(bind)
    ring = vault.subject_keys
    for rows in _chunks(bind):
        key_rows: list[dict[str, Any]] = []
        for row in rows:
            created = _aware(row.created_at)
            ended = _aware(row.updated_at) if row.status in ("delivered", "cancelled") else None
            values: dict[str, Any] = {"ended_at": ended}
            keys: dict[str, int] = {}
            for party in PARTIES:
                key = ring.new(row.id, party, created)
                if ended is not None:  # wrapped under its end day's key at once, as end_contract would have
                    target = ring.current_end_key(day_of(ended))
                    ((_, key.wrapped),) = ring.rewrap([key], target)
                    key.wrapping_key_id = target
                else:
                    assert key.wrapping_key_id == active_key_id(day_of(created))
                keys[party] = key.id
                key_rows.append({c: getattr(key, c) for c in ("id", "shipment_id", "party", "algorithm",
                                                              "wrapping_key_id", "created_under", "wrapped",
                                                              "created_at")})
                for name in (*FIELDS, "masked"):
                    col = f"{party}_{name}"
                    plain = vault.decrypt(getattr(row, f"{col}_ct"), table="shipments", column=col, row_id=row.id)
                    values[f"{col}_ct"] = vault.encrypt(plain, table="shipments", column=col, row_id=row.id,
                                                        subject_key=key.id)
            if row.description_ct is not None:
                plain = vault.decrypt(row.description_ct, table="shipments", column="description", row_id=row.id)
                values["description_ct"] = vault.encrypt(plain, table="shipments", column="description",
                                                         row_id=row.id, subject_key=keys["recipient"])
            bind.execute(sa.update(_shipments).where(_shipments.c.id == row.id).values(**values))
            for binding in bind.execute(sa.select(_bindings).where(_bindings.c.ref == row.id)).all():
                plain = vault.decrypt(binding.b_ct, table="vn_bindings", column="b_ct", row_id=binding.id)
                bind.execute(sa.update(_bindings).where(_bindings.c.id == binding.id).values(
                    b_ct=vault.encrypt(plain, table="vn_bindings", column="b_ct", row_id=binding.id,
                                       subject_key=keys["recipient"])))
        bind.execute(sa.insert(_keys), key_rows)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.select(_shipments.c.id).limit(1)).first() is not None:
        vault = _vault(bind)
        if bind.execute(sa.select(_shipments.c.id).where(
                sa.or_(*(_shipments.c[c].is_(None) for c in _PD_COLUMNS))).limit(1)).first() is not None:
            raise CommandError("revision 0016 cannot be undone: some shipments' personal data is destroyed")
        for rows in _chunks(bind):
            for row in rows:
                values: dict[str, Any] = {}
                for name in ("description_ct", *_PD_COLUMNS):
                    blob = getattr(row, name)
                    if blob is None:
                        continue
                    col = name.removesuffix("_ct")
                    plain = vault.decrypt(blob, table="shipments", column=col, row_id=row.id)
                    values[name] = vault.encrypt(plain, table="shipments", column=col, row_id=row.id)
                bind.execute(sa.update(_shipments).where(_shipments.c.id == row.id).values(**values))
                for binding in bind.execute(sa.select(_bindings).where(_bindings.c.ref == row.id)).all():
                    plain = vault.decrypt(binding.b_ct, table="vn_bindings", column="b_ct", row_id=binding.id)
                    bind.execute(sa.update(_bindings).where(_bindings.c.id == binding.id).values(
                        b_ct=vault.encrypt(plain, table="vn_bindings", column="b_ct", row_id=binding.id)))
    op.drop_index("ix_shipments_ended_at", table_name="shipments")
    with op.batch_alter_table("shipments", recreate="always" if bind.dialect.name == "sqlite" else "auto") as b:
        for party in PARTIES:
            b.alter_column(f"{party}_phone_bidx", existing_type=sa.BigInteger(), nullable=False)
        for column in _PD_COLUMNS:
            b.alter_column(column, existing_type=sa.LargeBinary(), nullable=False)
        for column in ("personal_data_destroyed_at", "recipient_destroyed_at", "sender_destroyed_at", "ended_at"):
            b.drop_column(column)
    op.drop_index("ix_legal_hold_shipments_shipment_id", table_name="legal_hold_shipments")
    op.drop_table("legal_hold_shipments")
    op.drop_table("legal_holds")
    op.drop_index("ix_destruction_records_at", table_name="destruction_records")
    op.drop_table("destruction_records")
    op.drop_table("pending_key_destructions")
    op.drop_index("ix_subject_keys_created_under", table_name="subject_keys")
    op.drop_index("ix_subject_keys_wrapping_key_id", table_name="subject_keys")
    op.drop_table("subject_keys")
