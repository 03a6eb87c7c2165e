"""Label endpoints: first print, reprint, and sorters' print jobs (streamed page by page)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Annotated, Literal

from flask import Blueprint, Response, g, request
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.exceptions import MethodNotAllowed

import printing
from waybill import audit, labels, print_jobs
from waybill.errors import ValidationFailed
from waybill.permissions import Permission
from waybill.schemas import parse
from waybill.uow import unit_of_work
from waybill.web.auth import authenticate, requires
from waybill.web.context import client_address, db_session, services
from waybill.web.merchant import json_body
from waybill.web.openapi import operation

bp = Blueprint("labels", __name__)
TAGS = ("labels",)
log = logging.getLogger("waybill.labels")
Size = Literal["100x150", "100x180", "76x130"]
DEFAULT_SIZE: Size = "100x180"
LABEL_TYPES = ("application/pdf", "image/png", "application/zpl")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")  # as for creating shipments


ReasonCode = Literal["damaged", "lost", "printer_jam", "misprint", "relabel"]


class ReprintIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    reason: ReasonCode = Field(description="重打原因代码：damaged 污损 / lost 丢失 / printer_jam 卡纸 / "
                                           "misprint 打印错误 / relabel 更换规格（记录在审计日志中）")
    format: Literal["pdf", "png", "zpl"] = "pdf"
    size: Size = DEFAULT_SIZE


class PrintJobIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    shipment_ids: Annotated[list[str], Field(min_length=1, max_length=10_000)]
    format: Literal["pdf", "zpl"] = "pdf"
    size: Size = DEFAULT_SIZE
    reprint_reason: ReasonCode | None = Field(default=None,
                                              description="给出原因代码时，已打印的运单签发新令牌（重打，计入上限）；"
                                                          "此时任务最多 WAYBILL_REPRINTS_PER_JOB 张，超过每名分拣员"
                                                          "每小时上限时 429")


def _query_format(allowed: tuple[str, ...]) -> tuple[str, str]:
    unknown = set(request.args) - {"format", "size"}
    if unknown:
        raise ValidationFailed("不支持的查询参数", field=sorted(unknown)[0])
    fmt = request.args.get("format", "pdf")
    size = request.args.get("size", DEFAULT_SIZE)
    if fmt not in allowed:
        raise ValidationFailed(f"format 须为 {' / '.join(allowed)}", field="format")
    if size not in printing.SIZES:
        raise ValidationFailed(f"size 须为 {' / '.join(printing.SIZES)}", field="size")
    return fmt, size


def _file(data: bytes, fmt: str, waybill_no: str) -> Response:
    resp = Response(data, mimetype=printing.MEDIA_TYPES[fmt])
    resp.headers["Content-Disposition"] = f'attachment; filename="{waybill_no}.{fmt}"'
    return resp


@bp.get("/v1/shipments/<shp:shipment_id>/label")
@operation(summary="打印面单（首次签发二维码令牌，之后重复打印同一令牌）", tags=TAGS, errors=(404, 409, 410, 422),
           query=(("format", {"type": "string", "enum": ["pdf", "png", "zpl"], "default": "pdf"}, "面单格式"),
                  ("size", {"type": "string", "enum": list(printing.SIZES), "default": DEFAULT_SIZE}, "面单尺寸")),
           content_types=LABEL_TYPES)
@requires(Permission.LABEL_READ)
def label(shipment_id: str) -> Response:
    if request.method == "HEAD":
        # Flask answers HEAD with the GET view, but this GET issues a QR token and marks the shipment printed:
        # a safe method must not do that, so HEAD is refused (before any lookup, so it reveals nothing either).
        raise MethodNotAllowed(valid_methods=["GET"])
    fmt, size = _query_format(("pdf", "png", "zpl"))
    issued = labels.issue_label(db_session(), services().label_deps, authenticate(), shipment_id)
    data = printing.render_label(issued.model, fmt, size)
    services().metrics.labels_printed.labels(fmt, size, "label").inc()
    return _file(data, fmt, issued.shipment.waybill_no)


@bp.post("/v1/shipments/<shp:shipment_id>/label/reprint")
@operation(summary="重打面单：签发新令牌、作废旧令牌并记录原因与操作人（每单、每名分拣员每小时有上限）", tags=TAGS,
           body=ReprintIn, errors=(404, 409, 410, 429), content_types=LABEL_TYPES)
@requires(Permission.LABEL_REPRINT)
def reprint(shipment_id: str) -> Response:
    data: ReprintIn = parse(ReprintIn, json_body())
    issued = labels.reprint_label(db_session(), services().label_deps, authenticate(), shipment_id, data.reason)
    rendered = printing.render_label(issued.model, data.format, data.size)
    services().metrics.labels_printed.labels(data.format, data.size, "reprint").inc()
    return _file(rendered, data.format, issued.shipment.waybill_no)


@bp.post("/v1/print-jobs")
@operation(summary="分拣中心批量打印：一个文档按请求顺序包含全部面单，逐页流式输出；可凭 Idempotency-Key 重试",
           tags=TAGS, body=PrintJobIn, errors=(404, 409, 410, 429),
           content_types=("application/pdf", "application/zpl"),
           headers=(("Idempotency-Key", "幂等键：中断后以相同键与相同内容重试，已签发的令牌原样重用，不重复签发"),))
@requires(Permission.PRINT_JOB_CREATE)
def print_job() -> Response:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise ValidationFailed("Idempotency-Key 须为 1-128 个可见 ASCII 字符", field="Idempotency-Key")
    data: PrintJobIn = parse(PrintJobIn, json_body())
    if len(data.shipment_ids) > services().settings.print_job_max:
        raise ValidationFailed(f"单个打印任务最多 {services().settings.print_job_max} 张", field="shipment_ids")
    svc, principal, session = services(), authenticate(), db_session()
    # The job's row (or, same key, the earlier attempt's): committed with the checks, before the first byte.
    job = print_jobs.open_job(session, principal, data.shipment_ids, reprint_reason=data.reprint_reason,
                              idempotency_key=key)
    models: Iterator[printing.LabelModel]
    if data.reprint_reason is not None:
        # A reprint job is small (at most WAYBILL_REPRINTS_PER_JOB <= 200 labels, or it is refused): issued whole in
        # the request's own transaction, so the sorter's hourly allowance is checked and charged under one lock
        # (two concurrent jobs cannot both spend it) and committed before the first byte, like any answer.
        planned = print_jobs.issue_print_job(session, svc.label_deps, principal, data.shipment_ids,
                                             reprint_reason=data.reprint_reason, job_id=job.id)
        print_jobs.record_progress(session, job.id, len(planned), len(planned))
        models = iter(planned)
    else:
        # Every check of the whole job before the first byte goes out: a stream cannot change its status later.
        plan = print_jobs.plan_print_job(session, svc.label_deps, principal, data.shipment_ids, job_id=job.id)
        planned = plan.labels()
        # The one documented exception to "commit before the answer": tokens are issued a chunk at a time, each
        # chunk's unit of work committing before its labels are rendered and streamed (so a 10,000-label job holds
        # no long transaction, and no label leaves with a token that is not durable); a job cut off part-way prints
        # the same tokens when retried (with the same Idempotency-Key, the job's own tokens even for a reprint).
        context = audit.AuditContext(request_id=g.get("request_id"), client_addr=client_address())
        models = print_jobs.issue_in_chunks(svc.session_factory, svc.label_deps, principal, data.shipment_ids,
                                            context=context, plan=plan, job_id=job.id)
    for model in planned:  # the release gate on every label, before anything is sent
        printing.check_release(model)
    # Counted when the job is handed to the stream (a failure part-way is logged and audited in _guarded).
    svc.metrics.labels_printed.labels(data.format, data.size, "print_job").inc(len(planned))
    resp = Response(_guarded(printing.iter_render(models, data.format, data.size), len(planned)),
                    mimetype=printing.MEDIA_TYPES[data.format])
    resp.headers["Content-Disposition"] = f'attachment; filename="print-job.{data.format}"'
    resp.headers["X-Label-Count"] = str(len(planned))
    resp.headers["X-Print-Job-Id"] = job.id
    return resp


def _guarded(chunks: Iterator[bytes], count: int) -> Iterator[bytes]:
    """Stream the document; if rendering fails part-way, say so in the log and the audit trail.

    The status line is gone by then, so the client sees a truncated document. Nothing needs undoing:
    a retried job prints the same live tokens again and costs no reprint.
    """
    # Captured now: the body is iterated after the request (and its app context) has ended.
    factory = services().session_factory
    principal, request_id = g.get("principal"), g.get("request_id")

    def stream() -> Iterator[bytes]:
        sent = 0
        try:
            for chunk in chunks:
                yield chunk
                sent += 1
        except Exception as exc:
            log.error("print job failed mid-stream", extra={"error_type": type(exc).__name__,
                                                            "request_id": request_id, "count": count})
            # A second, small unit of work: the request's own committed before the first chunk.
            with unit_of_work(factory, context=audit.AuditContext(request_id=request_id)) as tx:
                audit.record(tx.session, principal, "print_job.failed", outcome="error",
                             purpose=f"chunks_sent={sent}")
            raise

    return stream()
