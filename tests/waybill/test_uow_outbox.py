"""The unit of work, the transactional outbox and the task queue, on real commits (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import RECIPIENT, SENDER
from tests.redis_service import REDIS_URL, redis_up
from waybill import audit, outbox, tasks
from waybill.models import AuditEvent, Merchant, OutboxMessage, ScheduledRun, utcnow
from waybill.permissions import SYSTEM
from waybill.uow import CommitFailed, UnitOfWork, after_commit, keep_on_error, on_rollback, unit_of_work

AMQP_URL = os.environ.get("WAYBILL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture
def env(fresh_env):
    return fresh_env()


@pytest.fixture
def svc(env):
    return env.services()


def _count(svc, model, *where) -> int:
    with svc.session_factory() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _merchant(name: str) -> Merchant:
    return Merchant(id=f"mch_{name}", name=name, created_at=utcnow())


# --- unit of work --------------------------------------------------------------------------------------


def test_success_commits_and_runs_after_commit(svc):
    ran = []
    with unit_of_work(svc.session_factory) as tx:
        tx.session.add(_merchant("a"))
        after_commit(tx.session, lambda: ran.append("after"))
        on_rollback(tx.session, lambda: ran.append("compensated"))
    assert _count(svc, Merchant, Merchant.id == "mch_a") == 1
    assert ran == ["after"]


def test_exception_rolls_back_compensates_and_keeps_durable_audit(svc):
    ran = []
    with pytest.raises(RuntimeError), unit_of_work(svc.session_factory) as tx:
        tx.session.add(_merchant("b"))
        audit.record(tx.session, SYSTEM, "test.refused", outcome="denied", durable=True)
        audit.record(tx.session, SYSTEM, "test.not_durable")
        on_rollback(tx.session, lambda: ran.append("compensated"))
        after_commit(tx.session, lambda: ran.append("after"))
        tx.session.flush()
        raise RuntimeError("boom")
    assert _count(svc, Merchant, Merchant.id == "mch_b") == 0
    assert ran == ["compensated"]
    assert _count(svc, AuditEvent, AuditEvent.action == "test.refused") == 1
    assert _count(svc, AuditEvent, AuditEvent.action == "test.not_durable") == 0


def test_system_exit_of_a_failing_command_rolls_back(svc):
    with pytest.raises(SystemExit), unit_of_work(svc.session_factory) as tx:
        tx.session.add(_merchant("c"))
        tx.session.flush()
        raise SystemExit(1)
    assert _count(svc, Merchant, Merchant.id == "mch_c") == 0


def test_kept_refusal_commits_its_bookkeeping(svc):
    tx = UnitOfWork(svc.session_factory)
    tx.session.add(_merchant("d"))
    keep_on_error(tx.session)
    tx.finish(success=False)
    assert _count(svc, Merchant, Merchant.id == "mch_d") == 1


def test_commit_conflict_is_reported_and_compensated(svc):
    with unit_of_work(svc.session_factory) as tx:
        tx.session.add(_merchant("e"))
    ran = []
    tx = UnitOfWork(svc.session_factory)
    tx.session.add(_merchant("e"))  # same primary key: the commit fails
    on_rollback(tx.session, lambda: ran.append("compensated"))
    with pytest.raises(CommitFailed) as exc:
        tx.finish(success=True)
    assert exc.value.reason == "conflict" and ran == ["compensated"]


# --- outbox ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    {"phone": RECIPIENT["phone"]}, {"name": RECIPIENT["name"]}, {"address": SENDER["address"]},
    {"phone": 13812345678}, {"x": 1.5}, {"x": {"nested": "shp"}}, {"Bad-Key": "ok"},
])
def test_outbox_payload_holds_ids_and_enums_only(svc, payload):
    with pytest.raises(outbox.BadPayload), unit_of_work(svc.session_factory) as tx:
        outbox.enqueue(tx.session, "test.task", payload)
    assert _count(svc, OutboxMessage) == 0


def test_rolled_back_work_leaves_no_message(svc):
    with pytest.raises(RuntimeError), unit_of_work(svc.session_factory) as tx:
        outbox.enqueue(tx.session, "test.task", {"shipment_id": "shp_01HZZZZZZZZZZZZZZZZZZZZZZZ"})
        raise RuntimeError("the request failed")
    assert _count(svc, OutboxMessage) == 0


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.fail = 0

    def __call__(self, tx, payload) -> None:
        if self.fail:
            self.fail -= 1
            raise ValueError("handler failed")
        self.calls.append(dict(payload))
        audit.record(tx.session, outbox.TASK_PRINCIPAL, "test.task_ran")


def test_message_committed_while_nobody_relays_runs_later_exactly_once(svc):
    with unit_of_work(svc.session_factory) as tx:
        mid = outbox.enqueue(tx.session, "test.task", {"kind": "retention", "count": 3})
    handler = _Recorder()
    queue = tasks.InProcessQueue(svc, {"test.task": handler})
    assert outbox.relay_once(svc.session_factory, queue) == 1
    assert handler.calls == [{"kind": "retention", "count": 3}]
    # At-least-once delivery: the same id again does nothing.
    assert outbox.run_message(svc.session_factory, {"test.task": handler}, mid) is False
    assert len(handler.calls) == 1
    assert outbox.relay_once(svc.session_factory, queue) == 0
    assert _count(svc, AuditEvent, AuditEvent.action == "test.task_ran", AuditEvent.actor == "system:task") == 1


def test_failing_handler_is_counted_backs_off_and_succeeds_later(svc):
    with unit_of_work(svc.session_factory) as tx:
        mid = outbox.enqueue(tx.session, "test.task", {"kind": "x"})
    handler = _Recorder()
    handler.fail = 1
    queue = tasks.InProcessQueue(svc, {"test.task": handler})
    assert outbox.relay_once(svc.session_factory, queue) == 1
    with svc.session_factory() as s:
        row = s.get(OutboxMessage, mid)
        assert row.done_at is None and row.attempts == 1 and row.last_error_type == "ValueError"
        assert row.available_at > utcnow()
    assert outbox.relay_once(svc.session_factory, queue) == 0  # backing off
    assert outbox.relay_once(svc.session_factory, queue, now=utcnow() + timedelta(hours=2)) == 1
    assert len(handler.calls) == 1


def test_handed_over_but_lost_message_is_handed_over_again(svc):
    with unit_of_work(svc.session_factory) as tx:
        outbox.enqueue(tx.session, "test.task", {"kind": "x"})

    class Lost:
        sent: list[str] = []

        def send(self, message_id: str) -> None:
            self.sent.append(message_id)  # a broker that drops it

    lost = Lost()
    assert outbox.relay_once(svc.session_factory, lost) == 1
    assert outbox.relay_once(svc.session_factory, lost) == 0
    later = utcnow() + outbox.REDELIVER_AFTER + timedelta(seconds=1)
    assert outbox.relay_once(svc.session_factory, lost, now=later) == 1
    assert len(set(lost.sent)) == 1 and len(lost.sent) == 2


def test_a_periodic_job_starts_once_per_slot_across_processes(svc):
    job = outbox.Job("test.sweep", 300, "test.task", {"kind": "sweep"})
    now = utcnow()
    started: list[list[str]] = []
    barrier = threading.Barrier(4)

    def node() -> None:
        barrier.wait()
        started.append(outbox.schedule_due(svc.session_factory, [job], now=now))

    threads = [threading.Thread(target=node) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(s) for s in started) == 1
    assert _count(svc, ScheduledRun) == 1 and _count(svc, OutboxMessage) == 1
    assert outbox.schedule_due(svc.session_factory, [job], now=now + timedelta(seconds=300)) != []


def test_background_runner_expires_virtual_number_bindings(svc):
    runner = tasks.BackgroundRunner(svc, tasks.InProcessQueue(svc))
    runner.tick()
    with svc.session_factory() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.topic == "virtual_numbers.expire")).all()
    assert len(rows) == 1 and rows[0].done_at is not None


def test_unknown_topic_is_not_lost(svc):
    with unit_of_work(svc.session_factory) as tx:
        mid = outbox.enqueue(tx.session, "nobody.handles", {})
    outbox.relay_once(svc.session_factory, tasks.InProcessQueue(svc, {}))
    with svc.session_factory() as s:
        row = s.get(OutboxMessage, mid)
        assert row.done_at is None and row.last_error_type == "LookupError"



def _amqp_up() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=0.5):
            return True
    except OSError:
        return False


def _run_through_broker(env, broker_url: str) -> None:
    """Relay one message to a Dramatiq worker on ``broker_url`` and wait until its handler committed."""
    from dramatiq import Worker

    svc = env.services()
    queue = tasks.DramatiqQueue(svc, broker_url)
    queue.broker.flush_all()
    with unit_of_work(svc.session_factory) as tx:
        mid = outbox.enqueue(tx.session, "virtual_numbers.expire", {})
    worker = Worker(queue.broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert outbox.relay_once(svc.session_factory, queue) == 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with svc.session_factory() as s:
                if s.get(OutboxMessage, mid).done_at is not None:
                    break
            time.sleep(0.1)
        with svc.session_factory() as s:
            row = s.get(OutboxMessage, mid)
            assert row.done_at is not None and row.attempts == 0
    finally:
        worker.stop()
        queue.broker.flush_all()
        queue.broker.close()


# Slow (a real broker round trip): once, in the PostgreSQL pass of CI, like the other slow suites.
slow = pytest.mark.skipif(not os.environ.get("WAYBILL_TEST_DATABASE_URL"),
                          reason="broker tests run in the PostgreSQL pass")


@slow
@pytest.mark.skipif(not redis_up(), reason="Redis is not reachable (.ci/run starts it)")
def test_dramatiq_worker_over_redis_runs_relayed_messages(env):
    _run_through_broker(env, REDIS_URL)


@slow
@pytest.mark.skipif(not _amqp_up(), reason="RabbitMQ is not reachable (.ci/run starts it)")
def test_dramatiq_worker_over_rabbitmq_runs_relayed_messages(env):
    _run_through_broker(env, AMQP_URL)


def test_metrics_show_the_outbox_depth(env):
    from waybill.web.app import create_app

    svc = env.services()
    with unit_of_work(svc.session_factory) as tx:
        outbox.enqueue(tx.session, "test.task", {"kind": "x"})
        outbox.enqueue(tx.session, "test.task", {"kind": "y"})
    body = create_app(env.settings, services_override=svc).test_client().get("/metrics").data.decode()
    assert "waybill_outbox_depth 2.0" in body
