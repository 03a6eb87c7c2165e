"""Red-team finding, fixed (PostgreSQL): a chain place taken twice, which the partitioned unique constraint allows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.conftest import BACKEND
from tests.waybill.test_audit_checkpoints import check, check_and_confirm, checkpoint, write_events
from waybill import audit
from waybill.models import AuditEvent

pytestmark = pytest.mark.skipif(BACKEND != "postgresql", reason="SQLite keeps UNIQUE (shard, shard_seq)")


def _forge_duplicate(env, place):
    with env.engine.begin() as c:
        row = dict(c.execute(select(AuditEvent).where(AuditEvent.shard == 0, AuditEvent.shard_seq == place))
                   .one()._mapping)
        row.pop("seq")
        row.update(at=row["at"] + timedelta(seconds=1), actor="usr_innocent", action="shipment.decrypt",
                   object_id="shp_victim")
        c.execute(AuditEvent.__table__.insert().values(**row))  # (shard, shard_seq, at) is unique: accepted


def test_duplicate_place_before_a_confirmed_checkpoint_passes_incremental_verify(fresh_env):
    env = fresh_env(audit_shards=1)
    write_events(env, 5, others=0)
    checkpoint(env)
    assert check_and_confirm(env).ok
    _forge_duplicate(env, 2)
    assert not check(env).ok  # a full walk sees it
    assert not check(env, since_checkpoint=True).ok, "incremental verify accepts a forged event at a taken place"


def test_duplicate_place_at_a_batch_boundary_passes_full_verify(fresh_env):
    env = fresh_env(audit_shards=1)
    write_events(env, 6, others=0)
    _forge_duplicate(env, 3)
    svc = env.services()
    results = [audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"), batch=3).ok
               for _ in range(5)]
    assert not any(results), f"full verify (batch=3) accepted a forged duplicate of place 3: {results}"
