"""CJK font resolution and the per-process font objects shared by every renderer.

The project ships its Chinese font inside the package: WenQuanYi Micro Hei 0.2.0-beta (``wqy-microhei.ttc``,
TrueType outlines, Apache-2.0), in ``printing/data/`` with its licence files, taken unmodified from Debian's
``fonts-wqy-microhei`` package (provenance in ``printing/data/README.md``). Its SHA-256 is checked before the
file is used. Resolution order:

1. ``WAYBILL_LABEL_FONT`` (a path, optionally ``path#index`` for a face inside a .ttc) — if set it must work;
   a bad override is an error, never a silent fallback;
2. the bundled font — a bundled file whose checksum differs is an error (a damaged or altered install);
3. only if the bundled file is absent (a repackaging that leaves it out): Debian/Ubuntu system locations
   (``fonts-wqy-microhei``, ``fonts-wqy-zenhei``).

Nothing is downloaded at run time. A missing or unusable font raises :class:`FontMissing` at start-up (the
first render, or :func:`check_fonts`), because rendering Chinese with a font that lacks the glyphs
prints tofu.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .config import current, on_change
from .errors import FontMissing

if TYPE_CHECKING:
    from PIL.ImageFont import FreeTypeFont
    from reportlab.pdfbase.ttfonts import TTFont

ENV_VAR = "WAYBILL_LABEL_FONT"  # the setting behind PrintConfig.font, named in messages
PDF_FONT_NAME = "WaybillCJK"
INSTALL_HINT = (
    "reinstall privacy-waybill (it ships WenQuanYi Micro Hei as printing/data/wqy-microhei.ttc), or "
    "'apt-get install fonts-wqy-microhei', or point WAYBILL_LABEL_FONT at a TrueType (.ttf/.ttc) CJK font"
)
BUNDLED_FONT = Path(__file__).resolve().parent / "data" / "wqy-microhei.ttc"
# Debian bookworm fonts-wqy-microhei 0.2.0-beta-3.1, /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
BUNDLED_FONT_SHA256 = "2420e8078af796b19a3f6ef13de527a1a91c1e7171eea115926c614ced1009b3"
# Characters every label prints; a font lacking any of them would produce tofu.
_PROBE = "收寄件人重量服务打印时间签收标准快递省市区街道*0123456789ABCZ-:."
_SYSTEM_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


@dataclass(frozen=True, slots=True)
class FontSpec:
    """A resolved font: file path and face index inside a TrueType collection."""

    path: Path
    index: int = 0


def verify_font_file(path: Path, sha256: str = BUNDLED_FONT_SHA256) -> Path:
    """``path`` if its SHA-256 is ``sha256``; else :class:`FontMissing` naming both digests."""
    try:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise FontMissing(f"font {path} cannot be read ({exc}); {INSTALL_HINT}") from exc
    if digest != sha256:
        raise FontMissing(f"font {path} is not the font privacy-waybill ships (SHA-256 {digest}, expected "
                          f"{sha256}): a damaged or altered install; {INSTALL_HINT}")
    return path


@lru_cache(maxsize=1)
def _package_font() -> Path | None:
    """The bundled font, checksum verified (once per process); ``None`` if the file is absent."""
    if not BUNDLED_FONT.is_file():
        return None
    return verify_font_file(BUNDLED_FONT)


def resolve_font() -> FontSpec:
    """Find the CJK font to use, honouring the configured one (``WAYBILL_LABEL_FONT``); raise
    :class:`FontMissing` if none."""
    override = (current().font or "").strip()
    if override:
        raw, _, idx = override.partition("#")
        path = Path(raw).expanduser()
        if not path.is_file():
            raise FontMissing(f"{ENV_VAR}={override!r} does not name a font file; {INSTALL_HINT}")
        try:
            return FontSpec(path, int(idx or 0))
        except ValueError:
            raise FontMissing(f"{ENV_VAR}: bad face index in {override!r} (use path#N)") from None
    candidates = [_package_font(), *(Path(p) for p in _SYSTEM_FONTS)]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return FontSpec(candidate)
    raise FontMissing(f"no CJK TrueType font found; {INSTALL_HINT}")


class _Widths(dict[str, float]):
    """char -> advance in em; unknown characters get the font's default width."""

    def __init__(self, widths: dict[str, float], default: float) -> None:
        super().__init__(widths)
        self.default = default

    def __missing__(self, key: str) -> float:
        return self.default


class FontMetrics:
    """Advance widths (in em) and vertical metrics of the label font, format-independent.

    The layout engine measures with these, so PDF, PNG and ZPL place text identically.
    """

    def __init__(self, char_widths: dict[int, float], default_width: float, ascent: float, descent: float,
                 cmap: frozenset[int]) -> None:
        # Keyed by character (not code point) so that measuring is sum(map(...)) at C speed.
        self._widths = _Widths({chr(c): w for c, w in char_widths.items()}, default_width)
        self.ascent = ascent  # em, positive, above the baseline
        self.descent = descent  # em, positive, below the baseline
        self.cmap = cmap
        self.chars = frozenset(chr(c) for c in cmap) | {" "}

    def width(self, text: str) -> float:
        """Advance width of ``text`` in em (multiply by the font size)."""
        return float(sum(map(self._widths.__getitem__, text)))

    def has_glyphs(self, text: str) -> bool:
        """Whether every character of ``text`` has a glyph (spaces aside)."""
        return self.chars.issuperset(text)


_lock = threading.Lock()


@lru_cache(maxsize=1)
def pdf_font() -> TTFont:
    """The reportlab TrueType font object, parsed and registered once per process."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    spec = resolve_font()
    with _lock:
        try:
            font = TTFont(PDF_FONT_NAME, str(spec.path), subfontIndex=spec.index, asciiReadable=False)
        except TTFError as exc:
            # e.g. a CFF-flavoured .otf: reportlab can only embed TrueType outlines.
            msg = f"font {spec.path} is not a usable TrueType font ({exc}); {INSTALL_HINT}"
            raise FontMissing(msg) from exc
        pdfmetrics.registerFont(font)
    missing = [c for c in _PROBE if ord(c) not in font.face.charToGlyph]
    if missing:
        raise FontMissing(f"font {spec.path} lacks CJK glyphs ({''.join(missing)}); {INSTALL_HINT}")
    return font


@lru_cache(maxsize=1)
def metrics() -> FontMetrics:
    """The shared :class:`FontMetrics`, built from the same face the PDF embeds."""
    face = pdf_font().face
    widths = {code: w / 1000.0 for code, w in face.charWidths.items()}
    return FontMetrics(widths, face.defaultWidth / 1000.0, face.ascent / 1000.0, abs(face.descent) / 1000.0,
                       frozenset(face.charToGlyph))


@lru_cache(maxsize=64)
def pil_font(px: int) -> FreeTypeFont:
    """A Pillow font of ``px`` pixels (em size), cached per size."""
    from PIL import ImageFont

    spec = resolve_font()
    return ImageFont.truetype(str(spec.path), px, index=spec.index, layout_engine=ImageFont.Layout.BASIC)


def forget_fonts() -> None:
    """Drop the loaded fonts (the configuration changed)."""
    _package_font.cache_clear()
    pdf_font.cache_clear()
    metrics.cache_clear()
    pil_font.cache_clear()


on_change(forget_fonts)


def check_fonts() -> FontSpec:
    """Resolve and load the font now (call at service start-up to fail fast); return what was loaded."""
    pdf_font()
    metrics()
    return resolve_font()
