"""README's "Alerts" section lists every rule and every threshold variable with its default and range: its rules
table is generated from :data:`waybill.alerts.rules.RULES` (regenerate it with
``python -m tests.waybill.test_alert_readme`` and paste it between the markers)."""

from __future__ import annotations

import re
from pathlib import Path

from waybill.alerts.rules import RULES, setting_name

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- alert-rules:begin -->", "<!-- alert-rules:end -->"


def table() -> str:
    """The rules table as README shows it."""
    lines = ["| rule | severity | what it catches | thresholds (variable: default, range) |", "|---|---|---|---|"]
    for rule in RULES.values():
        limits = "<br>".join(f"`{setting_name(rule, t)}`: `{t.default}` ({t.lo}-{t.hi}; {t.doc})"
                             for t in rule.thresholds) or "—"
        severity = f"**{rule.severity}** (suspends)" if rule.suspends else rule.severity
        lines.append(f"| `{rule.id}` | {severity} | {rule.doc.replace('|', '/')} | {limits} |")
    return "\n".join(lines)


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "README has no generated alert rules table"
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip()


def test_readme_lists_every_rule_and_threshold_variable():
    section = _section()
    for rule in RULES.values():
        assert f"`{rule.id}`" in section, rule.id
        for t in rule.thresholds:
            assert re.search(rf"`{setting_name(rule, t)}`: `{t.default}`", section), setting_name(rule, t)


def test_the_readme_table_is_the_generated_one():
    assert _section() == table(), "README's alert rules table is stale: run python -m tests.waybill.test_alert_readme"


if __name__ == "__main__":
    print(BEGIN)
    print(table())
    print(END)
