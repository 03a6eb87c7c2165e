"""The `waybill` command line. Every command prints one JSON object."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from courier_api.staff import create_user, disable_user, set_phone, validate_account
from waybill import audit, keyfile, logs
from waybill.crypto import vault
from waybill.errors import DomainError, ValidationFailed
from waybill.merchants import create_merchant
from waybill.permissions import SYSTEM
from waybill.services import Services, build, initialise
from waybill.settings import Settings, SettingsError, load_settings


def emit(doc: dict[str, Any]) -> None:
    click.echo(json.dumps(doc, ensure_ascii=False, default=str))


def fail(doc: dict[str, Any], code: int = 1) -> None:
    emit(doc)
    sys.exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail({"ok": False, "error": {"code": "invalid_settings", "message": str(exc)}}, 2)
        raise  # unreachable; keeps type checkers happy


def _ready(settings: Settings) -> Services:
    """Run `init` implicitly (schema and keys) and build the services."""
    try:
        _keys, engine, _created = initialise(settings)
    except keyfile.KeyFileError as exc:
        fail({"ok": False, "error": {"code": "key_file", "message": str(exc)}}, 2)
        raise
    return build(settings, engine=engine)


def _existing(settings: Settings) -> Services:
    """Services for an installation that must already exist: never creates keys or schema.

    Read-only commands use this, so a wrong data dir is an error instead of a fresh, empty install.
    """
    try:
        return build(settings)
    except keyfile.KeyFileError as exc:
        fail({"ok": False, "error": {"code": "key_file", "message": str(exc)}}, 2)
        raise


@click.group()
def main() -> None:
    """privacy-waybill: encrypted shipment store, privacy labels, audited courier access."""
    # The console script enters here: structured logs (no exception text) from the first line on.
    logs.configure()


@main.command()
def init() -> None:
    """Create or upgrade the schema and key material (idempotent)."""
    settings = _settings()
    try:
        _keys, engine, created = initialise(settings)
    except keyfile.KeyFileError as exc:
        fail({"ok": False, "error": {"code": "key_file", "message": str(exc)}}, 2)
        return
    engine.dispose()
    emit({"ok": True, "data_dir": str(settings.data_dir), "key_file": str(settings.key_file),
          "key_file_created": created, "database": settings.database_url.split("://", 1)[0],
          "cipher": settings.cipher})


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="gunicorn worker processes")
def serve(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (runs `init` first if needed)."""
    settings = _settings()
    initialise(settings)[1].dispose()
    if settings.phone_provider == "aliyun":  # a bad credentials file stops the start, not the first call
        from waybill.virtual_numbers.aliyun import CredentialsError, load_credentials

        try:
            load_credentials(settings.aliyun_credentials_file)  # type: ignore[arg-type]
        except CredentialsError as exc:
            fail({"ok": False, "error": {"code": "provider_credentials", "message": str(exc)}}, 2)
    from gunicorn.app.base import BaseApplication

    from waybill.app import create_app

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", 4 if settings.is_sqlite else 2)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", None)  # our request log omits query strings; gunicorn's would not

        def load(self) -> Any:
            return create_app(settings)

    emit({"ok": True, "listening": f"http://{host}:{port}", "workers": workers})
    _App().run()


@main.group()
def merchants() -> None:
    """Manage merchants."""


@merchants.command("create")
@click.argument("name")
def merchants_create(name: str) -> None:
    """Create a merchant; prints its id and API key (shown once, stored hashed)."""
    svc = _ready(_settings())
    with svc.session_factory() as session:
        try:
            new = create_merchant(session, SYSTEM, name, api_key_secret=svc.keys.secret("api_key"))
        except DomainError as exc:
            fail({"ok": False, "error": {"code": "validation_error", "message": exc.message, "field": exc.field}})
            return
        session.commit()
    emit({"merchant_id": new.merchant_id, "api_key": new.api_key})


@main.group()
def users() -> None:
    """Manage staff accounts."""


def _read_password() -> str:
    # One line from stdin, without its line ending: the password is never a command-line argument
    # (those are visible to other users in the process list).
    return sys.stdin.readline().rstrip("\r\n")


