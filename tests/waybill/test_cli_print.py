"""`waybill print` to a loopback fake printer, and `waybill demo`."""

from __future__ import annotations

import json
import time

from tests.conftest import run
from tests.printing.fake_printer import FakePrinter, free_port

PLAIN = ["欧阳娜娜", "13812345678", "科技园路1号3栋502室", "张三"]


def _demo(cli_env, tmp_path):
    out = tmp_path / "labels"
    doc = json.loads(run(["demo", "--out", str(out)], cli_env).stdout)
    return doc, out


def test_demo_walks_the_flow_and_writes_masked_labels(cli_env, tmp_path):
    doc, out = _demo(cli_env, tmp_path)
    assert doc["ok"] is True and doc["audit"]["ok"] is True
    assert doc["folder"] == str(out)
    kinds = sorted(p.suffix for p in out.iterdir())
    assert kinds.count(".pdf") == 2 and ".png" in kinds and ".zpl" in kinds
    for path in out.iterdir():
        data = path.read_bytes()
        for value in PLAIN:
            assert value.encode() not in data and value.encode("utf-16-be") not in data


def _shipment_ids(cli_env):
    from sqlalchemy import select

    from waybill.db import make_engine
    from waybill.models import Shipment

    url = cli_env.get("WAYBILL_DATABASE_URL") or f"sqlite:///{cli_env['WAYBILL_DATA_DIR']}/waybill.db"
    engine = make_engine(url)
    with engine.connect() as c:
        rows = c.execute(select(Shipment.id, Shipment.status).order_by(Shipment.id)).all()
    engine.dispose()
    return rows


def test_print_sends_zpl_to_the_printer_and_audits(cli_env, tmp_path):
    _demo(cli_env, tmp_path)
    printed_before = [sid for sid, status in _shipment_ids(cli_env) if status == "printed"]
    printer = FakePrinter()
    try:
        proc = run(["print", "--printer", printer.url, "--shipment", printed_before[0], "--operator", "分拣员甲",
                    "--reprint-reason", "printer_jam"], cli_env)
        doc = json.loads(proc.stdout)
        assert doc["ok"] and doc["labels"] == 1
        end = time.monotonic() + 3
        while not any(printer.jobs) and time.monotonic() < end:
            time.sleep(0.02)
        (job,) = printer.jobs
        assert b"^XA" in job and job.rstrip().endswith(b"^XZ")
        assert len(job) == doc["bytes_sent"]
        for value in PLAIN:
            assert value.encode() not in job
    finally:
        printer.close()
    verify = json.loads(run(["audit", "verify"], cli_env).stdout)
    assert verify["ok"]


def test_unreachable_printer_changes_nothing(cli_env, tmp_path):
    _demo(cli_env, tmp_path)
    before = _shipment_ids(cli_env)
    sid = before[0][0]
    proc = run(["print", "--printer", f"tcp://127.0.0.1:{free_port()}", "--shipment", sid, "--operator", "乙",
                "--reprint-reason", "misprint", "--retries", "1", "--timeout", "0.5"], cli_env, check=False)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["error"]["code"] == "printer_unreachable" and doc["labels_issued"] == 0
    assert _shipment_ids(cli_env) == before


def test_print_rejects_bad_printer_url(cli_env):
    proc = run(["print", "--printer", "http://x", "--shipment", "shp_x", "--operator", "丙"], cli_env, check=False)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"]["field"] == "printer"


def test_per_label_report_of_a_job_cut_off_midway():
    """Which labels reached the printer: acknowledged bytes -> received, handed over but unacknowledged ->
    in_flight (look before reprinting), the rest -> not_sent (reprint them); an incomplete PDF prints nothing."""
    from printing.samples import sample_models
    from waybill.commands.common import Progress
    from waybill.commands.printer import _Tracker

    models = list(sample_models(4, seed=5))
    chunks = [b"a" * 100, b"b" * 50, b"c" * 70, b"d" * 30, b"^XA^IDR:WB*.GRF^FS^XZ\n"]  # 4 labels + cleanup
    tracker = _Tracker(models, "zpl")
    assert b"".join(tracker.chunks(iter(chunks), Progress(4, "test"))) == b"".join(chunks)
    states = [r["state"] for r in tracker.report(sent=220, acked=150)]
    assert states == ["received", "received", "in_flight", "not_sent"]
    assert [r["waybill_no"] for r in tracker.report(sent=220, acked=None)] == [m.waybill_no for m in models]
    assert [r["state"] for r in tracker.report(sent=220, acked=None)] == ["in_flight"] * 3 + ["not_sent"]
    pdf = _Tracker(models, "pdf")
    list(pdf.chunks(iter([b"%PDF", b"p1", b"p2", b"p3", b"p4", b"trailer"]), Progress(4, "test")))
    assert {r["state"] for r in pdf.report(sent=10, acked=10)} == {"not_sent"}


def test_print_failing_midway_reports_each_label(cli_env, tmp_path):
    import socket
    import struct
    import threading

    _demo(cli_env, tmp_path)
    ids = [sid for sid, status in _shipment_ids(cli_env) if status != "cancelled"]
    # A printer that takes 500 bytes, then resets the connection (power cut, firmware crash).
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def printer() -> None:
        conn, _ = srv.accept()
        conn.recv(500)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    thread = threading.Thread(target=printer, daemon=True)
    thread.start()
    shipments = [arg for sid in ids for arg in ("--shipment", sid)]
    proc = run(["print", "--printer", f"tcp://127.0.0.1:{srv.getsockname()[1]}", *shipments,
                "--operator", "分拣员乙", "--format", "zpl"], cli_env, check=False)
    thread.join(5)
    srv.close()
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["error"]["code"] == "print_failed"
    states = [r["state"] for r in doc["labels"]]
    assert len(states) == len(ids) == doc["labels_issued"]
    order = {"received": 0, "in_flight": 1, "not_sent": 2}
    assert [order[s] for s in states] == sorted(order[s] for s in states)  # a prefix reached the printer
    assert "--reprint-reason" in doc["hint"]
    for value in PLAIN:
        assert value not in proc.stdout
