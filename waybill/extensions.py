"""How upper layers plug into the service without the service importing them.

An extension is an object published under the entry-point group ``waybill.extensions`` (see pyproject.toml,
as Flask's CLI discovers commands). The app factory calls :meth:`Extension.init_app` on each, the CLI adds
their :meth:`Extension.cli_commands`, and the migration environment loads them so that their tables are on
the metadata. Loading an extension imports its package; nothing in ``waybill`` names one.

Bearer tokens the merchant side does not know are offered to the resolvers that extensions register in
``app.extensions[TOKEN_RESOLVERS]`` (token prefix -> resolver), so staff authentication stays with staff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, cast

import click
from sqlalchemy.orm import Session

from waybill.entrypoints import EXTENSIONS_GROUP, load_group
from waybill.permissions import Principal

if TYPE_CHECKING:
    from flask import Flask

    from waybill.outbox import Handler, Job
    from waybill.services import Services

GROUP = EXTENSIONS_GROUP
TOKEN_RESOLVERS = "waybill_token_resolvers"  # noqa: S105 (a registry key, not a secret)

#: (request session, raw bearer token, services) -> the authenticated principal, or AuthenticationFailed.
TokenResolver = Callable[[Session, str, "Services"], Principal]


class Extension(Protocol):
    """What an upper layer provides to the composition."""

    name: str

    def init_app(self, app: Flask) -> None:
        """Register blueprints, token resolvers and whatever else the app needs from this extension."""

    def cli_commands(self) -> Sequence[click.Command]:
        """Commands (or groups) to add to the ``waybill`` command line."""

    def task_handlers(self, services: Services) -> Mapping[str, Handler]:
        """Background task handlers by outbox topic (see waybill.outbox)."""

    def periodic_jobs(self) -> Sequence[Job]:
        """Jobs to run once per period across all processes and nodes."""

    def forget_parties(self, session: Session, shipment_ids: Sequence[str], party: str | None) -> None:
        """Remove what this extension holds of these shipments' parties' personal data (``party`` None: both):
        retention and a subject's deletion call it in the transaction that destroys the data."""


@lru_cache(maxsize=1)
def load_extensions() -> tuple[Extension, ...]:
    """Every installed extension, in name order (loaded once per process)."""
    return tuple(cast(Extension, ext) for ext in load_group(GROUP))
