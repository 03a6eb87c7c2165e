"""A `waybill worker` killed (SIGKILL) mid-task: the task is redelivered and runs once in effect.

The broker is a private Redis (tests/private_services.py), or RabbitMQ in a virtual host of the test's own. The task
is a webhook delivery to a receiver that holds its first request open, so the worker is killed with the request out
and its answer never recorded. A second worker gets the message again (RabbitMQ: when the dead worker's connection
drops; Redis: once its heartbeat is stale), the delivery's lease keeps it from being sent while the dead worker
could still be sending, and then it is sent once more with the same ``webhook-id`` and body: the receiver
deduplicates by that id, and the database shows one delivery, succeeded, with one recorded answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from tests.conftest import Env, make_merchant, shipment_body
from tests.faults.served import child_env
from tests.private_services import private_redis
from waybill import tracking
from waybill.models import OutboxMessage, Shipment
from waybill.permissions import SYSTEM
from waybill.uow import unit_of_work
from waybill.webhooks import TOPIC
from waybill.webhooks.models import WebhookAttempt, WebhookDelivery

# The dead worker's heartbeat timeout (60 s), then the delivery's lease (65 s from the claim), then a relay round.
REDELIVERY_DEADLINE_S = 180


class StallingReceiver:
    """Records every request (headers, body); holds the first one open until :meth:`release`, answers 200 after."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answered: list[str] = []  # webhook-ids answered 200
        self.first = threading.Event()
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.received.append((headers, body))
                if len(owner.received) == 1:
                    owner.first.set()
                    owner._release.wait(60)  # the sender is killed meanwhile: nobody reads this answer
                with contextlib.suppress(OSError):
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    owner.answered.append(headers["webhook-id"])

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def _rabbitmqctl(*args: str) -> None:
    proc = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@contextlib.contextmanager
def _rabbitmq_vhost() -> Iterator[str]:
    """A virtual host of this test's own on the shared RabbitMQ (its queues and messages are nobody else's), removed
    afterwards; the broker itself is never stopped or reconfigured otherwise."""
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("the RabbitMQ fault test needs rabbitmqctl (.ci/run's RabbitMQ)", pytrace=False)
    vhost = f"waybill_faults_{secrets.token_hex(4)}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """The broker's URL: a private Redis, or a vhost of the test's own on the shared RabbitMQ."""
    if request.param == "redis":
        with private_redis() as server:
            yield server.url
    else:
        with _rabbitmq_vhost() as url:
            yield url


@pytest.fixture
def receiver() -> Iterator[StallingReceiver]:
    made = StallingReceiver()
    yield made
    made.close()


class Worker:
    """`waybill worker --threads 2` as a subprocess; its log (stderr) in a file."""

    def __init__(self, env: Env, log: Path) -> None:
        s = env.settings
        assert s.broker_url
        env_vars = {"WAYBILL_DATA_DIR": str(s.data_dir), "WAYBILL_DATABASE_URL": s.database_url,
                    "WAYBILL_KEY_FILE": str(s.key_file), "WAYBILL_ENV": "test", "WAYBILL_BROKER_URL": s.broker_url,
                    "WAYBILL_WEBHOOK_ALLOW_PRIVATE": "1"}
        with log.open("ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "waybill.commands.main", "worker", "--threads", "2"],
                                         env=child_env(env_vars), stdout=subprocess.PIPE, stderr=err, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # {"ok": true, "worker": "started", ...} once it consumes
        assert json.loads(line)["worker"] == "started", log.read_text()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _wait(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {seconds:.0f} s"
        time.sleep(0.2)


def test_a_worker_killed_mid_delivery_is_redelivered_and_the_delivery_happens_once(
        fresh_env: Callable[..., Env], broker: str, receiver: StallingReceiver, tmp_path: Path) -> None:
    from waybill.web.app import create_app

    env = fresh_env(webhook_allow_private=True, broker_url=broker)
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    merchant = make_merchant(svc, "杀进程商户")
    hook = client.post("/v1/webhooks", json={"url": receiver.url, "events": ["shipment.status_changed"]},
                       headers=merchant.headers).get_json()
    created = client.post("/v1/shipments", json=shipment_body("KILL-1"), headers=merchant.headers)
    assert created.status_code == 201
    with unit_of_work(svc.session_factory) as tx:  # the status change whose webhook is the slow task
        tracking.move(tx.session, SYSTEM, tx.session.get(Shipment, created.get_json()["id"]), "printed")

    log = tmp_path / "worker.log"
    first = Worker(env, log)
    try:
        assert receiver.first.wait(60), log.read_text()
    finally:
        first.kill()  # mid-task: the request is out, its answer unread, the broker message unacknowledged
    assert first.proc.returncode == -signal.SIGKILL
    receiver.release()
    with svc.session_factory() as s:
        (delivery,) = s.scalars(select(WebhookDelivery)).all()
        assert delivery.status == "pending" and not s.scalars(select(WebhookAttempt)).all()
        (message,) = s.scalars(select(OutboxMessage).where(OutboxMessage.topic == TOPIC)).all()
        assert message.done_at is None and message.sent_at is not None

    second = Worker(env, log)
    try:
        def delivered() -> bool:
            with svc.session_factory() as s:
                return s.scalars(select(WebhookDelivery.status)).one() == "succeeded"

        _wait(delivered, REDELIVERY_DEADLINE_S, "the killed worker's task was not redelivered and done")

        def drained() -> bool:  # every webhook message done (the redelivered one, and the recheck after the lease)
            with svc.session_factory() as s:
                return not s.scalars(select(OutboxMessage).where(OutboxMessage.topic == TOPIC,
                                                                 OutboxMessage.done_at.is_(None))).all()

        _wait(drained, 30, "webhook messages still undone")
    finally:
        second.stop()

    # The receiver saw the same event twice (the request the dead worker never finished, then the redelivery), with
    # one webhook-id and one body: it keeps one. Only the redelivery was answered.
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert len(receiver.received) == 2 and len(ids) == 1, receiver.received
    assert receiver.received[0][1] == receiver.received[1][1]
    assert receiver.answered == list(ids)
    headers, body = receiver.received[1]
    assert Webhook(hook["secret"]).verify(body, headers)["data"]["status"] == "printed"
    # The database: one delivery, succeeded, one recorded attempt (the dead worker's answer was never recorded).
    with svc.session_factory() as s:
        (delivery,) = s.scalars(select(WebhookDelivery)).all()
        assert delivery.status == "succeeded" and delivery.event_id in ids
        attempts = s.scalars(select(WebhookAttempt)).all()
        assert [(a.ok, a.status_code) for a in attempts] == [(True, 200)]
    assert "Traceback" not in log.read_text()
