"""Who holds row locks right now? A probe for "no remote call while a transaction holds a row lock".

Two independent views, both taken at the moment a remote provider receives a request:

- in process, every connection of the service's engine is watched: one that has run a locking statement
  (``INSERT``/``UPDATE``/``DELETE`` or ``SELECT ... FOR UPDATE``) in its still-open transaction holds row
  locks until it commits or rolls back;
- on PostgreSQL, the database itself is asked: another transaction tries to lock every row of the tables
  a courier request touches with ``FOR UPDATE NOWAIT``; a row locked by anyone makes that fail at once.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

_LOCKING = ("insert", "update", "delete")
TABLES = ("shipments", "assignments", "vn_bindings", "vn_binding_endpoints", "vn_numbers", "staff_users",
          "staff_tokens", "qr_tokens")


class LockProbe:
    """Install on an engine; call :meth:`held` (e.g. from a fake provider's request hook)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._holding: dict[int, str] = {}  # id(dbapi connection) -> the first locking statement
        self._probing = threading.local()
        event.listen(engine, "before_cursor_execute", self._before)
        for name in ("commit", "rollback"):
            event.listen(engine, name, self._ended)

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        for name in ("commit", "rollback"):
            event.remove(self.engine, name, self._ended)

    def _before(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if getattr(self._probing, "on", False):
            return
        words = statement.lstrip().lower()
        if words.startswith(_LOCKING) or "for update" in words:
            with self._lock:
                self._holding.setdefault(id(conn.connection.dbapi_connection), statement.split("\n", 1)[0][:80])

    def _ended(self, conn: Any) -> None:
        with self._lock:
            self._holding.pop(id(conn.connection.dbapi_connection), None)

    def held(self) -> list[str]:
        """What holds row locks now: statements of open transactions, and rows PostgreSQL cannot lock."""
        with self._lock:
            found = [f"open transaction ran: {stmt}" for stmt in self._holding.values()]
        if self.engine.dialect.name == "postgresql":
            self._probing.on = True
            try:
                with self.engine.connect() as conn:
                    for table in TABLES:
                        try:
                            with conn.begin_nested():
                                conn.execute(text(f"SELECT 1 FROM {table} FOR UPDATE NOWAIT"))  # noqa: S608
                        except OperationalError:
                            found.append(f"a row of {table} is locked")
                    conn.rollback()
            finally:
                self._probing.on = False
        return found
