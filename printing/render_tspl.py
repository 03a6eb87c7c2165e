"""TSPL renderer (TSC and compatible printers): string assembly, printer-side Code128 and QR.

Chinese text uses the printer's built-in ``TSS24.BF2`` simplified-Chinese bitmap font (GB2312 bytes): a
fixed 24-dot cell (12 dots for ASCII) scaled by whole multipliers. Because sizes are therefore coarse, each
line is printed at the largest multiplier not taller than the layout's size and, where the fixed cell is
wider than the layout's font, cut with ``…`` to stay inside its slot. Characters outside GBK print as ``?``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .barcodes import QR_QUIET_MODULES
from .layout import DOTS_PER_MM, ELLIPSIS, LabelLayout, PlacedLine
from .templates import Template

MEDIA_TYPE = "application/tspl"
FONT = "TSS24.BF2"
CELL = 24  # dots


def _d(mm: float) -> int:
    return round(mm * DOTS_PER_MM)


def _q(text: str) -> str:
    # TSPL string literal: a double quote is written as \["]
    return text.replace('"', '\\["]')


def _cells(ch: str) -> int:
    return 1 if ord(ch) < 128 else 2  # half-width ASCII, full-width everything else


def _line(line: PlacedLine, slot_right_mm: float) -> str:
    mul = max(1, round(line.size * DOTS_PER_MM) // CELL)
    half = CELL * mul // 2
    room = (_d(slot_right_mm) - _d(line.x)) // half
    text = line.text.encode("gbk", "replace").decode("gbk")
    if sum(map(_cells, text)) > room:
        while text and sum(map(_cells, text)) > room - 2:
            text = text[:-1]
        text += ELLIPSIS
    top = round((line.baseline - line.ascent) * DOTS_PER_MM)
    return f'TEXT {_d(line.x)},{top},"{FONT}",0,{mul},{mul},"{_q(text)}"\r\n'


def _header(t: Template) -> str:
    parts = [f"SIZE {t.width:g} mm,{t.height:g} mm\r\nGAP 2 mm,0 mm\r\n",
             "DIRECTION 1,0\r\nREFERENCE 0,0\r\nCLS\r\n"]
    for z in t.zones.values():
        parts.append(f"BOX {_d(z.x)},{_d(z.y)},{_d(z.right) - 1},{_d(z.bottom) - 1},2\r\n")
    return "".join(parts)


def iter_tspl(layouts: Iterable[LabelLayout], template: Template) -> Iterator[bytes]:
    """One ``CLS .. PRINT 1,1`` block per label, GBK encoded."""
    head = _header(template)
    bc, q = template.barcode, template.qr
    bc_h = int(bc.h * DOTS_PER_MM)
    for lay in layouts:
        # Upper bound of the Code128 width in modules (subset B), to pick the narrow bar width.
        modules = 11 * (len(lay.waybill_no) + 2) + 13
        narrow = max(1, min(template.barcode_module_max_dots, int(bc.w * DOTS_PER_MM) // (modules + 20)))
        bx = _d(bc.x) + max(0, (int(bc.w * DOTS_PER_MM) - modules * narrow) // 2)
        side = int(min(q.w, q.h) * DOTS_PER_MM)
        cell = max(1, min(10, side // (33 + 2 * QR_QUIET_MODULES)))  # sized for up to version 4
        qx, qy = _d(q.x) + QR_QUIET_MODULES * cell, _d(q.y) + QR_QUIET_MODULES * cell
        parts = [head,
                 f'BARCODE {bx},{_d(bc.y)},"128",{bc_h},0,0,{narrow},{narrow},"{_q(lay.waybill_no)}"\r\n',
                 f'QRCODE {qx},{qy},M,{cell},A,0,"{_q(lay.token)}"\r\n']
        slots = template.slots
        for placed in lay.texts:
            right = slots[placed.slot].box.right
            parts.extend(_line(line, right) for line in placed.lines)
        parts.append("PRINT 1,1\r\n")
        yield "".join(parts).encode("gbk", "replace")
