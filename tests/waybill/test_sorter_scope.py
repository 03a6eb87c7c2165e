"""Sorters act only for their own station or hub; their reprints are capped per job and per hour (issue 11, item 1).

The attack: a sorter of 021-W101 (上海浦东) reprinted a Shenzhen shipment, and one print job with a
``reprint_reason`` revoked 2,000 labels at once.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import run, shipment_body
from tests.courier_api import bearer, login, make_staff
from waybill import labels, print_jobs
from waybill.errors import NotFound, RateLimited, ValidationFailed
from waybill.models import AuditEvent, QrToken, Shipment
from waybill.permissions import Principal
from waybill.routing import RoutingTable
from waybill.services import load_stations
from waybill.settings import SettingsError, load_settings
from waybill.stations import StationRegister
from waybill.web.app import create_app

# The default shipment: sender 上海市徐汇区 (021-W112), recipient 深圳市南山区 (755-W012).
ORIGIN, DESTINATION = "021-W112", "755-W012"


def _create(client, merchant, order):
    r = client.post("/v1/shipments", json=shipment_body(order), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def _batch(client, merchant, prefix, n):
    ids = []
    for start in range(0, n, 1000):
        body = {"shipments": [shipment_body(f"{prefix}-{i}") for i in range(start, min(n, start + 1000))]}
        r = client.post("/v1/shipments/batch", json=body, headers=merchant.headers)
        assert r.status_code == 200, r.get_json()
        ids += [item["shipment"]["id"] for item in r.get_json()["results"]]
    return ids


def _sorter(client, services, name, station):
    r = login(client, make_staff(services, name, "sorter", station))
    assert r.status_code == 200, r.get_json()
    return bearer(r.get_json()["access_token"])


def _live(services, ids):
    with services.session_factory() as s:
        return s.execute(select(func.count()).select_from(QrToken).where(
            QrToken.shipment_id.in_(ids), QrToken.revoked_at.is_(None))).scalar_one()


def _revoked(services, ids):
    with services.session_factory() as s:
        return s.execute(select(func.count()).select_from(QrToken).where(
            QrToken.shipment_id.in_(ids), QrToken.revoked_at.is_not(None))).scalar_one()


def _alerts(services):
    with services.session_factory() as s:
        return s.execute(select(AuditEvent).where(AuditEvent.action == "alert.mass_reprint")
                         .order_by(AuditEvent.seq)).scalars().all()


def _age(services, shipment_id, minutes):
    """Move a shipment's reprint tokens ``minutes`` into the past (as if issued then)."""
    with services.session_factory() as s:
        for token in s.execute(select(QrToken).where(QrToken.shipment_id == shipment_id,
                                                     QrToken.is_reprint.is_(True))).scalars():
            token.issued_at -= timedelta(minutes=minutes)
        s.commit()


def _first_print(services, ids, station=DESTINATION):
    principal = Principal(kind="staff", id="usr_firstprint", role="sorter", station=station)
    list(print_jobs.issue_in_chunks(services.session_factory, services.label_deps, principal, ids))


# --- the register -----------------------------------------------------------------------------------------


def test_packaged_register_holds_every_routed_station_and_hub():
    register, routing = StationRegister.load(), RoutingTable.load()
    register.check_routing(routing)  # raises naming the first missing station
    for route in routing.routes.values():
        station = register.get(f"{route.hub}-{route.station}")
        assert station is not None and station.hub == route.hub and not station.is_hub
        assert register.get(route.hub) is not None and register.get(route.hub).is_hub
    assert register.get("021-W101").name == "上海市浦东新区站"
    assert [str(s) for s in register.get("755").shifts] == ["08:00-20:00", "20:00-08:00"]
    assert register.get("755").zone.key == "Asia/Shanghai"


HEADER = "code,name,hub,time_zone,shifts\n"
GOOD = "755,深圳转运中心,755,Asia/Shanghai,08:00-20:00;20:00-08:00\n"


