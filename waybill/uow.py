"""The unit of work: the one place that commits or rolls back, for HTTP requests, CLI commands and tasks.

A :class:`UnitOfWork` holds one session and what must happen around its end:

- **durable audit events** (refusals, failures; ``audit.record(..., durable=True)``) are written in a
  transaction of their own when the work is rolled back, so a refused attempt always leaves a trace;
- **kept refusals**: a domain refusal whose own bookkeeping must survive the error answer (the login
  failure counter and its audit events) calls :func:`keep_on_error`; the work then commits although the answer is an
  error. That is the one explicit mechanism: no view or command commits by itself;
- **compensations** for remote side effects (a binding created at a phone provider) registered with
  :func:`on_rollback` run when the work does not commit, so nothing remote outlives a rolled-back row;
- **after-commit callbacks** (:func:`after_commit`) run once the transaction is durable;
- **outbox messages** (:func:`waybill.outbox.enqueue` on the work's session) are rows in the same
  transaction: a message exists exactly when the business rows do.

Domain code only ever sees the session and flushes; the registrations above are reachable from the session
(``on_rollback(session, fn)``), so domain functions need no knowledge of Flask, click or the task queue.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from waybill import audit

log = logging.getLogger("waybill.uow")

_UOW_INFO = "waybill.uow"


class CommitFailed(Exception):
    """The transaction could not commit; ``reason`` is ``conflict`` (a unique key race) or ``unavailable``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass
class UnitOfWork:
    """One transaction and what happens around its end (see the module docstring)."""

    factory: sessionmaker[Session]
    context: audit.AuditContext | None = None
    _session: Session | None = None
    _keep: bool = False
    _compensations: list[Callable[[], None]] = field(default_factory=list)
    _after_commit: list[Callable[[], None]] = field(default_factory=list)
    _done: bool = False

    @property
    def session(self) -> Session:
        """The work's session, opened on first use."""
        if self._session is None:
            self._session = self.factory()
            self._session.info[_UOW_INFO] = self
            if self.context is not None:
                self._session.info[audit.CONTEXT_INFO] = self.context
        return self._session

    @property
    def opened(self) -> bool:
        return self._session is not None

    def keep_on_error(self) -> None:
        """Commit this work even though the answer will be an error (a refusal's own bookkeeping)."""
        self._keep = True

    def commit_so_far(self) -> None:
        """Commit what this work has done so far and go on in a new transaction of the same session.

        For a request that is about to do a long read outside its transaction (``GET /v1/audit/verify``): on
        SQLite a transaction holds the write lock from its first statement, so the authentication's short
        transaction ends before the walk instead of blocking every writer for its length. Raises
        :class:`CommitFailed` like :meth:`finish`; pending audit events are appended by this commit.
        """
        session = self._session
        if session is None or self._done:
            return
        try:
            session.commit()
        except IntegrityError:
            _rollback(session)
            raise CommitFailed("conflict") from None
        except DBAPIError as exc:
            _rollback(session)
            log.error("commit failed", extra={"error_type": type(exc).__name__})
            raise CommitFailed("unavailable") from None

    def on_rollback(self, compensation: Callable[[], None]) -> None:
        """Undo a remote side effect if this work does not commit (run once, newest first)."""
        self._compensations.append(compensation)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this work has committed."""
        self._after_commit.append(callback)

    def finish(self, *, success: bool) -> None:
        """Commit (``success`` or a kept refusal) or roll back; then close. Raises :class:`CommitFailed`."""
        if self._done:
            return
        self._done = True
        session = self._session
        if session is None:
            return
        # Taken before commit: if the commit fails, the hook that would have written them never finishes.
        durable = audit.take_durable(session)
        committed = False
        failure: CommitFailed | None = None
        try:
            if success or self._keep:
                audit.requeue(session, durable)
                try:
                    session.commit()
                    committed = True
                except IntegrityError:
                    _rollback(session)
                    failure = CommitFailed("conflict")
                except DBAPIError as exc:
                    _rollback(session)
                    log.error("commit failed", extra={"error_type": type(exc).__name__})
                    failure = CommitFailed("unavailable")
            else:
                _rollback(session)
        finally:
            _close(session)
        if committed:
            for callback in self._after_commit:
                _safely(callback, "after-commit callback failed")
            return
        for compensation in reversed(self._compensations):
            _safely(compensation, "compensation failed")
        try:
            write_durable(self.factory, durable)
        except DBAPIError as exc:
            log.error("durable audit write failed", extra={"error_type": type(exc).__name__})
            failure = failure or CommitFailed("unavailable")
        if failure is not None:
            raise failure


def _rollback(session: Session) -> None:
    """Roll back; on a connection the database dropped (a restart mid-request) there is nothing left to undo (the
    server ended the transaction with the session), so the driver's error is logged, not raised: the request's
    own answer (a 503 naming the database, waybill/web/errors.py) stays the answer."""
    try:
        session.rollback()
    except DBAPIError as exc:
        log.warning("rollback on a lost connection", extra={"error_type": type(exc).__name__})
        # Discarded, not handed back to the pool: its reset (one more ROLLBACK) would fail the same way.
        with contextlib.suppress(DBAPIError):
            session.invalidate()


def _close(session: Session) -> None:
    try:
        session.close()
    except DBAPIError as exc:  # as above: the connection is gone, the pool discards it
        log.warning("close on a lost connection", extra={"error_type": type(exc).__name__})


def write_durable(factory: sessionmaker[Session], events: Sequence[audit.PendingEvent]) -> None:
    """Write events that must outlive rolled-back work, in a transaction of their own."""
    if not events:
        return
    with factory() as session:
        audit.requeue(session, events)
        session.commit()


def _safely(fn: Callable[[], None], message: str) -> None:
    try:
        fn()
    except Exception as exc:  # one failing callback must not stop the others
        log.error(message, extra={"error_type": type(exc).__name__})


@contextmanager
def unit_of_work(factory: sessionmaker[Session], *,
                 context: audit.AuditContext | None = None) -> Iterator[UnitOfWork]:
    """``with unit_of_work(svc.session_factory) as tx:`` commits when the block ends normally, rolls back
    (writing durable audit events, running compensations) when it raises — ``SystemExit`` included."""
    tx = UnitOfWork(factory, context)
    try:
        yield tx
    except BaseException:
        with contextlib.suppress(CommitFailed):  # the original exception is the one to report
            tx.finish(success=False)
        raise
    tx.finish(success=True)


def current(session: Session) -> UnitOfWork | None:
    """The unit of work that owns ``session`` (None for a bare session, e.g. in a unit test)."""
    found = session.info.get(_UOW_INFO)
    return found if isinstance(found, UnitOfWork) else None


def on_rollback(session: Session, compensation: Callable[[], None]) -> None:
    """Domain-side registration of a compensation (ignored for a bare session outside any unit of work:
    whoever holds such a session, a unit test, owns its transaction)."""
    tx = current(session)
    if tx is not None:
        tx.on_rollback(compensation)


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Domain-side registration of an after-commit callback (ignored for a bare session, as above)."""
    tx = current(session)
    if tx is not None:
        tx.after_commit(callback)


def keep_on_error(session: Session) -> None:
    """Domain-side: this refusal's bookkeeping must commit although the caller answers with an error."""
    tx = current(session)
    if tx is not None:
        tx.keep_on_error()
