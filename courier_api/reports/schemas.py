"""The monthly privacy report's answer: counts by role, station, day, rule, type, reason; ids, never names."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from waybill.schemas import OutModel, UtcTimestamp


class Count(OutModel):
    key: str = Field(description="分组：角色、站点、动作、日期（北京时间）等")
    count: int


class AccessRow(OutModel):
    day: date = Field(description="北京时间日期")
    role: str
    station: str | None = Field(description="操作人所属站点（员工账号的站点；商户、本人、系统为空）")
    count: int


class ActorCount(OutModel):
    actor: str = Field(description="操作人编号（如 staff:stf_…），从不含姓名")
    count: int


class AccessesOut(OutModel):
    """Accesses to personal data: audit events with named fields and outcome ``ok``."""

    total: int
    by_role: list[Count]
    by_station: list[Count] = Field(description="按站点；none 为无站点的操作人（商户、本人、系统、总部员工）")
    by_day: list[Count]
    rows: list[AccessRow]
    top_actors: list[ActorCount] | None = Field(
        description="访问最多的操作人（仅审计员可见，以编号表示；隐私官为 null）")


class RefusalsOut(OutModel):
    """Refused attempts: audit events with outcome ``denied``."""

    total: int
    by_action: list[Count]
    by_role: list[Count]
    by_day: list[Count]


class AlertRuleOut(OutModel):
    rule: str
    severity: str
    alerts: int = Field(description="本月首次触发的告警数（同一突发合并为一条）")
    fires: int = Field(description="触发次数合计")
    resolved: int
    open: int
    within_1h: int = Field(description="1 小时内处置")
    within_24h: int = Field(description="1-24 小时内处置")
    later: int = Field(description="超过 24 小时处置")
    mean_resolve_seconds: float | None = Field(description="平均处置时长（秒）；无已处置告警时为 null")


class AlertsOut(OutModel):
    total: int
    resolved: int
    by_rule: list[AlertRuleOut]


class SubjectTypeOut(OutModel):
    type: str
    received: int
    answered: int
    answered_in_time: int
    answered_late: int
    open_overdue: int = Field(description="截至统计时点仍未答复且已超期")
    open_pending: int = Field(description="截至统计时点仍未答复、未超期")


class SubjectRequestsOut(OutModel):
    """Data subjects' requests received in the month, and whether they were answered by their due date."""

    received: int
    answered: int
    answered_in_time: int
    by_type: list[SubjectTypeOut]


class DestructionReasonOut(OutModel):
    reason: str
    records: int
    shipments: int


class DestructionsOut(OutModel):
    records: int
    shipments: int
    by_reason: list[DestructionReasonOut]


class IncidentsOut(OutModel):
    """Incidents recorded in the month (waybill.incidents.month_summary): drills counted apart, never notified."""

    total: int = Field(description="本月登记的安全事件（不含演练）")
    by_kind: list[Count]
    by_severity: list[Count]
    drills: int = Field(description="本月的应急演练")
    affected_subjects: int
    notified_subjects: int = Field(description="本月已告知的个人信息主体")
    reports_overdue: int = Field(description="逾期未向监管部门报告的事件")


class ExpiringPartnerOut(OutModel):
    id: str
    name: str = Field(description="合作方（单位）名称")
    kind: str
    agreement_ref: str
    agreement_expires: date
    expired: bool = Field(description="协议是否已于统计截止日前到期")


class PartnersOut(OutModel):
    horizon_days: int = Field(description="统计截止日后多少天内到期的协议视为即将到期")
    items: list[ExpiringPartnerOut]


class MonthlyReportOut(OutModel):
    """The monthly privacy report (个人信息保护月度报告). No personal data; actors only as ids, to auditors."""

    month: str
    start: UtcTimestamp = Field(description="北京时间当月第一天 00:00（UTC 表示）")
    end: UtcTimestamp = Field(description="次月第一天 00:00（UTC 表示），不含")
    until: UtcTimestamp = Field(description="数据截至（当月未结束时为生成时刻）")
    complete: bool = Field(description="当月是否已结束")
    generated_at: UtcTimestamp
    accesses: AccessesOut
    refusals: RefusalsOut
    alerts: AlertsOut
    subject_requests: SubjectRequestsOut
    incidents: IncidentsOut
    destructions: DestructionsOut
    partners_expiring: PartnersOut
