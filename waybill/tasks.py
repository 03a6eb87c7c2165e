"""The task queue behind the outbox: Dramatiq (Redis or RabbitMQ) when a broker is configured, this process
otherwise; the handlers and periodic jobs; the background runner of `waybill serve` and `waybill worker`.

Only this module imports Dramatiq. A task message carries nothing but an outbox id; the handler of its
topic runs in a unit of work of its own, as the principal ``system:task``, exactly once (see
:func:`waybill.outbox.run_message`). Upper layers add handlers and jobs through their extension
(``Extension.task_handlers``); waybill never imports them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from waybill import messages, outbox, partitions, retention, webhooks
from waybill import witnesses as audit_witness
from waybill.alerts import sweep as alert_sweep
from waybill.alerts.store import DELIVER_TOPIC as ALERT_TOPIC
from waybill.audit import checkpoints as audit_checkpoints
from waybill.extensions import load_extensions
from waybill.models import utcnow
from waybill.outbox import Handler, Job, TaskQueue
from waybill.services import Services
from waybill.settings import Settings
from waybill.uow import UnitOfWork
from waybill.virtual_numbers.store import RELEASE_TOPIC, StoredProvider
from waybill.webhooks import security as alert_delivery

log = logging.getLogger("waybill.tasks")

ACTOR_NAME = "waybill_outbox_message"
QUEUE_NAME = "waybill"
RELAY_INTERVAL_S = 1.0
RETENTION_TOPIC = "retention.run"
PARTITIONS_TOPIC = "db.partitions"
CHECKPOINT_TOPIC = "audit.checkpoint"


def _expire_bindings(svc: Services) -> Handler:
    def handler(tx: UnitOfWork, _payload: Mapping[str, Any]) -> None:
        provider = svc.provider
        # Bindings are expired lazily at every bind too; the sweep frees numbers when nobody binds.
        if isinstance(provider, StoredProvider):
            provider.expire_due(tx.session, utcnow())

    return handler


def _release_remote(svc: Services) -> Handler:
    def handler(tx: UnitOfWork, payload: Mapping[str, Any]) -> None:
        provider = svc.provider
        # A release reached the local rows; tell the remote provider (idempotent; a failure is retried).
        if isinstance(provider, StoredProvider):
            provider.sync_remote_release(tx.session, str(payload["binding_id"]))
    return handler


def _retention_run(svc: Services) -> Handler:
    def handler(tx: UnitOfWork, _payload: Mapping[str, Any]) -> None:
        # The run commits chunk by chunk in its own transactions (the service keeps answering meanwhile); it is
        # idempotent, so a redelivery after a crash finishes what the first delivery began. The message's own
        # transaction ends first: on SQLite it holds the write lock, which the run's transactions would wait
        # for (30 s busy timeout, then fail) while every request of the process waited behind them.
        tx.commit_so_far()
        retention.run(svc, outbox.TASK_PRINCIPAL)
    return handler


def _make_partitions(tx: UnitOfWork, _payload: Mapping[str, Any]) -> None:
    # The month partitions ahead (PostgreSQL; nothing on SQLite). A lock not had within partitions.LOCK_TIMEOUT
    # fails the run, which is retried; the months ahead leave weeks for that.
    made = partitions.ensure(tx.session.connection(), utcnow())
    if made:
        log.info("partitions made", extra={"count": len(made)})


def _alert_sweep(svc: Services) -> Handler:
    def handler(tx: UnitOfWork, _payload: Mapping[str, Any]) -> None:
        # Chunk by chunk in transactions of its own (the cursor moves with each), like the retention run: the
        # message's own transaction ends first (on SQLite it holds the write lock the chunks need).
        tx.commit_so_far()
        result = alert_sweep.run(svc.session_factory, svc.settings.alerts)
        if result.fired:
            log.info("alert sweep", extra={"fired": result.fired, "events": result.seq_to - result.seq_from})
    return handler


def _audit_checkpoint(svc: Services) -> Handler:
    signer = audit_checkpoints.Signer(svc.keys)

    def handler(tx: UnitOfWork, _payload: Mapping[str, Any]) -> None:
        # A refusal (a chain rewound behind the last checkpoint) is logged and audited by issue(); the next slot
        # tries again. A witness that failed raises: the outbox retries, and a file witness catches up then.
        audit_witness.issue(tx, signer, audit_witness.make(svc.settings.audit_witness), outbox.TASK_PRINCIPAL)
    return handler


def handlers(svc: Services) -> dict[str, Handler]:
    """Every topic's handler: waybill's own and those of the installed extensions."""
    found: dict[str, Handler] = {"virtual_numbers.expire": _expire_bindings(svc),
                                 RELEASE_TOPIC: _release_remote(svc), RETENTION_TOPIC: _retention_run(svc),
                                 messages.TOPIC: messages.handler(svc),
                                 messages.EXPIRE_TOPIC: messages.expire_handler(svc),
                                 messages.SUPPRESSED_TOPIC: messages.suppressed_handler(svc),
                                 webhooks.TOPIC: webhooks.handler(svc), webhooks.PRUNE_TOPIC: webhooks.prune_handler(),
                                 ALERT_TOPIC: alert_delivery.handler(svc), alert_sweep.TOPIC: _alert_sweep(svc),
                                 PARTITIONS_TOPIC: _make_partitions, CHECKPOINT_TOPIC: _audit_checkpoint(svc)}
    for ext in load_extensions():
        for topic, handler in ext.task_handlers(svc).items():
            if topic in found:
                raise RuntimeError(f"two handlers for task topic {topic}")
            found[topic] = handler
    return found


def jobs(settings: Settings | None = None) -> list[Job]:
    """The periodic jobs (each runs once per period across every process of every node); ``settings`` give the
    configurable periods (the audit checkpoints')."""
    found = [Job("virtual_numbers.expire", 300, "virtual_numbers.expire", {}),
             # Daily (slots of whole UTC days: 08:00 China Standard Time, off the evening peak).
             Job(RETENTION_TOPIC, 86400, RETENTION_TOPIC, {}),
             Job(messages.EXPIRE_TOPIC, 3600, messages.EXPIRE_TOPIC, {}),
             Job(webhooks.PRUNE_TOPIC, 3600, webhooks.PRUNE_TOPIC, {}),
             # The alert rules that need history (volume_baseline): every 5 minutes, incremental.
             Job(alert_sweep.TOPIC, alert_sweep.EVERY_S, alert_sweep.TOPIC, {}),
             # The month partitions of the big tables, MONTHS_AHEAD months ahead (daily: months have weeks).
             Job(PARTITIONS_TOPIC, 86400, PARTITIONS_TOPIC, {})]
    minutes = (settings or Settings()).audit_checkpoint_minutes
    if minutes:
        found.append(Job(CHECKPOINT_TOPIC, minutes * 60, CHECKPOINT_TOPIC, {}))
    for ext in load_extensions():
        found.extend(ext.periodic_jobs())
    return found


class InProcessQueue:
    """The embedded default: a relayed message runs right here, in the relaying thread."""

    def __init__(self, svc: Services, table: Mapping[str, Handler] | None = None) -> None:
        self._svc = svc
        self._handlers = table if table is not None else handlers(svc)

    def send(self, message_id: str) -> None:
        try:
            outbox.run_message(self._svc.session_factory, self._handlers, message_id)
        except Exception:  # counted on the row by run_message; the relay hands it over again later
            log.debug("in-process task failed", extra={"message_id": message_id})


class DramatiqQueue:
    """Message ids go to a Dramatiq actor on the configured broker; `waybill worker` processes run them."""

    def __init__(self, svc: Services, broker_url: str) -> None:
        import dramatiq

        self._svc = svc
        self.broker = make_broker(broker_url)
        table_holder: dict[str, Mapping[str, Handler]] = {}

        def run(message_id: str) -> None:
            table = table_holder.get("t")
            if table is None:
                table = table_holder["t"] = handlers(svc)
            outbox.run_message(svc.session_factory, table, message_id)

        # Retries with Dramatiq's exponential backoff; the outbox row also counts attempts.
        decorate = dramatiq.actor(actor_name=ACTOR_NAME, queue_name=QUEUE_NAME, broker=self.broker,
                                  max_retries=10, min_backoff=1000, max_backoff=600_000)
        self.actor: Any = decorate(run)

    def send(self, message_id: str) -> None:
        self.actor.send(message_id)


#: Redis broker: a worker none of whose broker commands (fetches, acks: each is a heartbeat) arrived for this long
#: is taken for dead, and the messages it had taken but not acknowledged go back to the queue (Dramatiq's default).
#: Longer than a live worker's longest silence (every thread on a task, nothing prefetched left to ask for); a
#: task that outlasts it may run a second time meanwhile, which the outbox makes harmless (run_message: the row
#: lock, the done marker; the handlers' own leases and cursors).
BROKER_HEARTBEAT_TIMEOUT_MS = 60_000
#: Per million broker commands, how many also look for dead workers. Dramatiq's default (1,000) left a killed
#: worker's task waiting ~7 minutes on average behind an idle queue (~2 commands a second per worker), i.e. until
#: the outbox's own REDELIVER_AFTER; at 100,000 it is requeued within seconds of the heartbeat timeout, for one
#: cheap sorted-set range query per ten commands.
BROKER_MAINTENANCE_CHANCE = 100_000


def make_broker(url: str) -> Any:
    """A Dramatiq broker for ``redis://``/``rediss://`` or ``amqp://``/``amqps://`` URLs.

    Either way a message is acknowledged only after its actor returned (Dramatiq acks late): a worker killed
    mid-task leaves it unacknowledged, and the broker hands it to another worker — RabbitMQ as soon as the dead
    worker's connection drops, Redis once its heartbeat is :data:`BROKER_HEARTBEAT_TIMEOUT_MS` old.
    """
    if url.startswith(("redis://", "rediss://")):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url, heartbeat_timeout=BROKER_HEARTBEAT_TIMEOUT_MS,  # type: ignore[no-untyped-call]
                           maintenance_chance=BROKER_MAINTENANCE_CHANCE)
    if url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url)
    raise ValueError("broker URL must be redis://, rediss://, amqp:// or amqps://")


