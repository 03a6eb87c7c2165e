"""PDF renderer: one page per label, streamed; vector barcodes, QR as a single path, embedded CJK subset."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from reportlab.lib.rl_accel import fp_str  # C implementation when rl_accel is installed

from .fonts import pdf_font
from .layout import LabelLayout
from .pdf_stream import StreamingPDF
from .templates import Template

PT_PER_MM = 72 / 25.4
FRAME_MM = 0.3  # zone frame line width
MEDIA_TYPE = "application/pdf"


def _page_content(lay: LabelLayout, pdf: StreamingPDF, height_pt: float) -> bytes:
    k = PT_PER_MM
    t = lay.template
    out: list[str] = ["0 g 0 G\n"]
    # Zone frames: one stroked path.
    out.append(f"{fp_str(FRAME_MM * k)} w\n")
    out.extend(f"{fp_str(z.x * k, height_pt - z.bottom * k, z.w * k, z.h * k)} re\n"
               for z in t.zones.values())
    out.append("S\n")
    # Code128: bars in module units under one transform, one filled path.
    bc, qr = lay.barcode, lay.qr
    if bc is None or qr is None:
        raise ValueError("a PDF label needs placed symbols (layout_label(..., symbols=True))")
    out.append(f"q {fp_str(bc.module * k, 0, 0, bc.h * k, bc.x * k, height_pt - (bc.y + bc.h) * k)} cm\n")
    out.extend([f"{x} 0 {w} 1 re\n" for x, w in bc.symbol.bars])
    out.append("f Q\n")
    # QR: precomputed runs in module units (rows grow downwards, hence the negative y scale), one path.
    m = qr.module * k
    out.append(f"q {fp_str(m, 0, 0, -m, qr.x * k, height_pt - qr.y * k)} cm\n")
    out.extend([f"{c} {r} {n} 1 re\n" for r, c, n in qr.symbol.runs])
    out.append("f Q\nBT\n")
    # Text: absolute text matrix per line, subset font switches inside the line.
    enc = pdf.encode
    for placed in lay.texts:
        for line in placed.lines:
            size = fp_str(line.size * k)
            out.append(f"1 0 0 1 {fp_str(line.x * k, height_pt - line.baseline * k)} Tm\n")
            for subset, codes in enc(line.text):
                out.append(f"/F{subset} {size} Tf <{codes.hex()}> Tj\n")
    out.append("ET\n")
    return "".join(out).encode("ascii")


def iter_pdf(layouts: Iterable[LabelLayout], template: Template, *, compress: bool = True) -> Iterator[bytes]:
    """Stream one PDF document, one page per layout, yielding the bytes of each page as it is finished."""
    font = pdf_font()
    w, h = template.width * PT_PER_MM, template.height * PT_PER_MM
    pdf = StreamingPDF(font, w, h, compress=compress)
    yield pdf.begin()
    for lay in layouts:
        yield pdf.page(_page_content(lay, pdf, h))
    yield b"".join(pdf.end())
