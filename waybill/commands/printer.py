"""`waybill print` (labels to a floor printer) and `waybill demo` (the whole flow, sample labels)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

import printing
from printing.model import LabelModel
from printing.transport import PrintFailed, connect, parse_printer_url, send
from waybill import audit, labels, print_jobs
from waybill.commands import common as cli  # the shared helpers: settings, services, emit, fail
from waybill.errors import DomainError
from waybill.permissions import Principal
from waybill.uow import unit_of_work


def register(main: click.Group) -> None:
    """Attach the commands to the top-level `waybill` group."""
    main.add_command(print_cmd)
    main.add_command(demo)



@click.command("print")
@click.option("--printer", required=True, help="tcp://host[:port] (raw, default port 9100)")
@click.option("--shipment", "shipments", multiple=True, help="shipment id (repeatable)")
@click.option("--ids-file", type=click.File("r"), help="file with one shipment id per line (a print job)")
@click.option("--format", "fmt", type=click.Choice(["zpl", "tspl", "pdf"]), default="zpl", show_default=True)
@click.option("--size", type=click.Choice(list(printing.SIZES)), default="100x180", show_default=True)
@click.option("--reprint-reason", type=click.Choice(list(labels.REPRINT_REASONS)), default=None,
              help="issue new tokens for shipments already printed (a recorded, capped reprint)")
@click.option("--operator", required=True, help="who is printing (recorded in the audit log)")
@click.option("--retries", default=3, show_default=True, type=int)
@click.option("--timeout", default=10.0, show_default=True, type=float)
def print_cmd(printer: str, shipments: tuple[str, ...], ids_file: Any, fmt: str, size: str,
              reprint_reason: str | None, operator: str, retries: int, timeout: float) -> None:
    """Send labels (or a print job) to a floor printer over raw TCP.

    The printer is reached first (with retries); only then are tokens issued and committed, so an
    unreachable printer changes nothing. A failure after bytes went out is reported, never retried
    silently (a resend could print duplicates): reprint with --reprint-reason.
    """
    ids = list(shipments) + ([line.strip() for line in ids_file if line.strip()] if ids_file else [])
    if not ids:
        cli.fail({"ok": False, "error": {"code": "validation_error", "message": "no shipments given"}}, 2)
    try:
        parse_printer_url(printer)
    except ValueError as exc:
        cli.fail({"ok": False, "error": {"code": "validation_error", "message": str(exc), "field": "printer"}}, 2)
    svc = cli.ready_services(cli.read_settings())
    principal = Principal(kind="cli", id=operator[:60], role="sorter")
    try:
        conn, attempts = connect(printer, timeout=timeout, retries=retries)
    except PrintFailed as exc:
        cli.fail({"ok": False, "error": {"code": "printer_unreachable", "message": str(exc)},
                  "attempts": exc.attempts, "labels_issued": 0})
        return
    try:
        # Committed before anything is sent: a retry prints the same live tokens (no reprint).
        with unit_of_work(svc.session_factory) as tx:
            models = print_jobs.issue_print_job(tx.session, svc.label_deps, principal, ids,
                                            reprint_reason=reprint_reason)
            for model in models:
                printing.check_release(model)
    except DomainError as exc:
        conn.close()
        cli.fail({"ok": False, "error": {"code": "refused", "message": exc.message, "field": exc.field}})
    tracker = _Tracker(models, fmt)
    bar = cli.Progress(len(models), f"printing {len(models)} labels")
    try:
        sent = send(conn, tracker.chunks(printing.iter_render(models, fmt, size), bar), attempts=attempts)
    except PrintFailed as exc:
        bar.close()
        with unit_of_work(svc.session_factory) as tx:
            audit.record(tx.session, principal, "print.failed", object_type="printer", object_id=printer[:64],
                         outcome="error", purpose=f"labels_sent={tracker.count_sent(exc.sent)}")
        cli.fail({"ok": False, "error": {"code": "print_failed", "message": str(exc)}, "bytes_sent": exc.sent,
                  "labels_issued": len(models), "labels": tracker.report(exc.sent, exc.acked),
                  "hint": "reprint the labels that did not reach the printer with --reprint-reason"})
    bar.close()
    cli.emit({"ok": True, "printer": printer, "labels": len(models), "bytes_sent": sent, "attempts": attempts,
              "format": fmt, "size": size})


class _Tracker:
    """Which labels of a job reached the printer: the byte offset at which each label's data ends.

    ZPL and TSPL jobs are one chunk per label (ZPL's glyph downloads travel with the first label that uses
    them), so a label whose last byte was handed to the connection is on the printer; a PDF is one document,
    which a printer prints only when it is whole.
    """

    def __init__(self, models: list[LabelModel], fmt: str) -> None:
        self._numbers = [m.waybill_no for m in models]
        self._per_label = fmt in ("zpl", "tspl")
        self._ends: list[int] = []  # end offset of each label's data, in job order
        self._total = 0

    def chunks(self, stream: Iterator[bytes], bar: cli.Progress) -> Iterator[bytes]:
        for chunk in stream:
            self._total += len(chunk)
            # PDF: chunk 0 is the header, then one page per label, then the trailer.
            if (self._per_label or self._total > len(chunk)) and len(self._ends) < len(self._numbers):
                self._ends.append(self._total)
            yield chunk
            bar.advance()

    def count_sent(self, upto: int) -> int:
        """Labels whose data lies wholly within the first ``upto`` bytes (none for an incomplete PDF)."""
        if not self._per_label:
            return 0  # a printer prints a PDF only when it is whole
        return sum(1 for end in self._ends if end <= upto)

    def report(self, sent: int, acked: int | None) -> list[dict[str, Any]]:
        """Per label: ``received`` (its bytes were acknowledged by the printer), ``in_flight`` (handed to the
        connection when it broke: may or may not have printed — look before reprinting), or ``not_sent``
        (reprint it)."""
        received = self.count_sent(acked) if acked is not None else 0
        handed = self.count_sent(sent)
        states = []
        for i, no in enumerate(self._numbers):
            state = "received" if i < received else "in_flight" if i < handed else "not_sent"
            states.append({"index": i, "waybill_no": no, "state": state})
        return states


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=None, help="folder for the sample labels")
def demo(out: Path | None) -> None:
    """Walk the whole flow on the embedded default and write sample labels to a folder."""
    from waybill.merchants import create_merchant
    from waybill.permissions import SYSTEM
    from waybill.web.app import create_app

    settings = cli.read_settings()
    if settings.is_production:
        # The demo creates a merchant and live labels: never in a production installation.
        cli.fail({"ok": False, "error": {"code": "refused", "message": "waybill demo is not run in production"}}, 2)
    svc = cli.ready_services(settings)
    folder = out or settings.data_dir / f"demo-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with unit_of_work(svc.session_factory) as tx:
        merchant = create_merchant(tx.session, SYSTEM, "演示商户", api_key_secret=svc.keys.secret("api_key"))
    client = create_app(settings, services_override=svc).test_client()
    headers = {"Authorization": f"Bearer {merchant.api_key}"}
    steps: list[dict[str, Any]] = []
    people = [("张三", "13812345678", "广东省", "深圳市", "南山区", "粤海街道科技园路1号3栋502室"),
              ("欧阳娜娜", "021-64321234", "上海市", "上海市", "徐汇区", "漕溪北路88号5楼501室"),
              ("Li Lei", "+86 139 0000 1111", "浙江省", "杭州市", "西湖区", "文三路90号东部软件园2号楼301")]
    created = []
    for i, (name, phone, prov, city, dist, addr) in enumerate(people):
        body = {"merchant_order_id": f"DEMO-{i + 1}",
                "sender": {"name": "王小明", "phone": "13900001111", "province": "北京市", "city": "北京市",
                           "district": "海淀区", "address": "中关村大街27号"},
                "recipient": {"name": name, "phone": phone, "province": prov, "city": city, "district": dist,
                              "address": addr},
                "parcel": {"weight_g": 800 + 400 * i}}
        r = client.post("/v1/shipments", json=body, headers=headers)
        created.append(r.get_json())
        steps.append({"step": "create", "status": r.status_code, "waybill_no": created[-1].get("waybill_no"),
                      "recipient_masked": created[-1].get("recipient")})
    files = []
    for shp, fmt in zip(created, ("pdf", "png", "zpl"), strict=True):
        r = client.get(f"/v1/shipments/{shp['id']}/label?format={fmt}&size=100x180", headers=headers)
        path = folder / f"{shp['waybill_no']}.{fmt}"
        path.write_bytes(r.data)
        files.append(str(path))
        steps.append({"step": f"label.{fmt}", "status": r.status_code, "file": str(path)})
    r = client.post(f"/v1/shipments/{created[0]['id']}/label/reprint", json={"reason": "damaged"},
                    headers=headers)
    reprint = folder / f"{created[0]['waybill_no']}-reprint.pdf"
    reprint.write_bytes(r.data)
    files.append(str(reprint))
    steps.append({"step": "reprint", "status": r.status_code, "file": str(reprint)})
    r = client.post(f"/v1/shipments/{created[2]['id']}/cancel", headers=headers)
    steps.append({"step": "cancel", "status": r.status_code, "shipment_status": r.get_json().get("status")})
    verified = audit.verify(svc.read_session_factory, svc.keys.secret("audit_chain")).as_dict()
    (folder / "steps.json").write_text(json.dumps(steps, ensure_ascii=False, indent=2))
    cli.emit({"ok": all(s["status"] < 400 for s in steps) and verified["ok"], "folder": str(folder),
              "files": files, "steps": steps, "audit": verified})
