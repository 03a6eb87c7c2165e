"""Benchmark: does one merchant's batch flood slow down another merchant's creates? (issue 11, item 4)

In-process WSGI stack on PostgreSQL: ``--flooders`` threads of merchant A post 1,000-item batches as fast as
they are answered, while merchant B creates shipments one at a time. Prints B's create latency (median, p95)
alone and under the flood, and how many shipments A got accepted per second, and how A's requests were answered.

    python bench/merchant_starvation.py [--pg URL] [--seconds 10] [--flooders 4] [--rate 20]
"""

from __future__ import annotations

import argparse
import collections
import json
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from waybill import db
from waybill.merchants import create_merchant
from waybill.permissions import SYSTEM
from waybill.services import build, initialise
from waybill.settings import load_settings
from waybill.web.app import create_app


def shipment(prefix: str, i: int) -> dict[str, Any]:
    return {"merchant_order_id": f"{prefix}{i:09d}",
            "sender": {"name": "王小明", "phone": "13900001111", "province": "上海市", "city": "上海市",
                       "district": "徐汇区", "address": "漕溪北路88号"},
            "recipient": {"name": "张三", "phone": f"138{i % 10**8:08d}", "province": "广东省", "city": "深圳市",
                          "district": "南山区", "address": f"科技园路{i % 300}号"},
            "parcel": {"weight_g": 100 + i % 5000}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--flooders", type=int, default=4)
    ap.add_argument("--rate", type=float, help="WAYBILL_MERCHANT_RATE_PER_S (default: the setting's default)")
    args = ap.parse_args()
    schema = "wbbench_" + secrets.token_hex(4)
    admin = db.make_engine(args.pg)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"{args.pg}{'&' if '?' in args.pg else '?'}options=-csearch_path%3D{schema}"
            extra = {"merchant_rate_per_s": args.rate} if args.rate else {}
            settings = load_settings({}, env="test", data_dir=tmp, database_url=url,
                                     key_file=str(Path(tmp) / "keys.json"), **extra)
            _, engine, _ = initialise(settings)
            svc = build(settings, engine=engine)
            app = create_app(settings, services_override=svc)
            keys = {}
            with svc.session_factory() as s:
                for name in ("A", "B"):
                    keys[name] = create_merchant(s, SYSTEM, f"商户{name}", api_key_secret=svc.keys.secret("api_key"))
                s.commit()
            heads = {n: {"Authorization": f"Bearer {k.api_key}"} for n, k in keys.items()}
            run(app, heads, args.seconds, args.flooders)
            engine.dispose()
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def creates(client: Any, head: dict[str, str], prefix: str, seconds: float) -> list[float]:
    out, i, end = [], 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        r = client.post("/v1/shipments", json=shipment(prefix, i), headers=head)
        assert r.status_code == 201, r.get_json()
        out.append((time.perf_counter() - t0) * 1000)
        i += 1
    return out


def run(app: Any, heads: dict[str, dict[str, str]], seconds: float, flooders: int) -> None:
    alone = creates(app.test_client(), heads["B"], "alone", seconds / 2)
    stop = threading.Event()
    answers: collections.Counter[int] = collections.Counter()
    accepted = [0]
    lock = threading.Lock()

    # Bodies encoded up front: the client's own JSON encoding would compete for the GIL with the service.
    bodies = [json.dumps({"shipments": [shipment(f"F{j}-", i) for i in range(1000)]}).encode() for j in range(40)]

    def flood(n: int) -> None:
        client, j = app.test_client(), n
        while not stop.is_set():
            r = client.post("/v1/shipments/batch", data=bodies[j % len(bodies)], headers=heads["A"],
                            content_type="application/json")
            with lock:
                answers[r.status_code] += 1
                if r.status_code == 200:
                    accepted[0] += sum(1 for x in r.get_json()["results"] if x["status"] == "created")
            j += flooders

    threads = [threading.Thread(target=flood, args=(n,)) for n in range(flooders)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    under = creates(app.test_client(), heads["B"], "under", seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0

    def q(xs: list[float]) -> str:
        return f"median {statistics.median(xs):.1f} ms, p95 {statistics.quantiles(xs, n=20)[18]:.1f} ms"

    print(f"B creates alone:       {q(alone)} ({len(alone)} creates)")
    print(f"B creates under flood: {q(under)} ({len(under)} creates)")
    print(f"A accepted {accepted[0] / elapsed:.0f} shipments/s; A's batch answers: {dict(answers)}")


if __name__ == "__main__":
    main()
