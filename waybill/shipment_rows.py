"""New shipment rows: built with what repeats across a create call worked out once, written set-wise.

:class:`RowBuilder` turns validated input into complete ``shipments`` rows (:class:`ShipmentRow`) and the rows of
their parties' subject keys: regions, routes, masks and blind indexes of values that repeat within one create
call (a merchant's batch has one sender) are computed once, the day's wrapping key is fetched once for all the
call's subject keys, and each party's fields are sealed with one cipher object. What is stored is what one
shipment at a time stored: every field encrypted on its own, bound to (table, column, row id), under its
party's key.

:func:`write` inserts them with set-based statements (one multi-row ``INSERT ... ON CONFLICT DO NOTHING
RETURNING id`` per chunk, then the subject keys and first tracking events in one statement each), never an
ORM object per row. A conflict leaves the transaction usable (no savepoint): rows whose random waybill number
collided are drawn again, the rest (an order id or idempotency key taken) are left out for the caller to answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar, cast

from sqlalchemy import Table, inspect, select
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict

from waybill import masked, tracking
from waybill.bulk import BulkInsert
from waybill.consent import PrivacyNotice
from waybill.crypto.subject_keys import SubjectKeyring
from waybill.crypto.vault import FieldCodec
from waybill.errors import ValidationFailed
from waybill.ids import new_id
from waybill.masking import MaskPolicy, mask_address, mask_name, mask_phone
from waybill.models import Shipment, SubjectKey, utcnow
from waybill.permissions import Principal
from waybill.phone_index import phone_index
from waybill.regions import Region, RegionTable
from waybill.routing import Route, RoutingTable, UnknownProvince
from waybill.schemas import PartyIn, ShipmentIn
from waybill.stations import station_code
from waybill.waybill_no import new_waybill_no

TABLE = "shipments"
PARTIES = ("sender", "recipient")
WAYBILL_NO_ATTEMPTS = 3
_SHIPMENTS = cast(Table, Shipment.__table__)
_SUBJECT_KEYS = cast(Table, SubjectKey.__table__)
_MANAGER = inspect(Shipment).class_manager
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class ShipmentDeps:
    """What the shipment store needs besides the session: codec, routing, divisions, masking, fingerprint key."""

    codec: FieldCodec
    routing: RoutingTable
    policy: MaskPolicy
    fingerprint_key: bytes
    keyring: SubjectKeyring
    regions: RegionTable = field(default_factory=RegionTable.load)
    notice: PrivacyNotice = field(default_factory=PrivacyNotice.load)  # what ``consents`` are checked against


@dataclass(slots=True)
class ShipmentRow:
    """A new shipment as written: every column of ``shipments`` (a batch answers from these, without an ORM
    object per row; :func:`attach` makes one for a single create)."""

    id: str
    merchant_id: str
    merchant_order_id: str
    waybill_no: str
    status: str
    sorting_code: str
    sender_name_ct: bytes | None
    sender_phone_ct: bytes | None
    sender_address_ct: bytes | None
    sender_region: dict[str, str]
    sender_masked_ct: bytes | None
    sender_phone_bidx: int | None
    recipient_name_ct: bytes | None
    recipient_phone_ct: bytes | None
    recipient_address_ct: bytes | None
    recipient_region: dict[str, str]
    recipient_masked_ct: bytes | None
    recipient_phone_bidx: int | None
    weight_g: int
    pieces: int
    consolidation: str | None
    origin_station: str | None
    destination_station: str | None
    description_ct: bytes | None
    notice_version: str | None
    consent_purposes: list[str] | None
    test_mode: bool
    idempotency_key: str | None
    request_fingerprint: bytes | None
    created_at: datetime
    updated_at: datetime
    event_seq: int
    printed_at: datetime | None = None
    consent_withdrawn: dict[str, dict[str, str]] | None = None
    ended_at: datetime | None = None
    sender_destroyed_at: datetime | None = None
    recipient_destroyed_at: datetime | None = None
    personal_data_destroyed_at: datetime | None = None

    def values(self) -> dict[str, Any]:
        """The row's column values (every column)."""
        return {name: getattr(self, name) for name in COLUMNS}

    def as_tuple(self) -> tuple[Any, ...]:
        """The row's values in :data:`COLUMNS` order."""
        return _ALL(self)


COLUMNS = tuple(f.name for f in fields(ShipmentRow))
_ALL = attrgetter(*COLUMNS)
# A column added to the model and not here would be written with its default by the set-based insert, and left
# expired on the object `attach` makes: refuse to start instead.
if set(COLUMNS) != set(_SHIPMENTS.c.keys()):  # pragma: no cover - a programming error, caught at import
    raise RuntimeError(f"ShipmentRow does not match the shipments table: {set(COLUMNS) ^ set(_SHIPMENTS.c.keys())}")


