"""A node killed mid-print-job: a real ``waybill serve`` killed with SIGKILL while it streams a big job, the job
retried with the same ``Idempotency-Key`` against a fresh process.

What must hold: the client never got a label whose token was not committed; the database holds whole chunks only
(the job's progress, its tokens, the shipments' ``printed`` status and events and the audit events all agree, up to
a chunk boundary); the retry reissues nothing (each shipment ends with exactly one token, the labels printed before
the kill carry the same tokens) and no shipment ever has two live tokens. On PostgreSQL too
(``WAYBILL_TEST_DATABASE_URL``).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from courier_api.staff import create_user
from tests.conftest import shipment_body
from waybill import labels, shipments
from waybill.models import AuditEvent, PrintJob, QrToken, Shipment, TrackingEvent
from waybill.permissions import SYSTEM, Principal
from waybill.print_jobs import FIRST_CHUNK, PRINT_CHUNK
from waybill.schemas import ShipmentIn, parse
from waybill.uow import unit_of_work

N = 3000  # several chunks, and long enough to stream that the kill lands mid-job
KILL_AFTER = FIRST_CHUNK + 20  # labels read before the node dies (past the first chunk)
STATION = "755"
_QR = re.compile(rb"\^BQN,\d,\d+\^FD\w\w,([^^]+)\^FS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _node(env: Any, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``waybill serve`` (gunicorn, one worker) on the env's database and key file, in a process group of its own.

    The test's own connections are closed first, and it reads the database only while no node runs: on SQLite a
    process that keeps the file open across another's crash may be served a stale WAL index where the sandbox's
    shared memory is not coherent between processes (seen here: the killed node's committed chunks were invisible
    to the test's pooled connections, and visible to any process that opened the file afresh).
    """
    env.engine.dispose()
    port = _free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")}
    child_env.update({"WAYBILL_DATA_DIR": str(env.settings.data_dir),
                      "WAYBILL_DATABASE_URL": env.settings.database_url})
    with log.open("ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "waybill.commands.main", "serve", "--port", str(port),
                                 "--workers", "1"], env=child_env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    proc.port = port  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def _login(port: int, username: str, password: str) -> dict[str, str]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/v1/auth/token", body=json.dumps({"username": username, "password": password}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    body = json.loads(r.read())
    assert r.status == 200, body
    return {"Authorization": f"Bearer {body['access_token']}", "Content-Type": "application/json"}


def _start_job(port: int, headers: dict[str, str], ids: list[str], key: str) -> http.client.HTTPResponse:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/print-jobs", body=json.dumps({"shipment_ids": ids, "format": "zpl"}),
              headers={**headers, "Idempotency-Key": key})
    return c.getresponse()


def _db_state(svc: Any, ids: list[str], job_id: str) -> dict[str, Any]:
    with svc.session_factory() as s:
        job = s.get(PrintJob, job_id)
        assert job is not None
        tokens = s.execute(select(QrToken.shipment_id, QrToken.revoked_at, QrToken.print_job_id)
                           .where(QrToken.shipment_id.in_(ids))).all()
        status = dict(s.execute(select(Shipment.id, Shipment.status).where(Shipment.id.in_(ids))).all())
        printed_events = s.scalar(select(func.count()).select_from(TrackingEvent).where(
            TrackingEvent.shipment_id.in_(ids), TrackingEvent.status == "printed"))
        audited = {a: dict(s.execute(select(AuditEvent.object_id, func.count()).where(
            AuditEvent.action == a, AuditEvent.object_id.in_(ids)).group_by(AuditEvent.object_id)).all())
            for a in ("label.print", "label.print_again")}
        two_live = s.execute(select(QrToken.shipment_id).where(QrToken.revoked_at.is_(None))
                             .group_by(QrToken.shipment_id).having(func.count() > 1)).all()
        return {"issued": job.issued, "attempts": job.attempts, "finished": job.finished_at is not None,
                "tokens": tokens, "status": status, "printed_events": printed_events, "audited": audited,
                "two_live": two_live}


