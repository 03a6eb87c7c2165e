"""PNG renderer: 1-bit images at 203 dpi (what a thermal printer prints), for previews and handhelds."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from PIL import Image, ImageDraw

from .fonts import metrics, pil_font
from .layout import DOTS_PER_MM, LabelLayout
from .templates import Template

MEDIA_TYPE = "image/png"
DPI = 203
FRAME_DOTS = 2  # zone frame width (~0.25 mm)


def _d(mm: float) -> int:
    return round(mm * DOTS_PER_MM)


def render_image(lay: LabelLayout) -> Image.Image:
    """Draw one label into a 1-bit Pillow image (white background, black ink)."""
    t = lay.template
    img = Image.new("1", (_d(t.width), _d(t.height)), 1)
    draw = ImageDraw.Draw(img)
    draw.fontmode = "1"  # no anti-aliasing: thermal heads print dots, not greys
    for z in t.zones.values():
        draw.rectangle((_d(z.x), _d(z.y), _d(z.right) - 1, _d(z.bottom) - 1), outline=0, width=FRAME_DOTS)
    if lay.barcode is not None:
        bc = lay.barcode
        x0, y0, dm = _d(bc.x), _d(bc.y), bc.module_dots
        y1 = y0 + _d(bc.h) - 1
        for bx, w in bc.symbol.bars:
            draw.rectangle((x0 + bx * dm, y0, x0 + (bx + w) * dm - 1, y1), fill=0)
    if lay.qr is not None:
        qr = lay.qr
        x0, y0, dm = _d(qr.x), _d(qr.y), qr.module_dots
        for r, c, n in qr.symbol.runs:
            draw.rectangle((x0 + c * dm, y0 + r * dm, x0 + (c + n) * dm - 1, y0 + (r + 1) * dm - 1), fill=0)
    m = metrics()
    for placed in lay.texts:
        for line in placed.lines:
            px = max(1, round(line.size * DOTS_PER_MM))
            font = pil_font(px)
            x, y = line.x * DOTS_PER_MM, line.baseline * DOTS_PER_MM
            if font.getlength(line.text) <= line.width * DOTS_PER_MM + 1:
                draw.text((x, y), line.text, font=font, fill=0, anchor="ls")
            else:
                # Hinted advances ran wider than the layout's: place each character at its layout position
                # so the line stays inside its slot.
                scale = line.size * DOTS_PER_MM
                for ch in line.text:
                    draw.text((x, y), ch, font=font, fill=0, anchor="ls")
                    x += m.width(ch) * scale
    return img


def encode_png(img: Image.Image) -> bytes:
    """PNG bytes with the physical resolution recorded (so 1:1 printing works)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", dpi=(DPI, DPI), optimize=False, compress_level=6)
    return buf.getvalue()


def iter_png(layouts: Iterable[LabelLayout], template: Template) -> Iterator[bytes]:
    """One complete PNG file per label (PNG has no pages)."""
    for lay in layouts:
        yield encode_png(render_image(lay))
