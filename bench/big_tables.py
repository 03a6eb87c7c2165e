"""Benchmark: the paged listings over big tables on PostgreSQL (month partitions, keyset pagination).

Makes a fresh schema in the PostgreSQL database given by ``--pg``, migrates it (audit and tracking events
become month-partitioned tables) and makes the month partitions of the last ``--months`` months, then loads
``--rows`` audit events (default 10,000,000) and ``--rows``/5 tracking events with ``COPY`` (generated rows,
spread evenly over the months; hashes are filler: the listings do not verify chains), and ``--rows``/10
alerts. Then it times the first page and a deep page (the cursor near the end) of each listing through the
service's own domain functions, best of ``--repeat`` calls, and prints beside each EXPLAIN's plan (the node
kinds; "Sort" or "Seq Scan" on a big table would mean the page is not an index range) and how many partitions
the plan touches. Target: every deep page < 50 ms (the best of ``--repeat`` calls; "deep db" is the database's own
execution time of its query, from EXPLAIN ANALYZE).

    python bench/big_tables.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/DB [--rows 10000000]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from _env import database_url
from sqlalchemy import event, text

from waybill import audit, partitions, tracking
from waybill.alerts import review
from waybill.models import utcnow
from waybill.permissions import Principal
from waybill.services import build, initialise
from waybill.settings import load_settings

TARGET_MS = 50.0
SHARDS = 16
ACTIONS = ["shipment.read", "shipment.create", "label.print", "scan.arrival", "scan.departure",
           "tracking.read", "merchant.read", "delivery.attempt"]
RARE_ACTION = "privacy.export"  # one event in 1,000
ACTORS = 1000
AUDITOR = Principal(kind="staff", id="usr_BENCHAUDITOR0000000000000", role="auditor")
_COLUMNS = ("seq, shard, shard_seq, at, actor, role, action, object_type, object_id, purpose, fields, outcome, "
            "client_addr, request_id, prev_hash, hash")
_FILLER = "\\\\x" + "00" * 32


def _copy(conn: Any, sql: str, lines: Callable[[int, int], str], n: int, chunk: int = 200_000) -> None:
    """COPY ``n`` generated rows (text format), ``chunk`` lines per write."""
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(sql) as copy:
        for start in range(0, n, chunk):
            copy.write(lines(start, min(n, start + chunk)))


def _audit_lines(first: datetime, span_s: float, n: int) -> Callable[[int, int], str]:
    def lines(lo: int, hi: int) -> str:
        buf = io.StringIO()
        for i in range(lo, hi):
            at = first + timedelta(seconds=span_s * i / n)
            action = RARE_ACTION if i % 1000 == 999 else ACTIONS[i % len(ACTIONS)]
            buf.write(f"{i + 1}\t{i % SHARDS}\t{i // SHARDS + 1}\t{at.isoformat()}\tstaff:usr_{i % ACTORS:05d}\t"
                      f"courier\t{action}\tshipment\tshp_{i // 12:026d}\t\\N\t[]\tok\t\\N\t\\N\t{_FILLER}\t"
                      f"{_FILLER}\n")
        return buf.getvalue()
    return lines


def _tracking_lines(first: datetime, span_s: float, n: int, shipments: int) -> Callable[[int, int], str]:
    def lines(lo: int, hi: int) -> str:
        buf = io.StringIO()
        for i in range(lo, hi):
            at = first + timedelta(seconds=span_s * i / n)
            buf.write(f"trk_{i:026d}\tshp_{i % shipments:026d}\t{i // shipments + 1}\tscan\tin_transit\t\\N\t"
                      f"arrival\tGD-SZ01\tstaff:usr_{i % ACTORS:05d}\t{at.isoformat()}\n")
        return buf.getvalue()
    return lines


def load(svc: Any, rows: int, months: int) -> dict[str, Any]:
    now = utcnow()
    first = partitions.add_months(partitions.month_start(now), -months)
    span_s = (now - first).total_seconds()
    n_tracking, n_shipments, n_alerts = rows // 5, max(1, rows // 50), rows // 10
    t0 = time.perf_counter()
    with svc.engine.begin() as conn:
        partitions.ensure(conn, first, months_ahead=months + partitions.MONTHS_AHEAD)
        conn.execute(text("INSERT INTO merchants (id, name, disabled, created_at) "
                          "VALUES ('mch_BENCH', 'bench', false, now())"))
        conn.execute(text(
            "INSERT INTO shipments (id, merchant_id, merchant_order_id, waybill_no, status, sorting_code, "
            "sender_region, recipient_region, weight_g, created_at, updated_at, event_seq) "
            "SELECT 'shp_' || lpad(g::text, 26, '0'), 'mch_BENCH', 'O' || g, 'W' || g, 'in_transit', 'S', "
            "'{}', '{}', 100, now(), now(), 0 FROM generate_series(0, :n - 1) g"), {"n": n_shipments})
    with svc.engine.begin() as conn:
        _copy(conn, f"COPY audit_events ({_COLUMNS}) FROM STDIN", _audit_lines(first, span_s, rows), rows)
        conn.execute(text("SELECT setval('audit_event_seq', :n)"), {"n": rows})
    t_audit = time.perf_counter() - t0
    with svc.engine.begin() as conn:
        _copy(conn, "COPY tracking_events (id, shipment_id, seq, kind, status, previous_status, event, station, "
              "actor, at) FROM STDIN", _tracking_lines(first, span_s, n_tracking, n_shipments), n_tracking)
        conn.execute(text(
            "INSERT INTO alerts (id, rule, severity, actor, role, dedupe_key, count, first_at, last_at, status) "
            "SELECT 'alr_' || lpad(g::text, 26, '0'), (ARRAY['bulk_read','off_hours','denied_burst'])[g % 3 + 1], "
            "'high', 'staff:usr_' || (g % 1000), 'courier', 'k' || g, 1, now(), now(), "
            "CASE WHEN g % 100 = 0 THEN 'open' ELSE 'resolved' END FROM generate_series(1, :n) g"),
            {"n": n_alerts})
    with svc.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("audit_events", "tracking_events", "alerts", "shipments"):
            conn.execute(text(f"ANALYZE {table}"))
    return {"audit": rows, "tracking": n_tracking, "shipments": n_shipments, "alerts": n_alerts,
            "audit_load_s": t_audit, "load_s": time.perf_counter() - t0}


def _kinds(plan: dict[str, Any], out: list[str]) -> int:
    """Collect the node kinds of ``plan`` (a Seq Scan that read rows is named with its table); the rows all scans
    read (returned plus removed by their filter)."""
    kind = plan["Node Type"]
    read = int(plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1) + plan.get("Rows Removed by Filter", 0))
    name = plan.get("Relation Name")
    out.append(f"Seq Scan({name}: {read} rows)" if kind == "Seq Scan" and read else kind)
    total = read if "Scan" in kind and kind != "Bitmap Index Scan" else 0
    for child in plan.get("Plans", []):
        total += _kinds(child, out)
    return total


def explain(svc: Any, sql: str, params: Any) -> tuple[str, int, float]:
    """The plan's node kinds (distinct, in order, from EXPLAIN ANALYZE), the rows its scans read, and the
    database's own execution time in ms (the best of three: the machine is shared)."""
    raw = svc.engine.raw_connection()
    try:
        with raw.cursor() as cur:
            docs = []
            for _ in range(3):
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
                doc = cur.fetchone()[0]
                docs.append((doc if isinstance(doc, list) else json.loads(doc))[0])
    finally:
        raw.close()
    kinds: list[str] = []
    read = _kinds(docs[0]["Plan"], kinds)
    return " > ".join(dict.fromkeys(kinds)), read, min(float(d["Execution Time"]) for d in docs)


