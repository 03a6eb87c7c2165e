"""The alert rules: each a named rule with its own id, severity and documented, configurable thresholds.

This module is data only (no database, no settings): :mod:`waybill.settings` reads every threshold from
``WAYBILL_ALERT_<RULE>_<NAME>`` (``WAYBILL_ALERT_NOT_FOUND_BURST_COUNT``) and the code that evaluates a rule
reads it back with :meth:`waybill.alerts.settings.AlertSettings.threshold`.

A rule fires by recording an ``alert.<rule id>`` audit event (:func:`waybill.alerts.store.fire`): the audit log
is where every alert starts, and the alert store is filled from it in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class Threshold:
    """One configurable number of a rule: ``WAYBILL_ALERT_<RULE>_<NAME>``, an integer in ``[lo, hi]``."""

    name: str
    default: int
    lo: int
    hi: int
    doc: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule: its id (the ``alert.<id>`` audit action), severity, what it catches, and its thresholds.

    A ``critical`` rule suspends the acting staff account at once (:mod:`waybill.alerts.store`).
    """

    id: str
    severity: Severity
    doc: str
    thresholds: tuple[Threshold, ...] = ()

    @property
    def suspends(self) -> bool:
        return self.severity == "critical"


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {r.id: r for r in rules}


#: Every rule, by id. The first eleven are the contract's; the rest are alerts earlier issues raise.
RULES: dict[str, Rule] = _rules(
    Rule("scan_quota", "warning", "A courier went over the scan quota (WAYBILL_SCAN_PER_MINUTE/PER_HOUR)."),
    Rule("not_found_burst", "warning", "Many misses (unknown token, waybill or shipment id) from one account: "
         "token or id guessing.",
         (Threshold("count", 20, 1, 100_000, "misses that fire the rule"),
          Threshold("window_s", 600, 10, 86_400, "seconds the misses are counted over"))),
    Rule("foreign_station", "warning", "A staff member reached for shipments of another station.",
         (Threshold("count", 3, 1, 100_000, "refused reaches that fire the rule"),
          Threshold("window_s", 3600, 10, 86_400, "seconds they are counted over"))),
    Rule("pickup_code_failures", "warning", "Wrong pickup codes locked a handover.",
         (Threshold("count", 5, 1, 100, "wrong codes that lock a shipment's handover and fire the rule"),)),
    Rule("off_hours", "warning", "Personal data read outside the station's working hours "
         "(WAYBILL_ALERT_OFF_HOURS_SHIFTS).",
         (Threshold("start_hour", 7, 0, 23, "default shift start (Asia/Shanghai hour)"),
          Threshold("end_hour", 21, 1, 24, "default shift end (Asia/Shanghai hour, exclusive)"))),
    Rule("volume_baseline", "warning", "An account's accesses today far above its own recent median.",
         (Threshold("factor", 5, 2, 1000, "times the account's median daily accesses"),
          Threshold("min_events", 100, 1, 10**7, "accesses below this never fire"),
          Threshold("days", 14, 3, 90, "days of history the median is taken over"))),
    Rule("new_client", "critical", "Two live sessions of one account both used within the window: a rented "
         "or shared account (couriers work on one handheld).",
         (Threshold("window_s", 600, 60, 86_400, "seconds within which both sessions were used"),)),
    Rule("canary", "critical", "A canary shipment's personal data was accessed."),
    Rule("privacy_reads", "warning", "A privacy officer reads unusually many shipments' personal data: reaches "
         "the count in one day, or is refused by the daily quota (WAYBILL_PRIVACY_READS_PER_DAY).",
         (Threshold("count", 40, 1, 100_000, "personal-data reads in one officer's Asia/Shanghai day that raise "
                    "the alert (a read refused by the quota raises it too)"),)),
    Rule("subject_request_overdue", "warning", "A data subject's request is due soon or overdue.",
         (Threshold("warn_days", 3, 0, 30, "days before the due date the hourly job raises it (and again once "
                    "overdue); formerly WAYBILL_SUBJECT_REQUEST_WARN_DAYS, still read when this is unset"),)),
    Rule("credential_stuffing", "warning", "Failed logins over many usernames from one client.",
         (Threshold("usernames", 10, 2, 100_000, "distinct usernames failing from one client"),
          Threshold("window_s", 600, 10, 86_400, "seconds they are counted over"))),
    # Raised by earlier issues under their own names.
    Rule("login_failures", "warning", "A (username, client) pair started backing off after failed logins."),
    Rule("mass_reprint", "warning", "A sorter asked for more reprints than the caps allow."),
    Rule("phone_receipts_rejected", "warning", "A virtual-number provider's call receipts failed verification."),
    Rule("privacy_emergency", "warning", "A privacy officer read personal data under the emergency procedure "
         "(no approver)."),
)


def rule_for_action(action: str) -> Rule | None:
    """The rule an audit action raises (``alert.canary`` -> ``canary``), or ``None`` for any other action."""
    if not action.startswith("alert."):
        return None
    return RULES.get(action[len("alert."):])


def setting_name(rule: Rule, threshold: Threshold) -> str:
    """The threshold's environment variable."""
    return f"WAYBILL_ALERT_{rule.id.upper()}_{threshold.name.upper()}"
