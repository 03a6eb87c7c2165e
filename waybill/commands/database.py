"""`waybill db current|upgrade|history|check|partitions`: the schema's revision, its migrations, drift, and the
month partitions of the big tables (PostgreSQL).

These commands need the database only, so an operator can inspect and upgrade a database before the keys
are in place; `upgrade` reads the key file when it can, for the data migrations that encrypt existing rows
(they refuse, naming the key file, when it is missing). Each prints one JSON object; the differences `check`
reports name tables, columns, indexes and constraints, never a row's values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from alembic.util import CommandError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from waybill import db, keyfile, partitions
from waybill.commands import common as cli
from waybill.key_sources import make_keystore
from waybill.models import utcnow
from waybill.settings import Settings


def register(main: click.Group) -> None:
    """Attach the `db` group to the top-level `waybill` group."""
    main.add_command(db_group)


@click.group("db")
def db_group() -> None:
    """Schema revision, migrations and drift (Alembic)."""


def _engine(settings: Settings, *, create: bool) -> Engine:
    """The configured database; a SQLite file that is not there is an error unless ``create``.

    Read-only commands must not make an empty database at a mistyped location.
    """
    url = make_url(settings.database_url)
    if not create and url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not Path(url.database).exists():
        cli.fail({"ok": False, "error": {"code": "no_database",
                                         "message": "no database at the configured location; run `waybill init`"}},
                 2)
    return db.make_engine(settings.database_url)


@db_group.command("current")
def db_current() -> None:
    """The revision the database is at, and the head it should be at."""
    engine = _engine(cli.read_settings(), create=False)
    try:
        with engine.connect() as conn:
            current = db.current_revisions(conn)
    finally:
        engine.dispose()
    head = db.head_revision()
    cli.emit({"ok": True, "current": list(current), "head": head, "up_to_date": current == (head,)})


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply the migrations up to REVISION (default: head); at head, then check the schema matches."""
    engine = _engine(cli.read_settings(), create=True)
    try:
        with engine.connect() as conn:
            before = db.current_revisions(conn)
        settings = cli.read_settings()
        try:
            keys = keyfile.load(settings.key_file)
        except keyfile.KeyFileError:
            keys = None  # enough for the schema; a data migration that needs them says so
        try:
            db.upgrade(engine, revision, keys=keys, cipher=settings.cipher, blind_index_bits=settings.blind_index_bits,
                       keystore=make_keystore(settings))
        except CommandError as exc:  # an unknown revision, or one that would be a downgrade
            cli.fail({"ok": False, "error": {"code": "migration_error", "message": str(exc)}}, 2)
        with engine.connect() as conn:
            after = db.current_revisions(conn)
        doc: dict[str, Any] = {"ok": True, "from": list(before), "to": list(after)}
        if after == (db.head_revision(),):
            try:
                db.check_schema(engine)
            except db.SchemaMismatch as exc:
                cli.fail({**cli.schema_mismatch_doc(exc), "from": list(before), "to": list(after)}, 1)
    finally:
        engine.dispose()
    cli.emit(doc)


@db_group.command("history")
def db_history() -> None:
    """The migrations from base to head (read from the packaged scripts; the database is not opened)."""
    scripts = db.script_directory()
    head = db.head_revision()
    revisions: list[dict[str, Any]] = []
    for script in reversed(list(scripts.walk_revisions("base", "heads"))):
        down = script.down_revision
        revisions.append({"revision": script.revision,
                          "down_revision": down if isinstance(down, str) or down is None else list(down),
                          "message": (script.doc or "").strip(), "head": script.revision == head})
    cli.emit({"ok": True, "head": head, "revisions": revisions})


@db_group.command("check")
def db_check() -> None:
    """Exit 0 when the database is at head and its tables match the models; else exit 1 with the differences."""
    engine = _engine(cli.read_settings(), create=False)
    try:
        report = db.schema_report(engine)
    finally:
        engine.dispose()
    if report.ok:
        cli.emit(report.as_dict())
        return
    code = "schema_mismatch" if report.at_head else "not_at_head"
    message = ("the tables differ from the head revision" if report.at_head
               else "the database is not at the head revision: run `waybill db upgrade`")
    cli.fail({**report.as_dict(), "error": {"code": code, "message": message}}, 1)


@db_group.command("partitions")
@click.option("--months", type=click.IntRange(0, 120), default=partitions.MONTHS_AHEAD, show_default=True,
              help="Months to have ahead of the current one.")
def db_partitions(months: int) -> None:
    """Make the month partitions of the big tables up to MONTHS ahead (PostgreSQL), and list them.

    The daily ``db.partitions`` job does the same; on SQLite the tables are not partitioned and nothing is done.
    """
    engine = _engine(cli.read_settings(), create=False)
    try:
        with engine.begin() as conn:
            made = partitions.ensure(conn, utcnow(), months)
            listed = {table: [{"name": p.name, "from": p.lower.isoformat() if p.lower else None,
                               "to": p.upper.isoformat() if p.upper else None, "rows_estimate": p.rows_estimate}
                              for p in partitions.partitions(conn, table)]
                      for table in sorted(partitions.partitioned_tables(conn))}
    finally:
        engine.dispose()
    cli.emit({"ok": True, "partitioned": bool(listed), "created": made, "tables": listed})
