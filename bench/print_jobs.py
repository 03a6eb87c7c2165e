"""Benchmark: a print job (``POST /v1/print-jobs``) through HTTP beside the renderer alone, in ZPL and PDF.

For each format, seeds ``--count`` fresh shipments (default 10,000) through the domain, then times one print job of
all of them through the Flask app's WSGI interface in-process (the Flask test client: authentication, the job's
checks, tokens, status changes and audit events issued chunk by chunk, the streamed body read to its end; no
socket), then the renderer alone (``printing.iter_render``) on the same labels in the same process. Prints
labels/s wall-clock and per CPU-second of this process (the machine is shared: CPU time is the steadier figure;
on PostgreSQL the server's own CPU is not in it) and MET / NOT MET beside the targets: HTTP ZPL >= 5,000 labels/s,
HTTP PDF >= 70% of its renderer. ``--profile`` prints a pyinstrument profile of the HTTP ZPL job.

    python bench/print_jobs.py [--count 10000] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/DB]

The database is ``--pg``, else ``WAYBILL_BENCH_DATABASE_URL``, else SQLite in a temporary directory; on
PostgreSQL a throw-away schema is created and dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _env import body, database_url  # noqa: E402

import printing  # noqa: E402
from courier_api.staff import create_user  # noqa: E402
from printing.samples import sample_models  # noqa: E402
from waybill import labels, print_jobs, shipments  # noqa: E402
from waybill.merchants import create_merchant  # noqa: E402
from waybill.permissions import SYSTEM, Principal  # noqa: E402
from waybill.schemas import ShipmentIn, parse  # noqa: E402
from waybill.services import Services, build, initialise  # noqa: E402
from waybill.settings import load_settings  # noqa: E402
from waybill.uow import unit_of_work  # noqa: E402
from waybill.web.app import create_app  # noqa: E402

STATION = "755-W012"  # the sorter's hub: the seeded parcels go to Shenzhen
SIZE = "100x150"
ZPL_TARGET = 5000.0
PDF_RATIO_TARGET = 0.70


def _seed(svc: Services, merchant: Principal, count: int, prefix: str) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 1000):
        with unit_of_work(svc.session_factory) as tx:
            items = [parse(ShipmentIn, body(i, prefix, spread=False)) for i in range(start, min(count, start + 1000))]
            ids += [r.shipment.id for r in shipments.create_batch(tx.session, svc.shipment_deps, merchant, items)
                    if r.shipment is not None]
    return ids


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def run(url: str, data_dir: Path, count: int, profile: bool) -> dict[str, dict[str, float]]:
    settings = load_settings(environ={}, data_dir=data_dir, database_url=url, env="test", log_level="WARNING",
                             merchant_rate_per_s=1e5, merchant_burst=10**6)
    _keys, engine, _ = initialise(settings)
    svc = build(settings, engine=engine)
    client = create_app(settings, services_override=svc).test_client()
    with svc.session_factory() as s:
        made = create_merchant(s, SYSTEM, "打印基准商户", api_key_secret=svc.keys.secret("api_key"))
        user = create_user(s, SYSTEM, "bench_printer", "sorter", STATION, None, svc.codec)
        s.commit()
    merchant = Principal("merchant", made.merchant_id, "merchant")
    sorter = Principal("staff", user.user.id, "sorter", STATION)
    login = client.post("/v1/auth/token", json={"username": "bench_printer", "password": user.password})
    assert login.status_code == 200, login.get_data(as_text=True)
    headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
    printing.check_fonts()
    for fmt in ("zpl", "pdf"):  # warm-up: fonts, glyph caches
        printing.render_label(next(sample_models(1)), fmt, SIZE)
    results: dict[str, dict[str, float]] = {}
    for fmt in ("zpl", "pdf"):
        ids = _seed(svc, merchant, count, fmt.upper())

        def job(fmt: str = fmt, ids: list[str] = ids) -> int:
            r = client.post("/v1/print-jobs", json={"shipment_ids": ids, "format": fmt, "size": SIZE},
                            headers=headers)
            assert r.status_code == 200, r.get_data(as_text=True)
            return sum(len(chunk) for chunk in r.response)

        profiler = None
        if profile and fmt == "zpl":
            from pyinstrument import Profiler

            profiler = Profiler()
            profiler.start()
        wall, cpu, size = _timed(job)
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(color=False, show_all=False))
        # The same labels, rendered alone: their models as the job printed them, with tokens of the same shape
        # (fresh random ones: a constant placeholder token makes a QR code, and its compressed stream, far cheaper).
        with svc.session_factory() as s:
            models = [dataclasses.replace(m, token=labels.derive_token(secrets.token_bytes(20), b"bench"))
                      for m in print_jobs.check_print_job(s, svc.label_deps, sorter, ids)]
            s.rollback()
        r_wall, r_cpu, _ = _timed(lambda models=models, fmt=fmt: sum(
            len(c) for c in printing.iter_render(models, fmt, SIZE)))
        results[fmt] = {"http": count / wall, "http_cpu": count / cpu, "render": count / r_wall,
                        "render_cpu": count / r_cpu, "bytes": size}
        print(f"{fmt.upper()} {count}-label job: HTTP {count / wall:8.0f} labels/s ({count / cpu:8.0f} per CPU-s), "
              f"renderer alone {count / r_wall:8.0f} labels/s ({count / r_cpu:8.0f} per CPU-s), "
              f"{size / 1e6:.1f} MB", flush=True)
    engine.dispose()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=10_000, help="labels per job (default 10,000)")
    ap.add_argument("--pg", default=os.environ.get("WAYBILL_BENCH_DATABASE_URL"),
                    help="PostgreSQL URL (default: $WAYBILL_BENCH_DATABASE_URL, else embedded SQLite)")
    ap.add_argument("--profile", action="store_true", help="pyinstrument profile of the HTTP ZPL job")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, database_url(Path(tmp), args.pg) as url:
        backend = "PostgreSQL" if args.pg else "SQLite"
        print(f"python {sys.version.split()[0]}, {backend}, {args.count} labels per job, size {SIZE}, "
              "Flask test client (in-process WSGI), 1 process / 1 thread")
        res = run(url, Path(tmp), args.count, args.profile)
    zpl, pdf = res["zpl"], res["pdf"]
    note = " (small job: too small to judge)" if args.count < 1000 else ""
    targets = (
        (f"HTTP ZPL >= {ZPL_TARGET:.0f} labels/s (got {zpl['http']:.0f})", zpl["http"] >= ZPL_TARGET),
        (f"HTTP PDF >= {PDF_RATIO_TARGET:.0%} of its renderer (got {pdf['http'] / pdf['render']:.0%})",
         pdf["http"] / pdf["render"] >= PDF_RATIO_TARGET),
    )
    print(f"(per CPU-second: HTTP ZPL {zpl['http_cpu']:.0f}/s; HTTP PDF {pdf['http_cpu'] / pdf['render_cpu']:.0%} "
          "of its renderer)")
    for name, met in targets:
        print(f"target {name:52s} {'MET' if met else 'NOT MET'}{note}")


if __name__ == "__main__":
    main()
