"""Red-team finding, fixed: forged audit events that verify does not see."""

from __future__ import annotations

import importlib

import pytest
from sqlalchemy import select

from waybill import audit
from waybill.models import AuditEvent
from waybill.permissions import SYSTEM

# The module (``waybill.audit.verify`` as an attribute is the re-exported function).
_VERIFY = importlib.import_module("waybill.audit.verify")


def _twenty_objects(fresh_env):
    """An installation with 16 chains and one event of each of 20 objects (spread over most chains)."""
    env = fresh_env(audit_shards=16)
    svc = env.services()
    with svc.session_factory() as s:
        for i in range(20):
            audit.record(s, SYSTEM, "test.event", object_type="thing", object_id=f"o{i}")
        s.commit()
    return env, svc


@pytest.fixture
def env(fresh_env):
    return fresh_env(audit_shards=1)


@pytest.mark.parametrize("place", [0, -1])
def test_forged_event_at_place_zero_or_negative_passes_verify(env, place):
    svc = env.services()
    with svc.session_factory() as s:
        for _ in range(3):
            audit.record(s, SYSTEM, "test.event", object_type="thing", object_id="t", fields=["a"])
        s.commit()
    with env.engine.begin() as c:
        row = dict(c.execute(select(AuditEvent).where(AuditEvent.shard_seq == 1)).one()._mapping)
        row.pop("seq")
        row.update(shard_seq=place, action="shipment.decrypt", actor="usr_innocent", object_id="shp_victim")
        c.execute(AuditEvent.__table__.insert().values(**row))
    with svc.session_factory() as s:
        assert s.scalar(select(AuditEvent.action).where(AuditEvent.actor == "usr_innocent")) == "shipment.decrypt"
    r = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"))
    # Expected: not ok (a row outside any chain's places). Actual: ok.
    assert not r.ok, "a forged event at shard_seq <= 0 passes audit verify"


def test_walker_answer_missing_shards_is_accepted(fresh_env, monkeypatch):
    """A walker process that answers fewer shards than it was given (``[]``, exit 0) makes verify ok: its
    answer is never matched against the heads it was handed. (With ``python -m`` from the cwd, a ``waybill/``
    package in the verify's working directory is such a walker, and it reads the DB URL and HMAC key.)"""
    v = _VERIFY
    env, svc = _twenty_objects(fresh_env)
    with env.engine.begin() as c:  # break every chain
        c.execute(AuditEvent.__table__.update().values(outcome="denied"))
    assert not audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), processes=0).ok
    monkeypatch.setattr(v, "_process_url", lambda source: "postgresql://walker")
    monkeypatch.setattr(v, "_walk_in_processes", lambda *a, **k: [])
    r = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), processes=2)
    assert not r.ok, "verify accepts a walker answer that covers none of the shards"
    assert {b["reason"] for b in (x.first_bad for x in r.shards) if b} == {
        "not verified: the walk did not answer for this shard"}


def test_a_failed_walker_process_is_not_a_verdict(fresh_env, monkeypatch):
    """A walker that cannot reach the database (or dies) leaves the log unverified: ``AuditWalkFailed`` (503 over
    HTTP), neither ok nor broken."""
    from tests.private_services import free_port
    from waybill.errors import AuditWalkFailed

    v = _VERIFY
    _env, svc = _twenty_objects(fresh_env)
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    monkeypatch.setattr(v, "_process_url", lambda source: dead)
    with pytest.raises(AuditWalkFailed):
        audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), processes=2)
