"""The printing package's configuration: set once at start-up from the service settings.

``printing`` reads no environment variables itself (:mod:`waybill.settings` is the one place that
does); the service calls :func:`configure` with the validated values, and the defaults below are
what an unconfigured process (a test, a script) renders with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ZPL_TEXT_MODES = ("glyphs", "resident")


@dataclass(frozen=True, slots=True)
class PrintConfig:
    """``font``: a TrueType/TTC file (``path`` or ``path#index``), None for the packaged/system font.
    ``zpl_text``: Chinese on ZPL as downloaded glyph bitmaps (any printer) or a printer-resident font.
    ``zpl_font``: that resident font's name on the printer."""

    font: str | None = None
    zpl_text: str = "glyphs"
    zpl_font: str = "E:SIMSUN.TTF"

    def __post_init__(self) -> None:
        if self.zpl_text not in ZPL_TEXT_MODES:
            raise ValueError(f"ZPL text mode must be one of {ZPL_TEXT_MODES}")


_current = PrintConfig()
# Called after the configuration changed: the modules that cache what depends on it (loaded fonts, glyph
# bitmaps, fitted captions) register here, so this module imports none of them.
_listeners: list[Callable[[], None]] = []


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever :func:`configure` changes the configuration."""
    _listeners.append(listener)


def configure(config: PrintConfig) -> None:
    """Make ``config`` the process's printing configuration (fonts are loaded again on next use)."""
    global _current
    if config != _current:
        _current = config
        for listener in _listeners:
            listener()


def current() -> PrintConfig:
    return _current
