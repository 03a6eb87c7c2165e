"""Benchmark: audit appends per second with 1 and 16 shards, and verifying 1,000,000 events, on PostgreSQL.

Two measurements, each printed with MET / NOT MET beside its target (issue 15):

1. **Appends per second** with 1, 2, 4, 8 concurrent writers, for ``WAYBILL_AUDIT_SHARDS=1`` and ``=16``
   (target: 16 shards at 8 writers >= 1.5x one shard at 8 writers, with lock waits near zero). Each writer is a
   PROCESS of its own (not a thread: this machine has 2 cores and a thread would share one GIL with the others),
   with its own engine and a session factory carrying the real append hook (``waybill.audit.install``); it
   commits one transaction per event, an ``audit.record`` of one shipment (random ids, so spread over the
   shards as real objects are). Writers start together and count the appends committed in ``--seconds``.
   Lock-wait time per append is measured two ways:
   - *head UPDATE*: the wall time of the statement that locks the shard's head row (``UPDATE audit_head ...
     RETURNING``, timed around the cursor execution in each writer), per append. It includes one round trip, so
     it is never 0: compare it with the 1-writer figure, where nobody waits;
   - *sampled*: a sampler polls ``pg_stat_activity`` every ``--sample-ms`` ms for the writers' backends waiting
     on a lock (``wait_event_type = 'Lock'``); waiting-backend-seconds / appends. This is the lock wait alone.
   "Near zero" is read as: the sampled lock wait per append at 16 shards and 8 writers is under 10% of one
   shard's at 8 writers. After each run the log is verified (it must be intact and hold exactly the appends).
2. **Verify**: ``--events`` (default 1,000,000) events over 16 shards are loaded with COPY, with hashes
   chained by ``waybill.audit.chain.chain_hash`` (two loader processes, one COPY each), so they verify;
   ``VACUUM ANALYZE``; then a full ``audit.verify`` over the services' read sessions, as ``waybill audit
   verify`` runs it (target < 15 s), and an incremental verify of the last ``--tail`` (100,000) events, from
   each shard's place ``tail / 16`` events before its head (target < 2 s). Both must report the log intact and
   the number of events walked. Beside each time, the CPU seconds of the verifying process and its walker
   processes (``getrusage``), not counting PostgreSQL's: on a shared machine the wall time also holds waits
   for a core.

    python bench/audit.py [--pg URL] [--seconds 4] [--writers 1,2,4,8] [--events 1000000] [--tail 100000]
                          [--skip-append] [--skip-verify]

PostgreSQL: ``--pg``, else ``WAYBILL_BENCH_DATABASE_URL``, else ``postgresql+psycopg://postgres@127.0.0.1:5432/test``;
each part runs in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _env import database_url
from sqlalchemy import event, text

from waybill import audit, db
from waybill.audit import PendingEvent
from waybill.audit.chain import GENESIS, chain_hash, shard_of
from waybill.services import build, initialise
from waybill.settings import load_settings

DEFAULT_PG = os.environ.get("WAYBILL_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
APP_NAME = "wbbench_audit"
SHARDED = 16
FIELDS = [["recipient.name", "recipient.phone"], ["recipient.address"], []]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def _with_app_name(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={APP_NAME}"


# -- 1. appends ---------------------------------------------------------------------------------------------------

def writer(url: str, key: bytes, shards: int, seed: int, ready: Any, go: Any, seconds: float, out: Any) -> None:
    """One writer process: appends one event per transaction for ``seconds`` after ``go``; puts
    (appends, seconds in the head-row UPDATE) on ``out``."""
    engine = db.make_engine(_with_app_name(url), pool_size=1, max_overflow=0)
    factory = db.make_session_factory(engine)
    audit.install(factory, key, shards=shards)
    rng = random.Random(seed)
    in_update = [0.0, 0.0]  # total, start of the current one

    @event.listens_for(engine, "before_cursor_execute")
    def _before(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if statement.startswith("UPDATE audit_head"):
            in_update[1] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if statement.startswith("UPDATE audit_head"):
            in_update[0] += time.perf_counter() - in_update[1]

    def append() -> None:
        with factory() as s:
            audit.record(s, None, "shipment.read", object_type="shipment",
                         object_id=f"shp_{rng.getrandbits(96):024x}", fields=["recipient.phone"], purpose="delivery")
            s.commit()

    for _ in range(30):  # warm up: connection, statement caches
        append()
    ready.put(os.getpid())
    go.wait()
    in_update[0], n = 0.0, 0
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        append()
        n += 1
    out.put((n, in_update[0]))
    engine.dispose()


def sample_lock_waits(url: str, stop: threading.Event, interval: float, acc: list[float]) -> None:
    """Sum, over samples, of writer backends waiting on a lock times the interval (waiting-backend-seconds)."""
    engine = db.make_engine(url, pool_size=1, max_overflow=0)
    q = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a AND wait_event_type = 'Lock'")
    with engine.connect() as c:
        c.execution_options(isolation_level="AUTOCOMMIT")
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(interval)
            waiting = int(c.execute(q, {"a": APP_NAME}).scalar_one())
            now = time.perf_counter()
            acc[0] += waiting * (now - last)
            acc[1] += 1
            last = now
    engine.dispose()


@dataclass
class AppendRun:
    shards: int
    writers: int
    appends: int
    seconds: float
    update_s: float
    waited_s: float

    @property
    def rate(self) -> float:
        return self.appends / self.seconds


def run_appends(url: str, svc: Any, key: bytes, shards: int, writers: int, seconds: float,
                sample_s: float) -> AppendRun:
    with svc.engine.begin() as c:
        c.execute(text("TRUNCATE audit_events"))
        c.execute(text("DELETE FROM audit_head"))
        c.execute(text("INSERT INTO audit_head (id, seq, hash) SELECT g, 0, :h FROM generate_series(0, :n - 1) g"),
                  {"h": GENESIS, "n": shards})
    ctx = mp.get_context("spawn")  # fresh processes: nothing of this one's connections or threads
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=writer, args=(url, key, shards, 1000 * shards + w, ready, go, seconds, out))
             for w in range(writers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    stop, acc = threading.Event(), [0.0, 0.0]
    sampler = threading.Thread(target=sample_lock_waits, args=(url, stop, sample_s, acc), daemon=True)
    sampler.start()
    time.sleep(0.2)
    go.set()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    stop.set()
    sampler.join()
    for p in procs:
        p.join()
    run = AppendRun(shards, writers, sum(r[0] for r in results), seconds, sum(r[1] for r in results), acc[0])
    checked = audit.verify(svc.read_session_factory, key)
    expected = run.appends + 30 * writers
    if not checked.ok or checked.events != expected:
        raise SystemExit(f"log not intact after the run: {checked.as_dict()['first_bad']}, "
                         f"{checked.events} events, {expected} appended")
    return run


def appends_part(args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wbaudit-") as tmp_raw, database_url(Path(tmp_raw), args.pg) as url:
        settings = load_settings(environ={}, data_dir=Path(tmp_raw), database_url=url, log_level="WARNING")
        _keys, engine, _ = initialise(settings)
        svc = build(settings, engine=engine)
        key = svc.keys.secret("audit_chain")
        runs: dict[tuple[int, int], AppendRun] = {}
        try:
            for shards in (1, SHARDED):
                for w in args.writers:
                    log(f"appends: {shards} shard(s), {w} writer process(es), {args.seconds:g} s ...")
                    runs[(shards, w)] = run_appends(url, svc, key, shards, w, args.seconds, args.sample_ms / 1000)
        finally:
            engine.dispose()
    lines.append(f"audit appends per second on PostgreSQL, one event per transaction, writers = processes, "
                 f"{args.seconds:g} s per run")
    lines.append(f"{'writers':>7} | {'1 shard/s':>9} {'x':>5} {'UPDATE ms':>9} {'wait ms':>8} | "
                 f"{'16 shards/s':>11} {'x':>5} {'UPDATE ms':>9} {'wait ms':>8} | {'16 vs 1':>7}")
    base = {s: runs[(s, args.writers[0])].rate for s in (1, SHARDED)}
    for w in args.writers:
        one, many = runs[(1, w)], runs[(SHARDED, w)]
        cells = []
        for r, width in ((one, 9), (many, 11)):
            cells.append(f"{r.rate:>{width}.0f} {r.rate / base[r.shards]:>5.2f} "
                         f"{1000 * r.update_s / r.appends:>9.3f} {1000 * r.waited_s / r.appends:>8.3f}")
        lines.append(f"{w:>7} | {cells[0]} | {cells[1]} | {many.rate / one.rate:>6.2f}x")
    lines.append("  x: speed-up over the same shards with 1 writer; UPDATE ms: wall time of the head-row "
                 "UPDATE per append (a round trip plus any lock wait); wait ms: sampled lock wait per append")
    top = args.writers[-1]
    one, many = runs[(1, top)], runs[(SHARDED, top)]
    ratio = many.rate / one.rate
    wait_one, wait_many = one.waited_s / one.appends, many.waited_s / many.appends
    lines.append(f"16 shards at {top} writers: {many.rate:.0f}/s = {ratio:.2f}x one shard's {one.rate:.0f}/s "
                 f"(target >= 1.5x): {verdict(ratio >= 1.5)}")
    near_zero = wait_many <= 0.1 * wait_one
    lines.append(f"lock wait per append at {top} writers: {1000 * wait_many:.3f} ms with 16 shards, "
                 f"{1000 * wait_one:.3f} ms with 1 (target: near zero, <= 10% of one shard's): {verdict(near_zero)}")
    return lines


# -- 2. verify ----------------------------------------------------------------------------------------------------

COLUMNS = ("seq", "shard", "shard_seq", "at", "actor", "role", "action", "object_type", "object_id", "purpose",
           "fields", "outcome", "client_addr", "request_id", "prev_hash", "hash")


def load_shards(url: str, key: bytes, events: int, shards: int, part: int, parts: int, out: Any) -> None:
    """Loader process ``part`` of ``parts``: COPY the events of its shards (shard % parts == part), chained.

    Event ``n`` (0 <= n < events) is about object ``shp_n``: it joins that object's shard (as the service would
    put it) and takes the shard's next place; ``seq`` is n + 1. Puts {shard: (head seq, head hash)} on ``out``.
    """
    engine = db.make_engine(url, pool_size=1, max_overflow=0)
    start = datetime.now(UTC) - timedelta(days=7)
    tips: dict[int, tuple[int, bytes]] = {}
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY audit_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for n in range(events):
                object_id = f"shp_{n:024x}"
                shard = shard_of(object_id, "", shards)
                if shard % parts != part:
                    continue
                seq, prev = tips.get(shard, (0, GENESIS))
                seq += 1
                ev = PendingEvent(start + timedelta(microseconds=600_000 * n + 17), f"staff:usr_b{n % 997:06d}",
                                  "dispatcher", "shipment.read", "shipment", object_id, "delivery", FIELDS[n % 3],
                                  "ok" if n % 11 else "denied", "10.0.0.1", f"req{n:012x}")
                digest = chain_hash(key, prev, seq, ev, shard)
                copy.write_row((n + 1, shard, seq, ev.at, ev.actor, ev.role, ev.action, ev.object_type,
                                ev.object_id, ev.purpose, json.dumps(ev.fields), ev.outcome, ev.client_addr,
                                ev.request_id, prev, digest))
                tips[shard] = (seq, digest)
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    out.put(tips)


def cpu_seconds() -> float:
    """CPU of this process and of its finished children (the verify's walker processes), user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def verify_part(args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wbaudit-") as tmp_raw, database_url(Path(tmp_raw), args.pg) as url:
        settings = load_settings(environ={"WAYBILL_AUDIT_SHARDS": str(SHARDED)}, data_dir=Path(tmp_raw),
                                 database_url=url, log_level="WARNING")
        _keys, engine, _ = initialise(settings)
        try:
            svc = build(settings, engine=engine)
            key = svc.keys.secret("audit_chain")
            with engine.begin() as c:
                c.execute(text("TRUNCATE audit_events"))
                c.execute(text("DELETE FROM audit_head"))
            log(f"verify: COPY {args.events} chained events over {SHARDED} shards (2 loader processes) ...")
            t0 = time.perf_counter()
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            procs = [ctx.Process(target=load_shards, args=(url, key, args.events, SHARDED, p, 2, out))
                     for p in range(2)]
            for p in procs:
                p.start()
            tips: dict[int, tuple[int, bytes]] = {}
            for _ in procs:
                tips.update(out.get(timeout=1800))
            for p in procs:
                p.join()
            with engine.begin() as c:
                c.execute(text("INSERT INTO audit_head (id, seq, hash) VALUES (:id, :seq, :hash)"),
                          [{"id": s, "seq": q, "hash": h} for s, (q, h) in sorted(tips.items())])
                c.execute(text("SELECT setval('audit_event_seq', :n)"), {"n": args.events})
            t_load = time.perf_counter() - t0
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE audit_events"))
            lines.append(f"verify fixture: {args.events} chained events over {SHARDED} shards loaded in "
                         f"{t_load:.1f} s (COPY, 2 processes)")
            log("verify: the full verify ...")
            t0, c0 = time.perf_counter(), cpu_seconds()
            full = audit.verify(svc.read_session_factory, key)
            t_full, c_full = time.perf_counter() - t0, cpu_seconds() - c0
            ok = full.ok and full.events == args.events
            lines.append(f"full verify of {full.events} events ({len(full.shards)} shards, ok={full.ok}): "
                         f"{t_full:.2f} s, {full.events / t_full:.0f} events/s, {c_full:.1f} s CPU (target < 15 s): "
                         f"{verdict(ok and t_full < 15)}")
            per = args.tail // SHARDED
            with engine.connect() as c:
                start = {int(r[0]): (int(r[1]), bytes(r[2])) for r in c.execute(text(
                    "SELECT e.shard, e.shard_seq, e.hash FROM audit_events e JOIN audit_head h ON h.id = e.shard "
                    "WHERE e.shard_seq = h.seq - :per"), {"per": per})}
            log("verify: the incremental verify ...")
            t0, c0 = time.perf_counter(), cpu_seconds()
            tail = audit.verify(svc.read_session_factory, key, start=start)
            t_tail, c_tail = time.perf_counter() - t0, cpu_seconds() - c0
            ok = tail.ok and tail.events == per * SHARDED
            lines.append(f"incremental verify of the last {tail.events} events (from {per} before each head, "
                         f"ok={tail.ok}): {t_tail:.2f} s, {tail.events / t_tail:.0f} events/s, {c_tail:.1f} s CPU "
                         "(target < 2 s): "
                         f"{verdict(ok and t_tail < 2)}")
        finally:
            engine.dispose()
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL (default: WAYBILL_BENCH_DATABASE_URL or test)")
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per append run (default 4)")
    ap.add_argument("--writers", default="1,2,4,8", help="writer process counts (default 1,2,4,8)")
    ap.add_argument("--sample-ms", type=float, default=10.0, help="lock-wait sampling interval (default 10 ms)")
    ap.add_argument("--events", type=int, default=1_000_000, help="events for the verify part (default 1M)")
    ap.add_argument("--tail", type=int, default=100_000, help="events of the incremental verify (default 100k)")
    ap.add_argument("--skip-append", action="store_true")
    ap.add_argument("--skip-verify", action="store_true")
    args = ap.parse_args()
    args.writers = [int(w) for w in args.writers.split(",")]
    lines: list[str] = []
    if not args.skip_append:
        lines += appends_part(args)
    if not args.skip_verify:
        lines += verify_part(args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
