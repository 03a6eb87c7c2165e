"""Benchmark: listing 1,000 shipments through the merchant API (what the sealed masked snapshot costs).

Creates 1,000 shipments with one batch request, then reads all of them back with ``GET /v1/shipments``
(pages of ``--limit``, following ``next_cursor``) and times that, median of ``--repeat`` runs. The masked
snapshot is sealed since issue 11 item 10, so each listed shipment now costs two AES-GCM decryptions; run the
same script on the code before it to compare. Also times the merchant phone search, and the serialisation of
1,000 loaded rows alone (where the decryption shows; the listing itself is dominated by its audit events).

    python bench/list_shipments.py [--limit 200] [--repeat 15] [--pg URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _env import body, database_url
from sqlalchemy import select

from waybill.merchants import create_merchant
from waybill.models import Shipment
from waybill.permissions import SYSTEM
from waybill.services import build, initialise
from waybill.settings import load_settings
from waybill.web.app import create_app
from waybill.web.merchant import shipment_out

N = 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=200, help="page size (the default page_max)")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (default: SQLite in a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database = database_url(Path(tmp), args.pg)
        url = database.__enter__()
        settings = load_settings(environ={}, data_dir=Path(tmp), database_url=url, merchant_rate_per_s=1e6,
                                 merchant_burst=10**7, log_level="WARNING")
        _keys, engine, _ = initialise(settings)
        try:
            svc = build(settings, engine=engine)
            with svc.session_factory() as s:
                m = create_merchant(s, SYSTEM, "bench", api_key_secret=svc.keys.secret("api_key"))
                s.commit()
            app = create_app(settings, services_override=svc)
            client = app.test_client()
            headers = {"Authorization": f"Bearer {m.api_key}"}
            r = client.post("/v1/shipments/batch", json={"shipments": [body(i, "L", spread=False, description=None)
                                                                for i in range(N)]}, headers=headers)
            assert r.status_code == 200 and all(x["status"] == "created" for x in r.get_json()["results"])

            def list_all() -> int:
                seen, cursor = 0, None
                while True:
                    q = f"/v1/shipments?limit={args.limit}" + (f"&cursor={cursor}" if cursor else "")
                    page = client.get(q, headers=headers).get_json()
                    seen += len(page["items"])
                    cursor = page["next_cursor"]
                    if not cursor:
                        return seen

            def search() -> int:
                r = client.post("/v1/shipments/search", json={"recipient_phone": "13800000500"}, headers=headers)
                return len(r.get_json()["items"])

            with svc.session_factory() as s:
                rows = list(s.execute(select(Shipment)).scalars())

            def serialise() -> int:
                # The merchant view of 1,000 loaded rows alone: where the snapshot's decryption shows.
                with app.app_context():
                    return len([shipment_out(row) for row in rows])

            for name, fn, expected in (("list 1,000", list_all, N), ("phone search", search, 1),
                                       ("serialise 1k", serialise, N)):
                assert fn() == expected  # warm-up and check
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                backend = "postgresql" if args.pg else "sqlite"
                print(f"{backend:10s} {name:13s} median {statistics.median(times) * 1000:7.1f} ms"
                      f"  (min {min(times) * 1000:.1f}, {args.repeat} runs, pages of {args.limit})")
        finally:
            engine.dispose()
            database.__exit__(None, None, None)

if __name__ == "__main__":
    main()
