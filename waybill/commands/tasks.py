"""`waybill worker` and `waybill outbox ...`: background tasks through the transactional outbox."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from waybill import outbox, tasks
from waybill.commands import common as cli
from waybill.models import OutboxMessage
from waybill.uow import unit_of_work


def register(main: click.Group) -> None:
    """Add the task commands to ``main``."""

    @main.command("worker")
    @click.option("--threads", default=4, show_default=True, type=int, help="task threads of this process")
    def worker(threads: int) -> None:
        """Run background tasks from the broker (WAYBILL_BROKER_URL) and relay the outbox; Ctrl-C stops."""
        settings = cli.read_settings()
        if not settings.broker_url:
            cli.fail({"ok": False, "error": {"code": "no_broker", "message": (
                "WAYBILL_BROKER_URL is not set: `waybill serve` runs tasks in-process on the embedded default")}},
                2)
        svc = cli.ready_services(settings)
        from dramatiq import Worker

        queue = tasks.DramatiqQueue(svc, settings.broker_url)
        runner = tasks.BackgroundRunner(svc, queue)
        dramatiq_worker = Worker(queue.broker, worker_threads=max(1, threads))
        stop = threading.Event()

        def _stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        dramatiq_worker.start()
        runner.start()
        cli.emit({"ok": True, "worker": "started", "threads": threads})
        stop.wait()
        runner.stop()
        dramatiq_worker.stop()
        cli.emit({"ok": True, "worker": "stopped"})

    @main.group("outbox")
    def outbox_group() -> None:
        """Inspect and drive the background-task outbox."""

    @outbox_group.command("status")
    def status() -> None:
        """How many messages are waiting, and how many failed at least once (no payloads are shown)."""
        svc = cli.existing_services(cli.read_settings())
        with unit_of_work(svc.session_factory) as tx:
            s = tx.session
            waiting = outbox.backlog(s)
            failing = s.query(OutboxMessage).filter(OutboxMessage.done_at.is_(None),
                                                    OutboxMessage.attempts > 0).count()
        cli.emit({"ok": True, "waiting": waiting, "failing": failing})

    @outbox_group.command("relay")
    def relay() -> None:
        """One round by hand: start due periodic jobs and hand due messages to the queue."""
        svc = cli.ready_services(cli.read_settings())
        sent = tasks.BackgroundRunner(svc, tasks.make_queue(svc)).tick()
        cli.emit({"ok": True, "relayed": sent})
