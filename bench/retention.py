"""Benchmark: a retention run over 100,000 due shipments, and what it costs the merchant API meanwhile.

Seeds ``--n`` shipments through the domain (``shipments.create_batch``, 1,000 per unit of work, as the batch
endpoint does) and ends their contracts as a cancellation does (status, QR tokens revoked, ``ended_at``, data
keys re-wrapped under the end-day key, audit event; set-based per chunk of 1,000 instead of one request each),
plus ``--survivors`` active shipments that must come through the run intact (then, on PostgreSQL, ``VACUUM
ANALYZE``: what autovacuum would have done by the time the shipments are due). Then, against a real server
process (``waybill serve``, ``--workers`` gunicorn workers, same database and key store), a client process
issues sequential ``GET /v1/shipments/{id}`` on survivors during ``retention.run`` and, afterwards, the same
number of requests without a run. Prints seeding time, shipments destroyed per second (target 5,000/s) and
the two p99 latencies (target: during <= 2x without), then checks that every due shipment is destroyed and
every survivor still decrypts.

The client runs in a process of its own: in a thread of this process it would queue for the GIL behind the
retention run and measure that instead of the service.

    python bench/retention.py [--n 100000] [--survivors 10000] [--workers 2] [--profile] [--trace] [--pg URL]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from _env import body, database_url
from sqlalchemy import Table, bindparam, func, select, text, update

from waybill import audit, labels, masked, retention, shipments
from waybill.crypto.subject_keys import day_of
from waybill.merchants import create_merchant
from waybill.models import Shipment, SubjectKey, utcnow
from waybill.permissions import SYSTEM, Principal
from waybill.schemas import ShipmentIn, parse
from waybill.services import Services, build, initialise
from waybill.settings import load_settings
from waybill.uow import unit_of_work

CHUNK = 1000
# Client processes are spawned, not forked: a forked child inherits this process's open SQLite connections, and
# one that closes them (or checkpoints) believes itself alone with the file (its locks are not inherited).
MP = mp.get_context("spawn")
RETENTION_DAYS = 30
TARGET_PER_S = 5000
def create(svc: Services, principal: Principal, start: int, count: int) -> list[str]:
    ids: list[str] = []
    for first in range(start, start + count, CHUNK):
        items = [parse(ShipmentIn, body(i, "R")) for i in range(first, min(first + CHUNK, start + count))]
        with unit_of_work(svc.session_factory) as tx:
            for res in shipments.create_batch(tx.session, svc.shipment_deps, principal, list(items)):
                assert res.shipment is not None, res.error
                ids.append(res.shipment.id)
    return ids


def end_contracts(svc: Services, principal: Principal, ids: list[str]) -> None:
    """What ``cancel_shipment`` does to each shipment, one chunk of 1,000 per transaction."""
    keyring = svc.subject_keys
    for first in range(0, len(ids), CHUNK):
        part = ids[first:first + CHUNK]
        now = utcnow()
        with unit_of_work(svc.session_factory) as tx:
            s = tx.session
            s.execute(update(Shipment).where(Shipment.id.in_(part))
                      .values(status="cancelled", updated_at=now, ended_at=now)
                      .execution_options(synchronize_session=False))
            labels.revoke_many(s, principal, part, "cancelled", now=now)
            target = keyring.current_end_key(day_of(now))
            rows = list(s.scalars(select(SubjectKey).where(SubjectKey.shipment_id.in_(part))))
            rewrapped = keyring.rewrap(rows, target)
            assert len(rewrapped) == 2 * len(part)
            table = SubjectKey.__table__
            assert isinstance(table, Table)
            s.execute(update(table).where(table.c.id == bindparam("b_id"))
                      .values(wrapped=bindparam("b_w"), wrapping_key_id=target),
                      [{"b_id": k, "b_w": w} for k, w in rewrapped])
            for sid in part:
                audit.record(s, principal, "shipment.cancel", object_type="shipment", object_id=sid)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client(port: int, api_key: str, ids: list[str], count: int, stop: Event | None, ready: Event,
           out: Connection) -> None:
    """Sequential GETs on ``ids`` (round robin): ``count`` of them, or until ``stop`` is set."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {api_key}"}
    latencies: list[tuple[float, float]] = []  # (wall-clock start, milliseconds)
    i = 0
    while (stop is None and i < count) or (stop is not None and not stop.is_set()):
        start, t0 = time.time(), time.perf_counter()
        conn.request("GET", f"/v1/shipments/{ids[i % len(ids)]}", headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        latencies.append((start, (time.perf_counter() - t0) * 1000))
        assert resp.status == 200, (resp.status, payload[:200])
        ready.set()
        i += 1
    conn.close()
    out.send(latencies)


def measure(port: int, api_key: str, ids: list[str], *, count: int = 0, stop: Event | None = None) -> Any:
    reader, writer = MP.Pipe(duplex=False)
    ready = MP.Event()
    proc = MP.Process(target=client, args=(port, api_key, ids, count, stop, ready, writer))
    proc.start()
    assert ready.wait(60)  # its first answer is in: what is measured next is not its start-up
    proc.reader = reader  # type: ignore[attr-defined]
    return proc


TRACE = False  # --trace: latency per tenth of the run window (where in the run the slow requests were)


def collect(proc: Any, since: float = 0.0, until: float = float("inf")) -> list[float]:
    """The latencies (ms) of the requests that were under way between ``since`` and ``until`` (wall clock)."""
    latencies: list[tuple[float, float]] = proc.reader.recv()
    proc.join()
    assert proc.exitcode == 0
    if TRACE and until != float("inf"):
        for d in range(10):
            a, b = since + (until - since) * d / 10, since + (until - since) * (d + 1) / 10
            xs = sorted(ms for st, ms in latencies if st < b and st + ms / 1000 > a)
            if xs:
                print(f"TRACE {d} n={len(xs)} median={xs[len(xs) // 2]:.1f} max={xs[-1]:.1f}", file=sys.stderr)
    return [ms for start, ms in latencies if start < until and start + ms / 1000 > since]


def p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[98]  # within the data, even for few samples


def serve(tmp: Path, url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WAYBILL_DATABASE_URL": url, "WAYBILL_DATA_DIR": str(tmp), "WAYBILL_LOG_LEVEL": "WARNING",
           "WAYBILL_MERCHANT_RATE_PER_S": "1000000", "WAYBILL_MERCHANT_BURST": "10000000",
           "WAYBILL_RETENTION_DAYS": str(RETENTION_DAYS)}
    exe = Path(sys.executable).with_name("waybill")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--workers", str(workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "serve.log", "wb"))  # noqa: SIM115
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start: " + (tmp / "serve.log").read_text()[-2000:])


def verify(settings: Any, due: list[str], survivors: list[str]) -> None:
    """Every due shipment destroyed; every survivor decrypts, in a fresh process state (no cached data keys)."""
    fresh = build(settings)
    try:
        with fresh.session_factory() as s:
            destroyed = s.scalar(select(func.count()).select_from(Shipment).where(
                Shipment.personal_data_destroyed_at.is_not(None), Shipment.sender_name_ct.is_(None),
                Shipment.recipient_phone_bidx.is_(None)))
            assert destroyed == len(due), (destroyed, len(due))
            keys_of_due = s.scalar(select(func.count()).select_from(SubjectKey).join(
                Shipment, Shipment.id == SubjectKey.shipment_id).where(
                Shipment.personal_data_destroyed_at.is_not(None)))
            assert keys_of_due == 0
            key_ids = list(s.scalars(select(SubjectKey.id)))
            assert len(key_ids) == 2 * len(survivors)
            fresh.subject_keys.prefetch(key_ids)
            for first in range(0, len(survivors), CHUNK):
                for row in s.scalars(select(Shipment).where(Shipment.id.in_(survivors[first:first + CHUNK]))):
                    assert row.personal_data_destroyed_at is None
                    for party in ("sender", "recipient"):
                        for col in ("name", "phone", "address"):
                            fresh.codec.decrypt(getattr(row, f"{party}_{col}_ct"), table="shipments",
                                                column=f"{party}_{col}", row_id=row.id)
                        masked.unseal(fresh.codec, row.id, party, getattr(row, f"{party}_masked_ct"))
    finally:
        fresh.engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="due shipments (contracts ended, retention over)")
    ap.add_argument("--survivors", type=int, default=10_000, help="active shipments that must survive")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers of the measured server")
    ap.add_argument("--sample", type=int, default=500, help="survivors the client reads (round robin)")
    ap.add_argument("--profile", action="store_true", help="profile the run (pyinstrument) to stderr")
    ap.add_argument("--trace", action="store_true", help="GET latency per tenth of the run, to stderr")
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (default: SQLite in a temporary directory)")
    args = ap.parse_args()
    global TRACE
    TRACE = args.trace
    backend = "postgresql" if args.pg else "sqlite"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        database = database_url(tmp, args.pg)
        url = database.__enter__()
        settings = load_settings(environ={}, data_dir=tmp, database_url=url, merchant_rate_per_s=1e6,
                                 merchant_burst=10**7, log_level="WARNING", retention_days=RETENTION_DAYS)
        _keys, engine, _ = initialise(settings)
        server: subprocess.Popen[bytes] | None = None
        try:
            svc = build(settings, engine=engine)
            with svc.session_factory() as s:
                m = create_merchant(s, SYSTEM, "bench", api_key_secret=svc.keys.secret("api_key"))
                s.commit()
            merchant = Principal(kind="merchant", id=m.merchant_id, role="merchant")

            t0 = time.perf_counter()
            due = create(svc, merchant, 0, args.n)
            survivors = create(svc, merchant, args.n, args.survivors)
            t_create = time.perf_counter() - t0
            t0 = time.perf_counter()
            end_contracts(svc, merchant, due)
            t_end = time.perf_counter() - t0
            t0 = time.perf_counter()
            if args.pg:  # what autovacuum would have done since: the run is not measured against its backlog
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.execute(text("VACUUM ANALYZE"))
            t_vacuum = time.perf_counter() - t0
            print(f"{backend:10s} seed       {args.n + args.survivors} shipments created in {t_create:.1f} s "
                  f"({(args.n + args.survivors) / t_create:.0f}/s), {args.n} contracts ended in {t_end:.1f} s"
                  + (f", VACUUM ANALYZE {t_vacuum:.1f} s" if args.pg else ""))

            port = free_port()
            if not args.pg:
                # SQLite: connections this process opened before the server started were seen to report
                # "database disk image is malformed" once the server had written (a fresh connection's
                # integrity_check says ok); connections opened after its start do not. Not root-caused: see
                # the report of this benchmark. The run below opens new ones.
                engine.dispose()
            server = serve(tmp, url, port, args.workers)
            sample = survivors[:: max(1, len(survivors) // args.sample)][:args.sample]
            collect(measure(port, m.api_key, sample, count=4 * len(sample)))  # warm-up: connections, key caches

            now = utcnow() + timedelta(days=RETENTION_DAYS + 2)
            assert retention.run(svc, SYSTEM, dry_run=True, now=now).due == args.n
            stop = MP.Event()
            during_proc = measure(port, m.api_key, sample, stop=stop)
            time.sleep(0.2)
            profiler = None
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.001)
                profiler.start()
            wall0, t0 = time.time(), time.perf_counter()
            result = retention.run(svc, SYSTEM, now=now)
            t_run = time.perf_counter() - t0
            if profiler is not None:
                profiler.stop()
                print(profiler.output_text(unicode=False, show_all=False), file=sys.stderr)
            wall1 = time.time()
            stop.set()
            during = collect(during_proc, wall0, wall1)  # only requests under way while the run ran
            t0 = time.perf_counter()
            without = collect(measure(port, m.api_key, sample, count=len(during)))
            t_without = time.perf_counter() - t0

            rate = result.destroyed / t_run
            met = "MET" if rate >= TARGET_PER_S else "NOT MET"
            print(f"{backend:10s} retention  {result.destroyed} shipments destroyed in {t_run:.1f} s: "
                  f"{rate:.0f} shipments/s  (target >= {TARGET_PER_S}/s: {met})"
                  f"; keys destroyed {len(result.keys_destroyed)}, deferred {len(result.keys_deferred)}, "
                  f"re-wrapped {result.rewrapped}")
            p_during, p_without = p99(during), p99(without)
            print(f"{backend:10s} GET        without run: {len(without)} requests in {t_without:.1f} s, "
                  f"median {statistics.median(without):.1f} ms, p99 {p_without:.1f} ms")
            print(f"{backend:10s} GET        during run:  {len(during)} requests in {t_run:.1f} s, "
                  f"median {statistics.median(during):.1f} ms, p99 {p_during:.1f} ms  "
                  f"(target p99(during) <= 2 x p99(without): {'MET' if p_during <= 2 * p_without else 'NOT MET'})")
            assert result.destroyed == args.n
            verify(settings, due, survivors)
            print(f"{backend:10s} verified   {args.n} due shipments destroyed, {args.survivors} survivors decrypt")
        except BaseException:
            if server is not None:  # what the server said, before its directory goes
                print((tmp / "serve.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            if server is not None:
                server.send_signal(signal.SIGTERM)
                server.wait(30)
            engine.dispose()
            database.__exit__(None, None, None)

if __name__ == "__main__":
    main()
