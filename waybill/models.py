"""Database tables (SQLAlchemy 2.0 declarative). The schema itself is made by Alembic migrations.

Personal data lives only in the ``*_ct`` columns, encrypted by :mod:`waybill.crypto.vault`.
Province, city and district stay readable because routing needs them and they do not identify a
person. The masked snapshot (what a label shows) is encrypted too (``*_masked_ct``, see
:mod:`waybill.masked`): in plaintext its five visible digits let the index secret reverse the blind index.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    SmallInteger,
    String,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiKey(Base):
    """A merchant API key, stored as a keyed hash; ``id`` is the public prefix used for lookup.

    ``expires_at`` is set by a rotation (the old key works until then); ``revoked_at`` stops it at once.
    ``mode`` is ``live`` or ``test``: shipments made with a test key never reach a printer or a courier.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    mode: Mapped[str] = mapped_column(String(8), default="live", server_default="live")


class DataKey(Base):
    """A data-encryption key, wrapped by a master key from the key file (envelope encryption)."""

    __tablename__ = "data_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    algorithm: Mapped[str] = mapped_column(String(20))
    master_key_id: Mapped[str] = mapped_column(String(40))
    wrapped: Mapped[bytes] = mapped_column(LargeBinary(128))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rewrapped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The wrapping the last rotation replaced, kept until `waybill keys retire` (see waybill/crypto/rotation.py).
    previous_master_key_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    previous_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary(128), nullable=True)


