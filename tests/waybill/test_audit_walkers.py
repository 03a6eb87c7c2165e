"""Verifying in walker processes (``python -m waybill.audit.walk``) finds exactly what the in-process walk finds.

A big walk (``PROCESS_WALK_MIN`` events) is split over processes; here the split is forced on small logs, with
one chain and with 16, intact, edited, cut short and verified incrementally. Walker processes serve PostgreSQL
only (on SQLite the walk stays in process): on SQLite these tests check the in-process walk alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.waybill.test_audit import first_bad, shard, where, write_events
from waybill import audit
from waybill.audit.verify import _process_url, _utc_iso


@pytest.fixture(params=[1, 16], ids=["one-chain", "16-shards"])
def shards(request):
    return request.param


@pytest.fixture
def env(fresh_env, shards):
    return fresh_env(audit_shards=shards)


def _both(svc, **kwargs):
    key = svc.keys.secret("audit_chain")
    here = audit.verify(svc.read_session_factory, key, processes=0, **kwargs)
    walkers = audit.verify(svc.read_session_factory, key, processes=2, **kwargs)
    # On PostgreSQL the walkers did run in processes.
    assert (_process_url(svc.read_session_factory) is not None) == (svc.engine.dialect.name == "postgresql")
    assert walkers.as_dict() == here.as_dict()
    return walkers


def test_walker_processes_agree_on_an_intact_log(env, shards):
    svc = write_events(env, 7, others=20)
    r = _both(svc)
    assert r.ok and r.events == r.head_seq == 27 and len(r.shards) == len({s.shard for s in r.shards})
    assert sum(s.events for s in r.shards) == 27


def test_walker_processes_name_the_shard_and_first_bad_event(env):
    svc = write_events(env, 6, others=10)
    with env.engine.begin() as c:
        c.exec_driver_sql(f"UPDATE audit_events SET action = 'x' WHERE {where(env, 4)}")
    r = _both(svc)
    assert first_bad(env, r) == {"shard": shard(env), "seq": 4, "reason": "content altered"}
    with env.engine.begin() as c:
        c.exec_driver_sql(f"DELETE FROM audit_events WHERE shard = {shard(env)} AND shard_seq >= 4")
    assert first_bad(env, _both(svc)) == {"shard": shard(env), "seq": 4, "reason": "events missing at the end"}


def test_walker_processes_walk_incrementally_from_given_places(env):
    svc = write_events(env, 8, others=0)
    k = shard(env)
    with env.engine.connect() as c:
        (h,) = c.exec_driver_sql(f"SELECT hash FROM audit_events WHERE {where(env, 5)}").one()
    r = _both(svc, start={k: (5, bytes(h))})
    (mine,) = [s for s in r.shards if s.shard == k]
    assert r.ok and mine.events == 3 and mine.from_seq == 5 and mine.head_seq == 8
    # A wrong known-good hash is a broken link at the first event walked.
    r = _both(svc, start={k: (5, bytes(32))})
    assert first_bad(env, r) == {"shard": k, "seq": 6, "reason": "broken link"}


def test_the_walk_reads_times_as_the_append_hashed_them():
    """The walk reads ``at`` without the model's conversion: any offset, or none (SQLite), is read as UTC."""
    at = datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC)
    shanghai = at.astimezone(timezone(timedelta(hours=8)))
    assert _utc_iso(at) == _utc_iso(shanghai) == _utc_iso(at.replace(tzinfo=None)) == at.isoformat()
