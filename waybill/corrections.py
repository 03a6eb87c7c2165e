"""Correcting one party's personal data on a shipment (a data subject's request, GB/T 35273-2020 8.2).

A correction is applied as the shipment was built (:func:`waybill.shipments._build`): the new values are
validated like a merchant's party (phone normalised, region checked against the divisions), every field of the
party is encrypted again, its masked snapshot sealed again, its phone re-indexed, the shipment routed again
(a new sorting code and stations when a region changed), and the live label token revoked, so the old label
(with the old masked data and sorting code) no longer scans and a reprint is needed. Audited by field names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

from waybill import audit, masked, tracking
from waybill.crypto.vault import FieldCodec
from waybill.errors import InDelivery, PersonalDataDestroyed, ValidationFailed
from waybill.labels import revoke_tokens
from waybill.masking import mask_address, mask_name, mask_phone
from waybill.models import Shipment, utcnow
from waybill.permissions import Principal
from waybill.phone_index import phone_index
from waybill.routing import UnknownProvince
from waybill.schemas import PartyIn, parse
from waybill.shipments import TABLE, ShipmentDeps
from waybill.stations import station_code

PARTIES = ("sender", "recipient")
FIELDS = ("name", "phone", "province", "city", "district", "address")
SECRET_COLUMNS = ("name", "phone", "address")
REVOKE_REASON = "subject_correction"


@dataclass(frozen=True)
class Correction:
    """What a correction changed: the party's field names, and whether the label must be reprinted."""

    fields: list[str]
    rerouted: bool
    tokens_revoked: int


def current_party(codec: FieldCodec, shipment: Shipment, party: str) -> dict[str, str]:
    """The party as stored, in clear (a typed vault error if its key is destroyed)."""
    values = {c: codec.decrypt(getattr(shipment, f"{party}_{c}_ct"), table=TABLE, column=f"{party}_{c}",
                               row_id=shipment.id) for c in SECRET_COLUMNS}
    region: dict[str, str] = getattr(shipment, f"{party}_region")
    return {**values, "province": region["province"], "city": region["city"], "district": region["district"]}


def validate_changes(deps: ShipmentDeps, current: Mapping[str, str], changes: Mapping[str, object],
                     prefix: str = "changes") -> PartyIn:
    """The party after ``changes``, validated as a merchant's party is: ``ValidationFailed`` names
    ``<prefix>.<field>`` (an unknown field too). Values are never echoed."""
    if not isinstance(changes, Mapping) or not changes:
        raise ValidationFailed("请填写需要更正的字段", field=prefix)
    for key in changes:
        if key not in FIELDS:
            raise ValidationFailed("只能更正姓名、电话、省、市、区县和详细地址", field=prefix)
    party = parse(PartyIn, {**current, **changes}, prefix=prefix)
    deps.regions.resolve(party.province, party.city, party.district, field_prefix=prefix)
    return party


def apply_correction(session: Session, deps: ShipmentDeps, principal: Principal, shipment: Shipment, party: str,
                     changes: Mapping[str, object]) -> Correction:
    """Correct ``party`` of ``shipment`` (locked by the caller); see the module docstring."""
    if party not in PARTIES:
        raise ValueError("party must be sender or recipient")
    if shipment.status == "out_for_delivery":
        # A courier holds it (and a virtual number reaching the old phone): the assignment would go on with
        # stale data. The correction waits until the attempt ends or a dispatcher takes the parcel back.
        raise InDelivery("包裹正在派送中，暂不能更正；派送结束后再处理")
    current = current_party(deps.codec, shipment, party)
    new = validate_changes(deps, current, changes)
    region = deps.regions.resolve(new.province, new.city, new.district, field_prefix="changes")
    sid = shipment.id
    # Sealed again under the party's own data key, so destroying that key still destroys the corrected data.
    kid = deps.keyring.key_id(session, sid, party)
    if kid is None:
        raise PersonalDataDestroyed()
    values = {"name": new.name, "phone": new.phone, "address": new.address}
    for column, value in values.items():
        setattr(shipment, f"{party}_{column}_ct",
                deps.codec.encrypt(value, table=TABLE, column=f"{party}_{column}", row_id=sid, subject_key=kid))
    setattr(shipment, f"{party}_phone_bidx", phone_index(deps.codec, shipment.merchant_id, party, new.phone))
    setattr(shipment, f"{party}_region", region.as_json())
    setattr(shipment, f"{party}_masked_ct", masked.seal(deps.codec, sid, party, {
        "name": mask_name(new.name, deps.policy), "phone": mask_phone(new.phone, deps.policy),
        "address": mask_address(new.address, deps.policy)}, subject_key=kid))
    rerouted = False
    # A parcel delivered, cancelled or returned goes nowhere again: its data is corrected in place, not routed.
    if shipment.status not in tracking.TERMINAL:
        try:
            route = deps.routing.route(region.province, region.city, region.district)
        except UnknownProvince:
            raise ValidationFailed("未知的省份", field="changes.province") from None
        if party == "recipient":
            rerouted = (route.sorting_code, station_code(route)) != (shipment.sorting_code,
                                                                    shipment.destination_station)
            shipment.sorting_code, shipment.consolidation = route.sorting_code, route.consolidation
            shipment.destination_station = station_code(route)
        else:
            rerouted = station_code(route) != shipment.origin_station
            shipment.origin_station = station_code(route)
    shipment.updated_at = utcnow()
    changed = [f"{party}.{f}" for f in FIELDS if f in changes]
    # The old label shows the old masked data and sorting code: its token stops resolving; a reprint replaces it.
    revoked = revoke_tokens(session, principal, sid, REVOKE_REASON)
    audit.record(session, principal, "shipment.correct", object_type="shipment", object_id=sid, fields=changed,
                 purpose="data_subject_correction", outcome="rerouted" if rerouted else "ok")
    session.flush()
    return Correction(fields=changed, rerouted=rerouted, tokens_revoked=revoked)

