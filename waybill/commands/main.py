"""The `waybill` command line. Every command prints one JSON object."""

from __future__ import annotations

from typing import Any

import click

from waybill import audit, db, keyfile, logs
from waybill.commands.common import (
    CommandLine,
    Progress,
    emit,
    existing_services,
    fail,
    read_settings,
    ready_services,
    schema_mismatch_doc,
)
from waybill.crypto import rotation
from waybill.crypto.kms import KeyServiceUnavailable
from waybill.errors import DomainError
from waybill.extensions import load_extensions
from waybill.merchants import create_merchant
from waybill.permissions import SYSTEM
from waybill.services import Services, initialise
from waybill.settings import SettingsError
from waybill.uow import unit_of_work

# Shared with the sub-command modules and extensions' commands (one module, no import circle).
_settings, _ready, _existing = read_settings, ready_services, existing_services


@click.group(cls=CommandLine)
@click.version_option(package_name="privacy-waybill", prog_name="waybill", message="%(prog)s %(version)s")
def main() -> None:
    """privacy-waybill: encrypted shipment store, privacy labels, audited courier access."""
    # The console script enters here: structured logs (no exception text) from the first line on.
    logs.configure()


@main.command()
def init() -> None:
    """Create or upgrade the schema and key material (idempotent); refuse a schema that is not head's."""
    settings = _settings()
    try:
        _keys, engine, created = initialise(settings)
    except keyfile.KeyFileError as exc:
        fail({"ok": False, "error": {"code": "key_file", "message": str(exc)}}, 2)
    except db.SchemaMismatch as exc:
        fail(schema_mismatch_doc(exc), 1)
    engine.dispose()
    emit({"ok": True, "data_dir": str(settings.data_dir), "key_file": str(settings.key_file),
          "key_file_created": created, "database": settings.database_url.split("://", 1)[0],
          "cipher": settings.cipher})


def _check_sms_provider(settings: Any) -> None:
    """A bad SMS credentials file or template code map stops the start, not the first message."""
    from waybill.messages import make_provider
    from waybill.messages.aliyun import CredentialsError

    try:
        make_provider(settings)
    except (CredentialsError, SettingsError) as exc:
        fail({"ok": False, "error": {"code": "sms_provider", "message": str(exc)}}, 2)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="gunicorn worker processes (0: one per CPU)")
