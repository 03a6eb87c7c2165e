"""The set-based create path (waybill/shipment_rows.py, waybill/bulk.py) stores what one ORM object at a time
stored, and a row that cannot be written leaves nothing of itself behind."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from tests.conftest import RECIPIENT, SENDER, make_merchant, shipment_body
from waybill import masked, shipment_rows, shipments, tracking
from waybill.models import AuditEvent, Shipment, SubjectKey, TrackingEvent, utcnow
from waybill.permissions import Principal
from waybill.schemas import ShipmentIn, parse
from waybill.shipment_rows import Built, RowBuilder


def _merchant(services: Any) -> Principal:
    return Principal("merchant", make_merchant(services).id, "merchant")


def _plain(services: Any, s: Shipment, role: str, column: str) -> str:
    blob = getattr(s, f"{role}_{column}_ct")
    return services.codec.decrypt(blob, table="shipments", column=f"{role}_{column}", row_id=s.id)


def test_batch_rows_read_back_as_single_rows_do(services: Any) -> None:
    principal = _merchant(services)
    with services.session_factory() as s:
        single, _ = shipments.create_shipment(s, services.shipment_deps, principal,
                                              parse(ShipmentIn, shipment_body("ROW-1")))
        batch = [r.shipment.id for r in shipments.create_batch(
            s, services.shipment_deps, principal, [parse(ShipmentIn, shipment_body(f"ROW-{i}")) for i in (2, 3)])
            if r.shipment is not None]
        s.commit()
        single_id = single.id
    assert len(batch) == 2
    with services.session_factory() as s:
        rows = {r.id: r for r in s.scalars(select(Shipment).where(Shipment.id.in_([single_id, *batch])))}
        for sid, row in rows.items():
            # Unset columns are SQL NULL (as an ORM object leaves them), never the JSON text 'null'.
            assert row.consent_withdrawn is None and row.printed_at is None and row.ended_at is None
            assert s.scalar(select(func.count()).select_from(Shipment).where(
                Shipment.id == sid, Shipment.consent_withdrawn.is_(None))) == 1
            assert row.created_at.tzinfo is not None and row.created_at == row.updated_at
            assert row.event_seq == 1 and row.status == "created" and row.pieces == 1 and row.test_mode is False
            for role, party in (("sender", SENDER), ("recipient", RECIPIENT)):
                assert _plain(services, row, role, "name") == party["name"]
                assert _plain(services, row, role, "address") == party["address"]
                assert getattr(row, f"{role}_region")["district"] == party["district"]
                assert masked.unseal(services.codec, sid, role, getattr(row, f"{role}_masked_ct"))["name"].endswith("*")
            assert services.codec.decrypt(row.description_ct, table="shipments", column="description",
                                          row_id=sid) == "书籍"
            keys = list(s.scalars(select(SubjectKey).where(SubjectKey.shipment_id == sid)))
            assert sorted(k.party for k in keys) == ["recipient", "sender"]
            events = list(s.scalars(select(TrackingEvent).where(TrackingEvent.shipment_id == sid)))
            assert [(e.seq, e.kind, e.status, e.station) for e in events] == [(1, "status", "created",
                                                                               row.origin_station)]
            assert s.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == "shipment.create", AuditEvent.object_id == sid)) == 1
        # Each party's data is under its own key: the sender's ciphertext names the sender's key.
        one = rows[batch[0]]
        key_ids = {k.party: k.id for k in s.scalars(select(SubjectKey).where(SubjectKey.shipment_id == one.id))}
        assert int.from_bytes(bytes(one.sender_name_ct)[2:10], "big") == key_ids["sender"]
        assert int.from_bytes(bytes(one.recipient_name_ct)[2:10], "big") == key_ids["recipient"]


def test_a_row_that_conflicts_leaves_nothing_of_itself(services: Any) -> None:
    principal = _merchant(services)
    deps = services.shipment_deps
    with services.session_factory() as s:
        shipments.create_shipment(s, deps, principal, parse(ShipmentIn, shipment_body("TAKEN")))
        s.commit()
    with services.session_factory() as s:
        # Built past the batch's own order-id check, as when a concurrent request takes the id in between.
        built = RowBuilder(deps, principal).build([(parse(ShipmentIn, shipment_body(o)), None, None)
                                                  for o in ("FREE-1", "TAKEN", "FREE-2")])
        assert all(isinstance(b, Built) for b in built)
        done = shipment_rows.write(s, principal, [b for b in built if isinstance(b, Built)])
        assert [b.row.merchant_order_id for b in done] == ["FREE-1", "FREE-2"]
        lost = built[1]
        assert isinstance(lost, Built)
        s.commit()
    with services.session_factory() as s:
        for model, column in ((Shipment, Shipment.id), (SubjectKey, SubjectKey.shipment_id),
                              (TrackingEvent, TrackingEvent.shipment_id)):
            assert s.scalar(select(func.count()).select_from(model).where(column == lost.row.id)) == 0
        assert s.scalar(select(func.count()).select_from(Shipment).where(
            Shipment.merchant_id == principal.id)) == 3


def test_a_colliding_waybill_number_is_drawn_again_for_that_row_only(services: Any, monkeypatch: Any) -> None:
    principal = _merchant(services)
    deps = services.shipment_deps
    with services.session_factory() as s:
        first, _ = shipments.create_shipment(s, deps, principal, parse(ShipmentIn, shipment_body("WB-A")))
        s.commit()
        taken = first.waybill_no
    with services.session_factory() as s:
        built = [b for b in RowBuilder(deps, principal).build(
            [(parse(ShipmentIn, shipment_body(o)), None, None) for o in ("WB-B", "WB-C")]) if isinstance(b, Built)]
        kept = built[0].row.waybill_no
        built[1].row.waybill_no = taken
        done = shipment_rows.write(s, principal, built)
        assert len(done) == 2
        assert done[0].row.waybill_no == kept and done[1].row.waybill_no not in (taken, kept)
        s.commit()


def test_a_bulk_insert_that_breaks_a_constraint_raises_what_sqlalchemy_raises(services: Any) -> None:
    # A tracking event of a shipment that does not exist: on PostgreSQL this goes through COPY, past SQLAlchemy,
    # and must still surface as SQLAlchemy's IntegrityError (what the error handling catches), not the driver's.
    row = ("trk_" + "0" * 26, "shp_" + "0" * 26, 1, "status", "created", None, None, None, "system:test", utcnow())
    with services.session_factory() as s:
        with pytest.raises(IntegrityError):
            tracking._FIRST_EVENTS.execute(s.connection(), [row])
        s.rollback()


def test_the_single_create_object_is_persistent_and_its_changes_are_written(services: Any) -> None:
    principal = _merchant(services)
    with services.session_factory() as s:
        shipment, created = shipments.create_shipment(s, services.shipment_deps, principal,
                                                      parse(ShipmentIn, shipment_body("ATT-1")))
        assert created and shipment in s and not s.dirty
        tracking.move(s, principal, shipment, "cancelled")  # the next number builds on the stored one
        s.commit()
        sid = shipment.id
    with services.session_factory() as s:
        assert s.scalar(select(Shipment.status).where(Shipment.id == sid)) == "cancelled"
        assert list(s.scalars(select(TrackingEvent.seq).where(TrackingEvent.shipment_id == sid)
                              .order_by(TrackingEvent.seq))) == [1, 2]
