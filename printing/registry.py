"""The renderer interface and the table of formats."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .errors import UnsupportedFormat
from .gate import check_release
from .layout import LabelLayout, layout_label
from .model import LabelModel
from .templates import Template


@dataclass(frozen=True, slots=True)
class Renderer:
    """One output format: ``stream`` turns laid-out labels into a byte stream for one document.

    ``symbols`` says whether the layout must compute barcode/QR geometry (False for printer languages,
    where the printer encodes Code128 and QR itself).
    """

    fmt: str
    media_type: str
    symbols: bool
    stream: Callable[[Iterable[LabelLayout], Template], Iterator[bytes]]

    def layouts(self, models: Iterable[LabelModel], template: Template) -> Iterator[LabelLayout]:
        """Gate and lay out each model lazily, in order."""
        for model in models:
            check_release(model)
            yield layout_label(model, template, symbols=self.symbols)


def _pdf(layouts: Iterable[LabelLayout], template: Template) -> Iterator[bytes]:
    from .render_pdf import iter_pdf

    return iter_pdf(layouts, template)


def _png(layouts: Iterable[LabelLayout], template: Template) -> Iterator[bytes]:
    from .render_png import iter_png

    return iter_png(layouts, template)


def _zpl(layouts: Iterable[LabelLayout], template: Template) -> Iterator[bytes]:
    from .render_zpl import iter_zpl

    return iter_zpl(layouts, template)


def _tspl(layouts: Iterable[LabelLayout], template: Template) -> Iterator[bytes]:
    from .render_tspl import iter_tspl

    return iter_tspl(layouts, template)


_RENDERERS = {
    r.fmt: r for r in (
        Renderer("pdf", "application/pdf", True, _pdf),
        Renderer("png", "image/png", True, _png),
        Renderer("zpl", "application/zpl", False, _zpl),
        Renderer("tspl", "application/tspl", False, _tspl),
    )
}
FORMATS: tuple[str, ...] = tuple(_RENDERERS)
MEDIA_TYPES: dict[str, str] = {k: r.media_type for k, r in _RENDERERS.items()}


def get_renderer(fmt: str) -> Renderer:
    """The renderer for ``fmt``; :class:`UnsupportedFormat` otherwise."""
    try:
        return _RENDERERS[fmt]
    except (KeyError, TypeError):
        raise UnsupportedFormat(str(fmt), FORMATS) from None
