"""`waybill merchants keys list|rotate|revoke MERCHANT_ID` and `waybill merchants disable MERCHANT_ID`.

Every command prints one JSON object. A key is printed once, by `rotate`; listings show key ids (the public
lookup prefix of a key) and dates, never a key or its hash.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NoReturn

import click

from waybill import merchants as domain
from waybill.commands.common import emit, fail, read_settings, ready_services
from waybill.errors import DomainError
from waybill.permissions import SYSTEM
from waybill.uow import unit_of_work


def _refuse(exc: DomainError) -> NoReturn:
    from waybill.web.errors import classify

    _status, code = classify(exc)  # the same codes as the HTTP answers
    fail({"ok": False, "error": {"code": code, "message": exc.message, "field": exc.field}})


def _key_doc(key: domain.KeyInfo) -> dict[str, Any]:
    return {"key_id": key.key_id, "mode": key.mode, "status": key.status, "created_at": key.created_at,
            "expires_at": key.expires_at, "revoked_at": key.revoked_at, "last_used_at": key.last_used_at}


@click.group("keys")
def keys() -> None:
    """A merchant's API keys: list, rotate, revoke."""


@keys.command("list")
@click.argument("merchant_id")
def keys_list(merchant_id: str) -> None:
    """Every key of the merchant with its status (active, expiring, expired, revoked); never the key."""
    svc = ready_services(read_settings())
    with unit_of_work(svc.session_factory) as tx:
        try:
            found = domain.list_keys(tx.session, merchant_id)
        except DomainError as exc:
            _refuse(exc)
    emit({"merchant_id": found.merchant_id, "disabled": found.disabled, "disabled_at": found.disabled_at,
          "keys": [_key_doc(k) for k in found.keys]})


@keys.command("rotate")
@click.argument("merchant_id")
@click.option("--mode", type=click.Choice(domain.KEY_MODES), default="live", show_default=True,
              help="rotate the live keys, or issue/rotate a test-mode key (its shipments never print)")
def keys_rotate(merchant_id: str, mode: str) -> None:
    """Issue a new key (printed once); the merchant's previous keys of that mode keep working for
    WAYBILL_KEY_ROTATION_GRACE_HOURS."""
    settings = read_settings()
    svc = ready_services(settings)
    grace = timedelta(hours=settings.key_rotation_grace_hours)
    with unit_of_work(svc.session_factory) as tx:
        try:
            done = domain.rotate_keys(tx.session, SYSTEM, merchant_id, api_key_secret=svc.keys.secret("api_key"),
                                      grace=grace, mode=mode)
        except DomainError as exc:
            _refuse(exc)
    emit({"ok": True, "merchant_id": done.merchant_id, "key_id": done.key_id, "api_key": done.api_key,
          "mode": done.mode, "expiring": done.expiring, "old_keys_expire_at": done.old_keys_expire_at,
          "grace_hours": settings.key_rotation_grace_hours})


@keys.command("revoke")
@click.argument("merchant_id")
@click.option("--key", "key_id", default=None, help="revoke this key only (an id from `keys list`); "
              "without it every key of the merchant stops")
def keys_revoke(merchant_id: str, key_id: str | None) -> None:
    """Stop one key, or every key of the merchant, at once (no grace)."""
    svc = ready_services(read_settings())
    with unit_of_work(svc.session_factory) as tx:
        try:
            revoked = domain.revoke_keys(tx.session, SYSTEM, merchant_id, key_id)
        except DomainError as exc:
            _refuse(exc)
    emit({"ok": True, "merchant_id": merchant_id, "revoked": revoked})


@click.command("disable")
@click.argument("merchant_id")
def merchants_disable(merchant_id: str) -> None:
    """Disable a merchant: every key of it stops at once."""
    svc = ready_services(read_settings())
    with unit_of_work(svc.session_factory) as tx:
        try:
            merchant = domain.disable_merchant(tx.session, SYSTEM, merchant_id)
        except DomainError as exc:
            _refuse(exc)
    emit({"ok": True, "merchant_id": merchant.id, "disabled": True, "disabled_at": merchant.disabled_at})


def register(group: click.Group) -> None:
    """Add these commands to the `waybill merchants` group."""
    group.add_command(keys)
    group.add_command(merchants_disable)
