"""Loading the objects published under an entry-point group (a module of its own: the extension registry,
the migration environment and the schema check all load them, and it imports nothing of the service)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

EXTENSIONS_GROUP = "waybill.extensions"


class ExtensionMissing(RuntimeError):
    """An entry point names an object that is not there (a broken or partial install)."""


@cache
def load_group(group: str) -> tuple[object, ...]:
    """Every object of ``group``, in entry-point name order, loaded once per process; importing an
    extension registers its tables on the metadata."""
    found: list[object] = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            found.append(ep.load())
        except (ImportError, AttributeError) as exc:
            raise ExtensionMissing(f"extension {ep.name!r} ({ep.value}) cannot be loaded: {exc}") from exc
    return tuple(found)
