"""`waybill retention run [--dry-run]`: destroy the personal data that is due (see waybill/retention.py)."""

from __future__ import annotations

import click

from waybill import retention
from waybill.commands import common as cli
from waybill.permissions import SYSTEM


def register(main: click.Group) -> None:
    """Attach the commands to the top-level `waybill` group."""
    main.add_command(retention_group)


@click.group("retention")
def retention_group() -> None:
    """Retention of personal data: destruction by crypto-shredding once the retention period is over."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="only count the shipments that are due; change nothing")
def run(dry_run: bool) -> None:
    """Destroy what is due; prints {"destroyed", "record_id"} (or {"due"} with --dry-run)."""
    svc = cli.existing_services(cli.read_settings())
    try:
        result = retention.run(svc, SYSTEM, dry_run=dry_run)
    finally:
        svc.engine.dispose()
    if dry_run:
        cli.emit({"due": result.due})
        return
    cli.emit({"destroyed": result.destroyed, "record_id": result.record_id,
              "keys_destroyed": result.keys_destroyed, "keys_deferred": result.keys_deferred,
              "rewrapped": result.rewrapped,
              "partitions_dropped": [{"name": d.name, "rows": d.rows} for d in result.partitions_dropped]})
