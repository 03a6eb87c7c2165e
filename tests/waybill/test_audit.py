"""The hash-chained audit log: append on commit, durable denials, tamper detection."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update

from waybill import audit
from waybill.models import AuditEvent
from waybill.permissions import SYSTEM
from waybill.uow import write_durable


def write_events(env, n=5):
    svc = env.services()
    with svc.session_factory() as s:
        for i in range(n):
            audit.record(s, SYSTEM, "test.event", object_type="thing", object_id=f"t{i}", fields=["a", "b"])
        s.commit()
    return svc


def verify(env):
    svc = env.services()
    with svc.session_factory() as s:
        return audit.verify(s, svc.keys.secret("audit_chain"))


def test_chain_verifies(fresh_env):
    env = fresh_env()
    write_events(env, 10)
    result = verify(env)
    assert result.ok and result.events == 10 and result.head_seq == 10


def test_rollback_discards_ordinary_events_but_durable_survive(fresh_env):
    env = fresh_env()
    svc = env.services()
    with svc.session_factory() as s:
        audit.record(s, SYSTEM, "plain")
        audit.record(s, None, "auth.failed", outcome="denied", durable=True)
        durable = audit.take_durable(s)
        s.rollback()
    write_durable(svc.session_factory, durable)
    with svc.session_factory() as s:
        actions = s.execute(select(AuditEvent.action)).scalars().all()
    assert actions == ["auth.failed"]
    assert verify(env).ok


def _edit(env, sql, **params):
    with env.engine.begin() as c:
        c.execute(text(sql), params)


def test_edited_event_detected(fresh_env):
    env = fresh_env()
    write_events(env)
    _edit(env, "UPDATE audit_events SET outcome = 'denied' WHERE seq = 3")
    r = verify(env)
    assert not r.ok and r.first_bad["seq"] == 3


def test_deleted_event_detected(fresh_env):
    env = fresh_env()
    write_events(env)
    _edit(env, "DELETE FROM audit_events WHERE seq = 2")
    r = verify(env)
    assert not r.ok and r.first_bad["seq"] == 2


def test_deleted_tail_detected(fresh_env):
    env = fresh_env()
    write_events(env)
    _edit(env, "DELETE FROM audit_events WHERE seq = 5")
    r = verify(env)
    assert not r.ok and r.first_bad["seq"] == 5


def test_inserted_event_detected(fresh_env):
    env = fresh_env()
    write_events(env)
    # Shift events up to make room, then insert a forged one with a plausible hash.
    with env.engine.begin() as c:
        for seq in range(5, 2, -1):
            c.execute(update(AuditEvent).where(AuditEvent.seq == seq).values(seq=seq + 1))
        row = c.execute(select(AuditEvent).where(AuditEvent.seq == 2)).one()
        forged = dict(row._mapping)
        forged.update(seq=3, action="forged")
        c.execute(AuditEvent.__table__.insert().values(**forged))
    r = verify(env)
    assert not r.ok and r.first_bad["seq"] == 3


def test_reordered_events_detected(fresh_env):
    env = fresh_env()
    write_events(env)
    with env.engine.begin() as c:
        c.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(seq=100))
        c.execute(update(AuditEvent).where(AuditEvent.seq == 4).values(seq=2))
        c.execute(update(AuditEvent).where(AuditEvent.seq == 100).values(seq=4))
    r = verify(env)
    assert not r.ok and r.first_bad["seq"] == 2


def test_recomputed_unkeyed_chain_still_detected(fresh_env):
    """An attacker without the audit key cannot re-hash the chain after an edit."""
    import hashlib

    env = fresh_env()
    write_events(env)
    with env.engine.begin() as c:
        c.execute(update(AuditEvent).where(AuditEvent.seq == 1).values(
            outcome="denied", hash=hashlib.sha256(b"forged").digest()))
    assert not verify(env).ok


@pytest.mark.parametrize("n_writers", [4])
def test_concurrent_appends_keep_chain_linear(fresh_env, n_writers):
    import threading

    env = fresh_env()
    svc = env.services()
    errors = []

    def work(k):
        try:
            for i in range(10):
                with svc.session_factory() as s:
                    audit.record(s, SYSTEM, "concurrent", object_id=f"{k}-{i}")
                    s.commit()
        except Exception as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    r = verify(env)
    assert r.ok and r.events == 10 * n_writers