@pytest.mark.parametrize("row,says", [
    ("755-W01,南山站,755,Asia/Shanghai,08:00-20:00", "code"),
    ("755-W012,南山站,021,Asia/Shanghai,08:00-20:00", "hub"),
    ("755-W012,南山站,755,Mars/Olympus,08:00-20:00", "时区"),
    ("755-W012,南山站,755,../../etc/passwd,08:00-20:00", "time_zone"),
    ("755-W012,南山站,755,Asia/Shanghai,8-20", "HH:MM"),
    ("755-W012,南山站,755,Asia/Shanghai,08:00-08:00", "开始与结束"),
    ("755-W012,南山站,755,Asia/Shanghai,24:00-08:00", "HH:MM"),
    ("755-W012,南山站,755,Asia/Shanghai,", "shifts"),
    ("755-W012,南山站<script>,755,Asia/Shanghai,08:00-20:00", "name"),
    ("755-W012,南山站,755,Asia/Shanghai", "列"),
    ("755,深圳,755,Asia/Shanghai,08:00-20:00", "重复"),
])
def test_register_rows_are_validated_at_load(row, says):
    with pytest.raises(ValueError) as err:
        StationRegister.from_csv_text(HEADER + GOOD + row + "\n")
    assert says in str(err.value) and "第 3 行" in str(err.value)


def test_register_needs_hub_rows_and_must_cover_the_routing_table(tmp_path):
    with pytest.raises(ValueError, match="缺少枢纽行"):
        StationRegister.from_csv_text(HEADER + "755-W012,南山站,755,Asia/Shanghai,08:00-20:00\n")
    small = tmp_path / "stations.csv"
    small.write_text(HEADER + GOOD + "755-W012,南山站,755,Asia/Shanghai,08:00-20:00\n", encoding="utf-8")
    settings = load_settings(environ={"WAYBILL_STATIONS_FILE": str(small)})
    assert settings.stations_file == small
    with pytest.raises(SettingsError, match="021-P001"):
        load_stations(settings, RoutingTable.load())  # the services refuse to start on it
    with pytest.raises(SettingsError, match="WAYBILL_STATIONS_FILE"):
        load_stations(load_settings(environ={"WAYBILL_STATIONS_FILE": str(tmp_path / "none.csv")}),
                      RoutingTable.load())


def test_reprint_cap_settings_are_checked():
    s = load_settings(environ={"WAYBILL_REPRINTS_PER_JOB": "5", "WAYBILL_REPRINTS_PER_SORTER_PER_HOUR": "40"})
    assert (s.reprints_per_job, s.reprints_per_sorter_per_hour) == (5, 40)
    assert (load_settings(environ={}).reprints_per_job, load_settings(environ={}).reprints_per_sorter_per_hour) == (
        20, 60)
    for env in ({"WAYBILL_REPRINTS_PER_JOB": "0"}, {"WAYBILL_REPRINTS_PER_JOB": "201"},
                {"WAYBILL_REPRINTS_PER_JOB": "30", "WAYBILL_REPRINTS_PER_SORTER_PER_HOUR": "29"}):
        with pytest.raises(SettingsError, match="WAYBILL_REPRINTS_PER"):
            load_settings(environ=env)


def test_stations_list_command(cli_env):
    doc = json.loads(run(["stations", "list"], cli_env).stdout)
    assert doc["ok"] and doc["source"] == "packaged" and doc["hubs"] == 36 and doc["stations"] == 61
    assert {"code": "021-W101", "name": "上海市浦东新区站", "hub": "021", "kind": "station",
            "time_zone": "Asia/Shanghai", "shifts": ["07:00-19:00"]} in doc["items"]


# --- stations on shipments, and sorter accounts -----------------------------------------------------------


def test_each_shipment_records_its_origin_and_destination_station(client, merchant, services):
    sid = _create(client, merchant, "ST-1")
    with services.session_factory() as s:
        shipment = s.get(Shipment, sid)
        assert (shipment.origin_station, shipment.destination_station) == (ORIGIN, DESTINATION)
        assert shipment.sorting_code.startswith(DESTINATION + "-")


def test_a_sorter_needs_a_registered_station_or_hub(services, cli_env):
    from courier_api import staff
    from waybill.permissions import SYSTEM

    with services.session_factory() as s:
        for station in ("A001", "021-W999", "999"):
            with pytest.raises(ValidationFailed) as err:
                staff.create_user(s, SYSTEM, "bad_sorter", "sorter", station, None, services.codec)
            assert err.value.field == "station"
        assert staff.create_user(s, SYSTEM, "hub_sorter", "sorter", "755", None, services.codec).user.station == "755"
        s.rollback()
    proc = run(["users", "create", "far", "--role", "sorter", "--station", "021-W999"], cli_env, check=False)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"]["field"] == "station"


