"""A process killed between the commit of a status change and its delivery: a fresh runner still delivers it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from sqlalchemy import select
from standardwebhooks import Webhook

from waybill import tasks
from waybill.models import OutboxMessage
from waybill.webhooks import TOPIC

CHILD = textwrap.dedent("""
    import os, signal, sys
    from waybill import tracking
    from waybill.models import Shipment
    from waybill.permissions import SYSTEM
    from waybill.services import build
    from waybill.settings import load_settings
    from waybill.uow import unit_of_work

    svc = build(load_settings())
    # Killed right after the commit, before any relay of this process could hand the delivery over.
    with unit_of_work(svc.session_factory) as tx:
        shipment = tx.session.get(Shipment, sys.argv[1])
        tracking.move(tx.session, SYSTEM, shipment, "printed")
    print("committed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_delivery_committed_by_a_killed_process_is_delivered_by_a_fresh_runner(hooks, receiver):
    hook = hooks.endpoint(receiver.url)
    sid = hooks.shipment("WH-CRASH")
    settings = hooks.env.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")}
    env.update({"WAYBILL_DATA_DIR": str(settings.data_dir), "WAYBILL_DATABASE_URL": settings.database_url,
                "WAYBILL_KEY_FILE": str(settings.key_file), "WAYBILL_ENV": "test",
                "WAYBILL_WEBHOOK_ALLOW_PRIVATE": "1"})
    proc = subprocess.run([sys.executable, "-c", CHILD, sid], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "committed" in proc.stdout
    assert receiver.received == []
    with hooks.svc.session_factory() as s:
        (message,) = s.scalars(select(OutboxMessage).where(OutboxMessage.topic == TOPIC)).all()
        assert message.done_at is None
    # A fresh runner (a restarted `waybill serve`) relays what the dead process committed.
    runner = tasks.BackgroundRunner(hooks.svc, tasks.InProcessQueue(hooks.svc), job_list=[])
    assert runner.tick() == 1
    (got,) = receiver.received
    assert Webhook(hook["secret"]).verify(got.body, got.headers)["data"]["status"] == "printed"
