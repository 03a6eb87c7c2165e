"""Benchmark: webhook deliveries from the outbox to a loopback receiver (issue 13, item 4).

Workers: Dramatiq's own worker (``dramatiq.Worker``, ``--workers`` threads) on an in-process ``StubBroker``, fed by
the outbox relay (``waybill.tasks.BackgroundRunner``, which wakes on this process's commits): the path of
`waybill worker` without a Redis server in between (a broker would add a network hop per *message*, and a message
is a batch of deliveries here; the outbox, the claims and the HTTP requests are the same). The receiver is
``http.server`` (threaded, HTTP/1.1 with keep-alive, as merchants' servers are) on 127.0.0.1; every delivery is a
real signed POST through the SSRF guard and the pinned, kept-alive connection of its batch.

1. Throughput: ``--events`` status changes are committed first (nothing running), ``--per-tx`` per transaction
   (default 50: a sorting scan moves many parcels at once; ``--per-tx 1`` is one change per transaction), then
   the workers start; events delivered per second until the last one arrives (target >= 1,000 events/s).
2. Lag: status changes committed at a paced ``--rate`` (default 200/s) for ``--seconds``, ``--lag-per-tx`` per
   transaction (default 10, a commit every 50 ms); per event, the time from its transaction's commit to its
   arrival at the receiver, p50 and p99 (target p99 < 1 s at 200/s).

    python bench/webhooks.py [--pg URL] [--workers 8] [--events 4000] [--per-tx 50] [--rate 200] [--seconds 10]
                             [--lag-per-tx 10] [--no-wake]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import secrets
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
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
    """In the receiver's process: the first arrival time (``time.time()``) of each webhook-id, the connections."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.expect = 0
        self.connections = 0

    def reset(self, expect: int) -> None:
        with self.lock:
            self.at.clear()
            self.connections = 0
            self.expect = expect
            self.done.clear()


def serve(conn: Connection) -> None:
    """The receiver process: an HTTP/1.1 server on 127.0.0.1, answering commands from the bench on ``conn``."""
    arrivals = Arrivals()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as servers do: the answer's headers and body go out at once

        def setup(self) -> None:
            super().setup()
            with arrivals.lock:
                arrivals.connections += 1

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            now = time.time()
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
    conn.send(server.server_address[1])
    while True:
        command, value = conn.recv()
        if command == "reset":
            arrivals.reset(int(value))
            conn.send(True)
        elif command == "wait":
            arrivals.done.wait(float(value))
            with arrivals.lock:
                conn.send((dict(arrivals.at), arrivals.connections))
        else:
            server.shutdown()
            conn.send(True)
            return


class Receiver:
    """The loopback receiver in a process of its own (as a merchant's server is: it takes no CPU time from the
    bench's process, whose threads share one interpreter lock)."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=serve, args=(child,), daemon=True)
        self._proc.start()
        self.port = int(self._conn.recv())

    def reset(self, expect: int) -> None:
        self._conn.send(("reset", expect))
        self._conn.recv()

    def wait(self, timeout_s: float) -> tuple[dict[str, float], int]:
        """Until ``expect`` webhook-ids arrived (or the timeout): their first arrival times, the connections."""
        self._conn.send(("wait", timeout_s))
        at, connections = self._conn.recv()
        return at, connections

    def close(self) -> None:
        self._conn.send(("stop", None))
        self._conn.recv()
        self._proc.join(10)


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


def move(svc: Services, steps: list[tuple[str, str]]) -> list[str]:
    """The (shipment, status) steps in one transaction; the tracking events' ids."""
    with unit_of_work(svc.session_factory) as tx:
        event_ids = []
        for shipment_id, status in steps:
            shipment = tx.session.get(Shipment, shipment_id)
            assert shipment is not None
            event_ids.append(tracking.move(tx.session, SYSTEM, shipment, status).id)
    return event_ids


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench(svc: Services, args: argparse.Namespace) -> dict[str, Any]:
    receiver = Receiver()
    with unit_of_work(svc.session_factory) as tx:
        new = create_merchant(tx.session, SYSTEM, "基准商户", api_key_secret=svc.keys.secret("api_key"))
    merchant = Principal("merchant", new.merchant_id, "merchant")
    with unit_of_work(svc.session_factory) as tx:
        create_endpoint(tx.session, svc, merchant, f"http://127.0.0.1:{receiver.port}/hook",
                        ["shipment.status_changed"])
    per = len(PATH)
    thr_ids = make_shipments(svc, merchant, args.events // per, "T")
    lag_total = int(args.rate * args.seconds)
    lag_ids = make_shipments(svc, merchant, -(-lag_total // per), "L")
    # 1. Throughput: a backlog committed with nothing running, then the workers.
    steps = [(sid, status) for status in PATH for sid in thr_ids]
    for start in range(0, len(steps), args.per_tx):
        move(svc, steps[start:start + args.per_tx])
    events = len(thr_ids) * per
    queue = StubDramatiq(svc, args.workers)
    receiver.reset(events)
    queue.worker.start()
    runner = tasks.BackgroundRunner(svc, queue, job_list=[], interval_s=1.0)
    t0 = time.time()
    runner.start()
    arrived, connections = receiver.wait(600)
    elapsed = max(arrived.values(), default=time.time()) - t0
    delivered = len(arrived)
    # 2. Lag at a paced rate: lag_per_tx moves per transaction, one transaction per lag_per_tx/rate s, shipments
    # round robin (a shipment's next step 2.5 s later at 200/s).
    receiver.reset(lag_total)
    committed: dict[str, float] = {}
    plan = [(sid, status) for status in PATH for sid in lag_ids][:lag_total]
    start = time.time()
    for n in range(0, len(plan), args.lag_per_tx):
        wait = start + n / args.rate - time.time()
        if wait > 0:
            time.sleep(wait)
        event_ids = move(svc, plan[n:n + args.lag_per_tx])
        at = time.time()
        committed.update(dict.fromkeys(event_ids, at))
    produced_s = time.time() - start
    arrived, _ = receiver.wait(120)
    runner.stop()
    queue.worker.stop()
    receiver.close()
    lags = [arrived[e] - t for e, t in committed.items() if e in arrived]
    with svc.session_factory() as s:
        backlog = outbox.backlog(s)
        ids = s.scalars(select(Shipment.id)).all()
        failed = s.scalar(select(func.count()).select_from(WebhookAttempt).where(WebhookAttempt.ok.is_(False)))
    return {"workers": args.workers, "per_tx": args.per_tx, "lag_per_tx": args.lag_per_tx,
            "connections": connections, "events": events, "delivered": delivered, "seconds": round(elapsed, 2),
            "events_per_s": round(delivered / elapsed, 1), "lag_events": len(committed), "lag_delivered": len(lags),
            "paced_rate": round(len(committed) / produced_s, 1), "lag_p50_ms": round(1000 * pct(lags, 0.5), 1),
            "lag_p99_ms": round(1000 * pct(lags, 0.99), 1), "lag_mean_ms": round(1000 * statistics.mean(lags), 1),
            "failed_attempts": failed, "outbox_backlog_after": backlog, "shipments": len(ids)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", help="PostgreSQL URL (a schema of its own is made and dropped); default SQLite")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--per-tx", type=int, default=50, help="status changes per transaction of the backlog")
    ap.add_argument("--lag-per-tx", type=int, default=10, help="status changes per transaction, paced phase")
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
