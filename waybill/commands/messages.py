"""`waybill messages`: development tooling around the built-in message provider's encrypted outbox.

`waybill messages show --phone P` prints what was sent to P (newest first). Message texts are personal data
(they carry codes): the command is refused in production, and each read is an audit event (without the number).
"""

from __future__ import annotations

import click

from waybill import audit, messages
from waybill.commands import common as cli
from waybill.permissions import SYSTEM
from waybill.uow import unit_of_work


def register(main: click.Group) -> None:
    """Attach the `messages` group to the top-level `waybill` group."""
    main.add_command(messages_group)


@click.group("messages")
def messages_group() -> None:
    """Messages to people (SMS): read back the built-in provider's outbox (not in production)."""


@messages_group.command("show")
@click.option("--phone", required=True, help="the mobile number the messages went to")
def show(phone: str) -> None:
    """Print {"messages": [{"at", "template", "text"}]} sent to PHONE, newest first; refused in production."""
    settings = cli.read_settings()
    if settings.is_production:
        cli.fail({"ok": False, "error": {"code": "refused",
                                         "message": "waybill messages show is not run in production"}}, 2)
    svc = cli.existing_services(settings)
    with unit_of_work(svc.session_factory) as tx:
        try:
            found = messages.sent_to(tx.session, svc, phone)
        except messages.InvalidPhone as exc:  # NotMobile too; the message never echoes the number
            cli.fail({"ok": False, "error": {"code": "invalid_phone", "message": exc.message, "field": "phone"}}, 2)
        audit.record(tx.session, SYSTEM, "messages.show", object_type="sms_message", fields=["text"],
                     purpose="development tooling")
    cli.emit({"messages": found})
