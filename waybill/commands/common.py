"""Helpers every `waybill` sub-command shares: JSON output, settings, and the services of an installation."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from sqlalchemy import exc as sa_exc

from waybill import db, keyfile
from waybill.services import Services, build, initialise
from waybill.settings import Settings, SettingsError, load_settings


def emit(doc: dict[str, Any]) -> None:
    click.echo(json.dumps(doc, ensure_ascii=False, default=str))


def fail(doc: dict[str, Any], code: int = 1) -> NoReturn:
    emit(doc)
    sys.exit(code)


#: The exit status of a command that found the database unreachable (a retry may succeed; 1 and 2 may not).
EXIT_DATABASE_UNAVAILABLE = 3


class CommandLine(click.Group):
    """The `waybill` group: a command that meets a dead database (refused, restarting, timed out) exits
    :data:`EXIT_DATABASE_UNAVAILABLE` with one JSON line naming the problem, never a traceback.

    The same classification as the HTTP answers' 503 (waybill/web/errors.py, imported here lazily: the command
    line must not load Flask for it).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
            from waybill.web.errors import dependency_failure

            row = dependency_failure(exc)
            code = row[1] if row is not None else "database_unavailable"
            # The error's type only: its text may quote the host, the user or a statement.
            kind = type(getattr(exc, "orig", None) or exc).__name__
            fail({"ok": False, "error": {"code": code, "message": (
                f"the database did not answer ({kind}): check WAYBILL_DATABASE_URL and that PostgreSQL is up, "
                "then run the command again")}}, EXIT_DATABASE_UNAVAILABLE)


def read_settings() -> Settings:
    """The validated settings, or exit 2 with a JSON error naming the variable."""
    try:
        return load_settings()
    except SettingsError as exc:
        fail({"ok": False, "error": {"code": "invalid_settings", "message": str(exc)}}, 2)


def schema_mismatch_doc(exc: db.SchemaMismatch) -> dict[str, Any]:
    """The JSON answer when the live schema is not the head schema: table and column names, no values."""
    return {"ok": False, "error": {"code": "schema_mismatch", "message": str(exc)},
            "current": list(exc.report.current), "head": exc.report.head,
            "differences": [dict(d) for d in exc.report.differences]}


def ready_services(settings: Settings) -> Services:
    """Run `init` implicitly (schema and keys) and build the services."""
    try:
        _keys, engine, _created = initialise(settings)
    except keyfile.KeyFileError as exc:
        fail({"ok": False, "error": {"code": "key_file", "message": str(exc)}}, 2)
    except db.SchemaMismatch as exc:
        fail(schema_mismatch_doc(exc), 1)
    return build(settings, engine=engine)


def existing_services(settings: Settings) -> Services:
    """Services for an installation that must already exist: never creates keys or schema.

    Read-only commands use this, so a wrong data dir is an error instead of a fresh, empty install.
    """
    try:
        return build(settings)
    except keyfile.KeyFileError as exc:
        fail({"ok": False, "error": {"code": "key_file", "message": str(exc)}}, 2)


class Progress:
    """A progress bar on stderr for long commands, drawn only when stderr is a terminal (stdout keeps its one
    JSON object, and logs or pipes get no bar). ``advance(n)`` moves it; ``close()`` ends the line."""

    def __init__(self, total: int, label: str) -> None:
        self._bar: Any = None
        if total > 1 and sys.stderr.isatty():
            self._bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)
            self._bar.__enter__()

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set(self, done: int, _total: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.pos)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