# --- the attack: a sorter of another station --------------------------------------------------------------


def test_a_sorter_of_another_station_gets_the_same_404_as_for_nothing(client, merchant, services):
    """The sorter of 021-W101 (浦东) reprinted a Shenzhen shipment sent from 徐汇: now 404, nothing issued."""
    sid = _create(client, merchant, "ATK-1")
    _first_print(services, [sid])
    far = _sorter(client, services, "pudong", "021-W101")
    missing = "shp_01M84W6YCHMGSJGX88D78TFZGM"
    answers = [
        client.get(f"/v1/shipments/{sid}/label", headers=far),
        client.post(f"/v1/shipments/{sid}/label/reprint", json={"reason": "damaged"}, headers=far),
        client.post("/v1/print-jobs", json={"shipment_ids": [sid], "reprint_reason": "damaged"}, headers=far),
    ]
    nothing = [
        client.get(f"/v1/shipments/{missing}/label", headers=far),
        client.post(f"/v1/shipments/{missing}/label/reprint", json={"reason": "damaged"}, headers=far),
        client.post("/v1/print-jobs", json={"shipment_ids": [missing], "reprint_reason": "damaged"}, headers=far),
    ]
    for got, expected in zip(answers, nothing, strict=True):
        assert got.status_code == expected.status_code == 404
        assert got.data == expected.data
    assert _revoked(services, [sid]) == 0 and _live(services, [sid]) == 1
    with services.session_factory() as s:
        outcomes = s.execute(select(AuditEvent.action, AuditEvent.outcome).where(AuditEvent.object_id == sid,
                                                                                   AuditEvent.role == "sorter",
                                                                                   AuditEvent.outcome != "ok")).all()
    assert sorted(outcomes) == [("label.print", "denied"), ("label.reprint", "denied"),
                                ("print_job.create", "denied")]


@pytest.mark.parametrize("station,allowed", [
    (DESTINATION, True),  # the recipient's station
    (ORIGIN, True),  # the sender's station
    ("755", True),  # the destination's hub (its transit centre's staff)
    ("021", True),  # the origin's hub
    ("755-W021", False),  # another station of the destination's hub: not theirs
    ("021-W101", False),  # another station of the origin's hub
    ("010", False),  # another hub
])
def test_sorter_scope_by_station_and_hub(client, merchant, services, station, allowed):
    sid = _create(client, merchant, f"SC-{station}")
    headers = _sorter(client, services, f"s{station.replace('-', '')}".lower(), station)
    r = client.get(f"/v1/shipments/{sid}/label?format=zpl", headers=headers)
    assert r.status_code == (200 if allowed else 404)
    deps, principal = services.label_deps, Principal(kind="staff", id="usr_dom", role="sorter", station=station)
    with services.session_factory() as s:  # the domain checks the object itself, without the route
        if allowed:
            assert print_jobs.issue_print_job(s, deps, principal, [sid])
        else:
            with pytest.raises(NotFound):
                print_jobs.issue_print_job(s, deps, principal, [sid])
            with pytest.raises(NotFound):
                labels.reprint_label(s, deps, principal, sid, "damaged")
        s.rollback()


def test_a_sorter_account_with_an_unregistered_station_acts_for_nothing(client, merchant, services):
    """Accounts made before stations were checked (``A001``) keep working elsewhere but reach no shipment."""
    sid = _create(client, merchant, "OLD-ACC")
    for station in ("A001", None, "755-W012-03"):
        principal = Principal(kind="staff", id="usr_old", role="sorter", station=station)
        with services.session_factory() as s, pytest.raises(NotFound):
            labels.issue_label(s, services.label_deps, principal, sid)


# --- the attack: a mass reprint ---------------------------------------------------------------------------


