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
