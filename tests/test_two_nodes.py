"""Two nodes, one PostgreSQL database, one Redis: the proof of issue 15's shared state.

Two real ``waybill serve`` processes (two gunicorn workers each) on free ports share the test's PostgreSQL schema and
a private ``redis-server``. A shipment is created on node A, printed on B, assigned on A and scanned on B; the
merchant rate limit (a burst of 12: 24 quick requests over both nodes), the courier's scan quota, idempotency, a
suspension and a staff user's disablement (`waybill users disable` on A's host; the token refused on B) hold
across both (the last three are rows in the database, so every node sees them at the next request).

The nodes share one data directory (key file and period-key store), as if it were copied to both hosts before
the first shipment: a key store the nodes share, with rotation, is another part of the issue.

Slow (two servers to start), so it runs once: in the PostgreSQL pass (``WAYBILL_TEST_DATABASE_URL`` set), as the
browser tests do; on SQLite it is skipped, saying so.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from courier_api.staff import set_phone
from tests.conftest import PG_URL, Env, _drop, _new_env, make_merchant, run, shipment_body
from tests.courier_api import make_staff
from tests.courier_api.last_mile_helpers import STATION
from tests.printing.label_helpers import decode, pdf_pages_as_images
from tests.private_services import PrivateRedis, free_port
from waybill.alerts import store as alert_store
from waybill.models import Shipment
from waybill.permissions import SYSTEM, Principal
from waybill.virtual_numbers import add_numbers

pytestmark = pytest.mark.skipif(not PG_URL, reason="the two-node test runs in the PostgreSQL pass only: set "
                                                   "WAYBILL_TEST_DATABASE_URL")

BURST = 12
SCAN_PER_MINUTE = 3


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def call(self, method: str, path: str, body: Any = None, token: str | None = None, **extra: str) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        headers.update({name.replace("_", "-"): value for name, value in extra.items()})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            resp = conn.getresponse()
            return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()


def _node_env(env: Env, redis_url: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")}
    out.update({"WAYBILL_DATA_DIR": str(env.settings.data_dir), "WAYBILL_DATABASE_URL": env.settings.database_url,
                "WAYBILL_REDIS_URL": redis_url, "WAYBILL_MERCHANT_BURST": str(BURST),
                # 12 units per 120 s, so the window cannot refill while the test runs; batches must fit in it.
                "WAYBILL_MERCHANT_RATE_PER_S": "0.1", "WAYBILL_BATCH_MAX_ITEMS": "20",
                "WAYBILL_SCAN_PER_MINUTE": str(SCAN_PER_MINUTE),
                "WAYBILL_ALERT_OFF_HOURS_SHIFTS": "default=00:00-24:00"})
    return out


def _start(name: str, env: dict[str, str], tmp: Path) -> Node:
    port = free_port()
    log = tmp / f"{name}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "waybill.commands.main", "serve", "--port", str(port),
                                 "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=err)
    node = Node(name, port, proc, log)
    deadline = time.monotonic() + 90
    while True:
        try:
            if node.call("GET", "/readyz").status == 200:
                return node
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, Node, Node, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("two_nodes")
    env = _new_env(tmp / "data")
    redis_server = PrivateRedis(tmp / "redis").start()
    node_env = _node_env(env, redis_server.url)
    nodes: list[Node] = []
    try:
        nodes.append(_start("a", node_env, tmp))
        nodes.append(_start("b", node_env, tmp))
        yield env, nodes[0], nodes[1], node_env
    finally:
        for node in nodes:
            node.proc.terminate()
        for node in nodes:
            node.proc.wait(timeout=60)
        redis_server.stop()
        _drop(env)


def _login(node: Node, username: str, password: str) -> str:
    r = node.call("POST", "/v1/auth/token", {"username": username, "password": password})
    assert r.status == 200, r.body
    return str(r.json()["access_token"])


def test_two_nodes_share_the_flow_and_every_limit(cluster: tuple[Env, Node, Node, dict[str, str]]) -> None:
    env, a, b, node_env = cluster
    svc = env.services()
    merchant = make_merchant(svc, "两节点商户")
    with svc.session_factory() as s:
        add_numbers(s, ["17000000071", "17000000072"])
        s.commit()
    people = {role: make_staff(svc, f"tn_{role}", role, STATION) for role in ("sorter", "dispatcher", "courier")}
    with svc.session_factory() as s:
        set_phone(s, SYSTEM, "tn_courier", "13700007171", svc.codec)
        s.commit()
    sorter = _login(b, "tn_sorter", people["sorter"].password)
    dispatcher = _login(a, "tn_dispatcher", people["dispatcher"].password)
    courier = _login(b, "tn_courier", people["courier"].password)

    # Create on A, print on B, assign on A, scan on B.
    created = a.call("POST", "/v1/shipments", shipment_body("TN-1"), merchant.api_key)
    assert created.status == 201, created.body
    assert created.headers["x-ratelimit-limit"] == str(BURST) and created.headers["x-ratelimit-remaining"] == "11"
    shp = created.json()
    job = b.call("POST", "/v1/print-jobs", {"shipment_ids": [shp["id"]], "format": "pdf"}, sorter)
    assert job.status == 200, job.body
    (page,) = pdf_pages_as_images(job.body)
    qr = next(text for fmt, text in decode(page) if "QR" in fmt.upper())
    assigned = a.call("POST", "/v1/dispatch/assignments", {"shipment_id": shp["id"], "courier": "tn_courier"},
                      dispatcher)
    assert assigned.status == 201, assigned.body
    scan = b.call("POST", "/v1/courier/scan", {"token": qr}, courier)
    assert scan.status == 200, scan.body
    assert scan.json()["shipment_id"] == shp["id"]

    # The scan quota (3 a minute) counts on both nodes: one spent above, two more, then refused on either node.
    scans = [(a if i % 2 else b).call("POST", "/v1/courier/scan", {"token": qr}, courier) for i in range(4)]
    assert [r.status for r in scans] == [200, 200, 429, 429], [r.body for r in scans]
    assert int(scans[-1].headers["retry-after"]) >= 1

    # The merchant's burst of 12 (1 spent above): 24 quick requests over both nodes, 11 pass, in order.
    answers = [(a if i % 2 else b).call("POST", "/v1/shipments", shipment_body(f"TN-R{i}"), merchant.api_key)
               for i in range(24)]
    assert [r.status for r in answers] == [201] * 11 + [429] * 13
    assert [int(r.headers["x-ratelimit-remaining"]) for r in answers] == [10 - i for i in range(11)] + [0] * 13
    assert all(r.headers["x-ratelimit-limit"] == str(BURST) and "x-ratelimit-reset" in r.headers for r in answers)
    assert json.loads(answers[-1].body)["error"]["code"] == "rate_limited" and "retry-after" in answers[-1].headers
    with svc.session_factory() as s:
        assert s.query(Shipment).filter(Shipment.merchant_id == merchant.id).count() == 12

    # Idempotency is in the database: a create on A replayed on B answers the same shipment, and one row exists.
    other = make_merchant(svc, "幂等商户")
    first = a.call("POST", "/v1/shipments", shipment_body("TN-I"), other.api_key, Idempotency_Key="tn-idem-1")
    replay = b.call("POST", "/v1/shipments", shipment_body("TN-I"), other.api_key, Idempotency_Key="tn-idem-1")
    assert first.status == replay.status == 201 and first.json()["id"] == replay.json()["id"]
    with svc.session_factory() as s:
        assert s.query(Shipment).filter(Shipment.merchant_id == other.id).count() == 1

    # A suspension (a critical alert on the courier, raised by any node) stops the courier's token on both.
    with svc.session_factory() as s:
        alert_store.fire(s, Principal(kind="staff", id=people["courier"].user.id, role="courier", station=STATION),
                         "new_client")
        s.commit()
    assert a.call("GET", "/v1/partners", token=courier).status == 401
    assert b.call("GET", "/v1/partners", token=courier).status == 401

    # A user disabled on A's host: the token is refused on B at its very next request (sessions are in the database).
    run(["users", "disable", "tn_dispatcher"], node_env)
    refused = b.call("POST", "/v1/dispatch/assignments", {"shipment_id": shp["id"], "courier": "tn_courier"},
                     dispatcher)
    assert refused.status == 401, refused.body
    assert a.call("POST", "/v1/dispatch/assignments", {"shipment_id": shp["id"], "courier": "tn_courier"},
                  dispatcher).status == 401
