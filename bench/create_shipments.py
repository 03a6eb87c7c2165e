"""Benchmark: shipments created per second through the merchant API.

For each backend (embedded SQLite, and PostgreSQL when reachable) and each codec (the real vault,
and an identity codec that stores plaintext — only here, to measure what encryption costs), it
drives the full WSGI stack in-process (routing, auth, JSON, validation, masking, routing table,
encryption, blind index, audit chain, commit) and prints shipments/s for single and batch create,
then the vault/identity time ratio. Batches are also sent over HTTP: a real socket to a WSGI server in a
thread of this process (werkzeug's; the client's JSON encoding is done before the clock starts, its
decoding after it stops, but client and server share this process and its GIL).

Targets (issue 15, SQLite, vault): single >= 800/s and batch >= 5,000/s in-process, printed MET / NOT MET.

    python bench/create_shipments.py [--single 300] [--batches 5] [--rounds 3] [--pg URL | --no-pg]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _env import body, database_url
from werkzeug.serving import make_server

from waybill import db
from waybill.crypto.vault import IdentityCodec
from waybill.merchants import create_merchant
from waybill.permissions import SYSTEM
from waybill.services import build, initialise
from waybill.settings import load_settings
from waybill.web.app import create_app

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGETS = {"single": 800.0, "batch": 5000.0}  # shipments/s, SQLite with the vault


def setup(tmp: Path, pg_url: str | None, identity: bool) -> tuple[Any, dict[str, str], Any]:
    database = database_url(tmp, pg_url)
    url = database.__enter__()
    settings = load_settings(environ={}, data_dir=tmp, database_url=url, merchant_rate_per_s=1e6,
                             merchant_burst=10**7, log_level="WARNING")
    _keys, engine, _ = initialise(settings)
    svc = build(settings, engine=engine, codec=IdentityCodec() if identity else None)
    with svc.session_factory() as s:
        m = create_merchant(s, SYSTEM, "bench", api_key_secret=svc.keys.secret("api_key"))
        s.commit()
    app = create_app(settings, services_override=svc)
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = app.test_client()
    client.http_port = server.server_port  # type: ignore[attr-defined]

    def cleanup() -> None:
        server.shutdown()
        thread.join()
        engine.dispose()
        database.__exit__(None, None, None)

    return client, {"Authorization": f"Bearer {m.api_key}"}, cleanup


def run_single(client: Any, headers: dict[str, str], n: int, offset: int) -> float:
    t0 = time.perf_counter()
    for i in range(offset, offset + n):
        r = client.post("/v1/shipments", json=body(i), headers=headers)
        assert r.status_code == 201, r.get_json()
    return time.perf_counter() - t0


def run_batch(client: Any, headers: dict[str, str], batches: int, offset: int) -> float:
    t0 = time.perf_counter()
    for b in range(batches):
        start = offset + b * 1000
        r = client.post("/v1/shipments/batch", json={"shipments": [body(i) for i in range(start, start + 1000)]},
                        headers=headers)
        results = r.get_json()["results"]
        assert r.status_code == 200 and all(x["status"] == "created" for x in results), results[:1]
    return time.perf_counter() - t0


def run_http_batch(client: Any, headers: dict[str, str], batches: int, offset: int) -> float:
    """``batches`` batches of 1000 over one keep-alive HTTP connection to the server thread."""
    bodies = [json.dumps({"shipments": [body(i) for i in range(offset + b * 1000, offset + (b + 1) * 1000)]},
                         ensure_ascii=False).encode() for b in range(batches)]
    conn = http.client.HTTPConnection("127.0.0.1", client.http_port, timeout=120)
    answers: list[tuple[int, bytes]] = []
    t0 = time.perf_counter()
    for data in bodies:
        conn.request("POST", "/v1/shipments/batch", body=data,
                     headers={**headers, "Content-Type": "application/json"})
        resp = conn.getresponse()
        answers.append((resp.status, resp.read()))
    elapsed = time.perf_counter() - t0
    conn.close()
    for status, raw in answers:
        results = json.loads(raw)["results"]
        assert status == 200 and all(x["status"] == "created" for x in results), raw[:300]
    return elapsed


def verdict(value: float, target: float) -> str:
    return f"{'MET' if value >= target else 'NOT MET'} (target >= {target:,.0f}/s)"


def bench_backend(name: str, pg_url: str | None, n_single: int, batches: int, rounds: int) -> None:
    times: dict[tuple[str, str], list[float]] = {}
    # Alternate codecs round by round so drift in machine load hits both equally.
    for r in range(rounds):
        for codec in ("vault", "identity"):
            with tempfile.TemporaryDirectory() as tmp:
                client, headers, cleanup = setup(Path(tmp), pg_url, identity=codec == "identity")
                try:
                    run_single(client, headers, 20, 10**8)  # warm-up
                    times.setdefault((codec, "single"), []).append(run_single(client, headers, n_single, 0))
                    times.setdefault((codec, "batch"), []).append(run_batch(client, headers, batches, 10**6))
                    times.setdefault((codec, "http batch"), []).append(
                        run_http_batch(client, headers, batches, 2 * 10**6))
                finally:
                    cleanup()
        print(f"  [{name}] round {r + 1}/{rounds} done", file=sys.stderr)
    for mode, count in (("single", n_single), ("batch", batches * 1000), ("http batch", batches * 1000)):
        vault = statistics.median(times[("vault", mode)])
        ident = statistics.median(times[("identity", mode)])
        target = TARGETS.get(mode) if name == "sqlite" else None
        print(f"{name:10s} {mode:10s}  vault {count / vault:8.0f} shipments/s   identity {count / ident:8.0f} "
              f"shipments/s   encryption overhead {vault / ident:5.2f}x"
              + (f"   {verdict(count / vault, target)}" if target else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--single", type=int, default=300, help="single creates per round")
    ap.add_argument("--batches", type=int, default=5, help="1000-item batches per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL (default: local test database)")
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    print("backend    mode        (median of rounds; single and batch: in-process WSGI, full request path; "
          "http batch: over a socket)")
    bench_backend("sqlite", None, args.single, args.batches, args.rounds)
    if not args.no_pg:
        try:
            eng = db.make_engine(args.pg)
            with eng.connect():
                pass
            eng.dispose()
        except Exception as exc:  # noqa: BLE001 - report and skip, the SQLite figures still stand
            print(f"postgresql skipped: {type(exc).__name__}")
            return
        bench_backend("postgresql", args.pg, args.single, args.batches, args.rounds)


if __name__ == "__main__":
    main()
