"""The monthly privacy report's HTTP: ``GET /v1/privacy/reports/{YYYY-MM}`` as JSON, or ``?format=pdf``."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, request

from courier_api import reports
from courier_api.reports import pdf
from courier_api.reports.schemas import MonthlyReportOut
from waybill.errors import ValidationFailed
from waybill.permissions import Permission
from waybill.web.auth import authenticate, requires
from waybill.web.context import db_session
from waybill.web.openapi import operation, respond

bp = Blueprint("reports", __name__)
FORMATS = ("json", "pdf")


def install(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/v1/privacy/reports/<month>")
@operation(summary="个人信息保护月度报告（北京时间自然月）：访问、拒绝、告警处置、主体请求、销毁、合作方协议；"
                   "不含个人信息。?format=pdf 为带图表的 PDF", tags=("privacy",), response=MonthlyReportOut,
           errors=(422,), content_types=("application/json", "application/pdf"),
           query=(("format", {"type": "string", "enum": list(FORMATS), "default": "json"}, "json 或 pdf"),))
@requires(Permission.PRIVACY_REPORT_READ)
def monthly(month: str) -> Response:
    unknown = set(request.args) - {"format"}
    if unknown:
        raise ValidationFailed("不支持的查询参数", field=sorted(unknown)[0])
    fmt = request.args.get("format", "json")
    if fmt not in FORMATS:
        raise ValidationFailed("format 须为 json 或 pdf", field="format")
    report = reports.monthly_report(db_session(), authenticate(), month, fmt=fmt)
    if fmt == "json":
        return respond(MonthlyReportOut, report)
    resp = Response(pdf.render(report), mimetype="application/pdf")
    resp.headers["Content-Disposition"] = f'attachment; filename="privacy-report-{report.month}.pdf"'
    return resp
