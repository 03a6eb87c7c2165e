"""The end of personal data's life: contracts that end, parties' data destroyed, legal holds.

- :func:`destroy_party`: a subject's deletion (or retention, through :mod:`waybill.retention`) removes that
  party's data key, ciphertexts, blind-index value, virtual-number endpoint and messages at once; the key-store
  keys that wrapped the data key are destroyed at the next retention run, after the keys they also wrap are
  re-wrapped under fresh ones (until then a restored older copy of the database plus today's key store could
  still open it: at most a day).
- Legal holds (:func:`place_hold`, :func:`release_hold`) keep retention away from their shipments.

Domain functions: a session, the acting principal and plain data; they flush, never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Table,
    column,
    delete,
    exists,
    insert,
    literal_column,
    select,
    table,
    update,
)
from sqlalchemy.orm import Session

from waybill import audit, messages, tracking
from waybill.crypto.subject_keys import PARTIES, SubjectKeyring
from waybill.errors import InDelivery, LegallyHeld, NotFound, ValidationFailed
from waybill.extensions import load_extensions
from waybill.ids import looks_like, new_id
from waybill.incidents import domain as incidents
from waybill.models import (
    DestructionRecord,
    LegalHold,
    LegalHoldShipment,
    PendingKeyDestruction,
    QrToken,
    Shipment,
    SubjectKey,
    utcnow,
)
from waybill.permissions import Permission, Principal
from waybill.virtual_numbers.models import VnBinding, VnBindingEndpoint, VnCall

ENDED = tracking.TERMINAL  # delivered, cancelled, returned
HOLD_REASON_MAX = 200
REGION_KEPT = ("province", "city", "province_code", "city_code")  # what stays of a region (deidentified_region)
# Subject requests (courier_api.subjects) that are still open hold their shipment too; this layer may not
# import that package, so the table is named here by its columns alone.
_subject_requests = table("subject_requests", column("shipment_id"), column("status"))

METHOD_PARTY = ("crypto-shredding: the party's data key deleted with its ciphertexts, blind-index value, "
                "virtual-number endpoint and messages; its wrapping keys are destroyed at the next run")
METHOD_RETENTION = ("crypto-shredding: end-day keys destroyed in the key store; ciphertexts, blind-index values, "
                    "QR tokens, virtual-number endpoints and messages removed")

def party_columns(party: str) -> dict[str, Any]:
    """The values that remove a party's personal data from its shipment row."""
    values: dict[str, Any] = {f"{party}_{c}_ct": None for c in ("name", "phone", "address", "masked")}
    values[f"{party}_phone_bidx"] = None
    if party == "recipient":
        values["description_ct"] = None
    return values


def hub_of(code: str | None) -> str | None:
    """A station or sorting code cut to its hub (the city's sorting centre): a station stands for a district."""
    return None if code is None else code.split("-", 1)[0]


def deidentified_region(region: dict[str, str] | None) -> dict[str, str]:
    """What stays of a region: province and city (a district narrows a person down too far)."""
    region = region or {}
    return {k: region[k] for k in REGION_KEPT if k in region}


def remove_attachments(session: Session, shipment_ids: Sequence[str], party: str | None) -> None:
    """Delete what else holds the parties' data: QR tokens, virtual-number rows (the recipient's), messages.

    ``party`` None: both parties (retention). Bindings of a live call-back grace stop routing with them.
    """
    ids = list(shipment_ids)
    if not ids:
        return
    session.execute(delete(QrToken).where(QrToken.shipment_id.in_(ids)).execution_options(synchronize_session=False))
    # Most shipments never had a virtual number: one look, instead of three deletes that find nothing.
    if party in (None, "recipient") and session.scalar(select(VnBinding.id).where(VnBinding.ref.in_(ids)).limit(1)):
        bindings = select(VnBinding.id).where(VnBinding.ref.in_(ids)).scalar_subquery()
        session.execute(delete(VnCall).where(VnCall.binding_id.in_(bindings))
                        .execution_options(synchronize_session=False))
        session.execute(delete(VnBindingEndpoint).where(VnBindingEndpoint.binding_id.in_(bindings))
                        .execution_options(synchronize_session=False))
        session.execute(delete(VnBinding).where(VnBinding.ref.in_(ids)).execution_options(synchronize_session=False))
    messages.forget(session, ids, party)
    for ext in load_extensions():  # what upper layers hold (subject requests' changes and texts)
        ext.forget_parties(session, ids, party)


def queue_key_destruction(session: Session, key_ids: set[str], reason: str, now: datetime) -> None:
    known = set(session.scalars(select(PendingKeyDestruction.key_id).where(
        PendingKeyDestruction.key_id.in_(sorted(key_ids)))))
    for key_id in sorted(key_ids - known):
        session.add(PendingKeyDestruction(key_id=key_id, reason=reason, since=now))


@dataclass(frozen=True)
class PartyDestroyed:
    shipment_id: str
    party: str
    record_id: str