def test_a_print_job_of_2000_reprints_is_refused_and_revokes_nothing(client, merchant, services):
    """Before the fix one job revoked 2,000 labels; now 422 naming shipment_ids, nothing revoked, an alert."""
    ids = _batch(client, merchant, "MASS", 2000)
    _first_print(services, ids)
    assert _live(services, ids) == 2000
    headers = _sorter(client, services, "mass", DESTINATION)  # in scope for every one of them
    r = client.post("/v1/print-jobs", json={"shipment_ids": ids, "format": "zpl", "reprint_reason": "damaged"},
                    headers=headers)
    assert r.status_code == 422, r.status_code
    assert r.get_json()["error"]["field"] == "shipment_ids" and "20" in r.get_json()["error"]["message"]
    assert _revoked(services, ids) == 0 and _live(services, ids) == 2000
    (alert,) = _alerts(services)
    assert alert.role == "sorter" and alert.outcome == "alert" and alert.purpose == "job_size=2000 cap=20"
    # The domain refuses it too (a caller without the route), also in chunks.
    principal = Principal(kind="staff", id="usr_mass", role="sorter", station=DESTINATION)
    with services.session_factory() as s, pytest.raises(ValidationFailed):
        print_jobs.issue_print_job(s, services.label_deps, principal, ids, reprint_reason="damaged")
    with pytest.raises(ValidationFailed):
        next(print_jobs.issue_in_chunks(services.session_factory, services.label_deps, principal, ids,
                                    reprint_reason="damaged"))
    assert _revoked(services, ids) == 0 and len(_alerts(services)) == 2
    # Printing the same 2,000 again without a reprint reason (same live tokens) is not a reprint: allowed.
    again = client.post("/v1/print-jobs", json={"shipment_ids": ids[:300], "format": "zpl"}, headers=headers)
    assert again.status_code == 200 and again.data.count(b"^BQN") == 300
    assert _revoked(services, ids) == 0


def test_per_job_cap_boundary(client, merchant, services):
    ids = _batch(client, merchant, "JOB", 21)
    _first_print(services, ids)
    headers = _sorter(client, services, "jobcap", DESTINATION)
    over = client.post("/v1/print-jobs", json={"shipment_ids": ids, "format": "zpl", "reprint_reason": "misprint"},
                       headers=headers)
    assert over.status_code == 422 and _revoked(services, ids) == 0
    ok = client.post("/v1/print-jobs", json={"shipment_ids": ids[:20], "format": "zpl",
                                             "reprint_reason": "misprint"}, headers=headers)
    assert ok.status_code == 200 and ok.data.count(b"^BQN") == 20
    assert _revoked(services, ids) == 20 and _live(services, ids) == 21


def test_hourly_cap_per_sorter_from_the_durable_tokens(base_env, services, merchant):
    per_job, per_hour = 4, 6
    settings = dataclasses.replace(services.settings, reprints_per_job=per_job, reprints_per_sorter_per_hour=per_hour)
    svc = dataclasses.replace(services, settings=settings)
    client = create_app(settings, services_override=svc).test_client()
    ids = _batch(client, merchant, "HOUR", 10)
    _first_print(svc, ids)
    headers = _sorter(client, svc, "hourly", DESTINATION)
    other = _sorter(client, svc, "hourly2", DESTINATION)

    job = client.post("/v1/print-jobs", json={"shipment_ids": ids[:4], "format": "zpl", "reprint_reason": "damaged"},
                      headers=headers)
    assert job.status_code == 200 and job.data.count(b"^BQN") == 4
    for sid in ids[4:6]:
        assert client.post(f"/v1/shipments/{sid}/label/reprint", json={"reason": "lost", "format": "zpl"},
                           headers=headers).status_code == 200
    assert _revoked(svc, ids) == 6  # the hour's allowance is used up

    single = client.post(f"/v1/shipments/{ids[6]}/label/reprint", json={"reason": "lost"}, headers=headers)
    assert single.status_code == 429 and single.get_json()["error"]["code"] == "rate_limited"
    assert 3500 <= int(single.headers["Retry-After"]) <= 3600
    job2 = client.post("/v1/print-jobs", json={"shipment_ids": ids[6:8], "format": "zpl",
                                               "reprint_reason": "damaged"}, headers=headers)
    assert job2.status_code == 429 and "Retry-After" in job2.headers
    assert _revoked(svc, ids) == 6  # nothing half-written
    assert [a.purpose for a in _alerts(svc)] == [f"hourly=6+1 cap={per_hour}", f"hourly=6+2 cap={per_hour}"]

    # A new process (a restarted or another worker) counts the same stored reprints: still refused.
    fresh = create_app(settings, services_override=dataclasses.replace(svc)).test_client()
    assert fresh.post(f"/v1/shipments/{ids[6]}/label/reprint", json={"reason": "lost"},
                      headers=headers).status_code == 429
    # Another sorter has an allowance of their own.
    assert client.post(f"/v1/shipments/{ids[6]}/label/reprint", json={"reason": "lost", "format": "zpl"},
                       headers=other).status_code == 200

    # An hour later the first job's four reprints age out; the answer said when.
    for sid in ids[:4]:
        _age(svc, sid, 61)
    again = client.post("/v1/print-jobs", json={"shipment_ids": ids[7:9], "format": "zpl",
                                                "reprint_reason": "damaged"}, headers=headers)
    assert again.status_code == 200 and again.data.count(b"^BQN") == 2