def test_node_killed_mid_print_job_then_retried_reissues_nothing(fresh_env: Any, tmp_path: Path) -> None:
    env = fresh_env()
    svc = env.services()
    with unit_of_work(svc.session_factory) as tx:
        from waybill.merchants import create_merchant

        made = create_merchant(tx.session, SYSTEM, "断电测试商户", api_key_secret=svc.keys.secret("api_key"))
        user = create_user(tx.session, SYSTEM, "kill_sorter", "sorter", STATION, None, svc.codec)
    owner = Principal("merchant", made.merchant_id, "merchant")
    ids: list[str] = []
    for start in range(0, N, 1000):
        with unit_of_work(svc.session_factory) as tx:
            items = [parse(ShipmentIn, shipment_body(f"K-{i}")) for i in range(start, start + 1000)]
            ids += [r.shipment.id for r in shipments.create_batch(tx.session, svc.shipment_deps, owner, items)
                    if r.shipment is not None]
    assert len(ids) == N
    log = tmp_path / "serve.log"

    # --- the first node streams the job and is killed (the whole process group: master and worker) -----------
    with _node(env, log) as node:
        headers = _login(node.port, "kill_sorter", user.password)  # type: ignore[attr-defined]
        r = _start_job(node.port, headers, ids, "kill-job-1")  # type: ignore[attr-defined]
        assert r.status == 200 and r.getheader("X-Label-Count") == str(N)
        job_id = r.getheader("X-Print-Job-Id")
        assert job_id is not None and job_id.startswith("pjb_")
        seen = b""
        while seen.count(b"^XZ") < KILL_AFTER:
            piece = r.read1(65536)
            assert piece, "the job ended before the node was killed"
            seen += piece
        os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=30)
        broken = False
        try:
            while piece := r.read1(65536):
                seen += piece
        except (http.client.IncompleteRead, ConnectionError):
            broken = True
    # What the client saw: a truncated document (the chunked body never ended), some whole labels.
    assert broken or seen.count(b"^XZ") < N
    first_tokens = [m.group(1).decode() for m in _QR.finditer(seen)]
    assert KILL_AFTER <= len(first_tokens) < N

    env.engine.dispose()
    state = _db_state(svc, ids, job_id)
    issued = state["issued"]
    # Whole chunks only: progress is a chunk boundary, and tokens, statuses, events and audit agree with it.
    assert issued in {0} | {min(N, FIRST_CHUNK + k * PRINT_CHUNK) for k in range(N // PRINT_CHUNK + 2)}
    assert len(first_tokens) <= issued < N  # never a label whose token had not committed
    assert sorted(sid for sid, _r, _j in state["tokens"]) == sorted(ids[:issued])
    assert all(revoked is None and job == job_id for _s, revoked, job in state["tokens"])
    assert [state["status"][sid] for sid in ids] == ["printed"] * issued + ["created"] * (N - issued)
    assert state["printed_events"] == issued
    assert sorted(state["audited"]["label.print"]) == sorted(ids[:issued])
    assert not state["two_live"] and not state["finished"]
    with svc.session_factory() as s:  # every token the client got is live, for its own shipment, in order
        key = svc.keys.secret("qr_token")
        assert [labels.resolve_token(s, key, t).id for t in first_tokens] == ids[:len(first_tokens)]  # type: ignore[union-attr]

    # --- a fresh node, the same job retried with the same key: the whole job, nothing reissued ------------------
    with _node(env, log) as node:
        headers = _login(node.port, "kill_sorter", user.password)  # type: ignore[attr-defined]
        r = _start_job(node.port, headers, ids, "kill-job-1")  # type: ignore[attr-defined]
        assert r.status == 200 and r.getheader("X-Print-Job-Id") == job_id
        whole = r.read()
    env.engine.dispose()
    tokens = [m.group(1).decode() for m in _QR.finditer(whole)]
    assert len(tokens) == N
    assert tokens[:len(first_tokens)] == first_tokens  # the labels printed before the kill: the same tokens
    state = _db_state(svc, ids, job_id)
    assert state["issued"] == N and state["finished"] and state["attempts"] == 2
    per_shipment: dict[str, int] = {}
    for sid, revoked, job in state["tokens"]:
        assert revoked is None and job == job_id
        per_shipment[sid] = per_shipment.get(sid, 0) + 1
    assert per_shipment == dict.fromkeys(ids, 1)  # one token each, ever: nothing was reissued
    assert state["audited"]["label.print"] == dict.fromkeys(ids, 1)
    assert sorted(state["audited"]["label.print_again"]) == sorted(ids[:issued])
    assert set(state["status"].values()) == {"printed"} and state["printed_events"] == N
    assert not state["two_live"]
    with svc.session_factory() as s:
        key = svc.keys.secret("qr_token")
        assert [labels.resolve_token(s, key, t).id for t in tokens] == ids  # type: ignore[union-attr]
