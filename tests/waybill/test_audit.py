"""The hash-chained audit log: append on commit, durable denials, tamper detection, per shard.

The tamper tests run twice: with one chain (``WAYBILL_AUDIT_SHARDS=1``, the layout of before shards) and with
16, tampering with one shard's chain (``shard``, ``shard_seq``) while the other shards hold events too.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update

from waybill import audit
from waybill.audit.chain import shard_of
from waybill.models import AuditEvent
from waybill.permissions import SYSTEM
from waybill.uow import write_durable

OBJECT = "thing-7"  # the object whose chain the tamper tests edit


@pytest.fixture(params=[1, 16], ids=["one-chain", "16-shards"])
def shards(request):
    return request.param


@pytest.fixture
def env(fresh_env, shards):
    return fresh_env(audit_shards=shards)


def shard(env):
    return shard_of(OBJECT, SYSTEM.actor, env.settings.audit_shards)


def write_events(env, n=5, *, others=3):
    """``n`` events of OBJECT (one chain) and ``others`` events of other objects (other chains, mostly)."""
    svc = env.services()
    with svc.session_factory() as s:
        for i in range(n):
            audit.record(s, SYSTEM, "test.event", object_type="thing", object_id=OBJECT, fields=["a", f"f{i}"])
        for i in range(others):
            audit.record(s, SYSTEM, "test.other", object_type="thing", object_id=f"other-{i}")
        s.commit()
    return svc


def where(env, place):
    return f"shard = {shard(env)} AND shard_seq = {place}"


def verify(env):
    svc = env.services()
    with svc.session_factory() as s:
        return audit.verify(s, svc.keys.secret("audit_chain"))


def _in_threads(n, work):
    """Run ``work(k)`` for k < n in n threads at once; the exceptions they raised."""
    import threading

    errors = []

    def guarded(k):
        try:
            work(k)
        except Exception as exc:  # pragma: no cover - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def first_bad(env, r):
    assert not r.ok and r.first_bad["shard"] == shard(env)
    return r.first_bad


def test_chain_verifies(env, shards):
    write_events(env, 10, others=20)
    result = verify(env)
    assert result.ok and result.events == 30 and result.head_seq == 30
    used = {r.shard for r in result.shards if r.events}
    assert len(used) == (1 if shards == 1 else len(used)) and (shards == 1 or len(used) > 5)
    with env.services().session_factory() as s:
        trail = s.scalars(select(AuditEvent.shard).where(AuditEvent.object_id == OBJECT)).all()
    assert set(trail) == {shard(env)}  # one object's trail stays in one chain


def test_rollback_discards_ordinary_events_but_durable_survive(env):
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


def test_edited_event_detected(env):
    write_events(env)
    _edit(env, f"UPDATE audit_events SET outcome = 'denied' WHERE {where(env, 3)}")
    assert first_bad(env, verify(env))["seq"] == 3


def test_deleted_event_detected(env):
    write_events(env)
    _edit(env, f"DELETE FROM audit_events WHERE {where(env, 2)}")
    assert first_bad(env, verify(env))["seq"] == 2


def test_deleted_tail_detected(env):
    write_events(env)
    _edit(env, f"DELETE FROM audit_events WHERE {where(env, 5)}")
    assert first_bad(env, verify(env))["seq"] == 5


def test_inserted_event_detected(env):
    write_events(env)
    # Shift events up to make room, then insert a forged one with a plausible hash.
    k = shard(env)
    with env.engine.begin() as c:
        for place in range(20, 2, -1):  # from the top, so no place is taken twice
            c.execute(update(AuditEvent).where(AuditEvent.shard == k, AuditEvent.shard_seq == place)
                      .values(shard_seq=place + 1))
        row = c.execute(select(AuditEvent).where(AuditEvent.shard == k, AuditEvent.shard_seq == 2)).one()
        forged = dict(row._mapping)
        forged.pop("seq")
        forged.update(shard_seq=3, action="forged")
        c.execute(AuditEvent.__table__.insert().values(**forged))
    assert first_bad(env, verify(env))["seq"] == 3


def test_reordered_events_detected(env):
    write_events(env)
    k = shard(env)
    with env.engine.begin() as c:
        for a, b in ((2, 100), (4, 2), (100, 4)):
            c.execute(update(AuditEvent).where(AuditEvent.shard == k, AuditEvent.shard_seq == a).values(shard_seq=b))
    assert first_bad(env, verify(env))["seq"] == 2


def test_recomputed_unkeyed_chain_still_detected(fresh_env):
    """An attacker without the audit key cannot re-hash the chain after an edit."""
    import hashlib

    env = fresh_env()
    write_events(env)
    with env.engine.begin() as c:
        c.execute(update(AuditEvent).where(AuditEvent.shard == shard(env), AuditEvent.shard_seq == 1).values(
            outcome="denied", hash=hashlib.sha256(b"forged").digest()))
    assert first_bad(env, verify(env))["seq"] == 1


def test_an_event_moved_to_another_chain_is_caught(env, shards):
    """A shard's events carry their shard in the hash: relabelling one as another chain's does not verify."""
    if shards == 1:
        pytest.skip("one chain: nowhere to move an event to")
    write_events(env)
    k = shard(env)
    other = (k + 1) % shards
    with env.engine.begin() as c:
        c.execute(update(AuditEvent).where(AuditEvent.shard == other).values(shard_seq=AuditEvent.shard_seq + 1000))
        c.execute(update(AuditEvent).where(AuditEvent.shard == k, AuditEvent.shard_seq == 5).values(shard=other))
    r = verify(env)
    assert not r.ok and {b.shard for b in r.shards if not b.ok} >= {k}


def test_a_truncated_and_rewound_chain_verifies_without_a_checkpoint(env):
    """The limit of a hash chain alone: deleting a chain's tail and moving its head back to the new last event is
    consistent. What catches it is a signed checkpoint of the heads (tests/waybill/test_audit_checkpoints.py)."""
    write_events(env)
    k = shard(env)
    with env.engine.begin() as c:
        c.execute(text(f"DELETE FROM audit_events WHERE shard = {k} AND shard_seq > 3"))
        tip = c.execute(text(f"SELECT hash FROM audit_events WHERE {where(env, 3)}")).scalar_one()
        c.execute(text("UPDATE audit_head SET seq = 3, hash = :h WHERE id = :k"), {"h": tip, "k": k})
    assert verify(env).ok


def test_appends_on_several_shards_in_one_transaction_and_in_threads(env, shards):
    """Heads are locked in shard order: concurrent transactions each touching many shards neither deadlock nor
    break a chain."""
    svc = env.services()

    def work(k):
        for i in range(5):
            with svc.session_factory() as s:
                for j in range(6):
                    audit.record(s, SYSTEM, "multi", object_id=f"o{(k * 7 + i + j) % 23}")
                s.commit()

    assert _in_threads(4, work) == []
    r = verify(env)
    assert r.ok and r.events == 4 * 5 * 6


@pytest.mark.parametrize("n_writers", [4])
def test_concurrent_appends_keep_chain_linear(env, n_writers):
    svc = env.services()

    def work(k):
        for i in range(10):
            with svc.session_factory() as s:
                audit.record(s, SYSTEM, "concurrent", object_id=f"{k}-{i}")
                s.commit()

    assert _in_threads(n_writers, work) == []
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


def test_a_write_committed_between_two_chunks_neither_waits_nor_fails_verify(env):
    """Before: on SQLite verify held the write lock for the whole walk (the writer here gave up: "database is
    locked"); on PostgreSQL the event committed meanwhile made verify report "events missing at the end"."""
    svc = write_events(env, 10, others=0)
    engine, writer = _writer(env)
    seen: list[int] = []

    def between(last_seq):
        seen.append(last_seq)
        _audited_write(writer, last_seq)  # commits while the walk is half-way

    result = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), batch=3, after_chunk=between,
                          workers=1)
    assert seen[:4] == [3, 6, 9, 10]
    assert result.ok and result.events == 10 and result.head_seq == 10 and result.first_bad is None
    after = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), batch=3)
    assert after.ok and after.events == after.head_seq == 14
    engine.dispose()


