"""`waybill phone`: the built-in virtual-number provider from the command line.

Every command prints one JSON object. No command ever prints a party's real number: a routed call shows
the callee masked, bindings show only X, the extension and the expiry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from waybill.commands import common as cli  # the shared helpers: settings, services, emit, fail
from waybill.ids import new_id
from waybill.masking import mask_phone
from waybill.models import utcnow
from waybill.phones import InvalidPhone
from waybill.uow import unit_of_work


def register(main: click.Group) -> None:
    """Attach the `phone` group to the top-level `waybill` group."""
    main.add_command(phone)



def _provider(svc: Any) -> Any:
    from waybill.virtual_numbers import BuiltinProvider

    return BuiltinProvider.from_services(svc)


def _invalid(cli: Any, exc: InvalidPhone, field: str) -> None:
    # InvalidPhone's message is a fixed text that never echoes the number.
    cli.fail({"ok": False, "error": {"code": "invalid_phone", "message": str(exc), "field": field}}, 2)


@click.group()
def phone() -> None:
    """Virtual numbers (built-in provider): seed the pool, bind, release, simulate calls."""


@phone.command("add-numbers")
@click.argument("numbers", nargs=-1, required=True)
def add_numbers_cmd(numbers: tuple[str, ...]) -> None:
    """Add X numbers to the pool (the provider's own numbers, not personal data)."""
    from waybill.virtual_numbers import add_numbers, pool_size

    svc = cli.ready_services(cli.read_settings())
    with unit_of_work(svc.session_factory) as tx:
        try:
            added = add_numbers(tx.session, numbers)
        except InvalidPhone as exc:
            _invalid(cli, exc, "numbers")
            return
        total = pool_size(tx.session)
    cli.emit({"ok": True, "added": added, "pool_size": total})


@phone.command("bind")
@click.option("--a", "a", required=True, help="the caller's number (e.g. the courier)")
@click.option("--b", "b", required=True, help="the callee's number (e.g. the recipient)")
@click.option("--ref", required=True, help="what the binding is for, e.g. a shipment id")
@click.option("--ttl-hours", default=72.0, show_default=True, type=float)
@click.option("--mode", type=click.Choice(["axb", "axe"]), default="axb", show_default=True)
def bind_cmd(a: str, b: str, ref: str, ttl_hours: float, mode: str) -> None:
    """Bind two numbers to a virtual number; prints X (and the extension), never A or B."""
    from waybill.virtual_numbers import VirtualNumberError

    svc = cli.ready_services(cli.read_settings())
    provider = _provider(svc)
    with unit_of_work(svc.session_factory) as tx:
        try:
            bind = provider.bind_axe if mode == "axe" else provider.bind_axb
            binding = bind(tx.session, a, b, ttl=timedelta(hours=ttl_hours), ref=ref)
        except InvalidPhone as exc:
            _invalid(cli, exc, "a/b")
            return
        except VirtualNumberError as exc:
            cli.fail({"ok": False, "error": {"code": type(exc).__name__, "message": exc.message}})
            return
        except ValueError as exc:  # bad ttl, ref or identical endpoints: fixed messages without numbers
            cli.fail({"ok": False, "error": {"code": "validation_error", "message": str(exc)}}, 2)
            return
    cli.emit({"ok": True, "binding_id": binding.id, "virtual_number": binding.x_number,
              "extension": binding.extension, "expires_at": binding.expires_at.isoformat(), "mode": binding.mode,
              "ref": binding.ref})


@phone.command("release")
@click.argument("binding_id")
@click.option("--grace-minutes", default=0.0, show_default=True, type=float,
              help="keep the binding routable this long (call-backs), then let it expire")
def release_cmd(binding_id: str, grace_minutes: float) -> None:
    """Release a binding now, or after a grace period."""
    from waybill.virtual_numbers import OutOfSession

    svc = cli.ready_services(cli.read_settings())
    provider = _provider(svc)
    at = utcnow() + timedelta(minutes=grace_minutes) if grace_minutes > 0 else None
    with unit_of_work(svc.session_factory) as tx:
        try:
            provider.release(tx.session, binding_id, at=at)
        except OutOfSession as exc:
            cli.fail({"ok": False, "error": {"code": "not_found", "message": exc.message}})
            return
    cli.emit({"ok": True, "binding_id": binding_id, "released_at": (at or utcnow()).isoformat(),
              "scheduled": at is not None})


@phone.command("dial")
@click.option("--from", "caller", required=True, help="the calling number")
@click.option("--to", "x", required=True, help="the virtual number dialled")
@click.option("--ext", "extension", default=None, help="the extension entered after dialling X")
def dial_cmd(caller: str, x: str, extension: str | None) -> None:
    """Simulate a call through the built-in provider and show how it was routed (callee masked)."""
    svc = cli.ready_services(cli.read_settings())
    provider = _provider(svc)
    call_id = new_id("call")
    with unit_of_work(svc.session_factory) as tx:
        route = provider.route_call(tx.session, caller, x, extension, call_id=call_id, at=datetime.now(UTC))
    if not route.routed:
        cli.emit({"routed": False, "reason": route.reason or "out_of_session"})
        return
    # The real callee number is what a switch would dial; a person at a terminal only sees it masked.
    cli.emit({"routed": True, "binding_id": route.binding_id, "x_number": route.x_number,
              "extension": route.extension, "callee": mask_phone(route.callee or ""), "call_id": route.call_id})
