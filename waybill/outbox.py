"""Background work through a transactional outbox: enqueue in the caller's transaction, relay, run once.

- :func:`enqueue` adds an :class:`~waybill.models.OutboxMessage` row to the caller's session: the task
  exists exactly when the work that asked for it commits. Payloads hold ids and enum values only.
- :func:`relay_once` claims due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several relays share the
  work; SQLite serialises writers anyway) and hands each message *id* to the task queue
  (:mod:`waybill.tasks`). Rows handed over long ago but never done are handed over again: a queue that
  lost a message (a broker restart) costs a delay, never the task.
- :func:`run_message` is what a worker does with an id: in its own unit of work, lock the row, skip it if
  it is done already (deliveries are at least once, handlers run once), run the topic's handler, mark it
  done — all in one commit. A failing handler rolls back; the failure is counted on the row and the queue
  retries it later.
- :func:`wait_for_work` lets this process's relay sleep until a transaction that enqueued something commits
  (or its poll interval passes): in-process work starts right after the commit instead of up to a poll later.
- :func:`schedule_due` starts periodic jobs: one row per (job, slot) with a unique key, so of all the
  processes on all the nodes exactly one enqueues each slot's run.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from waybill.ids import new_id
from waybill.models import OutboxMessage, ScheduledRun, utcnow
from waybill.permissions import Principal
from waybill.uow import UnitOfWork, unit_of_work

log = logging.getLogger("waybill.outbox")

TASK_PRINCIPAL = Principal(kind="system", id="task", role="system")
BATCH = 100
REDELIVER_AFTER = timedelta(minutes=10)  # handed over, not done: hand over again
MAX_ATTEMPTS = 25  # then the message stays undone for an operator (see `waybill outbox status`)
BACKLOG_WARNING = 100

# Ids (``shp_01H...``), enum values (``retention``), and small numbers: nothing that could be a name, a
# phone number (a string of digits is refused), an address or a token.
_ID_OR_ENUM = re.compile(r"[a-z]{2,8}_[0-9A-HJKMNP-TV-Z]{26}|[a-z][a-z0-9_.]{0,63}")
_TOPIC = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


_WAKE_INFO = "waybill.outbox.wake"
_work = threading.Event()


def _committed(session: Session) -> None:
    if session.info.pop(_WAKE_INFO, False):
        _work.set()


def _rolled_back(session: Session) -> None:
    session.info.pop(_WAKE_INFO, None)


# Every session of the process: a commit that enqueued a message wakes the relay (one dict lookup otherwise).
event.listen(Session, "after_commit", _committed)
event.listen(Session, "after_rollback", _rolled_back)


def wake() -> None:
    """Wake the relay now (a commit that enqueued work does this by itself; so does stopping the relay)."""
    _work.set()


def wait_for_work(timeout_s: float) -> bool:
    """Sleep until a commit enqueued work in this process, or ``timeout_s``; True when woken by work."""
    woken = _work.wait(timeout_s)
    _work.clear()
    return woken


class BadPayload(ValueError):
    """A payload value that is not an id, an enum value, a bool or a small integer."""


def _check_value(key: str, value: object) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) >= 10**6:  # phone numbers are large integers
            raise BadPayload(f"payload {key}: integers must be below one million")
        return
    if isinstance(value, str):
        if _ID_OR_ENUM.fullmatch(value) is None:
            raise BadPayload(f"payload {key}: strings must be ids or enum values")
        return
    if isinstance(value, list):
        for item in value:
            _check_value(key, item)
        return
    raise BadPayload(f"payload {key}: unsupported type {type(value).__name__}")


def enqueue(session: Session, topic: str, payload: Mapping[str, object], *, delay_s: float = 0,
            now: datetime | None = None) -> str:
    """Add a message to the outbox in ``session``'s transaction; returns its id."""
    if _TOPIC.fullmatch(topic) is None or len(topic) > 64:
        raise BadPayload("topic must look like 'area.action'")
    for key, value in payload.items():
        if re.fullmatch(r"[a-z][a-z0-9_]{0,31}", key) is None:
            raise BadPayload("payload keys must be short snake_case names")
        _check_value(key, value)
    now = now or utcnow()
    message_id = new_id("obx")
    session.add(OutboxMessage(id=message_id, topic=topic, payload=dict(payload), created_at=now,
                              available_at=now + timedelta(seconds=max(0.0, delay_s)), attempts=0))
    session.flush()
    if delay_s <= 0:
        session.info[_WAKE_INFO] = True
    return message_id


