"""Retention and crypto-shredding: what is due is destroyed for good, even in a restored older copy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select

from tests.conftest import RECIPIENT, SENDER, make_merchant, shipment_body
from waybill import lifecycle, masked, messages, outbox, retention, tasks
from waybill.crypto.subject_keys import day_of
from waybill.crypto.vault import DataDestroyed
from waybill.db import model_metadata
from waybill.models import DestructionRecord, QrToken, Shipment, SubjectKey, utcnow
from waybill.permissions import SYSTEM
from waybill.phone_index import phone_index
from waybill.uow import unit_of_work
from waybill.web.app import create_app

PLAIN = [RECIPIENT["name"], RECIPIENT["phone"], RECIPIENT["address"], SENDER["name"], SENDER["address"], "书籍",
         RECIPIENT["district"], SENDER["district"]]


def _snapshot(engine: Any) -> dict[str, list[dict[str, Any]]]:
    """A logical copy of every table (what a backup holds), in dependency order."""
    with engine.connect() as conn:
        return {t.name: [dict(r._mapping) for r in conn.execute(select(t))] for t in model_metadata().sorted_tables}


def _restore(engine: Any, snap: dict[str, list[dict[str, Any]]]) -> None:
    tables = model_metadata().sorted_tables
    with engine.begin() as conn:
        for t in reversed(tables):
            conn.execute(delete(t))
        for t in tables:
            if snap[t.name]:
                conn.execute(insert(t), snap[t.name])


def _raw_dump(engine: Any) -> str:
    """Every value of every row as text (bytes decoded leniently): what someone reading the storage sees."""
    out = []
    for rows in _snapshot(engine).values():
        for row in rows:
            for v in row.values():
                out.append(v.decode("utf-8", "replace") if isinstance(v, (bytes, memoryview)) else str(v))
    return "\n".join(out)


@pytest.fixture
def world(fresh_env):
    env = fresh_env(retention_days=30)
    svc = env.services()
    app = create_app(env.settings, services_override=svc)
    client = app.test_client()
    merchant = make_merchant(svc)
    yield env, svc, client, merchant
    svc.engine.dispose()


def _create(client, merchant, order, **kw):
    r = client.post("/v1/shipments", json=shipment_body(order, **kw), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def _decrypt_all(svc, shipment_id: str) -> list[str]:
    with svc.session_factory() as s:
        row = s.get(Shipment, shipment_id)
        assert row is not None
        out = []
        for party in ("sender", "recipient"):
            for col in ("name", "phone", "address"):
                blob = getattr(row, f"{party}_{col}_ct")
                out.append(svc.codec.decrypt(blob, table="shipments", column=f"{party}_{col}", row_id=row.id))
            out.append(str(masked.unseal(svc.codec, row.id, party, getattr(row, f"{party}_masked_ct"))))
        return out


def test_due_shipments_are_destroyed_and_a_restored_backup_cannot_bring_them_back(world, fresh_env):
    env, svc, client, merchant = world
    due = [_create(client, merchant, f"R-{i}") for i in range(3)]
    for shp in due:
        assert client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers).status_code == 200
    kept = _create(client, merchant, "R-kept")
    active = _create(client, merchant, "R-active")
    later = utcnow() + timedelta(days=20)  # "kept" ends 20 days later: not due at the run below
    with unit_of_work(svc.session_factory) as tx:
        row = tx.session.get(Shipment, kept["id"])
        row.status = "cancelled"
        svc.subject_keys.end_contract(tx.session, row, later)
    backup = _snapshot(env.engine)
    store_before = set(svc.subject_keys.store.ids())

    run_at = utcnow() + timedelta(days=32)
    assert retention.run(svc, SYSTEM, dry_run=True, now=run_at).due == 3
    result = retention.run(svc, SYSTEM, now=run_at)
    assert result.destroyed == 3 and result.record_id is not None
    end_key = f"ed-{day_of(utcnow()):%Y%m%d}-g1"
    assert end_key in result.keys_destroyed and end_key not in svc.subject_keys.store.ids()
    assert f"ap-{day_of(utcnow()):%Y%m%d}" in result.keys_destroyed  # the day the three were created
    assert end_key in store_before
    # The merchant still sees de-identified order data.
    doc = client.get(f"/v1/shipments/{due[0]['id']}", headers=merchant.headers).get_json()
    assert doc["personal_data"] == "destroyed" and doc["sender"] is None and doc["recipient"] is None
    assert doc["waybill_no"] == due[0]["waybill_no"] and doc["status"] == "cancelled"
    assert client.get(f"/v1/shipments/{kept['id']}", headers=merchant.headers).get_json()["personal_data"] == "present"
    assert client.get(f"/v1/shipments/{active['id']}", headers=merchant.headers).get_json()["recipient"]["name"]
    with svc.session_factory() as s:
        rows = {r.id: r for r in s.scalars(select(Shipment))}
        for shp in due:
            r = rows[shp["id"]]
            assert r.recipient_phone_bidx is None and r.sender_name_ct is None and r.description_ct is None
            assert set(r.recipient_region) <= {"province", "city", "province_code", "city_code"}
            assert not s.scalars(select(SubjectKey).where(SubjectKey.shipment_id == r.id)).all()
            assert not s.scalars(select(QrToken).where(QrToken.shipment_id == r.id)).all()
        record = s.get(DestructionRecord, result.record_id)
        assert record.reason == "retention" and record.shipments == 3 and end_key in record.key_ids
    # Raw storage: the only rows holding the plaintext's ciphertexts are the surviving shipments'.
    assert _decrypt_all(svc, kept["id"])[0] == SENDER["name"]

    # A second run has nothing to do.
    again = retention.run(svc, SYSTEM, now=run_at)
    assert again.destroyed == 0 and again.record_id is None

    # Restore the backup taken before the run, with today's key store, in a process that never saw the keys.
    _restore(env.engine, backup)
    restored = env.services()
    for shp in due:
        with pytest.raises(DataDestroyed):
            _decrypt_all(restored, shp["id"])
    assert _decrypt_all(restored, kept["id"])[1] == SENDER["phone"]
    restored.engine.dispose()


def test_destroyed_data_is_gone_from_raw_storage(world):
    env, svc, client, merchant = world
    shp = _create(client, merchant, "RAW-1")
    client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers)
    with unit_of_work(svc.session_factory) as tx:  # a message to the recipient: sealed under their key
        messages.send(tx.session, svc, phone=RECIPIENT["phone"], template="subject_code",
                      params={"code": "246810", "minutes": "5"}, shipment_id=shp["id"], party="recipient")
    outbox.relay_once(svc.session_factory, tasks.InProcessQueue(svc))
    with svc.session_factory() as s:
        assert len(messages.sent_to(s, svc, RECIPIENT["phone"])) == 1
    with svc.session_factory() as s:
        bidx = phone_index(svc.codec, merchant.id, "recipient", RECIPIENT["phone"])
        assert s.scalar(select(Shipment.recipient_phone_bidx).where(Shipment.id == shp["id"])) == bidx
    retention.run(svc, SYSTEM, now=utcnow() + timedelta(days=40))
    dump = _raw_dump(env.engine)
    for value in [*PLAIN, "246810"]:
        assert value not in dump
    with svc.session_factory() as s:
        assert s.scalar(select(Shipment.id).where(Shipment.recipient_phone_bidx == bidx)) is None
        assert messages.sent_to(s, svc, RECIPIENT["phone"]) == []
    if env.settings.is_sqlite:
        # The file itself, WAL included: secure_delete zeroes what the destruction removed.
        path = env.settings.data_dir / "waybill.db"
        raw = path.read_bytes() + (path.with_name("waybill.db-wal").read_bytes()
                                   if path.with_name("waybill.db-wal").exists() else b"")
        for value in PLAIN:
            assert value.encode() not in raw, value


def test_legal_hold_pauses_retention_until_released(world):
    env, svc, client, merchant = world
    held, free = _create(client, merchant, "H-1"), _create(client, merchant, "H-2")
    for shp in (held, free):
        client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers)
    from waybill.permissions import Principal

    officer = Principal(kind="staff", id="po1", role="privacy_officer")
    with unit_of_work(svc.session_factory) as tx:
        hold = lifecycle.place_hold(tx.session, officer, reason="公安机关调证 案号A-1", shipment_ids=[held["id"]])
    run_at = utcnow() + timedelta(days=40)
    result = retention.run(svc, SYSTEM, now=run_at)
    assert result.destroyed == 1
    # The held shipment's key was re-wrapped under a fresh end-day key before the old one was destroyed.
    assert _decrypt_all(svc, held["id"])[0] == SENDER["name"]
    with svc.session_factory() as s:
        assert s.scalar(select(SubjectKey.wrapping_key_id).where(SubjectKey.shipment_id == held["id"])).endswith("-g2")
    with unit_of_work(svc.session_factory) as tx:
        lifecycle.release_hold(tx.session, officer, hold.id)
    assert retention.run(svc, SYSTEM, now=run_at).destroyed == 1
    doc = client.get(f"/v1/shipments/{held['id']}", headers=merchant.headers).get_json()
    assert doc["personal_data"] == "destroyed"


def test_a_party_deletion_destroys_that_party_only_and_rekeys_its_day_at_the_next_run(world):
    env, svc, client, merchant = world
    shp, other = _create(client, merchant, "D-1"), _create(client, merchant, "D-2")
    for s_ in (shp, other):
        client.post(f"/v1/shipments/{s_['id']}/cancel", headers=merchant.headers)
    backup = _snapshot(env.engine)
    with unit_of_work(svc.session_factory) as tx:
        row = tx.session.get(Shipment, shp["id"])
        lifecycle.destroy_party(tx.session, svc.subject_keys, row, "recipient", principal=SYSTEM)
    doc = client.get(f"/v1/shipments/{shp['id']}", headers=merchant.headers).get_json()
    assert doc["personal_data"] == "partially_destroyed" and doc["recipient"] is None and doc["sender"]["name"]
    # Today's end-day key is still in use: destroyed by the first run of a later day, after re-keying D-2.
    tomorrow = utcnow() + timedelta(days=1)
    result = retention.run(svc, SYSTEM, now=tomorrow)
    assert result.destroyed == 0 and result.record_id is not None
    assert f"ed-{day_of(utcnow()):%Y%m%d}-g1" in result.keys_destroyed
    assert _decrypt_all(svc, other["id"])[0] == SENDER["name"]
    _restore(env.engine, backup)
    restored = env.services()
    with restored.session_factory() as s:
        row = s.get(Shipment, shp["id"])
        with pytest.raises(DataDestroyed):
            restored.codec.decrypt(row.recipient_name_ct, table="shipments", column="recipient_name", row_id=row.id)
    restored.engine.dispose()


def test_deletion_is_refused_while_the_parcel_is_under_way(world):
    env, svc, client, merchant = world
    shp = _create(client, merchant, "U-1")
    from waybill.errors import InDelivery

    with unit_of_work(svc.session_factory) as tx, pytest.raises(InDelivery):
        lifecycle.destroy_party(tx.session, svc.subject_keys, tx.session.get(Shipment, shp["id"]), "sender",
                                principal=SYSTEM)


def test_a_run_cut_short_leaves_its_keys_queued_and_the_next_run_destroys_them(world, monkeypatch):
    env, svc, client, merchant = world
    shp = _create(client, merchant, "CRASH-1")
    client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers)
    backup = _snapshot(env.engine)
    run_at = utcnow() + timedelta(days=40)

    def crash(*_a, **_k):
        raise RuntimeError("power cut")

    monkeypatch.setattr(retention, "_retire", crash)
    with pytest.raises(RuntimeError):
        retention.run(svc, SYSTEM, now=run_at)
    monkeypatch.undo()
    with svc.session_factory() as s:  # the rows went, and so did the count in the record of that run
        assert s.get(Shipment, shp["id"]).personal_data_destroyed_at is not None
        (first,) = s.scalars(select(DestructionRecord)).all()
        assert first.shipments == 1
    again = retention.run(svc, SYSTEM, now=run_at)
    assert again.destroyed == 0 and f"ed-{day_of(utcnow()):%Y%m%d}-g1" in again.keys_destroyed
    _restore(env.engine, backup)
    restored = env.services()
    with pytest.raises(DataDestroyed):
        _decrypt_all(restored, shp["id"])
    restored.engine.dispose()


def test_retiring_an_active_period_key_keeps_track_of_the_key_that_now_wraps(world):
    env, svc, client, merchant = world
    active = _create(client, merchant, "AP-1")
    run_at = utcnow() + timedelta(days=svc.settings.active_key_days + 2)
    result = retention.run(svc, SYSTEM, now=run_at)
    old = f"ap-{day_of(utcnow()):%Y%m%d}"
    assert old in result.keys_destroyed and result.rewrapped == 2
    with svc.session_factory() as s:
        rows = s.scalars(select(SubjectKey).where(SubjectKey.shipment_id == active["id"])).all()
        assert {r.wrapping_key_id for r in rows} == {r.created_under for r in rows} == {f"ap-{day_of(run_at):%Y%m%d}"}
    assert _decrypt_all(svc, active["id"])[0] == SENDER["name"]


def test_destruction_de_identifies_what_routing_derived_from_the_district(world):
    env, svc, client, merchant = world
    shp = _create(client, merchant, "DEID-1")
    client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers)
    retention.run(svc, SYSTEM, now=utcnow() + timedelta(days=40))
    with svc.session_factory() as s:
        row = s.get(Shipment, shp["id"])
        assert "-" not in row.sorting_code and row.consolidation is None
        assert row.destination_station is None or "-" not in row.destination_station
        assert row.origin_station is None or "-" not in row.origin_station


def test_a_held_party_cannot_be_deleted(world):
    env, svc, client, merchant = world
    shp = _create(client, merchant, "HELD-DEL")
    client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers)
    from waybill.errors import LegallyHeld
    from waybill.permissions import Principal

    officer = Principal(kind="staff", id="po1", role="privacy_officer")
    with unit_of_work(svc.session_factory) as tx:
        lifecycle.place_hold(tx.session, officer, reason="法院保全", shipment_ids=[shp["id"]])
    with unit_of_work(svc.session_factory) as tx, pytest.raises(LegallyHeld):
        lifecycle.destroy_party(tx.session, svc.subject_keys, tx.session.get(Shipment, shp["id"]), "recipient",
                                principal=SYSTEM)


def test_the_daily_task_runs_the_retention_through_the_outbox(fresh_env):
    # In-process tasks run inside the message's transaction; on SQLite that one holds the write lock, and a run
    # waiting for it there blocked the whole process (30 s busy timeout) and then failed.
    from waybill import outbox, tasks
    from waybill.models import OutboxMessage

    env = fresh_env(retention_days=0)
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    merchant = make_merchant(svc)
    shp = _create(client, merchant, "TASK-1")
    assert client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers).status_code == 200
    with unit_of_work(svc.session_factory) as tx:
        mid = outbox.enqueue(tx.session, tasks.RETENTION_TOPIC, {})
    assert outbox.relay_once(svc.session_factory, tasks.InProcessQueue(svc)) == 1
    with svc.session_factory() as s:
        assert s.get(Shipment, shp["id"]).personal_data_destroyed_at is not None
        message = s.get(OutboxMessage, mid)
        assert message.done_at is not None and message.attempts == 0
    svc.engine.dispose()


def test_regions_are_de_identified_by_the_database_as_deidentified_region_does(world):
    # scrub_rows computes the regions in SQL (one UPDATE a chunk): it must keep exactly what the Python rule keeps.
    env, svc, client, merchant = world
    shp = _create(client, merchant, "REG-1")
    client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers)
    odd = {"province": "广东省", "city": "深圳市", "district": "南山区", "district_code": "440305", "extra": "x"}
    with unit_of_work(svc.session_factory) as tx:
        row = tx.session.get(Shipment, shp["id"])
        before = {"sender": dict(row.sender_region), "recipient": odd}
        row.recipient_region = odd
    assert "district" in before["sender"] and "province_code" in before["sender"]
    retention.run(svc, SYSTEM, now=utcnow() + timedelta(days=40))
    with svc.session_factory() as s:
        row = s.get(Shipment, shp["id"])
        assert row.sender_region == lifecycle.deidentified_region(before["sender"])
        assert row.recipient_region == {"province": "广东省", "city": "深圳市"}


def test_virtual_number_rows_of_due_shipments_go_and_others_stay(world):
    from waybill.virtual_numbers.models import VnBinding, VnBindingEndpoint, VnCall

    env, svc, client, merchant = world
    due, other = _create(client, merchant, "VN-due"), _create(client, merchant, "VN-other")
    client.post(f"/v1/shipments/{due['id']}/cancel", headers=merchant.headers)
    later = utcnow() + timedelta(days=1)
    with unit_of_work(svc.session_factory) as tx:
        for n, shp in enumerate((due, other)):
            bid = f"vnb_test{n}"
            tx.session.add(VnBinding(id=bid, provider="builtin", mode="axb", x_number="17000000000", ref=shp["id"],
                                     a_ct=b"a", b_ct=b"b", expires_at=later))
            tx.session.flush()
            tx.session.add(VnBindingEndpoint(binding_id=bid, endpoint_hash=bytes([n]) * 32, x_number="17000000000",
                                             role="a", expires_at=later))
            tx.session.add(VnCall(call_id=f"call-{n}", binding_id=bid, x_number="17000000000", outcome="routed",
                                  started_at=utcnow()))
    assert retention.run(svc, SYSTEM, now=utcnow() + timedelta(days=40)).destroyed == 1
    with svc.session_factory() as s:
        assert [b.ref for b in s.scalars(select(VnBinding))] == [other["id"]]
        assert [e.binding_id for e in s.scalars(select(VnBindingEndpoint))] == ["vnb_test1"]
        assert [c.call_id for c in s.scalars(select(VnCall))] == ["call-1"]