@users.command("create")
@click.argument("username")
@click.option("--role", required=True, help="courier, dispatcher, sorter, auditor, privacy_officer or admin")
@click.option("--station", default=None, help="station code (required for courier, dispatcher, sorter)")
@click.option("--password-stdin", is_flag=True, help="read the password from stdin instead of generating one")
@click.option("--phone", default=None, help="a courier's own phone (stored encrypted; the A side of call bindings)")
def users_create(username: str, role: str, station: str | None, password_stdin: bool, phone: str | None) -> None:
    """Create a staff user; prints the password (if generated) and, for MFA roles, the TOTP secret once."""
    try:
        validate_account(username, role, station)
    except DomainError as exc:
        fail({"ok": False, "error": {"code": "validation_error", "message": exc.message, "field": exc.field}}, 2)
    password = _read_password() if password_stdin else None
    svc = _ready(_settings())
    with svc.session_factory() as session:
        try:
            new = create_user(session, SYSTEM, username, role, station, password, svc.codec)
            if phone is not None:
                set_phone(session, SYSTEM, username, phone, svc.codec)
        except ValidationFailed as exc:
            fail({"ok": False, "error": {"code": "validation_error", "message": exc.message, "field": exc.field}}, 2)
            return
        except DomainError as exc:
            fail({"ok": False, "error": {"code": "conflict", "message": exc.message, "field": "username"}})
            return
        session.commit()
    # A password the operator typed is not echoed back; a generated one is shown this once.
    emit({"user_id": new.user.id, "username": new.user.username, "role": new.user.role,
          "station": new.user.station, "password": None if password_stdin else new.password,
          "totp_secret": new.totp_secret})


@users.command("disable")
@click.argument("username")
def users_disable(username: str) -> None:
    """Disable a staff user and revoke all of their access tokens at once."""
    svc = _ready(_settings())
    with svc.session_factory() as session:
        try:
            user, revoked = disable_user(session, SYSTEM, username)
        except DomainError as exc:
            fail({"ok": False, "error": {"code": "not_found", "message": exc.message, "field": "username"}})
            return
        session.commit()
    emit({"ok": True, "user_id": user.id, "username": user.username, "disabled_at": user.disabled_at,
          "revoked_tokens": revoked})


@main.group("audit")
def audit_group() -> None:
    """Audit log tools."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Verify the hash chain; exit 1 and name the first bad event if it was tampered with."""
    svc = _existing(_settings())
    with svc.session_factory() as session:
        result = audit.verify(session, svc.keys.secret("audit_chain"))
    if not result.ok:
        fail(result.as_dict(), 1)
    emit(result.as_dict())


@main.group()
def keys() -> None:
    """Key management."""


@keys.command("rotate")
def keys_rotate() -> None:
    """Promote a new master key and re-wrap every data key; ciphertexts stay readable."""
    settings = _settings()
    svc = _ready(settings)
    report = vault.rotate(svc.engine, settings.key_file, settings.cipher)
    with svc.session_factory() as session:
        audit.record(session, SYSTEM, "keys.rotate", object_type="master_key", object_id=report.new_master_key)
        session.commit()
    emit({"ok": True, "new_master_key": report.new_master_key, "rewrapped_data_keys": report.rewrapped,
          "new_data_key": report.new_data_key})


@keys.command("retire")
@click.argument("master_key_id")
def keys_retire(master_key_id: str) -> None:
    """Remove an old master key from the key file once no data key is wrapped by it."""
    settings = _settings()
    svc = _ready(settings)
    from sqlalchemy import func, select

    from waybill.models import DataKey

    with svc.session_factory() as session:
        still = session.execute(select(func.count()).where(DataKey.master_key_id == master_key_id)).scalar_one()
    if still:
        fail({"ok": False, "error": {"code": "key_in_use", "message": f"{still} data keys still use it; rotate first"}})
    try:
        with keyfile.exclusive(settings.key_file):
            keyfile.remove_master_key(settings.key_file, master_key_id)
    except keyfile.KeyFileError as exc:
        fail({"ok": False, "error": {"code": "key_file", "message": str(exc)}})
    emit({"ok": True, "retired": master_key_id})


def _register_more() -> None:
    from waybill import cli_phone, cli_print

    cli_print.register(main)
    cli_phone.register(main)


_register_more()

if __name__ == "__main__":  # pragma: no cover
    logs.configure()
    main()
