"""Set-based inserts at the driver's speed: for rows of a known shape, SQLAlchemy's per-row parameter handling
(compiling, keying, processing every bound value of every row) costs more than the database's work.

A :class:`BulkInsert` renders its statement text once per dialect and asks each column's own bind processor once
(so values are stored exactly as the ORM or a Core insert would store them: aware datetimes in the stored text
form on SQLite, JSON as text); each call converts the rows to tuples and hands them to the driver's
``executemany`` (``COPY`` on PostgreSQL for tables whose rows cannot conflict). ``None`` is SQL ``NULL`` in every
column, JSON ones included (what an ORM object leaves unset), never the JSON text ``null``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.exc import DBAPIError

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Prepared:
    sql: str
    copy_sql: str
    processors: tuple[tuple[int, Processor], ...]


class BulkInsert:
    """``INSERT INTO table (columns) VALUES ...`` for many rows; with ``ignore_conflicts``, rows that would break a
    unique constraint are skipped (``ON CONFLICT DO NOTHING``) instead of failing the statement."""

    def __init__(self, table: Table, columns: Sequence[str], *, ignore_conflicts: bool = False) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.ignore_conflicts = ignore_conflicts
        self._prepared: dict[str, _Prepared] = {}
        self._lock = threading.Lock()

    def _prepare(self, dialect: Dialect) -> _Prepared:
        found = self._prepared.get(dialect.name)
        if found is not None:
            return found
        quote = dialect.identifier_preparer.quote
        names = ", ".join(quote(c) for c in self.columns)
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        # Only the table's own identifiers, quoted by the dialect, go into the text; values are always bound.
        sql = (f"INSERT INTO {quote(self.table.name)} ({names}) VALUES ({', '.join(mark for _ in self.columns)})"  # noqa: S608
               + (" ON CONFLICT DO NOTHING" if self.ignore_conflicts else ""))
        processors = []
        for i, name in enumerate(self.columns):
            processor = self.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.append((i, processor))
        found = _Prepared(sql, f"COPY {quote(self.table.name)} ({names}) FROM STDIN", tuple(processors))
        with self._lock:
            self._prepared[dialect.name] = found
        return found

    @staticmethod
    def _tuples(prepared: _Prepared, rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
        processors = prepared.processors
        out = []
        for row in rows:
            values = list(row)
            for i, processor in processors:
                if values[i] is not None:
                    values[i] = processor(values[i])
            out.append(tuple(values))
        return out

    def execute(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
        """Insert ``rows`` (each the values of :attr:`columns`, in order); returns how many were inserted."""
        if not rows:
            return 0
        prepared = self._prepare(conn.dialect)
        tuples = self._tuples(prepared, rows)
        if conn.dialect.name == "postgresql" and not self.ignore_conflicts:
            # COPY: one stream for the lot, the cheapest way into PostgreSQL (nothing to skip, so nothing lost).
            driver = conn.connection.driver_connection
            assert driver is not None
            error: type[Exception] = conn.dialect.loaded_dbapi.Error
            try:
                with driver.cursor() as cursor, cursor.copy(prepared.copy_sql) as copy:
                    for values in tuples:
                        copy.write_row(values)
            except error as exc:
                # Past SQLAlchemy, so wrapped as it wraps a driver error: callers catch its classes (a lost
                # connection is an OperationalError, a broken constraint an IntegrityError), never the driver's.
                raise DBAPIError.instance(prepared.copy_sql, None, exc, error, hide_parameters=True,
                                          dialect=conn.dialect) from exc
            return len(tuples)
        result = conn.exec_driver_sql(prepared.sql, tuples)
        return int(result.rowcount)