def destroy_party(session: Session, keyring: SubjectKeyring, shipment: Shipment, party: str, *,
                  principal: Principal, reason: str = "subject_request",
                  now: datetime | None = None) -> PartyDestroyed:
    """Destroy one party's personal data now (a completed deletion request); a destruction record is written.

    Refused with :class:`InDelivery` while the contract runs: the data is what gets the parcel delivered.
    """
    if party not in PARTIES:
        raise ValidationFailed("party 须为 sender 或 recipient", field="party")
    if shipment.status not in ENDED:
        raise InDelivery()
    if session.scalar(select(LegalHoldShipment.shipment_id).join(LegalHold, LegalHold.id == LegalHoldShipment.hold_id)
                      .where(LegalHoldShipment.shipment_id == shipment.id, LegalHold.released_at.is_(None))
                      .limit(1)) is not None:
        raise LegallyHeld()
    now = now or utcnow()
    key = session.scalars(select(SubjectKey).where(SubjectKey.shipment_id == shipment.id,
                                                   SubjectKey.party == party)).first()
    wrapping: set[str] = set() if key is None else {key.wrapping_key_id, key.created_under}
    if key is not None:
        session.execute(delete(SubjectKey).where(SubjectKey.id == key.id).execution_options(synchronize_session=False))
        keyring.forget([key.id])
        # The key store keys that wrapped it still open it in an older copy of the database: they go at the
        # next retention run, once the other data keys they wrap are re-wrapped.
        queue_key_destruction(session, wrapping, "subject_request", now)
    for name, value in party_columns(party).items():
        setattr(shipment, name, value)
    setattr(shipment, f"{party}_region", deidentified_region(getattr(shipment, f"{party}_region")))
    setattr(shipment, f"{party}_destroyed_at", now)
    # What the routing derived from the party's district goes down to the city's hub too.
    if party == "recipient":
        shipment.sorting_code = hub_of(shipment.sorting_code) or ""
        shipment.destination_station = hub_of(shipment.destination_station)
        shipment.consolidation = None
    else:
        shipment.origin_station = hub_of(shipment.origin_station)
    shipment.idempotency_key = None
    shipment.request_fingerprint = None  # a keyed hash of a body full of both parties' data
    if all(getattr(shipment, f"{p}_destroyed_at") is not None for p in PARTIES):
        shipment.personal_data_destroyed_at = now
    remove_attachments(session, [shipment.id], party)
    record = DestructionRecord(id=new_id("dsr"), at=now, reason=reason, method=METHOD_PARTY, shipments=1,
                               key_ids=[f"subject:{key.id}"] if key is not None else [], actor=principal.actor)
    session.add(record)
    # No fields: nothing was read or disclosed (the subject's access log lists accesses and disclosures).
    audit.record(session, principal, "personal_data.destroy", object_type="shipment", object_id=shipment.id,
                 purpose=f"{reason} {party}")
    session.flush()
    return PartyDestroyed(shipment.id, party, record.id)


# --- legal holds -----------------------------------------------------------------------------------------------


def held_clause() -> Any:
    """A WHERE clause true for shipments under an open legal hold or an open subject request."""
    hold = exists(select(LegalHoldShipment.shipment_id).join(LegalHold, LegalHold.id == LegalHoldShipment.hold_id)
                  .where(LegalHoldShipment.shipment_id == Shipment.id, LegalHold.released_at.is_(None)))
    request = exists(select(_subject_requests.c.shipment_id).where(
        _subject_requests.c.shipment_id == Shipment.id, _subject_requests.c.status == "received"))
    return hold | request


def place_hold(session: Session, principal: Principal, *, reason: str, shipment_ids: Sequence[str] | None = None,
               incident_id: str | None = None, now: datetime | None = None) -> LegalHold:
    """A legal hold on shipments (ids) or on an incident's shipments."""
    principal.require(Permission.PRIVACY_HOLD)
    if not isinstance(reason, str) or not reason.strip() or len(reason) > HOLD_REASON_MAX:
        raise ValidationFailed(f"reason 须为 1-{HOLD_REASON_MAX} 个字符", field="reason")
    if (shipment_ids is None) == (incident_id is None):
        raise ValidationFailed("须给出 shipment_ids 或 incident_id 之一", field="shipment_ids")
    if incident_id is not None:
        # The incident's shipments in scope: those of the affected subjects found when it was recorded.
        in_scope = incidents.held_shipments(session, incident_id)
        if in_scope is None:
            raise ValidationFailed("没有该编号的安全事件", field="incident_id")
        if not in_scope:
            raise ValidationFailed("该安全事件没有涉及的运单", field="incident_id")
        ids = in_scope
    else:
        assert shipment_ids is not None
        ids = _known_shipments(session, shipment_ids)
    now = now or utcnow()
    hold = LegalHold(id=new_id("hld"), reason=reason.strip(), incident_id=incident_id, created_by=principal.actor,
                     created_at=now)
    session.add(hold)
    session.flush()
    session.execute(insert(LegalHoldShipment), [{"hold_id": hold.id, "shipment_id": sid} for sid in ids])
    audit.record(session, principal, "privacy.hold", object_type="legal_hold", object_id=hold.id,
                 purpose=f"shipments={len(ids)}")
    return hold


