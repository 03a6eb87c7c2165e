"""Benchmark: the monthly privacy report over a month of ``--n`` audit events (and as many in the months around
it), JSON and PDF, with and without the ``audit_events.at`` index (migration 0027).

Seeds ``--staff`` staff accounts over ``--stations`` stations and the audit events directly (set-based inserts,
1/3 of them personal-data accesses, 1/50 refusals; their hash chain is not computed: the report does not read
it), then ``ANALYZE`` on PostgreSQL, times :func:`courier_api.reports.monthly_report` (median of ``--runs``,
rolled back: nothing is written) and the PDF rendering, prints the access query's plan, drops the index and
times the report again. Target: a month of 200,000 events in well under a second on PostgreSQL.

    python bench/privacy_report.py [--n 200000] [--staff 500] [--stations 50] [--runs 5] [--pg URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from _env import database_url
from sqlalchemy import Table, func, insert, select, text

from courier_api import reports
from courier_api.models import StaffUser
from courier_api.reports import pdf
from courier_api.reports.period import month_period
from courier_api.reports.sections import SECTIONS, ReportContext
from waybill.ids import new_id
from waybill.models import AuditEvent
from waybill.permissions import Principal
from waybill.services import build, initialise
from waybill.settings import load_settings

MONTH = "2026-05"
ACCESS_ACTIONS = ("courier.scan", "courier.call", "label.issue", "shipment.read")


def seed(svc: Any, n: int, n_staff: int, n_stations: int) -> None:
    events = cast(Table, AuditEvent.__table__)
    with svc.session_factory() as s:
        staff = [StaffUser(id=new_id("usr"), username=f"bench{i:05d}", role="courier",
                           station=f"{100 + i % n_stations}-W{i % 7:03d}", password_hash="x")
                 for i in range(n_staff)]
        s.add_all(staff)
        s.commit()
        actors = [f"staff:{u.id}" for u in staff]
        seq = int(s.execute(text("SELECT COALESCE(max(seq), 0) FROM audit_events")).scalar_one())
        period = month_period(MONTH, datetime.now(UTC))
        # The month itself, the month before and the month after: as many events around it as in it.
        spans = [(period.start - timedelta(days=30), n // 2), (period.start, n), (period.end, n // 2)]
        for start, count in spans:
            rows = []
            step = (30 * 86400) / max(1, count)
            for i in range(count):
                seq += 1
                kind = i % 50
                rows.append({
                    "seq": seq, "shard_seq": seq, "at": start + timedelta(seconds=i * step),
                    "actor": actors[i % len(actors)],
                    "role": "courier", "action": ACCESS_ACTIONS[i % 4] if kind % 3 == 0 else "shipment.list",
                    "object_type": "shipment", "object_id": f"shp_{i:026d}", "purpose": None,
                    "fields": ["recipient.phone"] if kind % 3 == 0 else [],
                    "outcome": "denied" if kind == 49 else "ok", "client_addr": None, "request_id": None,
                    "prev_hash": b"\0" * 32, "hash": b"\0" * 32})
                if len(rows) == 10_000:
                    s.execute(insert(events), rows)
                    rows = []
            if rows:
                s.execute(insert(events), rows)
        # One unchained fixture in shard 0 (the report reads events by time, it does not verify them).
        s.execute(text("UPDATE audit_head SET seq = :seq WHERE id = 0"), {"seq": seq})
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT setval('audit_event_seq', :seq)"), {"seq": seq})
        s.commit()


def timed(svc: Any, principal: Principal, runs: int) -> tuple[float, float, Any]:
    times, report = [], None
    for _ in range(runs):
        with svc.session_factory() as s:
            t0 = time.perf_counter()
            report = reports.monthly_report(s, principal, MONTH)
            times.append(time.perf_counter() - t0)
            s.rollback()
    per_section = {}
    with svc.session_factory() as s:
        ctx = ReportContext(session=s, period=month_period(MONTH, datetime.now(UTC)), now=datetime.now(UTC),
                            show_actors=True)
        for section in SECTIONS:
            t0 = time.perf_counter()
            section.build(ctx)
            per_section[section.key] = time.perf_counter() - t0
    print("           sections " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in per_section.items()))
    t0 = time.perf_counter()
    data = pdf.render(report)
    t_pdf = time.perf_counter() - t0
    assert data.startswith(b"%PDF")
    return statistics.median(times), t_pdf, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="audit events in the reported month")
    ap.add_argument("--staff", type=int, default=500)
    ap.add_argument("--stations", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (default: SQLite in a temporary directory)")
    args = ap.parse_args()
    backend = "postgresql" if args.pg else "sqlite"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with database_url(tmp, args.pg) as url:
            settings = load_settings(environ={}, data_dir=tmp, database_url=url, log_level="WARNING")
            _keys, engine, _ = initialise(settings)
            svc = build(settings, engine=engine)
            t0 = time.perf_counter()
            seed(svc, args.n, args.staff, args.stations)
            print(f"{backend:10s} seed    {2 * args.n} audit events ({args.n} in {MONTH}) in "
                  f"{time.perf_counter() - t0:.1f} s")
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("ANALYZE"))
            auditor = Principal(kind="staff", id="bench-auditor", role="auditor")
            t_json, t_pdf, report = timed(svc, auditor, args.runs)
            with svc.session_factory() as s:
                in_month = s.scalar(select(func.count()).select_from(AuditEvent).where(
                    AuditEvent.at >= report.start, AuditEvent.at < report.end))
            assert report.accesses.total + report.refusals.total > 0 and in_month == args.n, in_month
            print(f"{backend:10s} report  {t_json * 1000:.0f} ms (median of {args.runs}; {report.accesses.total} "
                  f"accesses, {report.refusals.total} refusals, {len(report.accesses.rows)} day/role/station rows)"
                  f", PDF {t_pdf * 1000:.0f} ms")
            if args.pg:
                period = month_period(MONTH, datetime.now(UTC))
                with engine.connect() as c:
                    plan = c.execute(text(
                        "EXPLAIN SELECT count(*) FROM audit_events WHERE at >= :s AND at < :e "
                        "AND outcome = 'ok' AND CAST(fields AS TEXT) != '[]'"),
                        {"s": period.start, "e": period.end}).scalars().all()
                print("\n".join(f"{backend:10s} plan    {line}" for line in plan))
            with engine.begin() as c:
                c.execute(text("DROP INDEX ix_audit_events_at"))
                if args.pg:
                    c.execute(text("ANALYZE audit_events"))
            t_noidx, _, _ = timed(svc, auditor, args.runs)
            print(f"{backend:10s} report  {t_noidx * 1000:.0f} ms without the index on audit_events.at")
            engine.dispose()


if __name__ == "__main__":
    main()
