"""Due dates of subjects' requests: 30 calendar days, or working days on the Chinese holiday calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from waybill.deadlines import CHINA, add_working_days, days_left, due_date, is_working_day

WORKING = {"delete": 15}


def cst(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHINA)  # type: ignore[misc]


def test_spring_festival_2026_is_skipped_and_its_weekend_working_days_count() -> None:
    # 2026: 15-23 February off; Saturdays 14 and 28 February are working days (调休).
    assert is_working_day(date(2026, 2, 17)) == (False, False)
    assert is_working_day(date(2026, 2, 14)) == (True, False)
    received = cst(2026, 2, 13, 10, 0)
    deadline = due_date(received, "delete", working_days=WORKING)
    # 14 Feb, 24-28 Feb (5), 2-6 Mar (5), 9-12 Mar (4) = 15 working days; weekends-only would give 6 March.
    assert deadline.due_at == cst(2026, 3, 12, 23, 59, 59).astimezone(UTC)
    assert deadline.fallback is False
    assert deadline.due_at - received <= timedelta(days=30)


def test_a_year_without_a_published_schedule_falls_back_to_weekends_and_says_so() -> None:
    assert is_working_day(date(2031, 3, 3)) == (True, True)
    assert is_working_day(date(2031, 3, 1)) == (False, True)  # a Saturday
    deadline = due_date(cst(2031, 3, 3, 9, 0), "delete", working_days=WORKING)  # a Monday
    assert deadline.fallback is True
    assert deadline.due_at == cst(2031, 3, 24, 23, 59, 59).astimezone(UTC)


def test_counting_into_an_unknown_year_is_a_fallback_too() -> None:
    day, fallback = add_working_days(date(2026, 12, 20), 15)
    assert fallback is True and day.year == 2027


def test_types_without_a_working_day_rule_get_thirty_days_at_most() -> None:
    received = cst(2026, 2, 13, 10, 0)
    deadline = due_date(received, "correct", working_days=WORKING)
    assert deadline.due_at == received + timedelta(days=30)
    assert deadline.fallback is False
    # The calendar rule is capped at 30 days whatever is configured.
    assert due_date(received, "correct", calendar_days=90).due_at == received + timedelta(days=30)
    shorter = due_date(received, "complaint", calendar_days=10)
    assert shorter.due_at == cst(2026, 2, 23, 23, 59, 59).astimezone(UTC)


def test_when_the_calendar_rule_is_earlier_the_fallback_does_not_count() -> None:
    deadline = due_date(cst(2026, 12, 28, 9, 0), "delete", calendar_days=3, working_days=WORKING)
    assert deadline.due_at == cst(2026, 12, 31, 23, 59, 59).astimezone(UTC)
    assert deadline.fallback is False


def test_days_left_counts_china_dates_and_goes_negative() -> None:
    due = cst(2026, 3, 12, 23, 59, 59)
    assert days_left(due, cst(2026, 3, 9, 8, 0)) == 3
    assert days_left(due, cst(2026, 3, 12, 23, 0)) == 0
    assert days_left(due, cst(2026, 3, 14, 1, 0)) == -2


def test_naive_times_and_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        due_date(datetime(2026, 1, 5), "delete", working_days=WORKING)  # noqa: DTZ001
    with pytest.raises(ValueError):
        add_working_days(date(2026, 1, 5), 0)


def test_the_working_day_rules_are_settings() -> None:
    from waybill.settings import SettingsError, load_settings

    assert load_settings(environ={}).subject_request_working_days == (("delete", 15),)
    custom = load_settings(environ={"WAYBILL_SUBJECT_REQUEST_WORKING_DAYS": "complaint=10, delete=12"})
    assert dict(custom.subject_request_working_days) == {"complaint": 10, "delete": 12}
    assert load_settings(environ={"WAYBILL_SUBJECT_REQUEST_WORKING_DAYS": ""}).subject_request_working_days == ()
    for bad in ("delete", "erase=3", "delete=0", "delete=31", "delete=x"):
        with pytest.raises(SettingsError, match="WAYBILL_SUBJECT_REQUEST_WORKING_DAYS"):
            load_settings(environ={"WAYBILL_SUBJECT_REQUEST_WORKING_DAYS": bad})
