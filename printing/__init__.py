"""Privacy waybill label rendering: PDF, PNG, ZPL II and TSPL from a label model of masked fields only.

Public API::

    render_label(model, fmt, size) -> bytes
    iter_render(models, fmt, size) -> Iterator[bytes]

Every label passes the release gate (:func:`printing.gate.check_release`) before anything is drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .config import PrintConfig, configure
from .errors import FontMissing, LabelError, UnmaskedField, UnsupportedFormat, UnsupportedSize
from .fonts import check_fonts
from .gate import check_release
from .model import LabelModel, MaskedParty
from .registry import FORMATS, MEDIA_TYPES, get_renderer
from .templates import SIZES, get_template

__all__ = [
    "FORMATS", "MEDIA_TYPES", "SIZES", "FontMissing", "LabelError", "LabelModel", "MaskedParty", "PrintConfig",
    "UnmaskedField", "UnsupportedFormat", "UnsupportedSize", "check_fonts", "check_release", "configure", "iter_render",
    "render_label",
]


def iter_render(models: Iterable[LabelModel], fmt: str, size: str) -> Iterator[bytes]:
    """Stream one document holding every label, in order, as byte chunks.

    PDF: one page per label, a chunk per finished page (memory does not grow with the batch).
    ZPL/TSPL: one ``^XA..^XZ`` (one ``PRINT``) per label. PNG has no pages: one complete PNG file per label.
    ``fmt`` and ``size`` are validated before the first chunk; a label that fails the release gate raises
    :class:`UnmaskedField` when its turn comes, so a caller streaming to a client must abort the response.
    """
    renderer = get_renderer(fmt)
    template = get_template(size)
    check_fonts()
    return renderer.stream(renderer.layouts(models, template), template)


def render_label(model: LabelModel, fmt: str, size: str) -> bytes:
    """Render one label to a complete file in ``fmt`` (``pdf``, ``png``, ``zpl``, ``tspl``) and ``size``."""
    check_release(model)  # fail before any work, not inside the stream
    return b"".join(iter_render((model,), fmt, size))
