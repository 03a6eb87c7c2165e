"""What the browser fixtures hand to tests: the live server and a watched phone-sized page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.conftest import Env


@dataclass
class LiveServer:
    """The app served over real HTTP (threads), with the outbox relayed in the background as `waybill serve` does."""

    env: Env
    url: str
    services: Any


@dataclass
class Watched:
    """A phone-sized page, with every request it made and every console error or page error it logged."""

    page: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
