"""Benchmark: what the alert rules cost a courier scan, and the alert sweep over 1,000,000 audit events.

Three measurements, each printed with MET / NOT MET beside its target:

1. **CPU per scan request, rules on vs off** (target: the rules add <= 15%). ``POST /v1/courier/scan`` through
   the Flask test client, in this process, on PostgreSQL: the fixture of ``bench/scan.py`` (a merchant,
   ``--shipments`` shipments at one station, printed, assigned round-robin to ``--couriers`` logged-in couriers).
   Two apps over the same database: one with the settings as deployed, one with ``WAYBILL_ALERTS_ENABLED=0``.
   That switch is the honest "off": the services install no alert sink (``alert.*`` events are still audited,
   no alert is stored, delivered or suspends), the sweep reads nothing, and every rule hook skips its
   evaluation when ``settings.alerts.enabled`` is false (the write-path hooks honour it; see
   ``waybill/alerts/settings.py``). Both apps share everything else, so the difference is the rules alone.
   Quotas and thresholds are set so that no rule fires during the run (scan quotas 10,000/min and 1,000,000/h;
   off_hours shift 0-24 h, since a run at night would otherwise fire it on every scan): the run checks that it
   raised no alert. ``time.process_time`` around each request: this process's CPU (the database server's is
   not counted, nor are its waits). Requests alternate in blocks between the two apps, so drift in what the
   shared machine does falls on both alike; the mean per request is compared.
2. **p50/p99 latency at 200 scans/s**: a paced open loop (``bench/scan.py``'s: requests on a fixed schedule,
   latency from each one's scheduled time, so a server that falls behind cannot hide its queue) against
   `waybill serve` (``--workers`` gunicorn workers), once with the rules on and once off, same database,
   same fixture, both out of production mode (production refuses ``WAYBILL_ALERTS_ENABLED=0``). Not in
   process: one process holds one GIL, and at ~6 ms CPU per scan it cannot serve 200/s at all. No target of
   its own in the issue: printed beside ``bench/scan.py``'s p99 < 50 ms at 200/s.
3. **Sweep over 1,000,000 audit events on PostgreSQL** (target < 30 s): a fresh schema, ``--events``
   synthetic audit events bulk-loaded with COPY (chronological over ``--days`` days up to today; personal-data
   accesses of ``staff:``/``merchant:`` accounts, with refusals, misses and events without fields mixed in;
   ``--spiky`` accounts have a last day at 20x their volume). Their hashes are random bytes: the sweep never
   verifies the chain, so the events need not verify as one. ``VACUUM ANALYZE`` first (what autovacuum would
   have done by then), then one ``waybill.alerts.sweep.run`` from cursor 0 (the first, whole-log sweep: the
   worst case) is timed, checked to fire exactly once per spiky account, and then an incremental sweep over
   ``--more`` new events is timed too.

    python bench/alerts.py [--pg URL] [--events 1000000] [--skip-scan] [--skip-sweep] [--rate 200] ...

PostgreSQL: ``--pg``, else ``WAYBILL_BENCH_DATABASE_URL``, else ``postgresql+psycopg://postgres@127.0.0.1:5432/test``;
each part runs in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _env import database_url
from scan import (
    HOST,
    REDIS_URL,
    SCAN_PATH,
    Fixture,
    Req,
    Stats,
    build_requests,
    free_port,
    open_loop,
    redis_available,
    sanity,
    server_env,
    setup,
    start_server,
    stop_server,
    waybill_command,
)
from sqlalchemy import func, select, text

from waybill.alerts import sweep
from waybill.alerts.models import Alert
from waybill.models import utcnow
from waybill.services import Services, build, initialise
from waybill.settings import load_settings
from waybill.web.app import create_app

DEFAULT_PG = os.environ.get("WAYBILL_BENCH_DATABASE_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_CPU_OVERHEAD = 0.15
TARGET_P99_MS = 50.0  # bench/scan.py's target, for reference
TARGET_SWEEP_S = 30.0
SPIKE = 20  # a spiky account's last day, in multiples of its usual: far above min_events and factor x median
# No rule may fire during the scan runs: quotas far above the load, the working day all day long.
QUIET = {"WAYBILL_SCAN_PER_MINUTE": "10000", "WAYBILL_SCAN_PER_HOUR": "1000000",
         "WAYBILL_ALERT_OFF_HOURS_START_HOUR": "0", "WAYBILL_ALERT_OFF_HOURS_END_HOUR": "24"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- 1 and 2: scans ----------------------------------------------------------------------------------------


def _settings(tmp: Path, url: str, enabled: bool) -> Any:
    env = {**QUIET, "WAYBILL_ALERTS_ENABLED": "1" if enabled else "0"}
    return load_settings(environ=env, data_dir=tmp, database_url=url, log_level="WARNING",
                         merchant_rate_per_s=1e6, merchant_burst=10**7)


def _client(settings: Any, svc: Services) -> Any:
    return create_app(settings, services_override=svc).test_client()


def _post(client: Any, req: Any) -> None:
    r = client.post("/v1/courier/scan", data=req.body, headers=req.headers)
    if r.status_code != 200 or req.shipment_id.encode() not in r.data:
        raise RuntimeError(f"scan failed: HTTP {r.status_code} {r.data[:200]!r}")


def _every_shipment(fx: Fixture, k: int) -> list[Any]:
    """One scan request per shipment of courier ``k``."""
    token = fx.courier_tokens[k]
    out = []
    for qr, sid in fx.qr_by_courier[k]:
        body = json.dumps({"token": qr}).encode()
        out.append(Req(body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                              "Content-Length": str(len(body))}, sid))
    return out


def cpu_per_request(clients: dict[str, Any], reqs: list[Any], rounds: int, block: int) -> dict[str, list[float]]:
    """CPU ms of each request, per app; blocks alternate between the apps (their order swaps every round)."""
    out: dict[str, list[float]] = {name: [] for name in clients}
    names = list(clients)
    i = 0
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            client = clients[name]
            for _ in range(block):
                req = reqs[i % len(reqs)]
                i += 1
                c0 = time.process_time()
                _post(client, req)
                out[name].append((time.process_time() - c0) * 1000)
    return out


def served_latency(args: argparse.Namespace, tmp: Path, data_dir: Path, url: str, reqs: list[Any],
                   enabled: bool) -> Stats:
    """An open loop at ``--rate`` against `waybill serve` (``--workers`` processes) with the rules on or off."""
    env = server_env(data_dir, url, REDIS_URL if redis_available(REDIS_URL) else None)
    # Not production mode: there, WAYBILL_ALERTS_ENABLED=0 is refused. Both runs use the same mode.
    env.pop("WAYBILL_ENV", None)
    env.update({**QUIET, "WAYBILL_ALERTS_ENABLED": "1" if enabled else "0"})
    port = free_port()
    name = f"rules-{'on' if enabled else 'off'}"
    server = start_server(name, [*waybill_command(), "serve", "--host", HOST, "--port", str(port), "--workers",
                                 str(args.workers)], env, tmp / f"{name}.log", port)
    try:
        time.sleep(2.0)  # the workers' start-up work (imports, first sweep of the fixture's log) settles
        sanity(port, SCAN_PATH, reqs[0])
        return open_loop(port, SCAN_PATH, reqs, args.rate, args.warmup, args.duration, args.client_threads,
                         check=True)
    finally:
        stop_server(server)


def run_scans(args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wbalerts-") as tmp_raw, database_url(Path(tmp_raw), args.pg) as url:
        tmp = Path(tmp_raw)
        on_settings, off_settings = _settings(tmp, url, True), _settings(tmp, url, False)
        _keys, engine, _ = initialise(on_settings)
        try:
            log(f"scan fixture: {args.shipments} shipments, {args.couriers} couriers ...")
            setup_svc = build(on_settings, engine=engine)  # neither measured app inherits its warm caches
            fx: Fixture = setup(setup_svc, on_settings, args.shipments, args.couriers)
            on_svc = build(on_settings, engine=engine)
            off_svc = build(off_settings, engine=engine)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE"))
            reqs = build_requests(fx, 20_000, seed=7)
            clients = {"on": _client(on_settings, on_svc), "off": _client(off_settings, off_svc)}
            with on_svc.session_factory() as s:
                alerts_before = s.scalar(select(func.count()).select_from(Alert))
            log(f"CPU per request: {args.rounds} rounds x {args.block} requests per app ...")
            # Warm-up: every shipment once through each app (the vault's key caches, statement compilation,
            # connections), so neither app pays a cold cache the other does not.
            warm = [req for k in range(len(fx.qr_by_courier)) for req in _every_shipment(fx, k)]
            for client in clients.values():
                for req in warm:
                    _post(client, req)
            cpu = cpu_per_request(clients, reqs, args.rounds, args.block)
            mean_on, mean_off = statistics.fmean(cpu["on"]), statistics.fmean(cpu["off"])
            over = mean_on / mean_off - 1
            lines.append(f"scan CPU per request (in process, PostgreSQL, {len(cpu['on'])} requests each): "
                         f"rules on mean {mean_on:.3f} ms (median {statistics.median(cpu['on']):.3f}), "
                         f"rules off mean {mean_off:.3f} ms (median {statistics.median(cpu['off']):.3f}): "
                         f"rules add {over:+.1%}  (target <= {TARGET_CPU_OVERHEAD:.0%}: "
                         f"{'MET' if over <= TARGET_CPU_OVERHEAD else 'NOT MET'})")
            # Alternating (on, off, off, on, ...): whatever else the shared machine does falls on both alike.
            order = [e for r in range(args.latency_rounds) for e in ((True, False) if r % 2 == 0 else (False, True))]
            for enabled in order:
                name = "on" if enabled else "off"
                log(f"open loop against `waybill serve`, rules {name}: {args.rate:g}/s for "
                    f"{args.warmup:g} + {args.duration:g} s ...")
                st = served_latency(args, tmp, on_settings.data_dir, url, reqs, enabled)
                p50, p99 = st.pct(50), st.pct(99)
                clean = st.errors == 0 and st.unsent == 0 and st.throughput >= 0.97 * args.rate
                lines.append(f"scan latency at {args.rate:g} scans/s, rules {name:3s} (`waybill serve`, "
                             f"{args.workers} workers, open loop, {st.ok} measured, {st.errors + st.unsent} "
                             f"errors (statuses {dict(sorted(st.statuses.items()))}), {st.throughput:.0f}/s): "
                             f"p50 {p50:.1f} ms, p99 {p99:.1f} ms  "
                             f"(bench/scan.py's target p99 < {TARGET_P99_MS:g} ms: "
                             f"{'MET' if clean and p99 < TARGET_P99_MS else 'NOT MET'})")
            with on_svc.session_factory() as s:
                raised = s.scalar(select(func.count()).select_from(Alert)) - alerts_before
            lines.append(f"alerts raised during the scan runs: {raised} (must be 0: quotas and thresholds above "
                         f"the load)")
            if raised:
                raise RuntimeError("a rule fired during the scan runs: the comparison measured firing, not rules")
        finally:
            engine.dispose()
    return lines


# -- 3: the sweep ------------------------------------------------------------------------------------------

COLUMNS = ("seq", "at", "actor", "role", "action", "object_type", "object_id", "purpose", "fields", "outcome",
           "client_addr", "request_id", "prev_hash", "hash", "shard_seq")
ROLES = ("courier", "courier", "courier", "sorter", "dispatcher", "privacy_officer", "merchant")
PD = {"courier": ("courier.scan", '["recipient.address"]'), "sorter": ("label.print", '["masked"]'),
      "dispatcher": ("shipment.read", '["masked"]'), "privacy_officer": ("privacy.read", '["recipient.phone"]'),
      "merchant": ("shipment.read", '["recipient.address","recipient.name","recipient.phone"]')}


def synthetic_events(n: int, first_seq: int, accounts: int, days: int, spiky: int,
                     end: datetime, seed: int = 5) -> Any:
    """``n`` audit rows in ``seq`` (and time) order over ``days`` Shanghai days ending with ``end``'s: 80%
    personal-data accesses, 20% refusals, misses and events without fields; the ``spiky`` first accounts read
    SPIKE x their usual on the last day. Yields tuples in COLUMNS order."""
    rng = random.Random(seed)
    actors = []
    for a in range(accounts):
        role = ROLES[a % len(ROLES)]
        kind = "merchant" if role == "merchant" else "staff"
        actors.append((f"{kind}:{'mch' if kind == 'merchant' else 'usr'}_b{a:06d}", role))
    weights = [1.0] * accounts
    # Per account and day b events; the spiky accounts' last day SPIKE b: n = b (accounts days + (SPIKE-1) spiky).
    per_day = round(n * accounts / (accounts * days + (SPIKE - 1) * spiky))
    seq = first_seq
    end_day = sweep.shanghai_day(end)
    made = 0
    for d in range(days):
        day = end_day - timedelta(days=days - 1 - d)
        last = d == days - 1
        count = n - made if last else min(per_day, n - made)
        if last:
            weights = [float(SPIKE) if a < spiky else 1.0 for a in range(accounts)]
        # The Shanghai day from its midnight (16:00 UTC the day before); the last one only up to ``end``.
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC) - sweep.SHANGHAI_OFFSET
        span = min(86_399.0, (end - day_start).total_seconds() - 1) if last else 86_399.0
        picks = rng.choices(range(accounts), weights=weights, k=count)
        for k, a in enumerate(picks):
            seq += 1
            actor, role = actors[a]
            at = day_start + timedelta(seconds=span * k / max(1, count))
            action, fields = PD[role]
            r = rng.random()
            outcome = "ok"
            if r < 0.08:
                outcome = "denied"
            elif r < 0.14:
                outcome = "not_found"
            elif r < 0.20:
                action, fields = "dispatch.assign", "[]"
            yield (seq, at, actor, role, action, "shipment", f"shp_{seq:024x}", "delivery", fields, outcome,
                   "10.0.0.1", None, b"\0" * 32, secrets.token_bytes(32))
        made += count


def expected_spikes(spiky: int) -> set[str]:
    return {f"staff:usr_b{a:06d}" if ROLES[a % len(ROLES)] != "merchant" else f"merchant:mch_b{a:06d}"
            for a in range(spiky)}


def copy_events(engine: Any, rows: Any) -> tuple[int, int]:
    """COPY the rows into audit_events and move the head to the last; (rows, last seq)."""
    raw = engine.raw_connection()
    n = last = 0
    last_hash = bytes(32)
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY audit_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*row, row[0]))  # shard_seq: the whole fixture is one chain, shard 0
                n += 1
                last, last_hash = row[0], row[-1]
        cur.execute("UPDATE audit_head SET seq = %s, hash = %s WHERE id = 0", (last, last_hash))
        cur.execute("SELECT setval('audit_event_seq', %s)", (last,))  # later appends take positions after these
        raw.commit()
    finally:
        raw.close()
    return n, last


def run_sweep(args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wbsweep-") as tmp_raw, database_url(Path(tmp_raw), args.pg) as url:
        settings = load_settings(environ={}, data_dir=Path(tmp_raw), database_url=url, log_level="WARNING")
        _keys, engine, _ = initialise(settings)
        try:
            svc = build(settings, engine=engine)
            with engine.connect() as c:
                head = int(c.execute(text("SELECT COALESCE(max(seq), 0) FROM audit_events")).scalar_one())
            now = utcnow()
            accounts = args.accounts or max(50, args.events // 500)
            log(f"sweep: COPY {args.events} synthetic audit events ({accounts} accounts, {args.days} days) ...")
            t0 = time.perf_counter()
            n, _last = copy_events(engine, synthetic_events(args.events, head, accounts, args.days, args.spiky,
                                                           now - timedelta(seconds=5)))
            t_copy = time.perf_counter() - t0
            t0 = time.perf_counter()
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE audit_events"))
            t_vac = time.perf_counter() - t0
            lines.append(f"sweep fixture: {n} audit events COPYed in {t_copy:.1f} s ({n / t_copy:.0f}/s), "
                         f"VACUUM ANALYZE {t_vac:.1f} s; {accounts} accounts over {args.days} days, "
                         f"{args.spiky} spiky")
            log("sweep: the first, whole-log sweep ...")
            result = sweep.run(svc.session_factory, settings.alerts)
            with svc.session_factory() as s:
                fired_for = set(s.scalars(select(Alert.actor).where(Alert.rule == "volume_baseline")))
            ok = fired_for == expected_spikes(args.spiky)
            lines.append(f"sweep over {result.seq_to - result.seq_from} audit events on PostgreSQL: "
                         f"{result.seconds:.2f} s ({(result.seq_to - result.seq_from) / result.seconds:.0f} events/s, "
                         f"{result.chunks} chunks, {result.accesses} accesses, {result.account_days} account-days, "
                         f"{result.fired} alerts)  (target < {TARGET_SWEEP_S:g} s: "
                         f"{'MET' if result.seconds < TARGET_SWEEP_S and ok else 'NOT MET'})")
            lines.append(f"sweep alerts: fired for exactly the {args.spiky} spiky accounts: {ok}"
                         + ("" if ok else f" (got {sorted(fired_for)[:10]})"))
            if args.more:
                with engine.connect() as c:
                    head = int(c.execute(text("SELECT COALESCE(max(seq), 0) FROM audit_events")).scalar_one())
                more = synthetic_events(args.more, head, accounts, 1, 0, utcnow(), seed=9)
                copy_events(engine, more)
                again = sweep.run(svc.session_factory, settings.alerts)
                lines.append(f"incremental sweep over {again.seq_to - again.seq_from} new events: "
                             f"{again.seconds:.3f} s (from seq {again.seq_from}, {again.accesses} accesses, "
                             f"{again.fired} alerts)")
            print(json.dumps(result.as_json()), file=sys.stderr)
            if not ok:
                raise RuntimeError("the sweep fired for other accounts than the spiky ones")
        finally:
            engine.dispose()
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL (default: WAYBILL_BENCH_DATABASE_URL or test)")
    ap.add_argument("--skip-scan", action="store_true", help="only the sweep")
    ap.add_argument("--skip-sweep", action="store_true", help="only the scans")
    ap.add_argument("--shipments", type=int, default=2000)
    ap.add_argument("--couriers", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=10, help="alternating blocks per app (CPU)")
    ap.add_argument("--block", type=int, default=200, help="requests per block (CPU)")
    ap.add_argument("--rate", type=float, default=200.0, help="open-loop scans per second (default 200)")
    ap.add_argument("--duration", type=float, default=15.0, help="measured open-loop seconds per run (default 15)")
    ap.add_argument("--warmup", type=float, default=3.0, help="open-loop warm-up seconds (default 3)")
    ap.add_argument("--latency-rounds", type=int, default=1,
                    help="open-loop pairs, alternating which goes first (default 1: on, then off)")
    ap.add_argument("--workers", type=int, default=2, help="`waybill serve` workers (default 2)")
    ap.add_argument("--client-threads", type=int, default=32, help="open-loop client threads (default 32)")
    ap.add_argument("--events", type=int, default=1_000_000, help="synthetic audit events swept (default 1M)")
    ap.add_argument("--accounts", type=int, default=0, help="accounts in them (default events/500, at least 50)")
    ap.add_argument("--days", type=int, default=30, help="days they span, up to today (default 30)")
    ap.add_argument("--spiky", type=int, default=5, help="accounts with a 20x last day (default 5)")
    ap.add_argument("--more", type=int, default=-1,
                    help="new events for the incremental sweep (default 1%% of --events; 0: none)")
    args = ap.parse_args()
    limits = {"events": (1000, 10**8), "days": (2, 90), "rounds": (1, 1000), "block": (1, 10_000),
              "rate": (1, 2000), "duration": (1, 120), "warmup": (0, 30),
              "workers": (1, 16), "latency_rounds": (0, 10), "client_threads": (1, 256), "shipments": (1, 20_000),
              "couriers": (1, 500)}
    for name, (lo, hi) in limits.items():
        if not lo <= getattr(args, name) <= hi:
            ap.error(f"--{name} must be between {lo} and {hi}")
    if args.shipments < args.couriers:
        ap.error("--shipments must be at least --couriers")
    if args.more < 0:
        args.more = args.events // 100
    lines: list[str] = []
    if not args.skip_scan:
        lines += run_scans(args)
    if not args.skip_sweep:
        lines += run_sweep(args)
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
