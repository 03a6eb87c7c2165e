"""Engine, sessions and schema migration (always through Alembic)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from waybill.keyfile import KeyMaterial


def owner_only(path: Path, mode: int) -> bool:
    """Take group and other permissions away from ``path`` if it exists; True when it had any (logged)."""
    try:
        current = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return False
    if current & 0o077:
        os.chmod(path, mode)
        logging.getLogger("waybill.db").warning("permissions tightened to owner-only", extra={
            "check": path.name, "mode_before": f"{current:o}", "mode_after": f"{mode:o}"})
        return True
    return False


#: Seconds a PostgreSQL connection attempt may take (libpq's ``connect_timeout``).
CONNECT_TIMEOUT_S = 3


def make_engine(url: str, *, write_lock: bool = True, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys, a busy timeout and (if ``write_lock``)
    transactions that take the write lock when they begin.

    ``write_lock=False`` is for read-only side lookups (the vault's key table) that must not wait
    for the write lock a request's own transaction already holds.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Owner-only from the first byte; SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            # A file that already existed keeps its mode: a 0644 database (a copy, a restore) is tightened.
            for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                owner_only(existing, 0o600)
        # hide_parameters: an exception's text never quotes bound values (they may be personal data).
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               hide_parameters=True, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin, so that
            # savepoints work and BEGIN IMMEDIATE can be used.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            # Deleted and overwritten content is zeroed, not left in free pages: destroyed de-identified data
            # (a district beside a region) must not stay readable in the file (waybill/retention.py).
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
            # writes can fail at once with "database is locked" under concurrency instead of waiting.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write_lock else "BEGIN")

        return engine
    # A checked-out connection is pinged first: one the server dropped (a restart, a failover, an idle timeout) is
    # replaced instead of failing the request; a disconnect seen mid-statement invalidates the whole pool.
    kwargs.setdefault("pool_pre_ping", True)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # An unreachable server fails a connection attempt in seconds, not the OS's minutes-long TCP timeout:
        # requests answer 503 at once (waybill/web/errors.py) instead of holding every thread. The URL's own
        # ``?connect_timeout=`` wins.
        connect_args = dict(kwargs.pop("connect_args", None) or {})
        connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        kwargs["connect_args"] = connect_args
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, hide_parameters=True, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def alembic_config(engine_or_url: Engine | str) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    script_location = str(resources.files("migrations"))
    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    if isinstance(engine_or_url, str):
        cfg.set_main_option("sqlalchemy.url", engine_or_url.replace("%", "%%"))
    else:
        cfg.attributes["engine"] = engine_or_url
    return cfg


def upgrade(engine: Engine, revision: str = "head", *, keys: KeyMaterial | None = None, cipher: str | None = None,
            blind_index_bits: int | None = None, keystore: Any = None) -> None:
    """Create or upgrade the schema to ``revision`` through the migrations.

    Data migrations that encrypt or re-index existing rows (0015, 0016) read ``keys``, ``cipher``,
    ``blind_index_bits`` and ``keystore`` (the period-key store, 0016) from the Alembic config's attributes;
    without keys they refuse a non-empty table.
    """
    cfg = alembic_config(engine)
    cfg.attributes.update(keys=keys, cipher=cipher, blind_index_bits=blind_index_bits, keystore=keystore)
    command.upgrade(cfg, revision)
    from waybill import partitions

    with engine.begin() as conn:  # the month partitions ahead (PostgreSQL; nothing to do elsewhere)
        partitions.ensure(conn, datetime.now(UTC))


# --- is the live schema the one the models expect? (what `alembic check` compares) -------------------------


class SchemaMismatch(RuntimeError):
    """The database is not at the head revision, or it is but its tables differ from the models."""

    def __init__(self, message: str, report: SchemaReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class SchemaReport:
    """The live schema against the head revision and the models; names only, never row values."""

    current: tuple[str, ...]
    head: str
    differences: tuple[dict[str, str], ...]

    @property
    def at_head(self) -> bool:
        return self.current == (self.head,)

    @property
    def ok(self) -> bool:
        return self.at_head and not self.differences

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "current": list(self.current), "head": self.head,
                "differences": [dict(d) for d in self.differences]}


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(""))


def head_revision() -> str:
    """The single head of the migrations (a second head is a broken merge, refused here)."""
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {', '.join(sorted(heads))}")
    return heads[0]


def current_revisions(conn: Connection) -> tuple[str, ...]:
    """The revisions recorded in the database (empty before the first migration)."""
    return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))


def model_metadata() -> MetaData:
    """``Base.metadata`` with every model module loaded, as ``migrations/env.py`` loads them."""
    import waybill.alerts.models  # noqa: F401  (registers the alert and suspension tables)
    import waybill.alerts.sweep_models  # noqa: F401  (registers the alert sweep's cursor and counts)
    import waybill.audit.models  # noqa: F401  (registers the audit checkpoint log)
    import waybill.canaries.models  # noqa: F401  (registers the canaries table)
    import waybill.incidents.models  # noqa: F401  (registers the incident register's tables)
    import waybill.messages.models  # noqa: F401  (registers the message table)
    import waybill.virtual_numbers.models  # noqa: F401  (registers the virtual-number tables)
    import waybill.webhooks.models  # noqa: F401  (registers the webhook tables)
    from waybill.entrypoints import EXTENSIONS_GROUP, load_group
    from waybill.models import Base

    load_group(EXTENSIONS_GROUP)  # the extensions' tables (the courier side's staff tables) join the metadata
    return Base.metadata


def _name(obj: Any) -> str:
    return str(getattr(obj, "name", None) or "")


def _type(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a type without a generic rendering: its class is enough for an operator
        return type(value).__name__


def _table_of(obj: Any) -> str:
    table = getattr(obj, "table", None)
    return _name(table) if table is not None else ""


def describe_difference(diff: Any) -> dict[str, str]:
    """One autogenerate difference as names: which table, column, index or constraint, and how.

    ``add_*`` means the models have it and the database does not; ``remove_*`` the reverse. Defaults are
    named as changed without their values.
    """
    if isinstance(diff, list):  # column modifications come grouped: (op, schema, table, column, ...)
        first = diff[0]
        out = {"op": str(first[0]), "table": str(first[2]), "column": str(first[3])}
        for item in diff:
            if item[0] in ("modify_type", "modify_nullable"):
                kind = "type" if item[0] == "modify_type" else "nullable"
                out[f"database_{kind}"] = _type(item[5])
                out[f"models_{kind}"] = _type(item[6])
            elif len(diff) > 1:
                out["op"] = "modify_column"
        return out
    op = str(diff[0])
    if op in ("add_column", "remove_column"):
        column: Column[Any] = diff[3]
        return {"op": op, "table": str(diff[2]), "column": _name(column)}
    target = diff[1]
    if op in ("add_table", "remove_table"):
        return {"op": op, "table": _name(target)}
    out = {"op": op, "table": _table_of(target), "name": _name(target)}
    columns = getattr(target, "columns", None)
    if columns is not None:
        out["columns"] = ",".join(_name(c) for c in columns)
    return out


# Partitions of a partitioned table (PostgreSQL declarative partitioning, which the scale-out work adds for
# the audit log and the outbox) are named ``<parent>_p<suffix>`` and created at run time, not by a migration:
# known to the check, never reported as drift.
_PARTITION = re.compile(r"(?P<parent>[a-z_]+)_p[0-9a-z_]+")


def is_partition(name: str | None, metadata: MetaData) -> bool:
    """Whether ``name`` is a run-time partition of a table of ``metadata``."""
    found = _PARTITION.fullmatch(name or "")
    return found is not None and found.group("parent") in metadata.tables


def partitioned_forms(conn: Connection, metadata: MetaData) -> set[tuple[str, str]]:
    """(table, constraint) pairs that a partitioned table holds in its partitioned form: PostgreSQL wants the
    partition key in every unique constraint, so the models' ``uq`` of ``(a, b)`` is ``(a, b, at)`` there
    (migration 0030). Those are not drift; any other difference of those constraints still is."""
    from sqlalchemy import UniqueConstraint, inspect

    from waybill import partitions

    forms: set[tuple[str, str]] = set()
    tables = partitions.partitioned_tables(conn)
    if not tables:
        return forms
    inspector = inspect(conn)
    for table in tables:
        key = partitions.PARTITIONED[table]
        live = {u["name"]: list(u["column_names"]) for u in inspector.get_unique_constraints(table)}
        for constraint in metadata.tables[table].constraints:
            if isinstance(constraint, UniqueConstraint) and isinstance(constraint.name, str) \
                    and live.get(constraint.name) == [c.name for c in constraint.columns] + [key]:
                forms.add((table, constraint.name))
    return forms


def include_object_for(conn: Connection, metadata: MetaData) -> Any:
    """The ``include_object`` hook of the comparison (``waybill db check``, ``migrations/env.py``): run-time
    partitions and the partitioned form of a unique constraint (:func:`partitioned_forms`) are not drift."""
    from waybill import partitions

    forms = partitioned_forms(conn, metadata)
    # PostgreSQL: a partition is a table attached to its parent, not merely one named like it (a stray copy named
    # audit_events_p2026_12 is drift there). Elsewhere there are no partitions to ask about: the name decides.
    attached: set[str] | None = None
    if conn.dialect.name == "postgresql":
        attached = {p.name for t in partitions.partitioned_tables(conn) for p in partitions.partitions(conn, t)}

    def known(table_name: str | None) -> bool:
        return is_partition(table_name, metadata) and (attached is None or table_name in attached)

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, _compare_to: Any) -> bool:
        if type_ == "table" and reflected and known(name):
            return False
        table = getattr(obj, "table", None)
        table_name = getattr(table, "name", None)
        if type_ in ("unique_constraint", "index") and (table_name, name) in forms:
            return False
        return not (reflected and table is not None and known(table_name))

    return include_object


def schema_report(engine: Engine) -> SchemaReport:
    """Compare the live schema with the head revision and the models (``alembic check``'s comparison)."""
    head = head_revision()
    metadata = model_metadata()
    with engine.connect() as conn:
        current = current_revisions(conn)
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "include_object": include_object_for(conn, metadata)})
        diffs: Sequence[Any] = compare_metadata(ctx, metadata)
    return SchemaReport(current, head, tuple(describe_difference(d) for d in diffs))


def check_schema(engine: Engine) -> SchemaReport:
    """The schema report, or :class:`SchemaMismatch` when the database is not the head schema."""
    report = schema_report(engine)
    if not report.at_head:
        raise SchemaMismatch(f"the database is at revision {','.join(report.current) or 'none'}, "
                             f"not at head {report.head}: run `waybill db upgrade`", report)
    if report.differences:
        raise SchemaMismatch(f"the database is marked {report.head} but its tables differ from that revision "
                             f"in {len(report.differences)} places; restore it or repair the schema before "
                             "serving (see `waybill db check`)", report)
    return report