def test_tampering_during_the_walk_is_still_caught(env):
    svc = write_events(env, 10, others=0)

    def tamper(last_seq):
        if last_seq == 3:  # a chunk not read yet
            _edit(env, f"UPDATE audit_events SET outcome = 'denied' WHERE {where(env, 8)}")

    r = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), batch=3, after_chunk=tamper)
    assert not r.ok and r.first_bad == {"shard": shard(env), "seq": 8, "reason": "content altered"}


@pytest.mark.parametrize("batch", [1, 4, 2000])
def test_chunking_still_catches_a_deleted_event_and_a_deleted_tail(env, batch):
    svc = write_events(env, 9)
    _edit(env, f"DELETE FROM audit_events WHERE {where(env, 4)}")
    r = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), batch=batch)
    assert first_bad(env, r)["seq"] == 4 and r.first_bad["reason"] == "missing events before this one"
    _edit(env, f"DELETE FROM audit_events WHERE shard = {shard(env)} AND shard_seq >= 4")
    r = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), batch=batch)
    assert first_bad(env, r) == {"shard": shard(env), "seq": 4, "reason": "events missing at the end"}


def test_an_event_forged_behind_the_head_is_caught(env):
    """Walking only up to the head must not let a row appended without moving the head pass unseen."""
    svc = write_events(env, 5, others=0)
    k = shard(env)
    with env.engine.begin() as c:
        row = dict(c.execute(select(AuditEvent).where(AuditEvent.shard == k, AuditEvent.shard_seq == 5)).one()._mapping)
        row.pop("seq")
        row.update(shard_seq=6, action="forged", prev_hash=row["hash"])
        c.execute(AuditEvent.__table__.insert().values(**row))
    r = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"))
    assert first_bad(env, r) == {"shard": k, "seq": 6, "reason": "events after the head"}


def test_events_of_a_chain_without_a_head_are_caught(env):
    """A whole chain forged beside the others (rows of a shard that has no head row) does not pass unseen."""
    svc = write_events(env, 3)
    with env.engine.begin() as c:
        row = dict(c.execute(select(AuditEvent).limit(1)).one()._mapping)
        row.pop("seq")
        row.update(shard=200, shard_seq=1)
        c.execute(AuditEvent.__table__.insert().values(**row))
    r = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"))
    assert not r.ok and r.first_bad == {"shard": 200, "seq": 1, "reason": "events of a shard without a head"}
