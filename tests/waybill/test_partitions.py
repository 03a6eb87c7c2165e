"""Month partitions of the big tables (PostgreSQL) and retention dropping whole months of tracking history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from tests.conftest import BACKEND, make_merchant, shipment_body
from waybill import audit, db, partitions, retention, tasks
from waybill.ids import new_id
from waybill.models import AuditEvent, TrackingEvent, utcnow
from waybill.permissions import SYSTEM
from waybill.uow import unit_of_work
from waybill.web.app import create_app

PG = BACKEND == "postgresql"
pg_only = pytest.mark.skipif(not PG, reason="partitioning is PostgreSQL's")


def _create(client: Any, merchant: Any, order: str) -> str:
    r = client.post("/v1/shipments", json=shipment_body(order), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    return str(r.get_json()["id"])


def _names(engine: Any, table: str) -> list[str]:
    with engine.connect() as conn:
        return [p.name for p in partitions.partitions(conn, table)]


def test_month_arithmetic() -> None:
    start = partitions.month_start(datetime(2026, 12, 31, 23, 0, tzinfo=UTC))
    assert start == datetime(2026, 12, 1, tzinfo=UTC)
    assert partitions.add_months(start, 1) == datetime(2027, 1, 1, tzinfo=UTC)
    assert partitions.add_months(start, -12) == datetime(2025, 12, 1, tzinfo=UTC)
    assert partitions.month_name("audit_events", start) == "audit_events_p2026_12"
    assert db.is_partition("audit_events_p2026_12", db.model_metadata())


@pytest.mark.skipif(PG, reason="SQLite keeps plain tables")
def test_sqlite_tables_stay_plain_and_nothing_is_made(fresh_env: Any) -> None:
    env = fresh_env()
    with env.engine.begin() as conn:
        assert partitions.partitioned_tables(conn) == set()
        assert partitions.ensure(conn, utcnow()) == []
        assert partitions.drop_tracking(conn, utcnow() + timedelta(days=9999)) == []


@pytest.mark.skipif(PG, reason="SQLite keeps plain tables")
def test_sqlite_retention_keeps_tracking_history(fresh_env: Any) -> None:
    env = fresh_env(retention_days=0)
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    merchant = make_merchant(svc)
    sid = _create(client, merchant, "P-1")
    assert client.post(f"/v1/shipments/{sid}/cancel", headers=merchant.headers).status_code == 200
    result = retention.run(svc, SYSTEM, now=utcnow() + timedelta(days=400))
    assert result.destroyed == 1 and result.partitions_dropped == []
    with svc.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(TrackingEvent).where(TrackingEvent.shipment_id == sid)) == 2


@pg_only
def test_migration_partitions_both_tables_months_ahead_and_a_default(fresh_env: Any) -> None:
    env = fresh_env()
    now = utcnow()
    months = [partitions.month_name("audit_events", partitions.add_months(partitions.month_start(now), i))
              for i in range(partitions.MONTHS_AHEAD + 1)]
    names = _names(env.engine, "audit_events")
    assert names[-1] == "audit_events_pdefault" and set(months) <= set(names)
    assert "tracking_events_pdefault" in _names(env.engine, "tracking_events")
    with env.engine.connect() as conn:
        owner = conn.execute(text("SELECT d.refobjid = 'audit_events'::regclass FROM pg_depend d "
                                  "WHERE d.objid = 'audit_event_seq'::regclass AND d.deptype = 'a'"))
        assert owner.scalar() is True  # dropping the table would drop the sequence with it, as before
    assert db.check_schema(env.engine).differences == ()


@pg_only
def test_rows_in_the_default_partition_move_into_their_month_when_it_is_made(fresh_env: Any) -> None:
    env = fresh_env()
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    sid = _create(client, make_merchant(svc), "P-far")
    far = datetime(2040, 3, 15, tzinfo=UTC)
    with unit_of_work(svc.session_factory) as tx:
        tx.session.add(TrackingEvent(id=new_id("trk"), shipment_id=sid, seq=99, kind="scan", status="created",
                                     event="arrival", station="X", at=far))
    with env.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tracking_events_pdefault")).scalar() == 1
    with env.engine.begin() as conn:
        made = partitions.ensure(conn, far, months_ahead=0)
    assert made == ["audit_events_p2040_03", "tracking_events_p2040_03"]
    with env.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tracking_events_pdefault")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM tracking_events_p2040_03")).scalar() == 1
    with env.engine.begin() as conn:
        assert partitions.ensure(conn, far, months_ahead=0) == []  # made once
    with svc.session_factory() as s:
        assert [e.seq for e in s.scalars(select(TrackingEvent).where(TrackingEvent.shipment_id == sid))
                .all()][-1] == 99


@pg_only
def test_the_daily_job_and_the_cli_make_partitions(fresh_env: Any) -> None:
    env = fresh_env()
    last = partitions.add_months(partitions.month_start(utcnow()), partitions.MONTHS_AHEAD)
    with env.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {partitions.month_name('audit_events', last)}"))
    assert tasks.PARTITIONS_TOPIC in {j.topic for j in tasks.jobs()}
    handler = tasks.handlers(env.services())[tasks.PARTITIONS_TOPIC]
    with unit_of_work(env.services().session_factory) as tx:
        handler(tx, {})
    assert db.check_schema(env.engine).differences == ()
    assert len(_names(env.engine, "audit_events")) == partitions.MONTHS_AHEAD + 2


@pg_only
def test_a_drift_of_a_partitioned_table_is_still_reported(fresh_env: Any) -> None:
    env = fresh_env()
    with env.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_audit_events_actor_seq"))
        conn.execute(text("ALTER TABLE tracking_events DROP CONSTRAINT uq_tracking_events_shipment_id_seq"))
        conn.execute(text("ALTER TABLE tracking_events ADD CONSTRAINT uq_tracking_events_shipment_id_seq "
                          "UNIQUE (shipment_id, at)"))
    found = {(d["op"], d.get("name")) for d in db.schema_report(env.engine).differences}
    assert ("add_index", "ix_audit_events_actor_seq") in found
    assert ("add_constraint", "uq_tracking_events_shipment_id_seq") in found


def test_down_and_up_keep_every_row_and_the_chain(fresh_env: Any) -> None:
    """Migration 0030 both ways on a log with events: same rows, the chains verify, new events follow on."""
    env = fresh_env()
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    merchant = make_merchant(svc)
    for i in range(3):
        _create(client, merchant, f"P-{i}")

    def rows() -> list[tuple[int, int, int]]:
        with env.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT seq, shard, shard_seq FROM audit_events ORDER BY seq"))]

    before = rows()
    with env.engine.connect() as conn:
        tracking = conn.execute(text("SELECT count(*) FROM tracking_events")).scalar()
    from alembic import command

    command.downgrade(db.alembic_config(env.engine), "0028")
    assert rows() == before
    db.upgrade(env.engine)
    assert rows() == before and db.check_schema(env.engine).differences == ()
    with env.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tracking_events")).scalar() == tracking
    _create(client, merchant, "P-after")
    assert rows()[-1][0] > before[-1][0]
    assert audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain")).ok


@pg_only
def test_retention_drops_a_month_of_tracking_only_when_all_of_it_is_de_identified(fresh_env: Any) -> None:
    env = fresh_env(retention_days=30)
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    merchant = make_merchant(svc)
    done = [_create(client, merchant, f"P-{i}") for i in range(2)]
    active = _create(client, merchant, "P-active")
    for sid in done:
        assert client.post(f"/v1/shipments/{sid}/cancel", headers=merchant.headers).status_code == 200
    month = partitions.month_name("tracking_events", partitions.month_start(utcnow()))

    first = retention.run(svc, SYSTEM, now=utcnow() + timedelta(days=100))
    assert first.destroyed == 2 and month not in [d.name for d in first.partitions_dropped]  # "active" is live
    assert month in _names(env.engine, "tracking_events")

    assert client.post(f"/v1/shipments/{active}/cancel", headers=merchant.headers).status_code == 200
    second = retention.run(svc, SYSTEM, now=utcnow() + timedelta(days=200))
    dropped = {d.name: d.rows for d in second.partitions_dropped}
    assert second.destroyed == 1 and dropped[month] == 6  # created + cancelled, three shipments
    assert month not in _names(env.engine, "tracking_events")
    assert "tracking_events_pdefault" in _names(env.engine, "tracking_events")  # never dropped
    with svc.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(TrackingEvent)) == 0
        logged = s.execute(select(AuditEvent.object_id, AuditEvent.purpose)
                           .where(AuditEvent.action == "retention.partition_drop")).all()
    assert (month, "rows=6") in [tuple(r) for r in logged]
    # Audit partitions stay, whatever their age: the chains still verify from their first event.
    assert "audit_events_p" + month[len("tracking_events_p"):] in _names(env.engine, "audit_events")
    assert audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain")).ok
