"""The monthly privacy report as a PDF a manager reads at a glance: key figures, then one heading per section
with its chart (reportlab graphics) and a small table. Chinese text in the project's CJK font
(:func:`printing.fonts.pdf_font`, which finds, checks and registers it).

Drawn from :class:`~courier_api.reports.schemas.MonthlyReportOut` alone, so the PDF can hold nothing the JSON
answer does not (no personal data, actors only as ids and only in an auditor's report).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import Any

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from courier_api.reports.schemas import MonthlyReportOut
from courier_api.reports.sections import NO_STATION, SECTIONS
from printing.fonts import PDF_FONT_NAME, pdf_font

TITLE = "个人信息保护月度报告"
SUMMARY = "本月概览"
ROLE_NAMES = {"courier": "快递员", "dispatcher": "调度员", "sorter": "分拣员", "auditor": "审计员",
              "privacy_officer": "隐私官", "admin": "管理员", "merchant": "商户", "subject": "本人",
              "system": "系统", "anonymous": "匿名"}
REQUEST_TYPES = {"correct": "更正补充", "delete": "删除", "complaint": "投诉",
                 "withdraw_consent": "撤回同意"}
PARTNER_KINDS = {"locker": "快递柜", "station": "驿站", "franchise": "加盟网点", "authority": "主管部门"}
REASONS = {"retention": "保存期限届满", "subject_request": "本人删除请求"}
PALETTE = (colors.HexColor("#1f77b4"), colors.HexColor("#ff7f0e"), colors.HexColor("#2ca02c"),
           colors.HexColor("#d62728"), colors.HexColor("#9467bd"), colors.HexColor("#8c564b"))
WIDTH = 170 * mm
MAX_BARS = 12


def _styles() -> dict[str, ParagraphStyle]:
    return {
        "title": ParagraphStyle("title", fontName=PDF_FONT_NAME, fontSize=18, leading=24, spaceAfter=6),
        "h2": ParagraphStyle("h2", fontName=PDF_FONT_NAME, fontSize=13, leading=18, spaceBefore=10, spaceAfter=4),
        "body": ParagraphStyle("body", fontName=PDF_FONT_NAME, fontSize=9, leading=13),
    }


def _table(rows: Sequence[Sequence[object]], widths: Sequence[float] | None = None) -> Table:
    table = Table([[str(c) for c in row] for row in rows], colWidths=widths, hAlign="LEFT", repeatRows=1)
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, -1), PDF_FONT_NAME), ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef7")),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ]))
    return table


def _value_axis(axis: Any, values: Sequence[float]) -> None:
    """Counts from 0 in whole steps (never 0.2, 0.4 … on a small month)."""
    top = max(1, int(max(values, default=0)))
    step = max(1, math.ceil(top / 5))
    axis.valueMin, axis.valueStep = 0, step
    axis.valueMax = step * (math.ceil(top / step) + (1 if top % step == 0 else 0))
    axis.labels.fontName = PDF_FONT_NAME
    axis.labels.fontSize = 6


def _bar_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]], height: float = 55 * mm,
               ) -> Drawing:
    drawing = Drawing(WIDTH, height)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 30, 30, WIDTH - 150, height - 45
    chart.data = [list(values) or [0] for _, values in series]
    chart.categoryAxis.categoryNames = list(labels) or ["—"]
    chart.categoryAxis.labels.fontName = PDF_FONT_NAME
    chart.categoryAxis.labels.fontSize = 6
    chart.categoryAxis.labels.angle = 30 if len(labels) > 6 else 0
    chart.categoryAxis.labels.boxAnchor = "ne" if len(labels) > 6 else "n"
    _value_axis(chart.valueAxis, [v for _, values in series for v in values])
    for i in range(len(series)):
        chart.bars[i].fillColor = PALETTE[i % len(PALETTE)]
    drawing.add(chart)
    drawing.add(_legend([name for name, _ in series], WIDTH - 110, height - 10))
    return drawing


def _line_chart(days: Sequence[str], series: Sequence[tuple[str, Sequence[int]]], height: float = 60 * mm,
                ) -> Drawing:
    drawing = Drawing(WIDTH, height)
    chart = HorizontalLineChart()
    chart.x, chart.y, chart.width, chart.height = 30, 25, WIDTH - 150, height - 40
    chart.data = [list(values) for _, values in series] or [[0] * max(1, len(days))]
    chart.categoryAxis.categoryNames = [d[-2:] for d in days]
    chart.categoryAxis.labels.fontName = PDF_FONT_NAME
    chart.categoryAxis.labels.fontSize = 6
    _value_axis(chart.valueAxis, [v for _, values in series for v in values])
    for i in range(len(series)):
        chart.lines[i].strokeColor = PALETTE[i % len(PALETTE)]
        chart.lines[i].strokeWidth = 1.5
    drawing.add(chart)
    drawing.add(_legend([name for name, _ in series], WIDTH - 110, height - 10))
    drawing.add(String(30, 5, "日期（北京时间）", fontName=PDF_FONT_NAME, fontSize=7))
    return drawing


def _legend(names: Sequence[str], x: float, y: float) -> Legend:
    legend = Legend()
    legend.x, legend.y = x, y
    legend.fontName, legend.fontSize = PDF_FONT_NAME, 7
    legend.alignment = "right"
    legend.colorNamePairs = [(PALETTE[i % len(PALETTE)], name) for i, name in enumerate(names)]
    return legend


def _role(role: str) -> str:
    return ROLE_NAMES.get(role, role)


def _station(key: str) -> str:
    return "无站点" if key == NO_STATION else key


def _accesses(r: MonthlyReportOut, st: dict[str, ParagraphStyle]) -> list[Flowable]:
    a = r.accesses
    days = [c.key for c in r.accesses.by_day]
    index = {d: i for i, d in enumerate(days)}
    roles = [c.key for c in a.by_role][: len(PALETTE) - 1]
    series: list[tuple[str, list[int]]] = [("合计", [c.count for c in a.by_day])]
    for role in roles:
        values = [0] * len(days)
        for row in a.rows:
            if row.role == role:
                values[index[row.day.isoformat()]] += row.count
        series.append((_role(role), values))
    out: list[Flowable] = [Paragraph(f"本月共 {a.total} 次访问个人信息（按操作人角色、每日）。", st["body"]),
                           _line_chart(days, series)]
    stations = a.by_station[:MAX_BARS]
    out += [Paragraph("按操作人所属站点：", st["body"]),
            _bar_chart([_station(c.key) for c in stations], [("访问次数", [c.count for c in stations])], 50 * mm)]
    out.append(_table([("角色", "次数")] + [(_role(c.key), c.count) for c in a.by_role], [60 * mm, 30 * mm]))
    if a.top_actors is not None:
        out += [Spacer(1, 4), Paragraph("访问最多的操作人（编号）：", st["body"]),
                _table([("操作人", "次数")] + [(t.actor, t.count) for t in a.top_actors], [90 * mm, 30 * mm])]
    return out


def _refusals(r: MonthlyReportOut, st: dict[str, ParagraphStyle]) -> list[Flowable]:
    f = r.refusals
    return [Paragraph(f"本月共 {f.total} 次访问被拒绝。", st["body"]),
            _bar_chart([c.key[-2:] for c in f.by_day], [("被拒绝次数", [c.count for c in f.by_day])], 45 * mm),
            _table([("动作", "次数")] + [(c.key, c.count) for c in f.by_action[:MAX_BARS]], [80 * mm, 30 * mm])]


def _alerts(r: MonthlyReportOut, st: dict[str, ParagraphStyle]) -> list[Flowable]:
    al = r.alerts
    rules = al.by_rule[:MAX_BARS]
    chart = _bar_chart([i.rule for i in rules], [
        ("1小时内处置", [i.within_1h for i in rules]), ("24小时内处置", [i.within_24h for i in rules]),
        ("超过24小时", [i.later for i in rules]), ("未处置", [i.open for i in rules])])
    rows: list[tuple[object, ...]] = [("规则", "级别", "告警", "触发次数", "已处置", "未处置", "平均处置（分钟）")]
    rows += [(i.rule, i.severity, i.alerts, i.fires, i.resolved, i.open,
              "—" if i.mean_resolve_seconds is None else f"{i.mean_resolve_seconds / 60:.1f}") for i in al.by_rule]
    return [Paragraph(f"本月新告警 {al.total} 条，已处置 {al.resolved} 条。", st["body"]), chart, _table(rows)]


def _subject_requests(r: MonthlyReportOut, st: dict[str, ParagraphStyle]) -> list[Flowable]:
    sr = r.subject_requests
    types = sr.by_type
    chart = _bar_chart([REQUEST_TYPES.get(t.type, t.type) for t in types], [
        ("按期答复", [t.answered_in_time for t in types]), ("逾期答复", [t.answered_late for t in types]),
        ("逾期未答复", [t.open_overdue for t in types]), ("处理中", [t.open_pending for t in types])], 45 * mm)
    rows: list[tuple[object, ...]] = [("类型", "收到", "已答复", "按期答复", "逾期答复", "逾期未答复", "处理中")]
    rows += [(REQUEST_TYPES.get(t.type, t.type), t.received, t.answered, t.answered_in_time, t.answered_late,
              t.open_overdue, t.open_pending) for t in types]
    return [Paragraph(f"本月收到 {sr.received} 件，已答复 {sr.answered} 件，其中按期答复 {sr.answered_in_time} 件。",
                      st["body"]), chart, _table(rows)]


INCIDENT_KINDS = {"leak": "泄露", "unauthorised_access": "未授权访问", "tamper": "篡改", "loss": "丢失"}
INCIDENT_SEVERITIES = {"general": "一般", "significant": "较大", "major": "重大", "critical": "特别重大"}


def _incidents(r: MonthlyReportOut, st: dict[str, ParagraphStyle]) -> list[Flowable]:
    i = r.incidents
    rows: list[tuple[object, ...]] = [("类型", "事件数")]
    rows += [(INCIDENT_KINDS.get(c.key, c.key), c.count) for c in i.by_kind]
    levels: list[tuple[object, ...]] = [("级别", "事件数")]
    levels += [(INCIDENT_SEVERITIES.get(c.key, c.key), c.count) for c in i.by_severity]
    note = (f"本月登记安全事件 {i.total} 起（另有应急演练 {i.drills} 次，演练不告知任何人），"
            f"涉及个人信息主体 {i.affected_subjects} 人，已告知 {i.notified_subjects} 人；"
            f"逾期未报告监管部门的事件 {i.reports_overdue} 起。")
    return [Paragraph(note, st["body"]), _table(rows, [50 * mm, 30 * mm]), _table(levels, [50 * mm, 30 * mm])]


def _destructions(r: MonthlyReportOut, st: dict[str, ParagraphStyle]) -> list[Flowable]:
    d = r.destructions
    rows: list[tuple[object, ...]] = [("原因", "销毁记录", "运单数")]
    rows += [(REASONS.get(i.reason, i.reason), i.records, i.shipments) for i in d.by_reason]
    return [Paragraph(f"本月销毁记录 {d.records} 条，涉及 {d.shipments} 票运单的个人信息。", st["body"]), _table(rows)]


def _partners(r: MonthlyReportOut, st: dict[str, ParagraphStyle]) -> list[Flowable]:
    p = r.partners_expiring
    rows: list[tuple[object, ...]] = [("合作方", "类型", "协议编号", "协议到期日", "状态")]
    rows += [(i.name, PARTNER_KINDS.get(i.kind, i.kind), i.agreement_ref, i.agreement_expires.isoformat(),
              "已到期" if i.expired else "即将到期") for i in p.items]
    note = f"本月内及统计截止日后 {p.horizon_days} 天内到期的协议：{len(p.items)} 份。"
    return [Paragraph(note, st["body"]), _table(rows)]


Drawer = Callable[[MonthlyReportOut, dict[str, ParagraphStyle]], list[Flowable]]
# One drawer per section key of SECTIONS.
DRAWERS: dict[str, Drawer] = {
    "accesses": _accesses, "refusals": _refusals, "alerts": _alerts, "subject_requests": _subject_requests,
    "incidents": _incidents, "destructions": _destructions, "partners_expiring": _partners,
}


def _summary(r: MonthlyReportOut) -> Table:
    rows: list[tuple[object, ...]] = [("指标", "数值"), ("个人信息访问", r.accesses.total),
                                      ("被拒绝的访问", r.refusals.total),
                                      ("新告警 / 已处置", f"{r.alerts.total} / {r.alerts.resolved}"),
                                      ("主体请求 / 按期答复", f"{r.subject_requests.received} / "
                                                           f"{r.subject_requests.answered_in_time}"),
                                      ("安全事件 / 演练", f"{r.incidents.total} / {r.incidents.drills}"),
                                      ("销毁记录 / 运单", f"{r.destructions.records} / {r.destructions.shipments}"),
                                      ("即将到期的合作方协议", len(r.partners_expiring.items))]
    return _table(rows, [70 * mm, 40 * mm])


def render(report: MonthlyReportOut) -> bytes:
    """The report as PDF bytes."""
    pdf_font()  # finds, verifies and registers the CJK font (FontMissing if there is none)
    st = _styles()
    status = "全月" if report.complete else f"截至 {report.until:%Y-%m-%d %H:%M} UTC（本月尚未结束）"
    story: list[Any] = [Paragraph(f"{TITLE} {report.month}", st["title"]),
                        Paragraph(f"统计期间：北京时间 {report.month}，{status}；生成于 "
                                  f"{report.generated_at:%Y-%m-%d %H:%M} UTC。报告不含任何个人信息。", st["body"]),
                        Paragraph(SUMMARY, st["h2"]), _summary(report)]
    for section in SECTIONS:
        story.append(Paragraph(section.title, st["h2"]))
        story.extend(DRAWERS[section.key](report, st))
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm,
                            bottomMargin=18 * mm, title=f"{TITLE} {report.month}", author="privacy-waybill")
    doc.build(story)
    return buf.getvalue()
