"""`waybill users ...`: staff accounts (contributed to the `waybill` command by the courier extension)."""

from __future__ import annotations

import sys

import click

from courier_api import obligations
from courier_api.staff import create_user, disable_user, enable_user, set_password, set_phone, validate_account
from waybill.commands.common import emit, fail, read_settings, ready_services
from waybill.errors import DomainError, ValidationFailed
from waybill.permissions import SYSTEM
from waybill.routing import RoutingTable
from waybill.services import load_stations
from waybill.settings import SettingsError
from waybill.uow import unit_of_work


@click.group()
def users() -> None:
    """Manage staff accounts."""


def _read_password() -> str:
    # One line from stdin, without its line ending: the password is never a command-line argument
    # (those are visible to other users in the process list).
    return sys.stdin.readline().rstrip("\r\n")


@users.command("create")
@click.argument("username")
@click.option("--role", required=True, help="courier, dispatcher, sorter, auditor, privacy_officer or admin")
@click.option("--station", default=None, help="station code (required for courier, dispatcher, sorter; a sorter's "
              "must be in the station register: a station like 755-W012, or a hub like 755)")
@click.option("--password-stdin", is_flag=True, help="read the password from stdin instead of generating one")
@click.option("--phone", default=None, help="a courier's own phone (stored encrypted; the A side of call bindings)")
@click.option("--background-check", "background_check", default=None,
              help="the background check's case reference (BG-2026-0042); couriers and privacy officers need one "
              "before `users attest`")
def users_create(username: str, role: str, station: str | None, password_stdin: bool, phone: str | None,
                 background_check: str | None) -> None:
    """Create a staff user; prints the password (if generated) and, for MFA roles, the TOTP secret once.

    Creating the account records that its confidentiality agreement and training were attested now."""
    settings = read_settings()
    try:
        register = load_stations(settings, RoutingTable.load())
    except SettingsError as exc:
        fail({"ok": False, "error": {"code": "invalid_settings", "message": str(exc)}}, 2)
    try:
        validate_account(username, role, station, register)
        obligations.check_background_ref(background_check)
    except DomainError as exc:
        fail({"ok": False, "error": {"code": "validation_error", "message": exc.message, "field": exc.field}}, 2)
    password = _read_password() if password_stdin else None
    svc = ready_services(settings)
    with unit_of_work(svc.session_factory) as tx:
        try:
            new = create_user(tx.session, SYSTEM, username, role, station, password, svc.codec, svc.stations,
                              background_check_ref=background_check)
            if phone is not None:
                set_phone(tx.session, SYSTEM, username, phone, svc.codec)
        except ValidationFailed as exc:
            fail({"ok": False, "error": {"code": "validation_error", "message": exc.message, "field": exc.field}}, 2)
        except DomainError as exc:
            fail({"ok": False, "error": {"code": "conflict", "message": exc.message, "field": "username"}})
    # A password the operator typed is not echoed back; a generated one is shown this once.
    emit({"user_id": new.user.id, "username": new.user.username, "role": new.user.role,
          "station": new.user.station, "password": None if password_stdin else new.password,
          "totp_secret": new.totp_secret, "obligations": _obligations_doc(
              obligations.describe(new.user, settings.training_valid_days))})


def _obligations_doc(found: obligations.Obligations) -> dict[str, object]:
    return {"confidentiality_attested_at": found.confidentiality_attested_at,
            "training_attested_at": found.training_attested_at, "training_valid_until": found.training_valid_until,
            "background_check_ref": found.background_check_ref, "background_checked_at": found.background_checked_at,
            "background_check_required": found.background_check_required, "source": found.source}


@users.command("attest")
@click.argument("username")
@click.option("--background-check", "background_check", default=None,
              help="the background check's case reference (BG-2026-0042); required once for couriers and privacy "
              "officers")
def users_attest(username: str, background_check: str | None) -> None:
    """Renew a staff user's confidentiality agreement and training (attested now); a user refused personal data
    with obligations_lapsed is admitted again on their next request."""
    settings = read_settings()
    svc = ready_services(settings)
    with unit_of_work(svc.session_factory) as tx:
        try:
            found = obligations.attest(tx.session, SYSTEM, username, background_check_ref=background_check,
                                       valid_days=settings.training_valid_days)
        except ValidationFailed as exc:
            fail({"ok": False, "error": {"code": "validation_error", "message": exc.message, "field": exc.field}}, 2)
        except DomainError as exc:
            fail({"ok": False, "error": {"code": "not_found", "message": exc.message, "field": "username"}})
    emit({"ok": True, "user_id": found.user_id, "username": found.username, "role": found.role,
          **_obligations_doc(found)})


@users.command("disable")
@click.argument("username")
def users_disable(username: str) -> None:
    """Disable a staff user and revoke all of their access tokens at once."""
    svc = ready_services(read_settings())
    with unit_of_work(svc.session_factory) as tx:
        try:
            user, revoked = disable_user(tx.session, SYSTEM, username)
        except DomainError as exc:
            fail({"ok": False, "error": {"code": "not_found", "message": exc.message, "field": "username"}})
    emit({"ok": True, "user_id": user.id, "username": user.username, "disabled_at": user.disabled_at,
          "revoked_tokens": revoked})


@users.command("enable")
@click.argument("username")
def users_enable(username: str) -> None:
    """Let a staff user in again: lift the suspensions critical alerts placed and clear `users disable`.

    Their access tokens are revoked too (none used while suspended comes back): they log in again.
    """
    svc = ready_services(read_settings())
    with unit_of_work(svc.session_factory) as tx:
        try:
            done = enable_user(tx.session, SYSTEM, username)
        except DomainError as exc:
            fail({"ok": False, "error": {"code": "not_found", "message": exc.message, "field": "username"}})
    emit({"ok": True, "user_id": done.user.id, "username": done.user.username, "lifted_suspensions": done.lifted,
          "was_disabled": done.was_disabled, "revoked_tokens": done.revoked})


@users.command("password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="read the new password from stdin instead of generating one")
def users_password(username: str, password_stdin: bool) -> None:
    """Set a staff user's password (checked against the password policy) and revoke their tokens."""
    password = _read_password() if password_stdin else None
    svc = ready_services(read_settings())
    with unit_of_work(svc.session_factory) as tx:
        try:
            user, new_password, revoked = set_password(tx.session, SYSTEM, username, password)
        except ValidationFailed as exc:
            fail({"ok": False, "error": {"code": "validation_error", "message": exc.message, "field": exc.field}}, 2)
        except DomainError as exc:
            fail({"ok": False, "error": {"code": "not_found", "message": exc.message, "field": "username"}})
    # As for `create`: a typed password is not echoed back; a generated one is shown this once.
    emit({"ok": True, "user_id": user.id, "username": user.username,
          "password": None if password_stdin else new_password, "revoked_tokens": revoked})
