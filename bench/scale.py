"""Benchmark: closed-loop create and scan throughput with one node and with two, on one PostgreSQL and one Redis.

Setup (in this process, bench/scan.py's): a fresh PostgreSQL schema, ``--shipments`` shipments printed and assigned
round-robin to ``--couriers`` logged-in couriers, and a merchant for the creates. A private ``redis-server`` on a
free port holds every limit (the nodes share it, as production would; quotas set high so nothing answers 429).

Then node A (``waybill serve``, ``WAYBILL_ENV=production``, ``--workers`` gunicorn workers) alone, and A plus node B
(the same, on another port), each get ``--clients`` closed-loop connections (split evenly over the nodes) for
``--duration`` s: first ``POST /v1/shipments`` (each a new order), then ``POST /v1/courier/scan``. Printed: the
throughput of each, the ratio two nodes / one node, and where the time goes: CPU milliseconds per request in
the nodes' gunicorn processes, in PostgreSQL's processes, in Redis and in this load generator, and how busy the
machine was. Two nodes can only be faster when the machine has idle cores the first node could not use; on a
2-core machine that also runs PostgreSQL, Redis and the load generator, a ratio near 1 is expected: the
figures say which process took the cores.

    python bench/scale.py [--duration 8] [--clients 8] [--workers 2] [--shipments 600] [--couriers 10] [--pg URL]

Target (issue 15): the ratio is printed, with the reason; on 2 cores near 1 or above (>= 0.8) is MET: a second
node must not make the service slower (shared limits in Redis and one database add no contention that hurts).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' private redis-server helper

from scan import (  # noqa: E402 - bench/scan.py's setup and servers, the same as its benchmark's
    DEFAULT_PG,
    HOST,
    SCAN_PER_HOUR,
    SCAN_PER_MINUTE,
    Server,
    build_requests,
    free_port,
    pg_facts,
    pg_schema,
    setup,
    shipment_body,
    start_server,
    stop_server,
    vacuum_analyze,
    wait_idle,
    waybill_command,
)

from tests.private_services import PrivateRedis  # noqa: E402
from waybill.merchants import create_merchant  # noqa: E402
from waybill.permissions import SYSTEM  # noqa: E402
from waybill.services import build, initialise  # noqa: E402
from waybill.settings import load_settings  # noqa: E402

RATIO_FLOOR = 0.8  # two nodes must not be slower than one (beyond noise): shared limits cost no contention


@dataclass
class Run:
    ok: int
    other: int
    seconds: float
    cpu_ms: dict[str, float]  # per OK request: nodes, postgres, redis, client
    machine_busy: float

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def _pg_backends(engine: Engine) -> list[int]:
    """This database's PostgreSQL backends (the nodes' pooled connections): other databases on the same server
    are other people's work, not this benchmark's."""
    with engine.connect() as conn:
        return [int(p) for p in conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars()]


def _cpu_by_pid(pids: Sequence[int]) -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in pids:
        with suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpu_s(pids: Sequence[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _machine() -> tuple[float, float]:
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = float(sum(values[:8]))
    return total - values[3] - values[4], total


def closed_loop(nodes: Sequence[Server], redis_pid: int, engine: Engine, bodies: Sequence[tuple[str, bytes, str]],
                clients: int, duration: float, expect: int) -> Run:
    """``clients`` connections split over ``nodes``, each sending its next request when the last answered."""
    counts = [[0, 0] for _ in range(clients)]
    end = time.perf_counter() + duration
    step = clients

    def worker(c: int) -> None:
        port = nodes[c % len(nodes)].port
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        i = c
        try:
            while time.perf_counter() < end and i < len(bodies):
                path, body, auth = bodies[i]
                try:
                    conn.request("POST", path, body=body, headers={"Authorization": auth,
                                                                   "Content-Type": "application/json"})
                    resp = conn.getresponse()
                    resp.read()
                    counts[c][0 if resp.status == expect else 1] += 1
                except (OSError, http.client.HTTPException):
                    counts[c][1] += 1
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=30)
                i += step
        finally:
            conn.close()

    groups = {"nodes": lambda: sum(n.cpu_seconds() for n in nodes), "redis": lambda: _cpu_s([redis_pid]),
              "client": time.process_time}
    before = {k: f() for k, f in groups.items()}
    pg_before = _cpu_by_pid(_pg_backends(engine))
    mach0 = _machine()
    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(clients)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=duration + 60)
    seconds = time.perf_counter() - t0
    mach1 = _machine()
    ok = sum(c[0] for c in counts)
    cpu = {k: (f() - before[k]) * 1000 / max(1, ok) for k, f in groups.items()}
    # Backends that connected during the run count whole; one that exited meanwhile is lost (pools keep theirs).
    pg_after = _cpu_by_pid(_pg_backends(engine))
    cpu["postgres"] = sum(v - pg_before.get(pid, 0.0) for pid, v in pg_after.items()) * 1000 / max(1, ok)
    busy = (mach1[0] - mach0[0]) / max(1.0, mach1[1] - mach0[1])
    return Run(ok, sum(c[1] for c in counts), seconds, cpu, busy)


def row(name: str, r: Run) -> str:
    c = r.cpu_ms
    return (f"{name:26s} {r.rate:8.1f} {r.other:7d} {c['nodes']:8.2f} {c['postgres']:8.2f} {c['redis']:7.2f} "
            f"{c['client']:7.2f} {r.machine_busy:6.0%}")


def run(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="wbscale-") as tmp_raw, pg_schema(args.pg) as (schema, url):
        tmp = Path(tmp_raw)
        redis_server = PrivateRedis(tmp / "redis").start()
        settings = load_settings(environ={}, data_dir=tmp / "data", database_url=url, log_level="WARNING",
                                 merchant_rate_per_s=1e6, merchant_burst=10**7)
        _keys, engine, _ = initialise(settings)
        try:
            svc = build(settings, engine=engine)
            log(f"setup: {args.shipments} shipments, {args.couriers} couriers ...")
            fx = setup(svc, settings, args.shipments, args.couriers)
            with svc.session_factory() as s:
                merchant = create_merchant(s, SYSTEM, "扩展基准商户", api_key_secret=svc.keys.secret("api_key"))
                s.commit()
            vacuum_analyze(engine, schema)
            env = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")}
            env.update({"WAYBILL_ENV": "production", "WAYBILL_DATA_DIR": str(settings.data_dir),
                        "WAYBILL_KEY_FILE": str(settings.key_file), "WAYBILL_DATABASE_URL": url,
                        "WAYBILL_LOG_LEVEL": "WARNING", "WAYBILL_REDIS_URL": redis_server.url,
                        "WAYBILL_SCAN_PER_MINUTE": str(SCAN_PER_MINUTE), "WAYBILL_SCAN_PER_HOUR": str(SCAN_PER_HOUR),
                        "WAYBILL_MERCHANT_RATE_PER_S": "1000000", "WAYBILL_MERCHANT_BURST": "10000000"})
            auth = f"Bearer {merchant.api_key}"
            n = 40_000

            def creates(offset: int) -> list[tuple[str, bytes, str]]:
                return [("/v1/shipments", json.dumps({**shipment_body(offset + i),
                                                      "merchant_order_id": f"SCALE{offset + i:08d}"}).encode(), auth)
                        for i in range(n)]

            scans = [("/v1/courier/scan", r.body, r.headers["Authorization"])
                     for r in build_requests(fx, n, seed=args.seed)]

            def start(name: str) -> Server:
                port = free_port()
                node = start_server(name, [*waybill_command(), "serve", "--host", HOST, "--port", str(port),
                                           "--workers", str(args.workers)], env, tmp / f"{name}.log", port)
                servers.append(node)
                return node

            results: dict[tuple[str, int], list[Run]] = {}
            load_avg = os.getloadavg()[0]
            log("node A ...")
            a = start("node-a")
            wait_idle(servers, args.workers)
            redis_pid = redis_server.proc.pid if redis_server.proc else 0
            # One node, two nodes, one node again: the machine is shared, so the first and last one-node runs show
            # how much its load moved meanwhile.
            for round_no, k in enumerate((1, 2, 1)):
                if k == 2:
                    log("node B ...")
                    b = start("node-b")
                    wait_idle(servers, args.workers)
                elif round_no == 2:
                    stop_server(b)
                    servers.remove(b)
                nodes = [a, b] if k == 2 else [a]
                log(f"{k} node(s): creates, then scans ({args.duration:g} s each) ...")
                results.setdefault(("create", k), []).append(closed_loop(
                    nodes, redis_pid, engine, creates(1_000_000 * (round_no + 1)), args.clients, args.duration, 201))
                results.setdefault(("scan", k), []).append(closed_loop(
                    nodes, redis_pid, engine, scans, args.clients, args.duration, 200))
            lines = [f"scale benchmark: {pg_facts(engine)}, schema {schema}; {os.cpu_count()} cores shared by the "
                     f"nodes, PostgreSQL, a private Redis (every limit) and this load generator",
                     f"each node: `waybill serve` (production), gunicorn {args.workers} workers x 2 threads; "
                     f"{args.clients} closed-loop clients split over the nodes, {args.duration:g} s per run",
                     f"{'run':26s} {'req/s':>8s} {'non-2xx':>7s} {'node ms':>8s} {'pg ms':>8s} {'redis':>7s} "
                     f"{'client':>7s} {'busy':>6s}   (CPU ms per request)"]
            for op in ("create", "scan"):
                for k, label in ((1, "1 node"), (2, "2 nodes"), (1, "1 node again")):
                    runs = results[(op, k)]
                    lines.append(row(f"{op} POST, {label}", runs[-1] if label.endswith("again") else runs[0]))
            for op in ("create", "scan"):
                ones, two = results[(op, 1)], results[(op, 2)][0]
                one_rate = sum(r.rate for r in ones) / len(ones)
                ratio = two.rate / one_rate if one_rate else float("nan")
                cpu = sum(two.cpu_ms.values())
                share = ", ".join(f"{name} {v / cpu:.0%}" for name, v in two.cpu_ms.items()) if cpu else "-"
                verdict = "MET" if ratio >= RATIO_FLOOR else "NOT MET"
                lines.append(f"{op}: 2 nodes / 1 node (mean of the two one-node runs, "
                             f"{ones[0].rate:.0f} and {ones[-1].rate:.0f} req/s) = {ratio:.2f}x -> {two.rate:.0f} "
                             f"req/s; CPU per request with 2 nodes: {share}; target on {os.cpu_count()} cores: "
                             f"near 1 or above (>= {RATIO_FLOOR}): {verdict}")
            lines.append(f"machine: load average {load_avg:.1f} before the runs (others' jobs included); 'busy' is "
                         f"the share of all cores in use during each run, anyone's work")
            lines.append("where the time goes: when one node already keeps the cores busy, a second adds processes, "
                         "not cores: the same CPU per request (node, PostgreSQL, Redis columns) is spread over more "
                         "of them; the nodes share nothing but PostgreSQL and Redis, whose share is printed")
            print("\n".join(lines), flush=True)
            return 0 if all(r.other == 0 for runs in results.values() for r in runs) else 1
        finally:
            for server in reversed(servers):
                stop_server(server)
            redis_server.stop()
            engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per closed-loop run (default 8)")
    ap.add_argument("--clients", type=int, default=8, help="closed-loop connections (default 8)")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers per node (default 2)")
    ap.add_argument("--couriers", type=int, default=10)
    ap.add_argument("--shipments", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL (default: the local test database)")
    args = ap.parse_args()
    for name, (lo, hi) in {"duration": (1, 60), "clients": (1, 128), "workers": (1, 8), "couriers": (1, 200),
                           "shipments": (1, 10_000)}.items():
        if not lo <= getattr(args, name) <= hi:
            ap.error(f"--{name} must be between {lo} and {hi}")
    if args.shipments < args.couriers:
        ap.error("--shipments must be at least --couriers")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
