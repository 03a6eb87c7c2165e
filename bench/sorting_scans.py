"""Benchmark: 1,000-number sorting-centre scan batches (``POST /v1/sorting/scans``) through the full request path.

Seeds ``--rounds`` x 1,000 printed shipments through the domain, then, in-process through the WSGI app (auth,
unit of work, audit, commit), times for each round one ``arrival`` batch of fresh parcels (each number: the
``printed`` -> ``in_transit`` move and the scan, two numbered tracking events) and one ``departure`` batch of
the same parcels (one scan event each). Prints each batch's time, scans/s, and MET / NOT MET beside the target
(a 1,000-number batch answered within ``TARGET_S``). SQLite always; PostgreSQL with ``--pg URL``.

    python bench/sorting_scans.py [--rounds 3] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/DB]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from courier_api.staff import create_user
from waybill import db, print_jobs, shipments
from waybill.merchants import create_merchant
from waybill.models import Shipment
from waybill.permissions import SYSTEM, Principal
from waybill.schemas import ShipmentIn, parse
from waybill.services import Services, build, initialise
from waybill.settings import load_settings
from waybill.uow import unit_of_work
from waybill.web.app import create_app

BATCH = 1000
TARGET_S = 1.0
STATION = "755-W012"


def body(i: int) -> dict[str, Any]:
    return {
        "merchant_order_id": f"S{i:09d}",
        "sender": {"name": "王小明", "phone": "13900001111", "province": "上海市", "city": "上海市",
                   "district": "徐汇区", "address": "漕溪北路88号"},
        "recipient": {"name": "张三", "phone": f"138{i % 10**8:08d}", "province": "广东省", "city": "深圳市",
                      "district": "南山区", "address": f"科技园路{i % 300}号"},
        "parcel": {"weight_g": 100 + i % 5000},
    }


def seed(svc: Services, merchant: Principal, sorter: Principal, start: int) -> list[str]:
    """``BATCH`` printed shipments; returns their waybill numbers."""
    with unit_of_work(svc.session_factory) as tx:
        items = [parse(ShipmentIn, body(i)) for i in range(start, start + BATCH)]
        ids = [r.shipment.id for r in shipments.create_batch(tx.session, svc.shipment_deps, merchant, items)
               if r.shipment is not None]
        print_jobs.issue_print_job(tx.session, svc.label_deps, sorter, ids)
        return list(tx.session.scalars(select(Shipment.waybill_no).where(Shipment.id.in_(ids))))


def run(url: str, data_dir: Path, rounds: int) -> list[tuple[str, float]]:
    settings = load_settings(environ={}, data_dir=data_dir, database_url=url, env="test", log_level="WARNING",
                             merchant_rate_per_s=1e5, merchant_burst=10**6)
    _keys, engine, _ = initialise(settings)
    svc = build(settings, engine=engine)
    app = create_app(settings, services_override=svc)
    client = app.test_client()
    with svc.session_factory() as s:
        made = create_merchant(s, SYSTEM, "分拣基准商户", api_key_secret=svc.keys.secret("api_key"))
        user = create_user(s, SYSTEM, "bench_sorter", "sorter", STATION, None, svc.codec)
        s.commit()
    merchant = Principal("merchant", made.merchant_id, "merchant")
    sorter = Principal("staff", user.user.id, "sorter", STATION)
    login = client.post("/v1/auth/token", json={"username": "bench_sorter", "password": user.password})
    assert login.status_code == 200, login.get_data(as_text=True)
    headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
    timings: list[tuple[str, float]] = []
    for r in range(rounds):
        numbers = seed(svc, merchant, sorter, r * BATCH)
        for event, expected in (("arrival", "in_transit"), ("departure", "in_transit")):
            t0 = time.perf_counter()
            answer = client.post("/v1/sorting/scans", json={"waybill_nos": numbers, "event": event}, headers=headers)
            elapsed = time.perf_counter() - t0
            results = answer.get_json()["results"]
            assert answer.status_code == 200 and all(x.get("status") == expected for x in results), results[:3]
            timings.append((event, elapsed))
            print(f"  round {r + 1} {event:9s} {elapsed:6.3f} s  {BATCH / elapsed:7.0f} scans/s")
    engine.dispose()
    return timings


def report(name: str, timings: list[tuple[str, float]]) -> None:
    for event in ("arrival", "departure"):
        values = [t for e, t in timings if e == event]
        worst = max(values)
        verdict = "MET" if worst <= TARGET_S else "NOT MET"
        print(f"{name} {event:9s} median {statistics.median(values):.3f} s, worst {worst:.3f} s per {BATCH}-number "
              f"batch (target <= {TARGET_S:.1f} s): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", help="a PostgreSQL URL (a fresh schema is made in it and dropped afterwards)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite:")
        report("SQLite    ", run(f"sqlite:///{tmp}/bench.db", Path(tmp) / "sqlite", args.rounds))
        if args.pg:
            schema = "bench_" + secrets.token_hex(4)
            admin = db.make_engine(args.pg)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            try:
                sep = "&" if "?" in args.pg else "?"
                print("PostgreSQL:")
                timings = run(f"{args.pg}{sep}options=-csearch_path%3D{schema}", Path(tmp) / "pg", args.rounds)
                report("PostgreSQL", timings)
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()


if __name__ == "__main__":
    main()
