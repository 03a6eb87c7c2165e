"""The regulator report of an incident (PIPL Art. 57 items) as JSON and PDF, and the month's incident summary.

The report holds the incident's kinds, counts, deadlines, timeline actions and the officer's own texts (cause,
harm, remedies, where, which system: what the regulator asks for); never a subject's name, phone or address:
affected subjects appear as a count only. The PDF uses the project's CJK font (:func:`printing.fonts.pdf_font`).
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from printing.fonts import PDF_FONT_NAME, pdf_font
from waybill.crypto.vault import FieldCodec
from waybill.incidents import domain
from waybill.incidents.models import KINDS, SEVERITIES, Incident, IncidentSubject
from waybill.models import utcnow
from waybill.schemas import iso_utc

CATEGORY_TEXT = {"name": "姓名", "phone": "电话号码", "address": "地址", "parcel_description": "物品信息",
                 "masked_waybill": "脱敏面单信息", "pickup_code": "取件码", "other": "其他"}
KIND_TEXT = {"leak": "个人信息泄露", "unauthorised_access": "未经授权的访问", "tamper": "篡改", "loss": "丢失",
             "drill": "应急演练"}
SEVERITY_TEXT = {"general": "一般", "significant": "较大", "major": "重大", "critical": "特别重大"}
DEFAULT_CAUSE = {"leak": "个人信息被泄露至未授权方，原因调查中",
                 "unauthorised_access": "账号越权或被冒用访问个人信息，原因调查中",
                 "tamper": "个人信息被篡改，原因调查中", "loss": "个人信息丢失，原因调查中",
                 "drill": "应急演练，无真实事件"}
DEFAULT_HARM = "可能被用于冒充快递、客服的诈骗电话或短信，或对相关个人造成骚扰"
WHAT_TO_DO = ("警惕自称快递员、客服的来电与短信，不向他人透露验证码、取件码；"
              "可通过本人自助页面 /my/ 查询本人信息的访问记录，或联系个人信息保护负责人要求删除个人信息")
ACTION_TEXT = {"created": "登记事件", "notified": "通知受影响的个人", "notify_skipped_drill": "演练：不通知任何人",
               "report_generated": "生成监管报告", "note": "处置记录", "contained": "已控制",
               "reported_to_regulator": "已报告主管部门", "closed": "结案"}


def report(session: Session, codec: FieldCodec, incident: Incident, *, contact: str) -> dict[str, Any]:
    """The regulator report as a JSON-ready dict (no personal data of the affected subjects)."""
    texts = {name: domain.open_text(codec, incident, name) for name in ("title", *domain.TEXT_FIELDS)}
    counts = domain.notice_counts(session, incident.id)
    events = domain.timeline(session, incident.id)
    return {
        "incident_id": incident.id,
        "title": texts["title"],
        "kind": incident.kind,
        "severity": incident.severity,
        "status": incident.status,
        "detected_at": iso_utc(incident.detected_at),
        "report_rule": incident.report_rule,
        "report_due_at": iso_utc(incident.report_due_at) if incident.report_due_at else None,
        "categories_of_data": [{"code": c, "text": CATEGORY_TEXT.get(c, c)} for c in incident.data_categories],
        "affected_subjects": incident.affected_count,
        "notices": counts,
        "cause": texts["cause"] or DEFAULT_CAUSE[incident.kind],
        "possible_harm": texts["harm"] or DEFAULT_HARM,
        "remedies_taken": {"description": texts["remedies"],
                           "actions": [{"at": iso_utc(e.at), "action": e.action} for e in events]},
        "what_individuals_can_do": WHAT_TO_DO,
        "contact": contact,
        "found_by": texts["found_by"],
        "location": texts["location"],
        "system": texts["system"],
        "connected_effects": texts["connected_effects"],
        "law_enforcement_contacted": incident.law_enforcement_contacted,
    }


def _lines(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(heading, text) pairs of the PDF, in the order of PIPL Art. 57."""
    counts = body["notices"]
    actions = "；".join(f"{a['at']} {ACTION_TEXT.get(a['action'], a['action'])}"
                       for a in body["remedies_taken"]["actions"])
    return [
        ("事件编号", body["incident_id"]),
        ("事件名称", body["title"] or ""),
        ("事件类型与级别", f"{KIND_TEXT[body['kind']]}，{SEVERITY_TEXT[body['severity']]}"),
        ("发现时间", body["detected_at"]),
        ("报告时限", f"{body['report_due_at'] or '无监管报告时限'}（{body['report_rule']}）"),
        ("一、涉及的个人信息种类", "、".join(c["text"] for c in body["categories_of_data"]) or "未登记"),
        ("涉及人数", f"{body['affected_subjects']} 人；已通知 {counts['sent']}，无法短信通知 {counts['unreachable']}，"
                     f"信息已销毁 {counts['destroyed']}，待通知 {counts['pending']}"),
        ("二、事件原因", body["cause"]),
        ("三、可能造成的危害", body["possible_harm"]),
        ("四、已采取的补救措施", "；".join(x for x in (body["remedies_taken"]["description"], actions) if x)),
        ("五、个人可以采取的措施", body["what_individuals_can_do"]),
        ("六、联系方式", body["contact"]),
        ("发现人", body["found_by"] or "未登记"),
        ("发生地点", body["location"] or "未登记"),
        ("涉及系统", body["system"] or "未登记"),
        ("对相连系统的影响", body["connected_effects"] or "未登记"),
        ("是否已报警", "是" if body["law_enforcement_contacted"] else "否"),
    ]


