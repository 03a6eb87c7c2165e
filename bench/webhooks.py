"""Benchmark: webhook deliveries from the outbox to a loopback receiver (issue 13, item 4).

Workers: Dramatiq's own worker (``dramatiq.Worker``, ``--workers`` threads) on an in-process ``StubBroker``, fed by
the outbox relay (``waybill.tasks.BackgroundRunner``, which wakes on this process's commits): the path of
`waybill worker` without a Redis server in between. The receiver is ``http.server`` (threaded) on 127.0.0.1;
every delivery is a real signed POST through the SSRF guard and the pinned connection.

1. Throughput: ``--events`` status changes are committed first (nothing running), then the workers start;
   events delivered per second until the last one arrives (target >= 1,000 events/s).
2. Lag: status changes committed at a paced ``--rate`` (default 200/s) for ``--seconds``; per event, the time
   from its commit to its arrival at the receiver, p50 and p99 (target p99 < 1 s at 200/s).

    python bench/webhooks.py [--pg URL] [--workers 8] [--events 4000] [--rate 200] [--seconds 10] [--no-wake]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from waybill import db, outbox, shipments, tasks, tracking
from waybill.merchants import create_merchant
from waybill.models import Shipment
from waybill.permissions import SYSTEM, Principal
from waybill.schemas import ShipmentIn, parse
from waybill.services import Services, build, initialise
from waybill.settings import load_settings
from waybill.uow import unit_of_work
from waybill.webhooks import create_endpoint
from waybill.webhooks.models import WebhookAttempt

PATH = ("printed", "in_transit", "out_for_delivery", "delivered")  # four status changes per shipment


class Arrivals:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.expect = 0

    def reset(self, expect: int) -> None:
        with self.lock:
            self.at.clear()
            self.expect = expect
            self.done.clear()


def receiver(arrivals: Arrivals) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            now = time.perf_counter()
            with arrivals.lock:
                arrivals.at.setdefault(self.headers["webhook-id"], now)
                if len(arrivals.at) >= arrivals.expect:
                    arrivals.done.set()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # http.server's default listen backlog (5) refuses connections under load
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class StubDramatiq:
    """tasks.DramatiqQueue's actor on an in-process StubBroker, run by a dramatiq.Worker of ``threads`` threads."""

    def __init__(self, svc: Services, threads: int) -> None:
        import dramatiq
        from dramatiq.brokers.stub import StubBroker

        self.broker = StubBroker()
        table = tasks.handlers(svc)

        def run(message_id: str) -> None:
            outbox.run_message(svc.session_factory, table, message_id)

        self.actor = dramatiq.actor(actor_name=tasks.ACTOR_NAME, queue_name=tasks.QUEUE_NAME, broker=self.broker,
                                    max_retries=0)(run)
        self.worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=100)

    def send(self, message_id: str) -> None:
        self.actor.send(message_id)


def make_shipments(svc: Services, merchant: Principal, count: int, prefix: str) -> list[str]:
    made: list[str] = []
    for start in range(0, count, 500):
        items: list[Any] = [parse(ShipmentIn, {
            "merchant_order_id": f"{prefix}{i:07d}",
            "sender": {"name": "王小明", "phone": "13900001111", "province": "上海市", "city": "上海市",
                       "district": "徐汇区", "address": "漕溪北路88号"},
            "recipient": {"name": "张三", "phone": f"138{i:08d}", "province": "广东省", "city": "深圳市",
                          "district": "南山区", "address": f"科技园路{i % 300}号"},
            "parcel": {"weight_g": 1000}}) for i in range(start, min(count, start + 500))]
        with unit_of_work(svc.session_factory) as tx:
            made.extend(r.shipment.id for r in shipments.create_batch(tx.session, svc.shipment_deps, merchant, items)
                        if r.shipment is not None)
    return made