def test_retry_after_names_when_enough_reprints_age_out(services, merchant, client):
    settings = dataclasses.replace(services.settings, reprints_per_job=3, reprints_per_sorter_per_hour=3)
    svc = dataclasses.replace(services, settings=settings)
    ids = _batch(client, merchant, "RA", 5)
    _first_print(svc, ids)
    principal = Principal(kind="staff", id="usr_ra", role="sorter", station=DESTINATION)
    with svc.session_factory() as s:
        print_jobs.issue_print_job(s, svc.label_deps, principal, ids[:3], reprint_reason="damaged")
        s.commit()
    for sid, minutes in zip(ids[:3], (50, 40, 30), strict=True):  # reprinted 50, 40 and 30 minutes ago
        _age(svc, sid, minutes)
    with svc.session_factory() as s:
        with pytest.raises(RateLimited) as one:
            labels.reprint_label(s, svc.label_deps, principal, ids[3], "lost")
        with pytest.raises(RateLimited) as two:
            print_jobs.issue_print_job(s, svc.label_deps, principal, ids[3:5], reprint_reason="lost")
        s.rollback()
    assert 9 * 60 < one.value.retry_after <= 10 * 60  # the oldest (50 min) frees one slot in 10 minutes
    assert 19 * 60 < two.value.retry_after <= 20 * 60  # two slots: the second oldest, in 20 minutes
    assert _revoked(svc, ids[3:5]) == 0


def test_cli_operator_is_not_scoped_or_capped(services, merchant, client):
    """`waybill print --operator` runs at the service's own shell (it holds the keys): every shipment, no caps."""
    ids = _batch(client, merchant, "CLI", 25)
    operator = Principal(kind="cli", id="floor-1", role="sorter")
    with services.session_factory() as s:
        assert len(print_jobs.issue_print_job(s, services.label_deps, operator, ids)) == 25
        reprinted = print_jobs.issue_print_job(s, services.label_deps, operator, ids, reprint_reason="printer_jam")
        assert len(reprinted) == 25
        s.rollback()


def test_concurrent_reprint_jobs_cannot_both_spend_the_hourly_allowance(fresh_env):
    """Four jobs of three reprints at once, an allowance of three an hour: one is printed, three get 429."""
    import threading

    from tests.conftest import make_merchant

    env = fresh_env(reprints_per_job=3, reprints_per_sorter_per_hour=3)
    svc = env.services()
    app = create_app(env.settings, services_override=svc)
    client = app.test_client()
    ids = _batch(client, make_merchant(svc), "RACE", 12)
    _first_print(svc, ids)
    racer = make_staff(svc, "racer", "sorter", DESTINATION)
    # One session per job (the sorter logged in on four terminals): nothing about a shared token serialises them.
    sessions = [bearer(login(client, racer).get_json()["access_token"]) for _ in range(4)]
    barrier, results = threading.Barrier(4), []

    def work(i):
        own = app.test_client()
        barrier.wait()
        r = own.post("/v1/print-jobs", json={"shipment_ids": ids[3 * i:3 * i + 3], "format": "zpl",
                                             "reprint_reason": "damaged"}, headers=sessions[i])
        results.append((r.status_code, r.get_data().count(b"^BQN")))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [(200, 3), (429, 0), (429, 0), (429, 0)], results
    assert _revoked(svc, ids) == 3 and _live(svc, ids) == 12
    assert len(_alerts(svc)) == 3