def _wrap(text: str, size: float, width: float) -> list[str]:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    lines, current = [], ""
    for ch in text:
        if stringWidth(current + ch, PDF_FONT_NAME, size) > width:
            lines.append(current)
            current = ""
        current += ch
    return [*lines, current] if current or not lines else lines


def report_pdf(body: dict[str, Any]) -> bytes:
    """The report rendered as an A4 PDF with the project's CJK font."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    pdf_font()  # registered once per process
    buf = io.BytesIO()
    canvas = Canvas(buf, pagesize=A4, invariant=True)
    canvas.setTitle(f"个人信息安全事件报告 {body['incident_id']}")
    width, height = A4
    margin, y = 50.0, A4[1] - 60.0

    def line(text: str, size: float) -> None:
        nonlocal y
        for part in _wrap(text, size, width - 2 * margin):
            if y < 60:
                canvas.showPage()
                y = height - 60.0
            canvas.setFont(PDF_FONT_NAME, size)
            canvas.drawString(margin, y, part)
            y -= size * 1.5

    line("个人信息安全事件报告", 18)
    y -= 6
    for heading, text in _lines(body):
        line(heading, 12)
        line(text, 10)
        y -= 4
    canvas.showPage()
    canvas.save()
    return buf.getvalue()


def overdue(incident: Incident, now: datetime) -> bool:
    """A regulator report due and not made in time (made late, or not yet made and past due)."""
    if incident.report_due_at is None:
        return False
    if incident.reported_at is not None:
        return incident.reported_at > incident.report_due_at
    return now > incident.report_due_at


def month_summary(session: Session, start: datetime, end: datetime) -> dict[str, Any]:
    """Incidents recorded in ``[start, end)``: counts by kind and severity (drills apart), subjects notified,
    reports overdue. For the monthly privacy report; ids, counts and codes only."""
    rows = list(session.scalars(select(Incident).where(Incident.created_at >= start, Incident.created_at < end)))
    real = [r for r in rows if r.kind != "drill"]
    now = utcnow()
    notified = session.scalar(select(func.count()).select_from(IncidentSubject).where(
        IncidentSubject.notice == "sent", IncidentSubject.notified_at >= start, IncidentSubject.notified_at < end))
    by_kind = Counter(r.kind for r in real)
    by_severity = Counter(r.severity for r in real)
    return {
        "total": len(real),
        "by_kind": {k: by_kind.get(k, 0) for k in KINDS if k != "drill"},
        "by_severity": {s: by_severity.get(s, 0) for s in SEVERITIES},
        "drills": len(rows) - len(real),
        "affected_subjects": sum(r.affected_count for r in real),
        "notified_subjects": int(notified or 0),
        "reports_overdue": sum(1 for r in real if overdue(r, now)),
    }
