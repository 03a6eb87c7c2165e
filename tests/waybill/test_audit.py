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


# --- verify reads in short transactions, up to the head it read first (issue 11, items 8 and 19) -------------


def _writer(env):
    """A second process's sessions: audited, and on SQLite quick to give up on a held write lock (0.2 s, not 30 s),
    so a verify that held the lock fails the test at once instead of after the busy timeout."""
    from sqlalchemy import event

    from waybill import db

    engine = db.make_engine(env.settings.database_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", lambda dbapi_conn, _rec: dbapi_conn.execute("PRAGMA busy_timeout=200"))
    factory = db.make_session_factory(engine)
    audit.install(factory, env.services().keys.secret("audit_chain"))
    return engine, factory


def _audited_write(factory, n):
    with factory() as s:
        audit.record(s, SYSTEM, "test.during_verify", object_id=f"w{n}")
        s.commit()


def test_a_write_committed_between_two_chunks_neither_waits_nor_fails_verify(fresh_env):
    """Before: on SQLite verify held the write lock for the whole walk (the writer here gave up: "database is
    locked"); on PostgreSQL the event committed meanwhile made verify report "events missing at the end"."""
    env = fresh_env()
    svc = write_events(env, 10)
    engine, writer = _writer(env)
    seen: list[int] = []

    def between(last_seq):
        seen.append(last_seq)
        _audited_write(writer, last_seq)  # commits while the walk is half-way

    result = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), batch=3, after_chunk=between)
    assert seen == [3, 6, 9, 10]
    assert result.as_dict() == {"ok": True, "events": 10, "head_seq": 10, "first_bad": None}
    after = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), batch=3)
    assert after.ok and after.events == after.head_seq == 14
    engine.dispose()


def test_tampering_during_the_walk_is_still_caught(fresh_env):
    env = fresh_env()
    svc = write_events(env, 10)

    def tamper(last_seq):
        if last_seq == 3:  # a chunk not read yet
            _edit(env, "UPDATE audit_events SET outcome = 'denied' WHERE seq = 8")

    r = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), batch=3, after_chunk=tamper)
    assert not r.ok and r.first_bad == {"seq": 8, "reason": "content altered"}


@pytest.mark.parametrize("batch", [1, 4, 2000])
def test_chunking_still_catches_a_deleted_event_and_a_deleted_tail(fresh_env, batch):
    env = fresh_env()
    svc = write_events(env, 9)
    _edit(env, "DELETE FROM audit_events WHERE seq = 4")
    r = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), batch=batch)
    assert not r.ok and r.first_bad["seq"] == 4 and r.first_bad["reason"] == "missing events before this one"
    _edit(env, "DELETE FROM audit_events WHERE seq >= 4")
    r = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), batch=batch)
    assert not r.ok and r.first_bad == {"seq": 4, "reason": "events missing at the end"}


def test_an_event_forged_behind_the_head_is_caught(fresh_env):
    """Walking only up to the head must not let a row appended without moving the head pass unseen."""
    env = fresh_env()
    svc = write_events(env, 5)
    with env.engine.begin() as c:
        row = dict(c.execute(select(AuditEvent).where(AuditEvent.seq == 5)).one()._mapping)
        row.update(seq=6, action="forged", prev_hash=row["hash"])
        c.execute(AuditEvent.__table__.insert().values(**row))
    r = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"))
    assert not r.ok and r.first_bad == {"seq": 6, "reason": "events after the head"}