#: What a handler gets: its unit of work (session, enqueue, compensations) and the message payload.
Handler = Callable[[UnitOfWork, Mapping[str, Any]], None]


class TaskQueue(Protocol):
    """Where relayed message ids go: a broker (Dramatiq over Redis or RabbitMQ) or this process."""

    def send(self, message_id: str) -> None:
        """Hand one outbox message id over for execution (at least once)."""


@dataclass(frozen=True)
class Job:
    """A periodic job: every ``every_s`` seconds one message of ``topic`` with ``payload``."""

    name: str
    every_s: int
    topic: str
    payload: Mapping[str, object]


def relay_once(factory: sessionmaker[Session], queue: TaskQueue, *, now: datetime | None = None,
               batch: int = BATCH) -> int:
    """Hand due messages to ``queue``; returns how many were handed over."""
    now = now or utcnow()
    with unit_of_work(factory) as tx:
        s = tx.session
        due = (OutboxMessage.sent_at.is_(None) & (OutboxMessage.available_at <= now)) | (
            OutboxMessage.sent_at.is_not(None) & OutboxMessage.done_at.is_(None)
            & (OutboxMessage.sent_at <= now - REDELIVER_AFTER) & (OutboxMessage.attempts < MAX_ATTEMPTS))
        rows = s.scalars(select(OutboxMessage).where(due).order_by(OutboxMessage.available_at)
                         .limit(batch).with_for_update(skip_locked=True)).all()
        for row in rows:
            row.sent_at = now
        ids = [row.id for row in rows]
    # Handed over after the commit: a worker that picks an id up at once finds the row's sent_at set.
    for message_id in ids:
        queue.send(message_id)
    return len(ids)


def run_message(factory: sessionmaker[Session], handlers: Mapping[str, Handler], message_id: str, *,
                now: datetime | None = None) -> bool:
    """Run one message's handler exactly once; True when it ran now, False when done already or unknown.

    Raises what the handler raised (after counting the attempt), so the queue can retry it.
    """
    try:
        with unit_of_work(factory) as tx:
            row = tx.session.scalars(select(OutboxMessage).where(OutboxMessage.id == message_id)
                                     .with_for_update()).first()
            if row is None or row.done_at is not None:
                return False
            handler = handlers.get(row.topic)
            if handler is None:
                raise LookupError(f"no handler for topic {row.topic}")
            handler(tx, row.payload)
            row.done_at = now or utcnow()
            row.sent_at = row.sent_at or row.done_at
            return True
    except Exception as exc:
        _count_failure(factory, message_id, type(exc).__name__)
        log.warning("task failed", extra={"message_id": message_id, "error_type": type(exc).__name__})
        raise


def _count_failure(factory: sessionmaker[Session], message_id: str, error_type: str) -> None:
    with unit_of_work(factory) as tx:
        row = tx.session.get(OutboxMessage, message_id)
        if row is not None:
            row.attempts += 1
            row.last_error_type = error_type[:64]
            # Back off before the relay hands it over again (the queue may retry sooner by itself).
            row.sent_at = None
            row.available_at = utcnow() + timedelta(seconds=min(3600, 2 ** min(row.attempts, 12)))


def schedule_due(factory: sessionmaker[Session], jobs: Sequence[Job], *, now: datetime | None = None) -> list[str]:
    """Enqueue the current slot's run of every job that has not started yet (once across all nodes)."""
    now = now or utcnow()
    started: list[str] = []
    for job in jobs:
        slot = math.floor(now.timestamp() / job.every_s)
        try:
            with unit_of_work(factory) as tx:
                message_id = enqueue(tx.session, job.topic, job.payload, now=now)
                tx.session.add(ScheduledRun(job=job.name, slot=slot, outbox_id=message_id, created_at=now))
                tx.session.flush()
        except IntegrityError:
            continue  # another process started this slot: the insert (and its message) rolled back
        started.append(message_id)
    return started


def backlog(session: Session) -> int:
    """Messages not done yet (the outbox depth)."""
    return int(session.scalar(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.done_at.is_(None))) or 0)
