"""The incident register (GB/T 35273 10.1-10.2, PIPL Art. 57): incidents, affected subjects, notices, reports.

:mod:`.models` holds the tables (migration 0024), :mod:`.domain` records incidents and notifies subjects,
:mod:`.report` builds the regulator report (JSON and PDF) and the monthly summary.
"""

from __future__ import annotations

from waybill.incidents.report import month_summary

__all__ = ["month_summary"]