def serve(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (runs `init` first if needed)."""
    from waybill.serving.config import default_workers, gunicorn_options

    workers = workers or default_workers()
    settings = _settings()
    try:  # `init` first: key file, migrations, and the schema check (a drifted schema is not served)
        initialise(settings)[1].dispose()
    except keyfile.KeyFileError as exc:
        fail({"ok": False, "error": {"code": "key_file", "message": str(exc)}}, 2)
    except db.SchemaMismatch as exc:
        fail(schema_mismatch_doc(exc), 1)
    if settings.phone_provider == "aliyun":  # a bad credentials file stops the start, not the first call
        from waybill.virtual_numbers.aliyun import CredentialsError, load_credentials

        try:
            load_credentials(settings.aliyun_credentials_file)  # type: ignore[arg-type]
        except CredentialsError as exc:
            fail({"ok": False, "error": {"code": "provider_credentials", "message": str(exc)}}, 2)
    _check_sms_provider(settings)
    if settings.metrics_token_file is not None:  # a bad token file stops the start, not the first scrape
        from waybill.web.operations import load_metrics_token

        try:
            load_metrics_token(settings.metrics_token_file)
        except SettingsError as exc:
            fail({"ok": False, "error": {"code": "invalid_settings", "message": str(exc)}}, 2)
    multiproc_dir = settings.prometheus_multiproc_dir
    if multiproc_dir is not None:
        # prometheus_client's multiprocess mode: the files of a previous run would be counted again.
        for stale in multiproc_dir.glob("*.db"):
            stale.unlink()
    from gunicorn.app.base import BaseApplication

    from waybill.tasks import start_in_process
    from waybill.web.app import create_app
    from waybill.web.context import services_of

    def _child_exit(_server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, str(multiproc_dir))  # type: ignore[no-untyped-call]

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = gunicorn_options(host=host, port=port, workers=workers,
                                       threads=4 if settings.is_sqlite else 2)
            for name, value in options.items():
                self.cfg.set(name, value)
            if multiproc_dir is not None:
                self.cfg.set("child_exit", _child_exit)

        def load(self) -> Any:
            app = create_app(settings)
            # The embedded default runs background tasks in the serving processes (see waybill.tasks).
            start_in_process(services_of(app))
            return app

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
    with unit_of_work(svc.session_factory) as tx:
        try:
            new = create_merchant(tx.session, SYSTEM, name, api_key_secret=svc.keys.secret("api_key"))
        except DomainError as exc:
            fail({"ok": False, "error": {"code": "validation_error", "message": exc.message, "field": exc.field}})
    emit({"merchant_id": new.merchant_id, "api_key": new.api_key})


@main.group("audit")
def audit_group() -> None:
    """Audit log tools."""


@main.group()
def keys() -> None:
    """Key management."""


def _data_key_count(svc: Services) -> int:
    from sqlalchemy import func, select

    from waybill.models import DataKey

    with unit_of_work(svc.session_factory) as tx:
        return int(tx.session.scalar(select(func.count()).select_from(DataKey)) or 0)


@keys.command("rotate")
def keys_rotate() -> None:
    """Promote a new master key and re-wrap every data key; ciphertexts stay readable.

    The master keys are the key file's, or with WAYBILL_KEY_PROVIDER=vault the transit key (rotated there and
    re-wrapped with transit `rewrap`). The old wrappings (and master keys) are kept until `waybill keys retire`,
    so an interrupted rotation, a key file that lost the new key, another node's older key file, or a database
    restored from before the rotation still decrypts.
    """
    settings = _settings()
    svc = _ready(settings)
    bar = Progress(_data_key_count(svc), "re-wrapping data keys")
    try:
        report = rotation.rotate(svc.engine, svc.master_keys, settings.cipher, progress=bar.set)
    except KeyServiceUnavailable as exc:  # the data keys re-wrapped so far keep their previous wrapping: rerun
        fail({"ok": False, "error": {"code": "kms_unavailable", "message": str(exc)}})
    finally:
        bar.close()
    with unit_of_work(svc.session_factory) as tx:
        audit.record(tx.session, SYSTEM, "keys.rotate", object_type="master_key", object_id=report.new_master_key)
    # Every node writes under the new data key within the cache TTL (README "Keys on more than one machine").
    emit({"ok": True, "new_master_key": report.new_master_key, "rewrapped_data_keys": report.rewrapped,
          "new_data_key": report.new_data_key, "nodes_switch_within_s": settings.key_cache_ttl_s,
          "key_provider": settings.key_provider})


@keys.command("add-secrets")
def keys_add_secrets() -> None:
    """Give a key file from an older version the per-purpose secrets added since (e.g. ``phone_hash``).

    Run once in production (which never generates key material by itself), then give every node the
    completed file; the next `waybill init` re-keys what the new secret protects.
    """
    settings = _settings()
    try:
        with keyfile.exclusive(settings.key_file):
            added = keyfile.add_missing_secrets(settings.key_file)
    except keyfile.KeyFileError as exc:
        fail({"ok": False, "error": {"code": "key_file", "message": str(exc)}}, 2)
    emit({"ok": True, "added": added})


@keys.command("copy-period-keys")
def keys_copy_period_keys() -> None:
    """Copy the local period-key store (WAYBILL_PERIOD_KEY_FILE) into the shared one (WAYBILL_KEY_PROVIDER=vault).

    Run once when an installation moves to Vault/OpenBao, before the first node starts with the new settings;
    then delete the local file and its copies (README "Keys on more than one machine").
    """
    from waybill.crypto.keystore import KeyStoreError, LocalKeyStore
    from waybill.crypto.vault_kms import KvKeyStore
    from waybill.key_sources import make_keystore

    settings = _settings()
    target = make_keystore(settings)
    if not isinstance(target, KvKeyStore):
        fail({"ok": False, "error": {"code": "key_provider", "message": "WAYBILL_KEY_PROVIDER is not vault"}}, 2)
    source = LocalKeyStore(settings.period_key_file)
    copied = already = 0
    try:
        for key_id in source.ids():
            if target.put(key_id, source.get(key_id)):
                copied += 1
            else:
                already += 1
    except KeyServiceUnavailable as exc:
        fail({"ok": False, "error": {"code": "kms_unavailable", "message": str(exc)}})
    except KeyStoreError as exc:
        fail({"ok": False, "error": {"code": "key_store", "message": str(exc)}})
    emit({"ok": True, "copied": copied, "already_there": already})


@keys.command("retire")
@click.argument("master_key_ids", nargs=-1)
def keys_retire(master_key_ids: tuple[str, ...]) -> None:
    """End a rotation: drop the previous wrappings and the master keys no data key is wrapped by.

    With MASTER_KEY_IDS, only those (each must be unused); without, every unused non-primary key. Refused while
    any data key's current wrapping does not open with the key file (the previous one may be all that does).
    """
    settings = _settings()
    svc = _ready(settings)
    try:
        report = rotation.retire(svc.engine, svc.master_keys, master_key_ids)
    except rotation.RetireRefused as exc:
        fail({"ok": False, "error": {"code": exc.code, "message": str(exc)}})
    except keyfile.KeyFileError as exc:
        fail({"ok": False, "error": {"code": "key_file", "message": str(exc)}})
    except KeyServiceUnavailable as exc:
        fail({"ok": False, "error": {"code": "kms_unavailable", "message": str(exc)}})
    with unit_of_work(svc.session_factory) as tx:
        for key_id in report.retired:
            audit.record(tx.session, SYSTEM, "keys.retire", object_type="master_key", object_id=key_id)
    emit({"ok": True, "retired": list(report.retired), "dropped_previous_wrappings": report.dropped_previous})


def _register_more() -> None:
    from waybill.commands import alerts, canary, database, messages, phone, printer, retention, stations, tasks
    from waybill.commands import audit as audit_commands
    from waybill.commands import merchants as merchant_commands

    merchant_commands.register(merchants)
    audit_commands.register(audit_group)
    database.register(main)
    printer.register(main)
    phone.register(main)
    tasks.register(main)
    stations.register(main)
    retention.register(main)
    messages.register(main)
    canary.register(main)
    alerts.register(main)
    # Upper layers (the courier side) contribute their commands through entry points: this module never
    # imports them.
    for ext in load_extensions():
        for command in ext.cli_commands():
            main.add_command(command)


_register_more()

if __name__ == "__main__":  # pragma: no cover
    logs.configure()
    main()