def _known_shipments(session: Session, shipment_ids: Sequence[str]) -> list[str]:
    """The distinct ids of a hold's shipment list, each checked to exist (422 naming the first bad item)."""
    if not shipment_ids or len(shipment_ids) > 1000:
        raise ValidationFailed("shipment_ids 须有 1-1000 个运单号", field="shipment_ids")
    for i, sid in enumerate(shipment_ids):
        if not isinstance(sid, str) or not looks_like("shp", sid):
            raise ValidationFailed("运单 ID 无效", field=f"shipment_ids[{i}]")
    ids = sorted(set(shipment_ids))
    found = set(session.scalars(select(Shipment.id).where(Shipment.id.in_(ids))))
    missing = [i for i, sid in enumerate(shipment_ids) if sid not in found]
    if missing:
        raise ValidationFailed("运单不存在", field=f"shipment_ids[{missing[0]}]")
    return ids


def release_hold(session: Session, principal: Principal, hold_id: str, *, now: datetime | None = None) -> LegalHold:
    principal.require(Permission.PRIVACY_HOLD)
    hold = session.get(LegalHold, hold_id) if looks_like("hld", hold_id) else None
    if hold is None:
        raise NotFound()
    if hold.released_at is None:
        hold.released_at = now or utcnow()
        hold.released_by = principal.actor
        audit.record(session, principal, "privacy.hold_release", object_type="legal_hold", object_id=hold.id)
    session.flush()
    return hold


def hold_shipment_count(session: Session, hold_id: str) -> int:
    return len(session.scalars(select(LegalHoldShipment.shipment_id).where(LegalHoldShipment.hold_id == hold_id)).all())


def _deidentified_region_sql(dialect: str, name: str) -> Any:
    """:func:`deidentified_region` of the row's column ``name``, computed by the database (no round trip)."""
    assert name in ("sender_region", "recipient_region")  # the SQL below is built of constants only
    keys = ", ".join(f"'{k}'" for k in REGION_KEPT)
    column = f"shipments.{name}"
    if dialect == "postgresql":
        sql = (f"CASE WHEN json_typeof({column}) = 'object' THEN (SELECT coalesce(json_object_agg("  # noqa: S608
               f"e.key, e.value), '{{}}'::json) FROM json_each({column}) AS e WHERE e.key IN ({keys})) "
               "ELSE '{}'::json END")
    else:
        sql = (f"coalesce((SELECT json_group_object(e.key, e.value) FROM json_each({column}) AS e "  # noqa: S608
               f"WHERE e.key IN ({keys})), '{{}}')")
    return literal_column(sql)


def _hub_sql(dialect: str, name: str) -> Any:
    """:func:`hub_of` of the row's column ``name`` in SQL (NULL stays NULL)."""
    assert name in ("sorting_code", "origin_station", "destination_station")  # constants only, as below
    col = f"shipments.{name}"
    if dialect == "postgresql":
        return literal_column(f"split_part({col}, '-', 1)")
    return literal_column(f"CASE WHEN instr({col}, '-') > 0 THEN substr({col}, 1, instr({col}, '-') - 1) "
                          f"ELSE {col} END")


def scrub_rows(session: Session, shipment_ids: Sequence[str], now: datetime) -> None:
    """Retention's row work for a chunk: both parties' data columns removed, regions de-identified.

    One UPDATE for the whole chunk: the regions are de-identified by the database itself rather than read,
    reduced here and written back row by row (that round trip was most of a run's time)."""
    ids = list(shipment_ids)
    dialect = session.get_bind().dialect.name
    values: dict[str, Any] = {**party_columns("sender"), **party_columns("recipient")}
    values.update(idempotency_key=None, request_fingerprint=None, personal_data_destroyed_at=now,
                  sender_region=_deidentified_region_sql(dialect, "sender_region"),
                  recipient_region=_deidentified_region_sql(dialect, "recipient_region"), consolidation=None,
                  # What the routing derived from the districts, cut to the city's hub, also in the database.
                  sorting_code=_hub_sql(dialect, "sorting_code"), origin_station=_hub_sql(dialect, "origin_station"),
                  destination_station=_hub_sql(dialect, "destination_station"))
    values.update({f"{p}_destroyed_at": now for p in PARTIES})
    shipments = Shipment.__table__
    assert isinstance(shipments, Table)
    result = session.execute(update(shipments).where(shipments.c.id.in_(ids)).values(**values))
    if not cast("CursorResult[Any]", result).rowcount:
        return
    session.execute(delete(SubjectKey).where(SubjectKey.shipment_id.in_(ids))
                    .execution_options(synchronize_session=False))
    remove_attachments(session, ids, None)
