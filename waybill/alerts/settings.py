"""The alert rules' thresholds and the security endpoint: read once with the other settings, validated, frozen."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from waybill.alerts import shifts as shift_table
from waybill.alerts.rules import RULES, setting_name
from waybill.alerts.shifts import ShiftTable

#: Older names of thresholds, documented before the rule had its own (still read when the new one is unset).
ALIASES: Mapping[str, str] = {"WAYBILL_SUBJECT_REQUEST_WARN_DAYS": "WAYBILL_ALERT_SUBJECT_REQUEST_OVERDUE_WARN_DAYS"}


class AlertSettingsError(ValueError):
    """A threshold is not an integer in its range; the message names the variable."""


@dataclass(frozen=True)
class AlertSettings:
    """Every rule's thresholds (``"rule.name" -> value``), whether the rules run, and where alerts are delivered."""

    thresholds: Mapping[str, int] = field(default_factory=dict)
    # WAYBILL_ALERTS_ENABLED (default 1; 0 is refused in production): whether the alert machinery runs. Off, the
    # audit log still records every ``alert.*`` event, but no alert is stored, delivered or suspends anyone (the
    # services install no alert sink), the sweep reads nothing, and every rule hook must skip its evaluation
    # (its counters, its queries): check ``settings.alerts.enabled`` first. For measuring what the rules cost
    # (bench/alerts.py) and for development.
    enabled: bool = True
    # The security endpoint alerts are POSTed to (signed with the key store's ``alert_webhook`` secret); none:
    # alerts go to the logs only.
    webhook_url: str | None = None
    # Allow an internal address for the security endpoint alone (WAYBILL_ALERT_WEBHOOK_ALLOW_PRIVATE=1).
    webhook_allow_private: bool = False
    # The off_hours rule's working hours per station (WAYBILL_ALERT_OFF_HOURS_SHIFTS, waybill/alerts/shifts.py).
    shifts: ShiftTable = field(default_factory=ShiftTable)

    def threshold(self, rule: str, name: str) -> int:
        """The configured (or default) value of ``rule``'s threshold ``name``; unknown names are a bug."""
        key = f"{rule}.{name}"
        if key in self.thresholds:
            return self.thresholds[key]
        for t in RULES[rule].thresholds:
            if t.name == name:
                return t.default
        raise KeyError(key)


def variables() -> frozenset[str]:
    """Every ``WAYBILL_ALERT_*`` variable that means something."""
    names = {setting_name(r, t) for r in RULES.values() for t in r.thresholds}
    return frozenset(names | set(ALIASES) | {"WAYBILL_ALERT_WEBHOOK_URL", "WAYBILL_ALERT_WEBHOOK_ALLOW_PRIVATE",
                                             "WAYBILL_ALERTS_ENABLED", shift_table.VARIABLE})


def load(get: Callable[[str], str | None], flag: Callable[[str, str | None], bool]) -> AlertSettings:
    """Read the thresholds through ``get`` (a settings field name -> raw value) and validate each."""
    values: dict[str, int] = {}
    for rule in RULES.values():
        for t in rule.thresholds:
            var = setting_name(rule, t)
            raw = get(var[len("WAYBILL_"):].lower())
            if raw is None:
                for old, new in ALIASES.items():
                    if new == var and (raw := get(old[len("WAYBILL_"):].lower())) is not None:
                        var = old  # an error names the variable that was set
                        break
            if raw is None:
                continue
            try:
                value = int(raw)
            except ValueError:
                raise AlertSettingsError(f"{var} must be an integer") from None
            if not t.lo <= value <= t.hi:
                raise AlertSettingsError(f"{var} must be between {t.lo} and {t.hi}")
            values[f"{rule.id}.{t.name}"] = value
    url = get("alert_webhook_url")
    if url is not None and not url.startswith(("https://", "http://")):
        raise AlertSettingsError("WAYBILL_ALERT_WEBHOOK_URL must be an http(s) URL")
    try:
        default = shift_table.hours(values.get("off_hours.start_hour", 7), values.get("off_hours.end_hour", 21))
        shifts = shift_table.parse(get("alert_off_hours_shifts"), default=default,
                                   default_hours_set="off_hours.start_hour" in values or "off_hours.end_hour" in values)
    except shift_table.ShiftError as exc:
        raise AlertSettingsError(str(exc)) from None
    enabled_raw = get("alerts_enabled")
    enabled = True if enabled_raw is None else flag("alerts_enabled", enabled_raw)
    return AlertSettings(thresholds=values, enabled=enabled, webhook_url=url, shifts=shifts,
                         webhook_allow_private=flag("alert_webhook_allow_private", get("alert_webhook_allow_private")))
