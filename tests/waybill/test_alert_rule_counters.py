"""The write-path alert rules' building blocks: windowed counting (thresholds and windows), distinct usernames per
client, the off_hours shifts (parsing, validation, evaluation), and the Watch firing into the alert store."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tests.limits_clock import limits_clock  # noqa: F401 - fixture
from tests.redis_service import REDIS_URL, redis_up
from waybill.alerts import shifts
from waybill.alerts.counters import Burst, Distinct, Watch, storage_for
from waybill.alerts.models import AccountSuspension, Alert
from waybill.alerts.settings import AlertSettings
from waybill.permissions import Principal
from waybill.ratelimit import memory_storage
from waybill.settings import SettingsError, known_variables, load_settings

COURIER = Principal(kind="staff", id="usr_watchtest", role="courier", station="021-A001")


def test_a_burst_fires_at_its_count_within_its_window_and_not_after_it(limits_clock):  # noqa: F811
    burst = Burst("t", 4, 60, storage=memory_storage())
    assert [burst.hit("a") for _ in range(5)] == [False, False, False, True, True]
    assert burst.hit("b") is False  # per key
    limits_clock.advance(61)  # the window moved past every hit: counting starts over
    assert [burst.hit("a") for _ in range(4)] == [False, False, False, True]
    # Spread out over more than the window, the same number of events never fires.
    spread = Burst("s", 3, 60, storage=memory_storage())
    for _ in range(10):
        assert spread.hit("a") is False
        limits_clock.advance(31)


def test_a_burst_counts_a_batch_as_its_size_and_a_threshold_of_one_fires_at_once():
    burst = Burst("batch", 20, 600, storage=memory_storage())
    assert burst.hit("a", 19) is False
    assert burst.hit("a", 1) is True
    assert Burst("batch2", 20, 600, storage=memory_storage()).hit("a", 25) is True
    assert Burst("batch3", 20, 600, storage=memory_storage()).hit("a", 0) is False
    assert Burst("one", 1, 60, storage=memory_storage()).hit("a") is True


def test_distinct_counts_each_member_once_per_window(limits_clock):  # noqa: F811
    stuffing = Distinct("cs", 3, 600, storage=memory_storage())
    assert [stuffing.hit("10.0.0.1", "alice") for _ in range(10)] == [False] * 10  # one username, many tries
    assert stuffing.hit("10.0.0.1", "bob") is False
    assert stuffing.hit("10.0.0.2", "carol") is False  # another client
    assert stuffing.hit("10.0.0.1", "carol") is True
    assert stuffing.hit("10.0.0.1", "carol") is False  # not new
    assert stuffing.hit("10.0.0.1", "dave") is True
    limits_clock.advance(601)
    assert stuffing.hit("10.0.0.1", "erin") is False


def _at(hour: int, minute: int = 0) -> datetime:
    """``hour:minute`` Asia/Shanghai on a fixed day, as UTC."""
    return datetime(2026, 3, 2, hour, minute, tzinfo=shifts.SHANGHAI).astimezone(UTC)


def test_shifts_default_per_station_per_hub_and_past_midnight():
    table = load_settings({"WAYBILL_ALERT_OFF_HOURS_SHIFTS":
                           "021-A001=06:00-23:00; 755=22:00-06:00,12:00-13:30"}).alerts.shifts
    # The default shift is the start/end hour thresholds (07-21).
    assert table.off_hours(None, _at(6, 59)) and not table.off_hours(None, _at(7))
    assert not table.off_hours(None, _at(20, 59)) and table.off_hours(None, _at(21))
    assert not table.off_hours("021-A001", _at(6, 30)) and table.off_hours("021-A001", _at(23, 0))
    assert table.off_hours("010-W001", _at(6, 30))  # no entry: the default
    # A hub's entry covers its stations; a night shift runs past midnight.
    for station in ("755", "755-W012"):
        assert not table.off_hours(station, _at(23)) and not table.off_hours(station, _at(3))
        assert not table.off_hours(station, _at(13, 15)) and table.off_hours(station, _at(9))
    hours = load_settings({"WAYBILL_ALERT_OFF_HOURS_START_HOUR": "9",
                           "WAYBILL_ALERT_OFF_HOURS_END_HOUR": "24"}).alerts.shifts
    assert hours.off_hours(None, _at(8, 59)) and not hours.off_hours(None, _at(23, 59))
    own = load_settings({"WAYBILL_ALERT_OFF_HOURS_SHIFTS": "default=00:00-24:00"}).alerts.shifts
    assert not own.off_hours(None, _at(3)) and not own.off_hours("021-A001", _at(3))
    assert shifts.VARIABLE in known_variables()


@pytest.mark.parametrize("raw", [
    "021-A001", "021-A001=", "021-A001=6:00-23:00", "021-A001=06:00-25:00", "021-A001=06:00-06:00",
    "021-a001=06:00-23:00", "nowhere=06:00-23:00", "021-A001=06:00-23:00;021-A001=07:00-20:00",
    "021-A001=06:00-24:30", "021-A001=" + ",".join(["01:00-02:00"] * 7), "13812345678=06:00-23:00",
])
def test_malformed_shifts_are_a_settings_error_naming_the_variable(raw):
    with pytest.raises(SettingsError, match="WAYBILL_ALERT_OFF_HOURS_SHIFTS") as err:
        load_settings({"WAYBILL_ALERT_OFF_HOURS_SHIFTS": raw})
    assert "13812345678" not in str(err.value)


def test_a_default_entry_and_the_default_hours_together_are_refused():
    with pytest.raises(SettingsError, match="WAYBILL_ALERT_OFF_HOURS_SHIFTS.*START_HOUR"):
        load_settings({"WAYBILL_ALERT_OFF_HOURS_SHIFTS": "default=06:00-22:00",
                       "WAYBILL_ALERT_OFF_HOURS_START_HOUR": "6"})
    with pytest.raises(SettingsError, match="WAYBILL_ALERT_OFF_HOURS_START_HOUR"):
        load_settings({"WAYBILL_ALERT_OFF_HOURS_START_HOUR": "21"})  # 21-21: no shift at all


def _alerts(services, rule):
    with services.session_factory() as s:
        return s.scalars(select(Alert).where(Alert.rule == rule)).all()


def test_the_watch_fires_each_rule_at_its_threshold_into_one_alert_per_actor(services):
    watch = Watch(AlertSettings(thresholds={"not_found_burst.count": 3, "foreign_station.count": 2}))
    fired = []
    for _ in range(5):
        with services.session_factory() as s:
            fired.append((watch.missed(s, COURIER), watch.foreign(s, COURIER)))
            s.commit()
    assert fired == [(False, False), (False, True), (True, True), (True, True), (True, True)]
    (missed,) = _alerts(services, "not_found_burst")
    (foreign,) = _alerts(services, "foreign_station")
    assert (missed.count, missed.severity, missed.actor) == (3, "warning", COURIER.actor)
    assert (foreign.count, foreign.severity, foreign.detail) == (4, "warning", "station=021-A001 reaches>=2/3600s")
    with services.session_factory() as s:
        assert s.scalars(select(AccountSuspension)).all() == []  # warnings never suspend


def test_the_watch_fires_off_hours_only_outside_the_shift(services):
    watch = Watch(load_settings({"WAYBILL_ALERT_OFF_HOURS_SHIFTS": "021-A001=08:00-20:00"}).alerts)
    with services.session_factory() as s:
        assert watch.read(s, COURIER, _at(12)) is False
        assert watch.read(s, COURIER, _at(7, 59)) is True
        assert watch.read(s, COURIER, _at(20, 0)) is True
        s.commit()
    (alert,) = _alerts(services, "off_hours")
    assert (alert.count, alert.severity, alert.detail) == (2, "warning", "station=021-A001")





@pytest.mark.skipif(not redis_up(), reason="Redis is not reachable (.ci/run starts it)")
def test_two_workers_count_one_burst_through_redis(services):
    # Two watches = two worker processes on one Redis: the misses of one account add up across them.
    actor = Principal(kind="staff", id="usr_redis_" + secrets.token_hex(4), role="courier", station="021-A001")
    settings = AlertSettings(thresholds={"not_found_burst.count": 4})
    worker_a = Watch(settings, storage=storage_for(REDIS_URL))
    worker_b = Watch(settings, storage=storage_for(REDIS_URL))
    with services.session_factory() as s:
        answers = [w.missed(s, actor) for w in (worker_a, worker_b, worker_a, worker_b)]
        s.commit()
    assert answers == [False, False, False, True]


def test_an_officer_asking_for_unknown_shipments_is_a_burst_of_misses(services):
    from courier_api import privacy
    from courier_api.deps import privacy_deps
    from waybill.errors import ShipmentNotFound
    from waybill.ids import new_id

    watch = Watch(AlertSettings(thresholds={"not_found_burst.count": 3}))
    officer = Principal(kind="staff", id="usr_po_probe", role="privacy_officer")
    for _ in range(4):
        with services.session_factory() as s:
            with pytest.raises(ShipmentNotFound):
                privacy.file_request(s, privacy_deps(services, watch), officer, new_id("shp"), "complaint",
                                     "CASE-2026-0009", ["recipient.phone"])
            s.commit()
    (alert,) = _alerts(services, "not_found_burst")
    assert (alert.count, alert.actor, alert.role) == (2, officer.actor, "privacy_officer")
