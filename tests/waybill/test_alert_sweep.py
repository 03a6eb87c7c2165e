"""The alert sweep (``volume_baseline``): reads the audit log incrementally from a stored cursor, counts each
account's personal-data accesses per Asia/Shanghai day, and fires once per account and day when the day is far
above the account's own recent median."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select, update

from tests.conftest import run
from waybill import audit
from waybill.alerts import store, sweep
from waybill.alerts.models import Alert
from waybill.alerts.settings import AlertSettings
from waybill.alerts.sweep_models import AlertSweepCursor, VolumeCount
from waybill.models import AuditEvent, AuditHead, utcnow
from waybill.permissions import Principal

SPIKY = Principal(kind="staff", id="usr_spiky", role="courier", station="755-W012")
STEADY = Principal(kind="staff", id="usr_steady", role="courier", station="755-W012")
SHOP = Principal(kind="merchant", id="mch_steady", role="merchant")
ALERTS = AlertSettings(thresholds={"volume_baseline.min_events": 30, "volume_baseline.factor": 5,
                                   "volume_baseline.days": 14})


def _head(session) -> int:
    """The last position in the whole log (``seq``; the chains' places are per shard)."""
    return int(session.scalar(select(func.max(AuditEvent.seq))) or 0)


def _record(factory, principal, n, *, days_ago=0, fields=("recipient.address",), outcome="ok"):
    """``n`` audit events of ``principal`` (committed through the real append), moved ``days_ago`` days back.
    (Moving ``at`` breaks the chain's hashes: the sweep does not verify the chain, this test does not either.)"""
    with factory() as s:
        before = _head(s)
        for i in range(n):
            audit.record(s, principal, "courier.scan", object_type="shipment", object_id=f"shp_t{i}",
                         fields=list(fields), outcome=outcome, purpose="delivery")
        s.commit()
        if days_ago:
            s.execute(update(AuditEvent).where(AuditEvent.seq > before)
                      .values(at=utcnow() - timedelta(days=days_ago)))
            s.commit()


def _history(factory, principal, per_day, days=10):
    for d in range(1, days + 1):
        _record(factory, principal, per_day, days_ago=d)


def _alerts(session):
    return session.scalars(select(Alert).where(Alert.rule == "volume_baseline")).all()


def test_a_spiky_account_fires_once_and_a_steady_one_never(services):
    factory = services.session_factory
    _history(factory, SPIKY, 10)
    _history(factory, STEADY, 10)
    _history(factory, SHOP, 40)
    _record(factory, STEADY, 12)
    _record(factory, SHOP, 45)  # steady too: above min_events, but near its own median
    # Refusals, misses and events without personal data are not accesses: the steady account stays steady.
    _record(factory, STEADY, 80, outcome="denied")
    _record(factory, STEADY, 80, outcome="not_found")
    _record(factory, STEADY, 80, fields=())
    _record(factory, SPIKY, 60)  # six times its median of 10
    result = sweep.run(factory, ALERTS)
    assert result.enabled and result.fired == 1 and result.seq_from == 0
    assert result.accesses == 10 * (10 + 10 + 40) + 12 + 45 + 60
    with factory() as s:
        (alert,) = _alerts(s)
        today = sweep.shanghai_day(utcnow())
        assert (alert.actor, alert.role, alert.severity, alert.count) == (SPIKY.actor, "courier", "warning", 1)
        assert (alert.object_type, alert.object_id) == ("day", today.isoformat())
        assert alert.detail is not None and "accesses=60" in alert.detail and "median=10" in alert.detail
        counts = dict(s.execute(select(VolumeCount.actor, VolumeCount.accesses)
                                .where(VolumeCount.day == today)).all())
        assert counts == {SPIKY.actor: 60, STEADY.actor: 12, SHOP.actor: 45}
    # More of the same day: the day has had its alert; another sweep neither fires nor counts it again.
    _record(factory, SPIKY, 40)
    again = sweep.run(factory, ALERTS)
    assert again.fired == 0 and again.accesses == 40
    with factory() as s:
        (alert,) = _alerts(s)
        assert alert.count == 1
        assert s.scalar(select(func.count()).select_from(AuditEvent)
                        .where(AuditEvent.action == "alert.volume_baseline")) == 1


def test_no_history_means_min_events_alone_decides(services):
    factory = services.session_factory
    newcomer = Principal(kind="staff", id="usr_new", role="courier")
    _record(factory, STEADY, 1, days_ago=3)  # the log began three days ago; the newcomer has no day in it
    _record(factory, newcomer, 29)
    assert sweep.run(factory, ALERTS).fired == 0
    _record(factory, newcomer, 1)  # the 30th access of the day, swept in a later run: it fires then
    assert sweep.run(factory, ALERTS).fired == 1


def test_the_first_day_the_log_holds_raises_no_history_alerts(services):
    """Sweeping a log for the first time: on its first day nobody has history, which says nothing."""
    factory = services.session_factory
    _record(factory, SPIKY, 100, days_ago=2)
    _record(factory, SPIKY, 20, days_ago=1)
    assert sweep.run(factory, ALERTS).fired == 0


def test_a_second_sweep_reads_only_the_new_events(services):
    factory = services.session_factory
    _record(factory, STEADY, 5)
    first = sweep.run(factory, ALERTS)
    with factory() as s:
        # Caught up: the cursors together stand at every chain's head (places, not log positions: a sequence
        # on PostgreSQL leaves gaps).
        assert first.seq_to == int(s.scalar(select(func.sum(AuditHead.seq)))) and first.accesses >= 5
    _record(factory, STEADY, 3)
    second = sweep.run(factory, ALERTS)
    assert (second.seq_from, second.accesses) == (first.seq_to, 3)
    assert second.seq_to - second.seq_from == 3
    nothing = sweep.run(factory, ALERTS)
    assert (nothing.seq_from, nothing.seq_to, nothing.accesses, nothing.chunks) == (second.seq_to,) * 2 + (0, 1)


def test_small_chunks_count_the_same_as_one(services):
    factory = services.session_factory
    _history(factory, SPIKY, 10, days=5)
    _record(factory, SPIKY, 70)
    result = sweep.run(factory, ALERTS, limit=7)
    assert result.chunks > 10 and result.fired == 1 and result.accesses == 5 * 10 + 70
    with factory() as s:
        today = sweep.shanghai_day(utcnow())
        assert s.scalar(select(VolumeCount.accesses).where(VolumeCount.actor == SPIKY.actor,
                                                           VolumeCount.day == today)) == 70


def test_the_cursor_survives_a_restart(fresh_env):
    env = fresh_env()
    first_svc = env.services()
    _record(first_svc.session_factory, STEADY, 4)
    first = sweep.run(first_svc.session_factory, ALERTS)
    first_svc.engine.dispose()
    restarted = env.services()  # a new process's services: nothing in memory, the cursor is in the database
    with restarted.session_factory() as s:
        # One cursor per shard; together they are where the sweep stopped.
        assert s.scalar(select(func.sum(AlertSweepCursor.last_seq))) == first.seq_to == 4
    _record(restarted.session_factory, STEADY, 2)
    second = sweep.run(restarted.session_factory, ALERTS)
    assert (second.seq_from, second.accesses) == (first.seq_to, 2)


def test_disabled_alerts_sweep_nothing(services):
    _record(services.session_factory, SPIKY, 100)
    off = AlertSettings(thresholds=ALERTS.thresholds, enabled=False)
    assert sweep.run(services.session_factory, off).as_json()["enabled"] is False
    with services.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(AlertSweepCursor)) == 0


def test_the_sweep_is_a_periodic_job_with_its_handler(services):
    from waybill import tasks

    jobs = {j.topic: j for j in tasks.jobs()}
    assert jobs[sweep.TOPIC].every_s == sweep.EVERY_S
    assert sweep.TOPIC in tasks.handlers(services)


def test_the_cli_sweeps_once_and_prints_a_summary(cli_env):
    run(["init"], cli_env)
    first = json.loads(run(["alerts", "sweep"], cli_env).stdout)
    assert first["enabled"] is True and first["seq_from"] == 0 and first["fired"] == 0
    second = json.loads(run(["alerts", "sweep"], cli_env).stdout)
    assert second["seq_from"] == first["seq_to"]  # the cursor outlived the first process
    assert set(second) >= {"events_read", "accesses", "account_days", "fired", "seconds"}


def test_many_alerts_on_one_connection(services):
    """More than five upserts on one connection (psycopg prepares a statement on its sixth run): each lands."""
    with services.session_factory() as s:
        for i in range(12):
            store.fire(s, SPIKY, "pickup_code_failures", object_type="shipment", object_id=f"shp_many{i}")
            s.commit()
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.rule == "pickup_code_failures")) == 12