def move(svc: Services, shipment_id: str, status: str) -> str:
    with unit_of_work(svc.session_factory) as tx:
        shipment = tx.session.get(Shipment, shipment_id)
        assert shipment is not None
        event_id = tracking.move(tx.session, SYSTEM, shipment, status).id
    return event_id


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    arrivals = Arrivals()
    server = receiver(arrivals)
    with unit_of_work(svc.session_factory) as tx:
        new = create_merchant(tx.session, SYSTEM, "基准商户", api_key_secret=svc.keys.secret("api_key"))
    merchant = Principal("merchant", new.merchant_id, "merchant")
    with unit_of_work(svc.session_factory) as tx:
        create_endpoint(tx.session, svc, merchant, f"http://127.0.0.1:{server.server_address[1]}/hook",
                        ["shipment.status_changed"])
    per = len(PATH)
    thr_ids = make_shipments(svc, merchant, args.events // per, "T")
    lag_total = int(args.rate * args.seconds)
    lag_ids = make_shipments(svc, merchant, -(-lag_total // per), "L")
    # 1. Throughput: a backlog committed with nothing running, then the workers.
    for status in PATH:
        for sid in thr_ids:
            move(svc, sid, status)
    events = len(thr_ids) * per
    queue = StubDramatiq(svc, args.workers)
    arrivals.reset(events)
    queue.worker.start()
    runner = tasks.BackgroundRunner(svc, queue, job_list=[], interval_s=1.0)
    t0 = time.perf_counter()
    runner.start()
    arrivals.done.wait(600)
    elapsed = time.perf_counter() - t0
    delivered = len(arrivals.at)
    # 2. Lag at a paced rate: one move per 1/rate s, shipments round robin (a shipment's next step 2.5 s later).
    arrivals.reset(lag_total)
    committed: dict[str, float] = {}
    plan = [(sid, status) for status in PATH for sid in lag_ids][:lag_total]
    start = time.perf_counter()
    for n, (sid, status) in enumerate(plan):
        wait = start + n / args.rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        event_id = move(svc, sid, status)
        committed[event_id] = time.perf_counter()
    produced_s = time.perf_counter() - start
    arrivals.done.wait(120)
    runner.stop()
    queue.worker.stop()
    server.shutdown()
    lags = [arrivals.at[e] - t for e, t in committed.items() if e in arrivals.at]
    with svc.session_factory() as s:
        backlog = outbox.backlog(s)
        ids = s.scalars(select(Shipment.id)).all()
        failed = s.scalar(select(func.count()).select_from(WebhookAttempt).where(WebhookAttempt.ok.is_(False)))
    return {"workers": args.workers, "events": events, "delivered": delivered, "seconds": round(elapsed, 2),
            "events_per_s": round(delivered / elapsed, 1), "lag_events": len(committed), "lag_delivered": len(lags),
            "paced_rate": round(len(committed) / produced_s, 1), "lag_p50_ms": round(1000 * pct(lags, 0.5), 1),
            "lag_p99_ms": round(1000 * pct(lags, 0.99), 1), "lag_mean_ms": round(1000 * statistics.mean(lags), 1),
            "failed_attempts": failed, "outbox_backlog_after": backlog, "shipments": len(ids)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", help="PostgreSQL URL (a schema of its own is made and dropped); default SQLite")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-wake", action="store_true",
                    help="the relay only polls (every second), as before commits woke it: for comparison")
    args = ap.parse_args()
    if args.no_wake:
        from sqlalchemy import event
        from sqlalchemy.orm import Session

        event.remove(Session, "after_commit", outbox._committed)
    schema = "wbbench_" + secrets.token_hex(4) if args.pg else None
    admin = db.make_engine(args.pg) if args.pg else None
    if admin is not None:
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = (f"{args.pg}{'&' if '?' in args.pg else '?'}options=-csearch_path%3D{schema}" if args.pg
                   else f"sqlite:///{tmp}/bench.db")
            settings = load_settings({}, env="test", data_dir=tmp, database_url=url,
                                     key_file=str(Path(tmp) / "keys.json"), webhook_allow_private=True,
                                     log_level="WARNING")
            _, engine, _ = initialise(settings)
            svc = build(settings, engine=engine)
            result = bench(svc, args)
            engine.dispose()
    finally:
        if admin is not None:
            with admin.begin() as c:
                c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    result["backend"] = "postgresql" if args.pg else "sqlite"
    result["relay"] = "poll 1 s" if args.no_wake else "woken by commits"
    print(json.dumps(result))
    ok_rate = result["events_per_s"] >= 1000 and result["delivered"] == result["events"]
    ok_lag = result["lag_p99_ms"] < 1000 and result["lag_delivered"] == result["lag_events"]
    print(f"throughput {result['events_per_s']} events/s with {args.workers} workers (target >= 1000): "
          f"{'MET' if ok_rate else 'NOT MET'}")
    print(f"lag at {result['paced_rate']}/s: p50 {result['lag_p50_ms']} ms, p99 {result['lag_p99_ms']} ms "
          f"(target p99 < 1000 ms): {'MET' if ok_lag else 'NOT MET'}")


if __name__ == "__main__":
    main()