@dataclass(slots=True)
class Built:
    """A shipment row and its parties' subject key rows, ready to be written together."""

    row: ShipmentRow
    keys: list[dict[str, Any]]


@dataclass(slots=True)
class _Routed:
    data: ShipmentIn
    regions: dict[str, Region]
    route: Route
    origin: Route
    consent: tuple[str, list[str]]
    id: str
    now: datetime
    idempotency_key: str | None
    fingerprint: bytes | None


def _memo(cache: dict[K, V], key: K, make: Callable[[], V]) -> V:
    found = cache.get(key)
    if found is None:
        found = cache[key] = make()
    return found


class RowBuilder:
    """Builds the rows of one create call (a single create is a call of one)."""

    def __init__(self, deps: ShipmentDeps, principal: Principal) -> None:
        self._deps = deps
        self._principal = principal
        # Only successes are remembered: a bad value raises again for every item that has it.
        self._regions: dict[tuple[str, str, str, str], Region] = {}
        self._routes: dict[tuple[str, str, str], Route] = {}
        self._masks: dict[tuple[str, str], str] = {}
        self._bidx: dict[tuple[str, str], int] = {}

    def _region(self, role: str, party: PartyIn) -> Region:
        """The party's region checked against the divisions: `InvalidRegion` names ``<role>.province|city|district``.

        City and district are stored and printed in full, so only the list's canonical names ever reach a label
        (never a phone number or a name written where a district belongs)."""
        return _memo(self._regions, (role, party.province, party.city, party.district),
                     lambda: self._deps.regions.resolve(party.province, party.city, party.district,
                                                        field_prefix=role))

    def _route(self, region: Region) -> Route:
        return _memo(self._routes, (region.province, region.city, region.district),
                     lambda: self._deps.routing.route(region.province, region.city, region.district))

    def _routed(self, data: ShipmentIn, idempotency_key: str | None, fingerprint: bytes | None) -> _Routed:
        """Check the regions, routes and consents of one item (a :class:`ValidationFailed` naming the field)."""
        regions = {role: self._region(role, getattr(data, role)) for role in PARTIES}
        try:
            route = self._route(regions["recipient"])
        except UnknownProvince as exc:  # a division the routing table does not cover (a custom table)
            raise ValidationFailed(str(exc), field="recipient.province") from None
        try:
            origin = self._route(regions["sender"])
        except UnknownProvince:
            raise ValidationFailed("未知的省份", field="sender.province") from None
        consent = self._deps.notice.record(data.consents)
        return _Routed(data, regions, route, origin, consent, new_id("shp"), utcnow(), idempotency_key, fingerprint)

    def _mask(self, kind: str, value: str, fn: Callable[[str], str]) -> str:
        return _memo(self._masks, (kind, value), lambda: fn(value))

    def _blind_index(self, role: str, phone: str) -> int:
        return _memo(self._bidx, (role, phone), lambda: phone_index(self._deps.codec, self._principal.id, role, phone))

    def build(self, items: Sequence[tuple[ShipmentIn, str | None, bytes | None]]
              ) -> list[Built | ValidationFailed]:
        """Rows for ``(data, idempotency key, fingerprint)`` items, or the :class:`ValidationFailed` of each
        item that cannot be routed, in input order."""
        routed: list[_Routed | ValidationFailed] = []
        for data, key, fingerprint in items:
            try:
                routed.append(self._routed(data, key, fingerprint))
            except ValidationFailed as exc:
                routed.append(exc)
        ok = [r for r in routed if isinstance(r, _Routed)]
        # Every key of the call in one go: each party's data under its own key, so destroying one party's key
        # destroys exactly its data.
        key_rows = self._deps.keyring.new_rows([(r.id, role, r.now) for r in ok for role in PARTIES])
        keys = {(row["shipment_id"], row["party"]): row for row in key_rows}
        return [r if isinstance(r, ValidationFailed) else self._row(r, keys[(r.id, "sender")],
                                                                   keys[(r.id, "recipient")])
                for r in routed]

    def _row(self, r: _Routed, sender_key: dict[str, Any], recipient_key: dict[str, Any]) -> Built:
        deps, policy, sid, data = self._deps, self._deps.policy, r.id, r.data
        values: dict[str, Any] = {}
        for role, key in (("sender", sender_key), ("recipient", recipient_key)):
            party: PartyIn = getattr(data, role)
            snapshot = masked.encode({
                "name": self._mask("name", party.name, lambda v: mask_name(v, policy)),
                "phone": self._mask("phone", party.phone, lambda v: mask_phone(v, policy)),
                "address": self._mask("address", party.address, lambda v: mask_address(v, policy)),
            })
            plain = [(f"{role}_name", party.name), (f"{role}_phone", party.phone),
                     (f"{role}_address", party.address), (masked.column(role), snapshot)]
            # What someone bought says something about them: the recipient's key.
            if role == "recipient" and data.parcel.description:
                plain.append(("description", data.parcel.description))
            sealed = deps.codec.encrypt_fields(plain, table=TABLE, row_id=sid, subject_key=key["id"])
            values[f"{role}_name_ct"], values[f"{role}_phone_ct"], values[f"{role}_address_ct"] = sealed[:3]
            values[f"{role}_masked_ct"] = sealed[3]
            if role == "recipient":
                values["description_ct"] = sealed[4] if len(sealed) > 4 else None
            values[f"{role}_phone_bidx"] = self._blind_index(role, party.phone)
            values[f"{role}_region"] = r.regions[role].as_json()
        notice_version, consent_purposes = r.consent
        row = ShipmentRow(
            id=sid, merchant_id=self._principal.id, merchant_order_id=data.merchant_order_id,
            waybill_no=new_waybill_no(), status="created", sorting_code=r.route.sorting_code,
            consolidation=r.route.consolidation, origin_station=station_code(r.origin),
            destination_station=station_code(r.route), weight_g=data.parcel.weight_g, pieces=data.parcel.pieces,
            idempotency_key=r.idempotency_key, request_fingerprint=r.fingerprint,
            test_mode=self._principal.test_mode, notice_version=notice_version, consent_purposes=consent_purposes,
            created_at=r.now, updated_at=r.now, event_seq=tracking.FIRST_SEQ, **values)
        return Built(row, [sender_key, recipient_key])


