"""Benchmark: courier scans per second and their latency, against the service run as in production.

Setup (in this process): a fresh PostgreSQL schema, a merchant, ``--shipments`` shipments to one district
(so they share a delivering station), a sorter's print job (its label models carry the QR tokens), a
dispatcher and ``--couriers`` couriers at that station, shipments assigned round-robin, every courier logged
in. Then two servers are started as subprocesses, both gunicorn with ``--workers`` gthread workers:

- the service, exactly as production starts it: ``waybill serve`` with ``WAYBILL_ENV=production``, the key
  file, the schema's URL, high scan quotas (so they never answer 429 here) shared through Redis when
  ``redis://127.0.0.1:6379/0`` answers;
- ``bench/bare_lookup.py``: one endpoint that only looks the token up (no auth, audit or decryption).

Each gets the same open-loop load: ``--rate`` requests/s on a fixed schedule for ``--warmup`` + ``--duration``
seconds, each a random (courier access token, one of that courier's QR tokens) pair, over persistent HTTP/1.1
connections. Latency is measured from the *scheduled* send time, so a server that falls behind cannot hide
its queue (no coordinated omission). Then, for information, a closed-loop run (``--closed-clients``
connections as fast as they go for ``--closed-duration`` s) gives each one's maximum throughput.

Targets on the 2-core machine: p99 < 50 ms at 200 scans/s, and the service at most 2x the bare lookup.
The load generator shares the cores with the servers, so it is kept lean: standard library only, requests
built before the clock starts.

    python bench/scan.py [--rate 200] [--duration 15] [--workers 4] [--couriers 20] [--shipments 2000] [--pg URL]

Where the time goes: ``--py-spy DIR`` samples every service worker during the measured window (wall clock;
add ``--py-spy-gil`` for CPU only) into collapsed-stack files, one per worker (needs ``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text

from courier_api import delivery, staff
from courier_api.deps import delivery_deps
from waybill import db, print_jobs
from waybill.merchants import create_merchant
from waybill.models import AuditEvent, Shipment
from waybill.permissions import SYSTEM, Principal
from waybill.services import Services, build, initialise
from waybill.settings import load_settings
from waybill.web.app import create_app

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
HOST = "127.0.0.1"  # every socket this benchmark opens stays on the loopback interface
SCAN_PATH = "/v1/courier/scan"
BARE_PATH = "/lookup"
# High enough that the quotas never refuse a benchmark scan, still inside the settings' accepted range.
SCAN_PER_MINUTE = 10_000
SCAN_PER_HOUR = 1_000_000
TARGET_P99_MS = 50.0
TARGET_RATE = 200.0
TARGET_OVERHEAD = 2.0
BATCH = 1000  # the merchant API's batch limit
# Recipients in one district share a sorting code prefix, hence one delivering station.
RECIPIENT_REGION = {"province": "广东省", "city": "深圳市", "district": "南山区"}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"


# -- setup -------------------------------------------------------------------------------------------------


def shipment_body(i: int) -> dict[str, Any]:
    """Shipment ``i``: one district, varied names, phones and rooms (so ciphertexts and masks differ)."""
    return {
        "merchant_order_id": f"SCAN{i:08d}",
        "sender": {"name": "王小明", "phone": "13900001111", "province": "上海市", "city": "上海市",
                   "district": "徐汇区", "address": "漕溪北路88号"},
        "recipient": {"name": f"{SURNAMES[i % len(SURNAMES)]}{chr(0x4E00 + i % 500)}{chr(0x4E00 + i % 311)}",
                      "phone": f"138{(i * 7919) % 10**8:08d}", **RECIPIENT_REGION,
                      "address": f"粤海街道科技园路{i % 300 + 1}号{i % 9 + 1}栋{i % 30 + 1:02d}01室"},
        "parcel": {"weight_g": 100 + i % 5000, "description": "日用品"},
    }


@dataclass
class Fixture:
    """What the load needs: per courier, its access token and the QR tokens of its shipments."""

    station: str
    courier_tokens: list[str]
    qr_by_courier: list[list[tuple[str, str]]]  # (qr token, shipment id) per courier
    courier_ids: list[str]
    seconds: float


def create_shipments(svc: Services, settings: Any, count: int) -> list[str]:
    """Shipment ids, created through the in-process merchant API in batches (the fastest correct path)."""
    with svc.session_factory() as s:
        merchant = create_merchant(s, SYSTEM, "扫码基准商户", api_key_secret=svc.keys.secret("api_key"))
        s.commit()
    client = create_app(settings, services_override=svc).test_client()
    headers = {"Authorization": f"Bearer {merchant.api_key}"}
    ids: list[str] = []
    for start in range(0, count, BATCH):
        items = [shipment_body(i) for i in range(start, min(count, start + BATCH))]
        r = client.post("/v1/shipments/batch", json={"shipments": items}, headers=headers)
        results = r.get_json()["results"] if r.status_code == 200 else []
        if r.status_code != 200 or any(x["status"] != "created" for x in results):
            raise RuntimeError(f"batch create failed: HTTP {r.status_code} {str(r.get_json())[:300]}")
        ids.extend(x["shipment"]["id"] for x in results)
    return ids


def setup(svc: Services, settings: Any, n_shipments: int, n_couriers: int) -> Fixture:
    """Merchant, shipments, print job, staff, assignments and logins, all committed."""
    t0 = time.perf_counter()
    ids = create_shipments(svc, settings, n_shipments)
    codec = svc.codec
    with svc.session_factory() as s:
        first = s.get(Shipment, ids[0])
        assert first is not None
        station = delivery.shipment_station(first)
        stations = {delivery.shipment_station(x) for x in s.execute(select(Shipment).where(
            Shipment.id.in_(ids[:BATCH]))).scalars()}
        if stations != {station}:
            raise RuntimeError(f"shipments do not share one station: {sorted(stations)}")
        sorter = staff.create_user(s, SYSTEM, "bench_sorter", "sorter", station, None, codec).user
        dispatcher = staff.create_user(s, SYSTEM, "bench_dispatcher", "dispatcher", station, None, codec).user
        couriers = [staff.create_user(s, SYSTEM, f"bench_courier{k:03d}", "courier", station, None, codec)
                    for k in range(n_couriers)]
        s.commit()
    # The sorter's print job issues every QR token; the label models carry them (no need to rasterise).
    sorter_p = Principal(kind="staff", id=sorter.id, role="sorter", station=station)
    tokens: list[str] = []
    for start in range(0, len(ids), BATCH):
        with svc.session_factory() as s:
            models = print_jobs.issue_print_job(s, svc.label_deps, sorter_p, ids[start:start + BATCH])
            s.commit()
        tokens.extend(m.token for m in models)
    # Round-robin dispatch, through the domain's own checks (station, role, status).
    disp_p = Principal(kind="staff", id=dispatcher.id, role="dispatcher", station=station)
    qr_by_courier: list[list[tuple[str, str]]] = [[] for _ in couriers]
    pickup = delivery_deps(svc).pickup
    for start in range(0, len(ids), 500):
        with svc.session_factory() as s:
            for i in range(start, min(len(ids), start + 500)):
                k = i % len(couriers)
                delivery.assign(s, disp_p, ids[i], couriers[k].user.username, provider=svc.provider,
                                pickup=pickup)
                qr_by_courier[k].append((tokens[i], ids[i]))
            s.commit()
    # Real logins (Argon2id password check, hashed access token): couriers need no TOTP.
    courier_tokens = []
    with svc.session_factory() as s:
        for c in couriers:
            result = staff.login(s, c.user.username, c.password, None, secret=svc.keys.secret("session_token"),
                                 codec=codec)
            courier_tokens.append(result.access_token)
        s.commit()
    return Fixture(station, courier_tokens, qr_by_courier, [c.user.id for c in couriers], time.perf_counter() - t0)


@dataclass(frozen=True)
class Req:
    """One prepared request: body bytes, headers and the shipment the answer must name."""

    body: bytes
    headers: dict[str, str]
    shipment_id: str


def build_requests(fx: Fixture, n: int, seed: int) -> list[Req]:
    """``n`` random (courier, one of that courier's QR tokens) requests, encoded before the clock starts."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randrange(len(fx.courier_tokens))
        qr, sid = rng.choice(fx.qr_by_courier[k])
        body = json.dumps({"token": qr}).encode()
        out.append(Req(body, {"Authorization": f"Bearer {fx.courier_tokens[k]}",
                              "Content-Type": "application/json", "Content-Length": str(len(body))}, sid))
    return out


# -- servers -----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def waybill_command() -> list[str]:
    """The installed `waybill` console script of this interpreter (what production runs), else its module."""
    script = Path(sys.executable).with_name("waybill")
    if script.exists():
        return [str(script)]
    found = shutil.which("waybill")
    return [found] if found else [sys.executable, "-m", "waybill.commands.main"]


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def worker_pids(self) -> list[int]:
        """The gunicorn workers (children of the arbiter), for profiling."""
        try:
            raw = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in raw.split()]

    def cpu_seconds(self) -> float:
        """User + system CPU of the arbiter and its workers so far (PostgreSQL and Redis are not ours to count)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in (self.proc.pid, *self.worker_pids()):
            with suppress(OSError, ValueError, IndexError):
                # Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def log_tail(self, lines: int = 20) -> str:
        with suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def start_server(name: str, argv: list[str], env: dict[str, str], log: Path, port: int,
                 timeout_s: float = 60.0) -> Server:
    """Start ``argv`` in a session of its own and wait until ``/healthz`` answers 200."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, port, proc, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{server.log_tail()}")
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"{name} did not answer /healthz within {timeout_s:.0f} s:\n{server.log_tail()}")


