"""Benchmark: signing a checkpoint, a full verify against the checkpoints, and an incremental verify.

Seeds ``--base`` audit events over ``--shards`` chains (hashed with the real audit key and written set-based, as
the append would have written them: seeding through one commit per event would take longer than everything
measured here), signs a checkpoint, runs a full ``waybill audit verify`` (every chain against every checkpoint)
and records its confirmation, then seeds ``--since`` more events, signs the next checkpoint and runs
``verify --since-checkpoint``, which walks only the events after the confirmed checkpoint. Prints each time and
the incremental verify against its target (the issue: the last 100,000 events in < 2 s).

    python bench/audit_checkpoints.py [--base 300000] [--since 100000] [--shards 16] [--pg URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from _env import database_url
from sqlalchemy import Table, bindparam, insert, select, update

from waybill import audit, witnesses
from waybill.audit import checkpoints, logcheck
from waybill.audit.chain import GENESIS, chain_hash, shard_of
from waybill.models import AuditEvent, AuditHead, utcnow
from waybill.permissions import SYSTEM
from waybill.services import Services, build, initialise
from waybill.settings import load_settings
from waybill.uow import unit_of_work

TARGET_INCREMENTAL_S = 2.0
_EVENTS, _HEAD = cast(Table, AuditEvent.__table__), cast(Table, AuditHead.__table__)


def seed(svc: Services, n: int, offset: int) -> float:
    """``n`` events of distinct objects appended to their chains; returns the seconds it took."""
    key, shards = svc.keys.secret("audit_chain"), svc.settings.audit_shards
    started = time.perf_counter()
    with svc.engine.begin() as c:
        heads = {int(r[0]): (int(r[1]), bytes(r[2])) for r in c.execute(select(_HEAD.c.id, _HEAD.c.seq, _HEAD.c.hash))}
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for i in range(offset, offset + n):
        ev = audit.PendingEvent(at=now, actor="staff:usr_bench", role="courier", action="shipment.scan",
                                object_type="shipment", object_id=f"shp_{i:012d}", purpose=None,
                                fields=["recipient.phone"], outcome="ok", client_addr="10.0.0.1", request_id=None)
        k = shard_of(ev.object_id, ev.actor, shards)
        seq, prev = heads.get(k, (0, GENESIS))
        seq += 1
        digest = chain_hash(key, prev, seq, ev, k)
        rows.append({"shard": k, "shard_seq": seq, "at": ev.at, "actor": ev.actor, "role": ev.role,
                     "action": ev.action, "object_type": ev.object_type, "object_id": ev.object_id,
                     "purpose": ev.purpose, "fields": ev.fields, "outcome": ev.outcome,
                     "client_addr": ev.client_addr, "request_id": ev.request_id, "prev_hash": prev, "hash": digest})
        heads[k] = (seq, digest)
    with svc.engine.begin() as c:
        for at in range(0, len(rows), 10_000):
            c.execute(insert(_EVENTS), rows[at:at + 10_000])
        existing = {int(r[0]) for r in c.execute(select(_HEAD.c.id))}
        for k, (seq, digest) in heads.items():
            if k in existing:
                c.execute(update(_HEAD).where(_HEAD.c.id == bindparam("k")).values(seq=seq, hash=digest),
                          {"k": k})
            else:
                c.execute(insert(_HEAD).values(id=k, seq=seq, hash=digest))
    return time.perf_counter() - started


def sign(svc: Services) -> tuple[int, float]:
    started = time.perf_counter()
    with unit_of_work(svc.session_factory) as tx:
        row, refused, _ = witnesses.issue(tx, checkpoints.Signer(svc.keys), None, SYSTEM)
        assert row is not None and refused is None
        cp_id = row.id
    return cp_id, time.perf_counter() - started


def verify(svc: Services, since: bool) -> tuple[logcheck.LogVerdict, float]:
    signer = checkpoints.Signer(svc.keys)
    started = time.perf_counter()
    verdict = logcheck.check_log(svc.read_session_factory, svc.keys.secret("audit_chain"), signer.public_key,
                                 since_checkpoint=since)
    elapsed = time.perf_counter() - started
    assert verdict.ok, verdict.as_dict()["first_bad"]
    with unit_of_work(svc.session_factory) as tx:
        logcheck.record_confirmation(tx.session, signer, verdict)
    return verdict, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=300_000)
    parser.add_argument("--since", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--pg", default=None, help="a PostgreSQL URL (a schema of its own is made and dropped)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, database_url(Path(tmp), args.pg) as url:
        settings = load_settings(environ={}, data_dir=Path(tmp), database_url=url, env="test",
                                 audit_shards=args.shards)
        _keys, engine, _ = initialise(settings)
        svc = build(settings, engine=engine)
        backend = engine.dialect.name
        print(f"audit checkpoints on {backend}: {args.shards} shards, {args.base:,} events, then {args.since:,} more")
        seeded = seed(svc, args.base, 0)
        print(f"  seeded {args.base:,} events in {seeded:.1f} s")
        cp, signed = sign(svc)
        print(f"  checkpoint {cp} signed in {signed * 1000:.1f} ms")
        full, full_s = verify(svc, since=False)
        print(f"  full verify: {full.result.events:,} events against {full.checkpoints} checkpoint(s) in "
              f"{full_s:.2f} s ({full.result.events / full_s:,.0f} events/s)")
        started = time.perf_counter()
        plain = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain"))
        plain_s = time.perf_counter() - started
        print(f"  the same walk without checkpoints (audit.verify): {plain.events:,} events in {plain_s:.2f} s "
              f"({plain.events / plain_s:,.0f} events/s): checking against them costs {full_s / plain_s - 1:+.0%}")
        seed(svc, args.since, args.base)
        cp, signed = sign(svc)
        print(f"  checkpoint {cp} signed in {signed * 1000:.1f} ms")
        inc, inc_s = verify(svc, since=True)
        met = "MET" if inc_s < TARGET_INCREMENTAL_S else "NOT MET"
        print(f"  incremental verify from checkpoint {inc.from_checkpoint}: {inc.result.events:,} events in "
              f"{inc_s:.2f} s ({inc.result.events / inc_s:,.0f} events/s)  target < {TARGET_INCREMENTAL_S:.0f} s "
              f"for the last {args.since:,}: {met}")
        engine.dispose()
        if met != "MET":
            sys.exit(1)


if __name__ == "__main__":
    main()