_KEY_COLUMNS = tuple(_SUBJECT_KEYS.c.keys())
_NEW_SHIPMENTS = BulkInsert(_SHIPMENTS, COLUMNS, ignore_conflicts=True)
_NEW_KEYS = BulkInsert(_SUBJECT_KEYS, _KEY_COLUMNS)


def write(session: Session, principal: Principal, built: Sequence[Built]) -> list[Built]:
    """Insert ``built`` with their subject keys and first tracking events; returns those written, in order.

    Rows left out conflicted on the merchant's order id or idempotency key (or on a waybill number still
    taken after :data:`WAYBILL_NO_ATTEMPTS` draws): nothing of them is written."""
    if not built:
        return []
    conn = session.connection()
    written: set[str] = set()
    pending = list(built)
    for attempt in range(WAYBILL_NO_ATTEMPTS):
        if _NEW_SHIPMENTS.execute(conn, [b.row.as_tuple() for b in pending]) == len(pending):
            written.update(b.row.id for b in pending)
            break
        # Some rows conflicted (skipped, the transaction still usable): find which went in.
        ids = set(conn.execute(select(_SHIPMENTS.c.id).where(
            _SHIPMENTS.c.id.in_([b.row.id for b in pending]))).scalars())
        written |= ids
        failed = [b for b in pending if b.row.id not in ids]
        if attempt + 1 == WAYBILL_NO_ATTEMPTS:
            break
        taken = set(conn.execute(select(_SHIPMENTS.c.waybill_no).where(
            _SHIPMENTS.c.waybill_no.in_([b.row.waybill_no for b in failed]))).scalars())
        # A random waybill number collided (rare, but certain at scale): draw another for those rows only.
        pending = [b for b in failed if b.row.waybill_no in taken]
        if not pending:
            break
        for b in pending:
            b.row.waybill_no = new_waybill_no()
    done = [b for b in built if b.row.id in written]
    if done:
        _NEW_KEYS.execute(conn, [tuple(key[c] for c in _KEY_COLUMNS) for b in done for key in b.keys])
        tracking.started_many(session, principal, ((b.row.id, b.row.status, b.row.origin_station, b.row.created_at)
                                                   for b in done))
    return done


def attach(session: Session, row: ShipmentRow) -> Shipment:
    """The ORM object of a row :func:`write` has just inserted, in ``session`` as if loaded (no statement).

    Made the way a query's loader makes one (a bare instance, its state filled in, then given its identity):
    setting 38 instrumented attributes one by one, each with its change event, costs several times more."""
    shipment: Shipment = _MANAGER.new_instance()
    instance_dict(shipment).update(row.values())
    make_transient_to_detached(shipment)  # every value committed, the identity key from the id
    session.add(shipment)
    return shipment