def timed(svc: Any, call: Callable[[Any], Any], repeat: int) -> tuple[float, str, int, float]:
    """Best ms of ``repeat`` calls of ``call(session)``, a fresh session each time (the shared machine's other load
    only ever adds to it), and the plan of the first SELECT it ran on a big table. The session is rolled back,
    not committed: the one audit event a listing appends at its commit costs the same at any table size
    (bench/audit.py measures appends) and would only add the disk's fsync."""
    captured: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and not captured and any(
                t in statement for t in ("audit_events", "tracking_events", "alerts")):
            captured.append((statement, parameters))

    event.listen(svc.engine, "before_cursor_execute", grab)
    times = []
    try:
        for _ in range(repeat):
            with svc.session_factory() as s:
                t0 = time.perf_counter()
                call(s)
                times.append((time.perf_counter() - t0) * 1000)
                s.rollback()
    finally:
        event.remove(svc.engine, "before_cursor_execute", grab)
    plan, read, db_ms = explain(svc, *captured[0]) if captured else ("?", 0, 0.0)
    return min(times), plan, read, db_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", required=True, help="PostgreSQL URL (a fresh schema is made in it and dropped)")
    ap.add_argument("--rows", type=int, default=10_000_000, help="audit events to load")
    ap.add_argument("--months", type=int, default=12, help="months of history the rows are spread over")
    ap.add_argument("--limit", type=int, default=100, help="page size")
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, database_url(Path(tmp), args.pg) as url:
        settings = load_settings(environ={}, data_dir=Path(tmp), database_url=url, log_level="WARNING")
        _keys, engine, _ = initialise(settings)
        svc = build(settings, engine=engine)
        try:
            loaded = load(svc, args.rows, args.months)
            print(f"loaded {loaded['audit']:,} audit events in {loaded['audit_load_s']:.0f} s "
                  f"({loaded['audit'] / loaded['audit_load_s']:,.0f}/s, COPY), {loaded['tracking']:,} tracking "
                  f"events, {loaded['alerts']:,} alerts; {loaded['load_s']:.0f} s in all")
            n, lim = args.rows, args.limit
            rare_deep = n - 1000 * (lim + 5)  # about limit+5 rare events are after this
            listings: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = [
                ("audit events", lambda s: audit.list_events(s, AUDITOR, limit=lim),
                 lambda s: audit.list_events(s, AUDITOR, limit=lim, after=n - 2 * lim)),
                ("audit events ?action= (1 in 8)", lambda s: audit.list_events(s, AUDITOR, limit=lim,
                                                                             action="label.print"),
                 lambda s: audit.list_events(s, AUDITOR, limit=lim, action="label.print", after=n - 16 * lim)),
                ("audit events ?action= (1 in 1000)", lambda s: audit.list_events(s, AUDITOR, limit=lim,
                                                                                action=RARE_ACTION),
                 lambda s: audit.list_events(s, AUDITOR, limit=lim, action=RARE_ACTION, after=rare_deep)),
                ("audit events ?actor= (1 in 1000)", lambda s: audit.list_events(s, AUDITOR, limit=lim,
                                                                               actor="staff:usr_00007"),
                 lambda s: audit.list_events(s, AUDITOR, limit=lim, actor="staff:usr_00007",
                                             after=n - ACTORS * (lim + 5))),
                ("tracking history (one shipment)", lambda s: tracking.history(s, f"shp_{0:026d}"),
                 lambda s: tracking.history(s, f"shp_{loaded['shipments'] - 1:026d}")),
                ("alerts", lambda s: review.list_alerts(s, AUDITOR, limit=lim),
                 lambda s: review.list_alerts(s, AUDITOR, limit=lim, cursor=f"alr_{2 * lim:026d}")),
                ("alerts ?status=open (1 in 100)", lambda s: review.list_alerts(s, AUDITOR, status="open", limit=lim),
                 lambda s: review.list_alerts(s, AUDITOR, status="open", limit=lim,
                                              cursor=f"alr_{100 * (lim + 5):026d}")),
            ]
            print(f"\n{'listing':36} {'first ms':>9} {'deep ms':>9} {'deep db':>8}  plan of the deep page "
                  "(rows its scans read)")
            worst = 0.0
            for name, first_page, deep_page in listings:
                first_ms, _plan, _read, _db = timed(svc, first_page, args.repeat)
                deep_ms, plan, read, db_ms = timed(svc, deep_page, args.repeat)
                worst = max(worst, deep_ms)
                print(f"{name:36} {first_ms:9.2f} {deep_ms:9.2f} {db_ms:8.2f}  {plan} ({read:,} rows)")
            verdict = "MET" if worst < TARGET_MS else "NOT MET"
            print(f"\ntarget: every deep page < {TARGET_MS:.0f} ms at {n:,} audit events: worst {worst:.2f} ms "
                  f"-> {verdict}")
        finally:
            svc.engine.dispose()
            engine.dispose()


if __name__ == "__main__":
    main()
