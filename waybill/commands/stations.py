"""`waybill stations list`: the station register in force (packaged, or WAYBILL_STATIONS_FILE)."""

from __future__ import annotations

import click

from waybill.commands import common as cli
from waybill.routing import RoutingTable
from waybill.services import load_stations
from waybill.settings import SettingsError


def register(main: click.Group) -> None:
    """Attach the commands to the top-level `waybill` group."""
    main.add_command(stations)


@click.group()
def stations() -> None:
    """The station register: stations and hubs, their time zones and shifts."""


@stations.command("list")
def stations_list() -> None:
    """Print every station and hub of the register (checked against the routing table) as one JSON object."""
    settings = cli.read_settings()
    try:
        register_ = load_stations(settings, RoutingTable.load())
    except SettingsError as exc:
        cli.fail({"ok": False, "error": {"code": "invalid_settings", "message": str(exc)}}, 2)
    items = [s.as_dict() for s in register_]
    cli.emit({"ok": True, "source": str(settings.stations_file) if settings.stations_file else "packaged",
              "stations": sum(1 for s in register_ if not s.is_hub), "hubs": sum(1 for s in register_ if s.is_hub),
              "items": items})