def make_queue(svc: Services) -> TaskQueue:
    """The configured queue: Dramatiq when WAYBILL_BROKER_URL is set, in-process otherwise."""
    url = svc.settings.broker_url
    return DramatiqQueue(svc, url) if url else InProcessQueue(svc)


def start_in_process(svc: Services) -> BackgroundRunner | None:
    """Without a broker, `waybill serve` relays and runs tasks itself (each worker process; the outbox
    claims rows, so they share the work): start that here. With a broker, `waybill worker` does it."""
    if svc.settings.broker_url:
        return None
    runner = BackgroundRunner(svc, InProcessQueue(svc))
    runner.start()
    return runner


class BackgroundRunner:
    """Relays the outbox and starts periodic jobs, every second and whenever a commit of this process enqueued work,
    in a daemon thread until stopped."""

    def __init__(self, svc: Services, queue: TaskQueue, job_list: Sequence[Job] | None = None,
                 interval_s: float = RELAY_INTERVAL_S, clock: Callable[[], Any] = utcnow) -> None:
        self._svc, self._queue = svc, queue
        self._jobs = list(job_list) if job_list is not None else jobs(svc.settings)
        self._interval = interval_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> int:
        """One round: start due jobs, relay due messages; returns how many messages were relayed."""
        factory = self._svc.session_factory
        outbox.schedule_due(factory, self._jobs, now=self._clock())
        sent = outbox.relay_once(factory, self._queue, now=self._clock())
        if sent >= outbox.BACKLOG_WARNING:
            log.warning("outbox backlog", extra={"count": sent})
        return sent

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="waybill-outbox", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while self.tick() >= outbox.BATCH and not self._stop.is_set():
                    pass  # a full batch: there is more, go on at once
            except Exception as exc:  # the database may be down for a while; try again next round
                log.error("outbox relay failed", extra={"error_type": type(exc).__name__})
            # Until the interval passes, or a commit of this process enqueued work (webhook lag: a delivery starts
            # right after the status change commits, not up to a poll later; other processes' work waits the poll).
            outbox.wait_for_work(self._interval)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        outbox.wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