def stop_server(server: Server) -> None:
    """SIGTERM the arbiter (graceful), then SIGKILL the process group this benchmark created for it."""
    proc = server.proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group is the one start_new_session gave it
            proc.wait(timeout=5)


@dataclass
class Profilers:
    """``py-spy record`` processes, one per service worker, launched by a timer after the warm-up."""

    timer: threading.Timer
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def wait(self, timeout: float = 30.0) -> None:
        self.timer.join(timeout=timeout)
        for proc in self.procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(timeout=5)


def start_profilers(server: Server, out_dir: Path, delay: float, seconds: float, *, rate: int,
                    gil_only: bool) -> Profilers:
    """Sample every worker of ``server`` for the measured window (collapsed stacks, one file per worker).

    Optional (``--py-spy DIR``): the sampler needs CPU too, so numbers from a profiled run read a little high.
    A timer launches the samplers, so the load generator's schedule is untouched.
    """
    exe = shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("--py-spy needs py-spy on PATH (pip install py-spy)")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Wall-clock samples by default (where a request's time goes, waits included); --gil: only threads
    # holding the GIL (where the CPU goes). --nonblocking: never pause the worker to read its stacks.
    argv = [exe, "record", "--rate", str(rate), "--format", "raw", "--duration", str(max(1, round(seconds))),
            "--nonblocking", *(["--gil"] if gil_only else [])]

    def launch() -> None:
        for pid in server.worker_pids():
            prof.procs.append(subprocess.Popen(
                [*argv, "--pid", str(pid), "--output", str(out_dir / f"worker-{pid}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    prof = Profilers(threading.Timer(delay, launch))
    prof.timer.daemon = True
    prof.timer.start()
    return prof


# -- load --------------------------------------------------------------------------------------------------


def _send(conn: http.client.HTTPConnection, path: str, req: Req) -> tuple[int, bytes]:
    conn.request("POST", path, body=req.body, headers=req.headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def send_with_retry(conns: list[http.client.HTTPConnection], port: int, path: str, req: Req) -> tuple[int, bytes]:
    """One request on the thread's keep-alive connection; reconnect and retry once if the server closed it.

    gunicorn closes idle keep-alive connections after 2 s; that is not an error of the request.
    """
    for attempt in (1, 2):
        try:
            return _send(conns[0], path, req)
        except (OSError, http.client.HTTPException):
            conns[0].close()
            conns[0] = http.client.HTTPConnection(HOST, port, timeout=10)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@dataclass
class Stats:
    """Latency (ms) and outcome of the measured requests."""

    latencies_ms: list[float]
    ok: int
    errors: int
    unsent: int
    elapsed_s: float
    statuses: dict[int, int] = field(default_factory=dict)
    # Filled by `costed`: CPU of the server's processes per request, and the load generator's share of a core.
    server_cpu_ms: float = math.nan
    client_cores: float = math.nan
    answered_all: int = 0  # every answered request of the phase, warm-up included
    machine_busy: float = math.nan  # fraction of all cores busy during the phase (anyone's work)

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def pct(self, q: float) -> float:
        """Nearest-rank percentile (no interpolation: every value reported was really observed)."""
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def open_loop(port: int, path: str, reqs: Sequence[Req], rate: float, warmup: float, duration: float,
              threads: int, check: bool) -> Stats:
    """Send ``reqs[i]`` at ``start + i / rate`` (constant-throughput schedule) from ``threads`` threads.

    A thread takes the next index, sleeps until its scheduled time, sends it and records
    ``done - scheduled``: if every thread is busy the next request is late, and that lateness is
    counted as latency, as a real client would see it. Bounded: exactly ``rate * (warmup + duration)``
    requests, and anything not sent 10 s after the schedule ends is given up and counted as unsent.
    """
    n = min(len(reqs), int(rate * (warmup + duration)))
    scheduled = [0.0] * n
    done = [0.0] * n
    status = [0] * n
    counter = itertools.count()  # next() on a C iterator is atomic under the GIL: no lock needed
    start = time.perf_counter() + 0.2  # let every thread reach its first sleep
    hard_stop = start + warmup + duration + 10.0

    def worker() -> None:
        conns = [http.client.HTTPConnection(HOST, port, timeout=10)]
        try:
            while (i := next(counter)) < n:
                due = start + i / rate
                scheduled[i] = due
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif time.perf_counter() > hard_stop:
                    status[i] = -2
                    continue
                req = reqs[i]
                try:
                    code, body = send_with_retry(conns, port, path, req)
                except (OSError, http.client.HTTPException):
                    code, body = -1, b""
                done[i] = time.perf_counter()
                if check and code == 200 and req.shipment_id.encode() not in body:
                    code = -3  # a 200 naming the wrong shipment is an error, not a success
                status[i] = code
        finally:
            conns[0].close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=max(1.0, hard_stop + 15.0 - time.perf_counter()))
    measure_from = start + warmup
    lat, ok, errors, unsent, last = [], 0, 0, 0, measure_from
    statuses: dict[int, int] = {}
    for i in range(n):
        if scheduled[i] < measure_from:
            continue
        statuses[status[i]] = statuses.get(status[i], 0) + 1
        if status[i] in (0, -2):
            unsent += 1
            continue
        lat.append((done[i] - scheduled[i]) * 1000)
        last = max(last, done[i])
        if status[i] == 200:
            ok += 1
        else:
            errors += 1
    # Elapsed: from the first measured slot to the last answer (at least the scheduled window).
    elapsed = max(last - measure_from, duration)
    return Stats(lat, ok, errors, unsent, elapsed, statuses, answered_all=sum(1 for c in status if c > 0))


def closed_loop(port: int, path: str, reqs: Sequence[Req], clients: int, duration: float) -> Stats:
    """``clients`` connections, each sending its next request as soon as the last answered, for ``duration`` s."""
    lat: list[list[float]] = [[] for _ in range(clients)]
    codes: list[dict[int, int]] = [{} for _ in range(clients)]
    start = time.perf_counter()
    end = start + duration

    def worker(c: int) -> None:
        conns = [http.client.HTTPConnection(HOST, port, timeout=10)]
        i = c
        try:
            while (t0 := time.perf_counter()) < end:
                try:
                    code, _ = send_with_retry(conns, port, path, reqs[i % len(reqs)])
                except (OSError, http.client.HTTPException):
                    code = -1
                lat[c].append((time.perf_counter() - t0) * 1000)
                codes[c][code] = codes[c].get(code, 0) + 1
                i += clients
        finally:
            conns[0].close()

    pool = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(clients)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=duration + 30)
    elapsed = time.perf_counter() - start
    merged: dict[int, int] = {}
    for d in codes:
        for k, v in d.items():
            merged[k] = merged.get(k, 0) + v
    ok = merged.get(200, 0)
    return Stats([x for part in lat for x in part], ok, sum(merged.values()) - ok, 0, elapsed, merged,
                 answered_all=sum(v for k, v in merged.items() if k > 0))


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat (idle and iowait count as not busy)."""
    try:
        values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    total = float(sum(values[:8]))  # guest time is already inside user time
    return total - values[3] - values[4], total


def wait_idle(servers: Sequence[Server], workers: int, timeout_s: float = 60.0) -> float:
    """Wait until every server has all its workers and they have finished booting (their CPU is quiet).

    /healthz answers as soon as one worker is up; the others may still be importing the app, and that
    CPU would land in the other server's measurement on a 2-core machine.
    """
    t0 = time.monotonic()
    quiet = 0
    last = sum(srv.cpu_seconds() for srv in servers)
    while time.monotonic() - t0 < timeout_s and quiet < 2:
        time.sleep(0.5)
        now = sum(srv.cpu_seconds() for srv in servers)
        booted = all(len(srv.worker_pids()) >= workers for srv in servers)
        quiet = quiet + 1 if booted and now - last < 0.05 else 0
        last = now
    return time.monotonic() - t0


def costed(server: Server, load: Callable[[], Stats]) -> Stats:
    """Run ``load`` and note the CPU it cost: the server's per request (warm-up included), this process's
    share of a core, and how busy the whole machine was."""
    cpu0, own0, wall0, mach0 = server.cpu_seconds(), time.process_time(), time.perf_counter(), machine_cpu()
    st = load()
    cpu1, own1, wall1, mach1 = server.cpu_seconds(), time.process_time(), time.perf_counter(), machine_cpu()
    st.machine_busy = ratio(mach1[0] - mach0[0], mach1[1] - mach0[1])
    # Per request answered in the whole phase, warm-up included, since the CPU figure covers it too.
    st.server_cpu_ms = (cpu1 - cpu0) * 1000 / max(1, st.answered_all)
    st.client_cores = (own1 - own0) / (wall1 - wall0)
    return st


# -- reporting ---------------------------------------------------------------------------------------------


def row(name: str, st: Stats) -> str:
    return (f"{name:28s} {st.throughput:8.1f} {st.pct(50):8.2f} {st.pct(90):8.2f} {st.pct(99):8.2f} "
            f"{max(st.latencies_ms, default=math.nan):8.2f} {st.errors + st.unsent:7d}")


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def report_open(rate: float, svc_st: Stats, bare_st: Stats, warmup: float, duration: float) -> list[str]:
    out = [f"open loop: target {rate:.0f} req/s, {warmup:g} s warm-up + {duration:g} s measured; latency from the "
           f"scheduled send time",
           f"{'endpoint':28s} {'req/s':>8s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'errors':>7s}",
           row("service POST /v1/courier/scan", svc_st), row("bare token lookup", bare_st)]
    for name, st in (("service", svc_st), ("bare", bare_st)):
        if st.errors or st.unsent:
            out.append(f"  {name} outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(st.statuses.items())))
    out.append(f"CPU per request in the gunicorn processes (PostgreSQL, Redis not counted): service "
               f"{svc_st.server_cpu_ms:.2f} ms, bare {bare_st.server_cpu_ms:.2f} ms "
               f"({ratio(svc_st.server_cpu_ms, bare_st.server_cpu_ms):.2f}x)")
    out.append(f"machine busy during the runs (all {os.cpu_count()} cores, anyone's work): service "
               f"{svc_st.machine_busy:.0%}, bare {bare_st.machine_busy:.0%}; this load generator used "
               f"{svc_st.client_cores:.2f} / {bare_st.client_cores:.2f} of a core")
    out.append(f"ratio service/bare: p50 {ratio(svc_st.pct(50), bare_st.pct(50)):.2f}x, "
               f"p99 {ratio(svc_st.pct(99), bare_st.pct(99)):.2f}x, "
               f"throughput {ratio(svc_st.throughput, bare_st.throughput):.2f}x")
    return out


def verdict(rate: float, svc_st: Stats, bare_st: Stats) -> list[str]:
    p99 = svc_st.pct(99)
    clean = svc_st.errors == 0 and svc_st.unsent == 0
    kept_up = svc_st.throughput >= 0.97 * rate
    lat_ok = p99 < TARGET_P99_MS and clean and kept_up and rate >= TARGET_RATE
    r50, r99 = ratio(svc_st.pct(50), bare_st.pct(50)), ratio(p99, bare_st.pct(99))
    over_ok = r50 <= TARGET_OVERHEAD and r99 <= TARGET_OVERHEAD
    note = "" if rate >= TARGET_RATE else f" (run at {rate:.0f} req/s, below the {TARGET_RATE:.0f} the target names)"
    return [
        f"target p99 < {TARGET_P99_MS:g} ms at {TARGET_RATE:.0f} scans/s: {'MET' if lat_ok else 'NOT MET'} "
        f"(p99 {p99:.2f} ms at {svc_st.throughput:.1f} scans/s, {svc_st.errors + svc_st.unsent} errors){note}",
        f"target overhead <= {TARGET_OVERHEAD:g}x (p50 and p99 latency, service/bare at the same load): "
        f"{'MET' if over_ok else 'NOT MET'} (p50 {r50:.2f}x, p99 {r99:.2f}x)",
    ]


# -- orchestration -----------------------------------------------------------------------------------------


@contextmanager
def pg_schema(pg_url: str) -> Iterator[tuple[str, str]]:
    """A schema of its own (name, URL with search_path), dropped on the way out whatever happened."""
    schema = "wbscan_" + secrets.token_hex(4)
    admin = db.make_engine(pg_url)
    try:
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield schema, f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def redis_available(url: str) -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "not reachable": run with in-process quotas
        return False


def forget_quota_keys(url: str, courier_ids: Sequence[str]) -> None:
    """Delete the scan-quota buckets this run created (they would otherwise linger for an hour)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        keys = [f"wb:scan:{w}:{cid}" for cid in courier_ids for w in ("m", "h")]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def vacuum_analyze(engine: Engine, schema: str) -> None:
    """VACUUM ANALYZE the freshly loaded tables now, so autovacuum does not do it during a measurement
    (and the planner sees real row counts, as it would in production)."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM refuses to run in a transaction
        tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}).scalars()
        for table in list(tables):
            conn.execute(text(f'VACUUM ANALYZE "{schema}"."{table}"'))


def pg_facts(engine: Engine) -> str:
    with engine.connect() as c:
        vals = [c.execute(text(f"SHOW {name}")).scalar_one() for name in ("server_version", "synchronous_commit",
                                                                           "fsync")]
    return f"PostgreSQL {vals[0].split()[0]} (synchronous_commit={vals[1]}, fsync={vals[2]})"


def count_scan_events(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "courier.scan", AuditEvent.outcome == "ok")).scalar_one())


def server_env(tmp: Path, url: str, redis_url: str | None) -> dict[str, str]:
    """The production environment: no inherited WAYBILL_* variables, production mode, explicit key file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")}
    env.update({"WAYBILL_ENV": "production", "WAYBILL_DATA_DIR": str(tmp), "WAYBILL_KEY_FILE": str(tmp / "keys.json"),
                "WAYBILL_DATABASE_URL": url, "WAYBILL_LOG_LEVEL": "WARNING",
                "WAYBILL_SCAN_PER_MINUTE": str(SCAN_PER_MINUTE), "WAYBILL_SCAN_PER_HOUR": str(SCAN_PER_HOUR)})
    if redis_url:
        env["WAYBILL_REDIS_URL"] = redis_url
    return env


def sanity(port: int, path: str, req: Req) -> None:
    """One request before the load: it must answer 200 and name the right shipment."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        code, body = _send(conn, path, req)
    finally:
        conn.close()
    if code != 200 or req.shipment_id.encode() not in body:
        raise RuntimeError(f"sanity request to {path} failed: HTTP {code} {body[:200]!r}")


def run(args: argparse.Namespace) -> int:
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    redis_url = REDIS_URL if redis_available(REDIS_URL) else None
    servers: list[Server] = []
    fx: Fixture | None = None
    with tempfile.TemporaryDirectory(prefix="wbscan-") as tmp_raw, pg_schema(args.pg) as (schema, url):
        tmp = Path(tmp_raw)
        settings = load_settings(environ={}, data_dir=tmp / "data", database_url=url, log_level="WARNING",
                                 merchant_rate_per_s=1e6, merchant_burst=10**7)
        _keys, engine, _ = initialise(settings)
        try:
            svc = build(settings, engine=engine)
            facts = pg_facts(engine)
            log(f"setup: {args.shipments} shipments, {args.couriers} couriers ...")
            fx = setup(svc, settings, args.shipments, args.couriers)
            vacuum_analyze(engine, schema)
            n_open = int(args.rate * (args.warmup + args.duration))
            reqs = build_requests(fx, max(n_open, 20_000), seed=args.seed)
            env = server_env(settings.data_dir, url, redis_url)
            log("starting servers ...")
            port = free_port()
            service = start_server("service", [*waybill_command(), "serve", "--host", HOST, "--port", str(port),
                                               "--workers", str(args.workers)], env, tmp / "service.log", port)
            servers.append(service)
            port = free_port()
            bare = start_server("bare", [sys.executable, str(Path(__file__).with_name("bare_lookup.py")), "--host",
                                         HOST, "--port", str(port), "--workers", str(args.workers)],
                                env, tmp / "bare.log", port)
            servers.append(bare)
            log(f"servers up; workers booted and idle after {wait_idle(servers, args.workers):.1f} s")
            sanity(service.port, SCAN_PATH, reqs[0])
            sanity(bare.port, BARE_PATH, reqs[0])
            events_before = count_scan_events(engine)

            log(f"open loop: service ({args.warmup + args.duration:g} s) ...")
            profilers = (start_profilers(service, Path(args.py_spy), args.warmup + 0.2, args.duration,
                                         rate=args.py_spy_rate, gil_only=args.py_spy_gil) if args.py_spy else None)
            svc_open = costed(service, lambda: open_loop(service.port, SCAN_PATH, reqs, args.rate, args.warmup,
                                                         args.duration, args.client_threads, check=True))
            events = count_scan_events(engine) - events_before
            if profilers is not None:
                profilers.wait()
            log(f"open loop: bare ({args.warmup + args.duration:g} s) ...")
            bare_open = costed(bare, lambda: open_loop(bare.port, BARE_PATH, reqs, args.rate, args.warmup,
                                                       args.duration, args.client_threads, check=True))
            svc_closed = bare_closed = None
            if args.closed_duration > 0:
                log(f"closed loop: service and bare ({args.closed_duration:g} s each) ...")
                svc_closed = costed(service, lambda: closed_loop(service.port, SCAN_PATH, reqs, args.closed_clients,
                                                                 args.closed_duration))
                bare_closed = costed(bare, lambda: closed_loop(bare.port, BARE_PATH, reqs, args.closed_clients,
                                                               args.closed_duration))

            threads = 4 if settings.is_sqlite else 2
            lines = [
                f"scan benchmark: {facts}, schema {schema}; setup {fx.seconds:.1f} s "
                f"({args.shipments} shipments, {args.couriers} couriers at station {fx.station})",
                f"servers: gunicorn gthread, {args.workers} workers x {threads} threads each; "
                f"service = `waybill serve` "
                f"(WAYBILL_ENV=production, quotas {SCAN_PER_MINUTE}/min {SCAN_PER_HOUR}/h, "
                f"{'Redis ' + redis_url if redis_url else 'in-process quotas: Redis not reachable'}); "
                f"bare = bench/bare_lookup.py",
                f"machine: {os.cpu_count()} cores shared by servers, PostgreSQL, Redis and this load generator "
                f"({args.client_threads} client threads, http.client keep-alive)"
                + (f"; py-spy sampled the service workers into {args.py_spy} (its numbers read high)"
                   if args.py_spy else ""),
                *report_open(args.rate, svc_open, bare_open, args.warmup, args.duration),
                f"audit: {events} courier.scan events written during the service run "
                f"({svc_open.ok} measured 200s + warm-up)",
            ]
            if svc_closed is not None and bare_closed is not None:
                lines.append(
                    f"closed loop ({args.closed_clients} clients, {args.closed_duration:g} s, max throughput): "
                    f"service {svc_closed.throughput:.0f} req/s (p50 {svc_closed.pct(50):.1f} ms, p99 "
                    f"{svc_closed.pct(99):.1f} ms, {svc_closed.errors} errors), "
                    f"bare {bare_closed.throughput:.0f} req/s "
                    f"(p50 {bare_closed.pct(50):.1f} ms, p99 {bare_closed.pct(99):.1f} ms, {bare_closed.errors} "
                    f"errors); bare/service {ratio(bare_closed.throughput, svc_closed.throughput):.2f}x")
            lines.extend(verdict(args.rate, svc_open, bare_open))
            print("\n".join(lines), flush=True)
            return 0
        finally:
            for server in reversed(servers):
                stop_server(server)
            if redis_url and fx is not None:
                with suppress(Exception):
                    forget_quota_keys(redis_url, fx.courier_ids)
            engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="open-loop requests per second (default 200)")
    ap.add_argument("--duration", type=float, default=15.0, help="measured seconds (default 15)")
    ap.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before measuring (default 3)")
    ap.add_argument("--workers", type=int, default=4, help="gunicorn workers for both servers (default 4)")
    ap.add_argument("--couriers", type=int, default=20)
    ap.add_argument("--shipments", type=int, default=2000)
    ap.add_argument("--client-threads", type=int, default=32, help="open-loop sender threads (default 32)")
    ap.add_argument("--closed-clients", type=int, default=16)
    ap.add_argument("--closed-duration", type=float, default=10.0, help="0 skips the closed-loop run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--py-spy", metavar="DIR", default=None,
                    help="also sample every service worker with py-spy during the measured window, into DIR")
    ap.add_argument("--py-spy-rate", type=int, default=50, help="samples per second per worker (default 50)")
    ap.add_argument("--py-spy-gil", action="store_true", help="sample only threads holding the GIL (CPU view)")
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL (default: the local test database)")
    args = ap.parse_args()
    # Bounded in count and time: refuse runs that would take long or flood the machine.
    limits = {"rate": (1, 5000), "duration": (1, 120), "warmup": (0, 30), "workers": (1, 16), "couriers": (1, 500),
              "shipments": (1, 20_000), "client_threads": (1, 256), "closed_clients": (1, 256),
              "closed_duration": (0, 60), "py_spy_rate": (1, 1000)}
    for name, (lo, hi) in limits.items():
        if not lo <= getattr(args, name) <= hi:
            ap.error(f"--{name.replace('_', '-')} must be between {lo} and {hi}")
    if args.shipments < args.couriers:
        ap.error("--shipments must be at least --couriers")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
