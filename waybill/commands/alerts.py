"""`waybill alerts sweep`: run the alert sweep once (the rules that need history; see waybill/alerts/sweep.py)."""

from __future__ import annotations

import click

from waybill.alerts import sweep
from waybill.commands import common as cli


def register(main: click.Group) -> None:
    """Attach the commands to the top-level `waybill` group."""
    main.add_command(alerts_group)


@click.group("alerts")
def alerts_group() -> None:
    """Alert rules: the periodic sweep over the audit log."""


@alerts_group.command("sweep")
def sweep_command() -> None:
    """Sweep the audit log from the stored cursor to its head once; prints a JSON summary (`enabled`, `seq_from`,
    `seq_to`, `events_read`, `accesses`, `account_days`, `fired`, `pruned`, `chunks`, `seconds`)."""
    svc = cli.existing_services(cli.read_settings())
    try:
        result = sweep.run(svc.session_factory, svc.settings.alerts)
    finally:
        svc.engine.dispose()
    cli.emit(result.as_json())
