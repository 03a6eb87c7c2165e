"""Operations: /healthz (liveness), /readyz (database, key store, Redis), /metrics (Prometheus), --version."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RECIPIENT, SENDER, make_merchant, run, shipment_body
from tests.courier_api import bearer, login, make_staff
from tests.redis_service import REDIS_URL, redis_up
from waybill import keyfile
from waybill.metrics import Metrics
from waybill.readiness import Readiness
from waybill.services import build
from waybill.settings import SettingsError
from waybill.web.app import create_app

PASSWORD = "hunter2-not-for-any-answer"



def samples(body: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for fam in text_string_to_metric_families(body) for s in fam.samples
            if s.name == name]


def value(body: str, name: str, **labels: str) -> float:
    return sum(v for lab, v in samples(body, name) if all(lab.get(k) == want for k, want in labels.items()))


# -- /healthz and /readyz -------------------------------------------------------------------------------


def test_healthz_is_liveness_only(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"ok": True}


def test_readyz_checks_database_and_key_store(client):
    t0 = time.perf_counter()
    # The test's own transaction holds SQLite's write lock: the probe must not wait for it.
    r = client.get("/readyz")
    assert time.perf_counter() - t0 < 5
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"ok": True, "checks": {"database": {"ok": True}, "key_store": {"ok": True}}}


@pytest.mark.skipif(not redis_up(), reason="Redis is not reachable (.ci/run starts it)")
def test_readyz_pings_redis_when_configured(base_env, services):
    settings = dataclasses.replace(base_env.settings, redis_url=REDIS_URL)
    svc = build(settings, engine=base_env.engine, session_factory=services.session_factory)
    r = create_app(settings, services_override=svc).test_client().get("/readyz")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["checks"]["redis"] == {"ok": True}


def test_readyz_503_names_the_redis_check_and_never_its_url(base_env, services):
    url = f"redis://:{PASSWORD}@127.0.0.1:1/0"  # nothing listens on port 1
    settings = dataclasses.replace(base_env.settings, redis_url=url)
    svc = build(settings, engine=base_env.engine, session_factory=services.session_factory)
    t0 = time.perf_counter()
    r = create_app(settings, services_override=svc).test_client().get("/readyz")
    assert time.perf_counter() - t0 < 5
    assert r.status_code == 503
    doc = r.get_json()
    assert doc["ok"] is False and doc["checks"]["database"] == {"ok": True}
    assert doc["checks"]["redis"]["ok"] is False and doc["checks"]["redis"]["error"]
    assert PASSWORD not in r.get_data(as_text=True) and "127.0.0.1" not in r.get_data(as_text=True)


def test_readyz_503_when_the_database_does_not_answer(services, base_env):
    bad = f"postgresql+psycopg://waybill:{PASSWORD}@127.0.0.1:1/waybill"
    # The registry is frozen: a test swaps one part, as it would swap a provider for a fake.
    services = dataclasses.replace(services, readiness=Readiness(services.settings, services.keys,
                                                                 database_url=bad))
    r = create_app(base_env.settings, services_override=services).test_client().get("/readyz")
    assert r.status_code == 503 and r.headers["Retry-After"]
    doc = r.get_json()
    assert doc["checks"]["database"]["ok"] is False and doc["checks"]["key_store"] == {"ok": True}
    assert PASSWORD not in r.get_data(as_text=True) and "waybill@" not in r.get_data(as_text=True)
    services.readiness.close()


def test_readyz_503_when_the_key_file_is_gone_unsafe_or_replaced(fresh_env):
    env = fresh_env()
    client = env.app().test_client()
    assert client.get("/readyz").status_code == 200
    key_file = env.settings.key_file
    original = key_file.read_bytes()

    key_file.chmod(0o644)
    r = client.get("/readyz")
    assert r.status_code == 503 and r.get_json()["checks"]["key_store"] == {"ok": False,
                                                                            "error": "key_file_unreadable"}
    key_file.chmod(0o600)
    assert client.get("/readyz").status_code == 200

    key_file.unlink()
    assert client.get("/readyz").get_json()["checks"]["key_store"]["error"] == "key_file_unreadable"

    keyfile.write(key_file, keyfile.generate())  # another installation's keys
    r = client.get("/readyz")
    assert r.status_code == 503 and r.get_json()["checks"]["key_store"]["error"] == "key_file_replaced"
    secrets_b64 = json.loads(key_file.read_text())["secrets"].values()
    assert not any(s in r.get_data(as_text=True) for s in secrets_b64)

    key_file.write_bytes(original)
    key_file.chmod(0o600)
    assert client.get("/readyz").status_code == 200


def test_readyz_follows_key_rotation(fresh_env):
    """A rotation adds a master key to the file: still the same installation, still ready."""
    from waybill.crypto import rotation

    env = fresh_env()
    client = env.app().test_client()
    rotation.rotate(env.engine, env.settings.key_file, env.settings.cipher)
    assert client.get("/readyz").status_code == 200


def test_operational_routes_answer_bad_methods_with_json_4xx(client):
    for path in ("/readyz", "/metrics", "/healthz"):
        r = client.post(path)
        assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"


# -- /metrics ---------------------------------------------------------------------------------------------


def test_metrics_is_prometheus_text_with_route_patterns(client, merchant):
    created = client.post("/v1/shipments", json=shipment_body("M-1"), headers=merchant.headers).get_json()
    assert client.get(f"/v1/shipments/{created['id']}", headers=merchant.headers).status_code == 200
    assert client.get("/v1/shipments/shp_doesnotexist", headers=merchant.headers).status_code == 404
    client.get("/no/such/path/13812345678")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    body = r.get_data(as_text=True)
    name = "waybill_http_request_duration_seconds_count"
    assert value(body, name, route="/v1/shipments", method="POST", status="201") == 1
    assert value(body, name, route="/v1/shipments/<shipment_id>", method="GET", status="200") == 1
    assert value(body, name, route="/v1/shipments/<shipment_id>", method="GET", status="404") == 1
    assert value(body, name, route="<unmatched>", status="404") == 1
    assert value(body, "waybill_http_refusals_total", status="404", code="not_found") == 2
    routes = {lab["route"] for lab, _ in samples(body, name)}
    assert all(route.startswith(("/", "<unmatched>")) and "shp_" not in route for route in routes)
    assert created["id"] not in body and "13812345678" not in body and "doesnotexist" not in body
    # Committed audit events, by action and outcome.
    assert value(body, "waybill_audit_events_appended_total", outcome="ok") >= 2
    assert value(body, "waybill_audit_events_appended_total", outcome="not_found") == 1


def test_each_services_container_has_its_own_registry(base_env, services, client, merchant):
    client.post("/v1/shipments", json=shipment_body("R-1"), headers=merchant.headers)
    other = create_app(base_env.settings, services_override=build(
        base_env.settings, engine=base_env.engine, session_factory=services.session_factory)).test_client()
    body = other.get("/metrics").get_data(as_text=True)
    assert value(body, "waybill_http_request_duration_seconds_count", route="/v1/shipments") == 0
    mine = client.get("/metrics").get_data(as_text=True)
    assert value(mine, "waybill_http_request_duration_seconds_count", route="/v1/shipments") == 1


def test_an_unknown_method_is_one_label_value(client):
    for method in ("FOO", "BAR13812345678"):
        client.open("/healthz", method=method)
    body = client.get("/metrics").get_data(as_text=True)
    methods = {lab["method"] for lab, _ in samples(body, "waybill_http_request_duration_seconds_count")}
    assert "other" in methods and not any("FOO" in m or "BAR" in m for m in methods)


def test_main_flows_leave_counts_and_no_personal_data_in_metrics(base_env, services, session_factory):
    """Create, print (every format, a reprint, a job), log in wrongly, scan past the quota: no plaintext."""
    settings = dataclasses.replace(base_env.settings, scan_per_minute=1)
    svc = build(settings, engine=base_env.engine, session_factory=session_factory)
    client = create_app(settings, services_override=svc).test_client()
    merchant = make_merchant(svc, "指标商户")
    shp = client.post("/v1/shipments", json=shipment_body("PD-1"), headers=merchant.headers).get_json()
    assert shp["recipient"]["name"] != RECIPIENT["name"]
    for fmt in ("pdf", "png", "zpl"):
        assert client.get(f"/v1/shipments/{shp['id']}/label?format={fmt}&size=100x150",
                          headers=merchant.headers).status_code == 200
    assert client.post(f"/v1/shipments/{shp['id']}/label/reprint", json={"reason": "damaged", "format": "zpl"},
                       headers=merchant.headers).status_code == 200
    sorter = make_staff(svc, "metrics_sorter", "sorter", "755-W012")
    courier = make_staff(svc, "metrics_courier", "courier", "755-W012")
    sorter_auth = bearer(login(client, sorter).get_json()["access_token"])
    job = client.post("/v1/print-jobs", json={"shipment_ids": [shp["id"]], "format": "pdf"}, headers=sorter_auth)
    assert job.status_code == 200
    job.get_data()
    for password in ("wrong-password-1", RECIPIENT["phone"]):
        assert client.post("/v1/auth/token", json={"username": courier.user.username,
                                                   "password": password}).status_code == 401
    courier_auth = bearer(login(client, courier).get_json()["access_token"])
    assert client.post("/v1/courier/scan", json={"token": "not-a-token"}, headers=courier_auth).status_code == 404
    assert client.post("/v1/courier/scan", json={"token": "not-a-token"}, headers=courier_auth).status_code == 429
    search = client.post("/v1/shipments/search", json={"recipient_phone": RECIPIENT["phone"]},
                         headers=merchant.headers)
    assert search.status_code == 200

    r = client.get("/metrics")
    body = r.get_data(as_text=True)
    assert value(body, "waybill_labels_printed_total", format="pdf", size="100x150", kind="label") == 1
    assert value(body, "waybill_labels_printed_total", format="zpl", size="100x180", kind="reprint") == 1
    assert value(body, "waybill_labels_printed_total", format="pdf", size="100x180", kind="print_job") == 1
    assert value(body, "waybill_courier_scans_total", outcome="not_found") == 1
    assert value(body, "waybill_courier_scans_total", outcome="quota_exceeded") == 1
    assert value(body, "waybill_scan_quota_alerts_total") == 1
    assert value(body, "waybill_http_refusals_total", status="401", code="unauthenticated") == 2
    assert value(body, "waybill_http_refusals_total", status="429", code="rate_limited") == 1
    assert value(body, "waybill_audit_events_appended_total", action="auth.failed", outcome="denied") == 2
    assert value(body, "waybill_audit_events_appended_total", action="alert.scan_quota", outcome="alert") == 1

    plaintext = [v for party in (RECIPIENT, SENDER) for v in party.values()]
    secrets_seen = [merchant.api_key, shp["id"], courier.password, sorter.password, "wrong-password-1",
                    courier.user.username, "not-a-token", RECIPIENT["phone"][-4:] + "\n"]
    for needle in plaintext + secrets_seen:
        assert needle not in body, needle
    # Every label value comes from a closed set the code writes (routes are patterns, not paths).
    shapes = {"route": r"(/[a-z0-9/_.<>-]*|<unmatched>)", "method": r"[A-Z]+|other", "status": r"[1-5][0-9][0-9]",
              "code": r"[a-z_]+", "format": r"pdf|png|zpl|tspl", "size": r"100x150|100x180|76x130",
              "kind": r"label|reprint|print_job", "outcome": r"[a-z_]+", "action": r"[a-z_]+\.[a-z_.]+",
              "le": r"[0-9.e+]+|\+Inf"}
    for fam in text_string_to_metric_families(body):
        for sample in fam.samples:
            for key, label_value in sample.labels.items():
                assert re.fullmatch(shapes[key], label_value), (key, label_value)


def _token_file(tmp_path: Path, token: str, mode: int = 0o600) -> Path:
    path = tmp_path / "metrics.token"
    path.write_text(token + "\n")
    path.chmod(mode)
    return path


def test_metrics_token_when_configured(base_env, services, tmp_path):
    token = "m" * 40
    settings = dataclasses.replace(base_env.settings, metrics_token_file=_token_file(tmp_path, token))
    client = create_app(settings, services_override=build(
        settings, engine=base_env.engine, session_factory=services.session_factory)).test_client()
    r = client.get("/metrics")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthenticated"
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "n" * 40}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/readyz").status_code == 200  # readiness stays open for the load balancer


@pytest.mark.parametrize(("token", "mode"), [("m" * 40, 0o644), ("short", 0o600), ("has space " * 5, 0o600)])
def test_a_bad_metrics_token_file_stops_the_start(base_env, services, tmp_path, token, mode):
    settings = dataclasses.replace(base_env.settings, metrics_token_file=_token_file(tmp_path, token, mode))
    svc = build(settings, engine=base_env.engine, session_factory=services.session_factory)
    with pytest.raises(SettingsError, match="WAYBILL_METRICS_TOKEN_FILE"):
        create_app(settings, services_override=svc)


_WORKER = """
import sys
from waybill.metrics import Metrics
m = Metrics()
m.labels_printed.labels("pdf", "100x180", "label").inc(int(sys.argv[1]))
m.observe_request("/v1/shipments", "POST", 201, 0.01, None)
"""


def test_multiprocess_mode_adds_up_every_workers_values(tmp_path):
    """Under gunicorn with PROMETHEUS_MULTIPROC_DIR, any worker's /metrics answers for all of them."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in ("3", "4"):  # two worker processes
        subprocess.run([sys.executable, "-c", _WORKER, n], env=env, check=True, timeout=60)
    body = Metrics(tmp_path).exposition().decode()
    assert value(body, "waybill_labels_printed_total", format="pdf", kind="label") == 7
    assert value(body, "waybill_http_request_duration_seconds_count", route="/v1/shipments") == 2
    # Without the directory a registry holds only its own process's values.
    assert value(Metrics().exposition().decode(), "waybill_labels_printed_total") == 0


# -- waybill --version --------------------------------------------------------------------------------------


def test_version_comes_from_the_package_metadata():
    proc = run(["--version"], {})
    assert proc.stdout.strip() == f"waybill {version('privacy-waybill')}"