class Shipment(Base):
    __tablename__ = "shipments"
    __table_args__ = (
        UniqueConstraint("merchant_id", "merchant_order_id"),
        UniqueConstraint("merchant_id", "idempotency_key"),
        Index("ix_shipments_merchant_id_id", "merchant_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    merchant_order_id: Mapped[str] = mapped_column(String(64))
    waybill_no: Mapped[str] = mapped_column(String(20), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="created")
    sorting_code: Mapped[str] = mapped_column(String(32))

    sender_name_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sender_phone_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sender_address_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sender_region: Mapped[dict[str, str]] = mapped_column(JSON)
    sender_masked_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sender_phone_bidx: Mapped[int | None] = mapped_column(BigInteger, index=True, nullable=True)

    recipient_name_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    recipient_phone_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    recipient_address_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    recipient_region: Mapped[dict[str, str]] = mapped_column(JSON)
    recipient_masked_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    recipient_phone_bidx: Mapped[int | None] = mapped_column(BigInteger, index=True, nullable=True)

    weight_g: Mapped[int] = mapped_column(Integer)
    pieces: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    consolidation: Mapped[str | None] = mapped_column(String(32), nullable=True)  # 集包地, routed at creation
    # The stations (``HUB-STATION``, see waybill/stations.py) the sender's and the recipient's regions route to,
    # recorded at creation: sorters act only for shipments of their own station or hub. Null when a shipment
    # from before they were recorded could not be routed again (it is then in no sorter's scope on that side).
    origin_station: Mapped[str | None] = mapped_column(String(16), nullable=True)
    destination_station: Mapped[str | None] = mapped_column(String(16), nullable=True)
    description_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    printed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Notice and consent at collection (waybill/consent.py): the privacy notice version shown, the optional
    # purposes agreed to, and per party the purposes withdrawn since ({party: {purpose: when}}). Null on
    # shipments from before consents were recorded (their required purposes only).
    notice_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    consent_purposes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    consent_withdrawn: Mapped[dict[str, dict[str, str]] | None] = mapped_column(JSON, nullable=True)
    # Made with a test-mode API key: refused by every printing and courier path.
    test_mode: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # When the contract ended (delivered, cancelled): retention counts from here (waybill/lifecycle.py).
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    # A party's personal data destroyed (its subject key deleted, its ciphertexts removed); the shipment's once
    # both are: what remains is de-identified order data.
    sender_destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    recipient_destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    personal_data_destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The last tracking event's sequence number (waybill/tracking.py): bumped by one atomic UPDATE per event,
    # so concurrent events of one shipment never share a number.
    event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Only for writing a new shipment's keys with it (in dependency order); never loaded, never deleted through.
    subject_keys: Mapped[list[SubjectKey]] = relationship(lazy="raise", cascade="save-update, expunge",
                                                          passive_deletes=True)


class SubjectKey(Base):
    """One party's data key (each sender and recipient of each shipment has its own), wrapped by a key of the
    key store (waybill/crypto/keystore.py), never by anything kept only in the database.

    ``wrapping_key_id`` is the key store key wrapping it now: the active-period key of its creation day, then,
    once the contract ends, the key of its end day. ``created_under`` remembers the first (a restored old copy
    of the database still holds that wrapping: it must be gone before the data counts as destroyed).
    """

    __tablename__ = "subject_keys"
    __table_args__ = (UniqueConstraint("shipment_id", "party"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=False)
    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"))
    party: Mapped[str] = mapped_column(String(10))
    algorithm: Mapped[str] = mapped_column(String(20))
    wrapping_key_id: Mapped[str] = mapped_column(String(40), index=True)
    created_under: Mapped[str] = mapped_column(String(40), index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingKeyDestruction(Base):
    """A key store key that must be destroyed at the next retention run, after its surviving data keys are
    re-wrapped under a fresh key (an early deletion removed one of the data keys it wrapped)."""

    __tablename__ = "pending_key_destructions"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DestructionRecord(Base):
    """The record of one destruction (销毁记录): when, why, how, how many shipments, which keys, by whom."""

    __tablename__ = "destruction_records"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    reason: Mapped[str] = mapped_column(String(20))
    method: Mapped[str] = mapped_column(String(200))
    shipments: Mapped[int] = mapped_column(Integer)
    key_ids: Mapped[list[str]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(80))


class LegalHold(Base):
    """A legal hold: its shipments are skipped by retention until it is released."""

    __tablename__ = "legal_holds"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(200))
    incident_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(80), nullable=True)


class LegalHoldShipment(Base):
    __tablename__ = "legal_hold_shipments"

    hold_id: Mapped[str] = mapped_column(ForeignKey("legal_holds.id"), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"), primary_key=True, index=True)


class QrToken(Base):
    """A label's QR token: never stored, only re-derivable with the secret. One live token per shipment.

    ``nonce`` is 160 random bits; the token is ``HMAC(qr secret, nonce)`` and ``token_hash`` its keyed hash
    for lookup. The database alone yields neither the token nor a way to test a guess.
    """

    __tablename__ = "qr_tokens"
    __table_args__ = (
        Index("ix_qr_tokens_live_shipment", "shipment_id", unique=True,
              postgresql_where=text("revoked_at IS NULL"), sqlite_where=text("revoked_at IS NULL")),
        # One actor's reprints of the last hour (the per-sorter cap); reprints are few, so the index is small.
        Index("ix_qr_tokens_reprints_by_actor", "issued_by", "issued_at",
              postgresql_where=text("is_reprint"), sqlite_where=text("is_reprint")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"), index=True)
    nonce: Mapped[bytes] = mapped_column(LargeBinary(20))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    issued_by: Mapped[str] = mapped_column(String(80))
    # Why this token was issued: "first_print" or a reprint's recorded reason.
    issue_reason: Mapped[str] = mapped_column(String(200))
    is_reprint: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # The print job whose chunk issued this token (migration 0031), so a retried job reuses it (waybill/print_jobs.py).
    print_job_id: Mapped[str | None] = mapped_column(ForeignKey("print_jobs.id"), nullable=True)


class PrintJob(Base):
    """A sorter's print job (``POST /v1/print-jobs``): its request and how far its issuing got.

    ``issued`` is the number of the job's labels (in request order) whose tokens have committed: each chunk's
    transaction advances it with its own tokens, so it never counts a chunk that did not commit. A retry with
    the same ``Idempotency-Key`` (per actor) finds the job and reuses every token it issued. Ids and counts only.
    """

    __tablename__ = "print_jobs"
    __table_args__ = (UniqueConstraint("actor", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    actor: Mapped[str] = mapped_column(String(80))
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # SHA-256 of the shipment ids (in order) and the reprint reason: a retry must ask for the same job.
    request_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    total: Mapped[int] = mapped_column(Integer)
    issued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reprint_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


#: Gives audit events their place in the whole log on PostgreSQL (SQLite: the rowid); no lock, unlike a head row.
AUDIT_SEQ = Sequence("audit_event_seq")


class AuditEvent(Base):
    """One entry of the hash-chained audit log. Never holds personal data.

    The log is ``WAYBILL_AUDIT_SHARDS`` independent chains. ``shard_seq`` is the event's place in its
    ``shard``'s chain (1, 2, 3...; covered by the hash); ``seq`` is a position in the whole log, from a sequence
    that needs no lock (PostgreSQL) or the rowid (SQLite), for listing in arrival order. It is not part of any
    chain: the chains are what is verified.
    """

    __tablename__ = "audit_events"
    # On PostgreSQL the table is partitioned by month of ``at`` (migration 0030, waybill/partitions.py): there the
    # primary key and the unique constraint also hold ``at`` (the partition key must be in both).
    __table_args__ = (UniqueConstraint("shard", "shard_seq"),
                      # The listing's keysets (GET /v1/audit/events?action=|actor=, in seq order).
                      Index("ix_audit_events_action_seq", "action", "seq"),
                      Index("ix_audit_events_actor_seq", "actor", "seq"))

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), AUDIT_SEQ, primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    shard_seq: Mapped[int] = mapped_column(BigInteger)
    # Indexed (migration 0027): the monthly privacy report reads one month of the log by time.
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(60))
    object_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    object_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    purpose: Mapped[str | None] = mapped_column(String(120), nullable=True)
    fields: Mapped[list[str]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(30))
    client_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditHead(Base):
    """One row per audit chain (``id`` is the shard) holding its tip; updating it serialises that chain's appends
    across processes, and only that chain's."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class TrackingEvent(Base):
    """One step of a shipment's way (waybill/tracking.py): a status change or a scan. Never personal data.

    ``seq`` counts 1, 2, 3... per shipment: merchants read the history in this order and webhooks are
    delivered in it. ``kind`` is ``status`` (``previous_status`` -> ``status``) or ``scan`` (``event``
    ``arrival``/``departure`` at ``station``; ``status`` is the shipment's status after the scan).
    """

    __tablename__ = "tracking_events"
    # Partitioned by month of ``at`` on PostgreSQL, like the audit events (the key joins the PK and unique there).
    __table_args__ = (UniqueConstraint("shipment_id", "seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20))
    previous_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    event: Mapped[str | None] = mapped_column(String(32), nullable=True)
    station: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Who moved it (``staff:usr_...``, ``merchant:mch_...``): for oversight, never shown to merchants.
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """A background task written in the same transaction as the work that asks for it (transactional outbox).

    ``payload`` holds ids and enum values only, never personal data or tokens (:func:`waybill.outbox.enqueue`
    refuses anything else). ``sent_at``: handed to the task queue (or run, in-process); ``done_at``: its
    handler committed, so a second delivery of the same message does nothing.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_pending", "sent_at", "available_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error_type: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ScheduledRun(Base):
    """One row per (job, time slot): the unique key lets exactly one process of any node start a slot's run."""

    __tablename__ = "scheduled_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    outbox_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
