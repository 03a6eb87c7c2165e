"""Label templates: pure data, one per size, declared in millimetres (origin top-left, y down).

Zones follow GB/T 41833-2022 (after YZ/T 0148): code/number (with a header band: carrier name, order-number
tail), destination (sorting code, consolidation point 集包地), recipient, sender, contents (category, weight,
pieces, service, print time), QR, signature. Every text slot lies inside its zone; the
layout engine keeps every line of text inside its slot (shrink, wrap, then truncate with an ellipsis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from .errors import UnsupportedSize


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle in millimetres: left ``x``, top ``y``, width ``w``, height ``h``."""

    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def contains(self, x0: float, y0: float, x1: float, y1: float, eps: float = 1e-6) -> bool:
        """Whether the rectangle (x0, y0)-(x1, y1) lies inside this box."""
        return (x0 >= self.x - eps and y0 >= self.y - eps and x1 <= self.right + eps
                and y1 <= self.bottom + eps)


@dataclass(frozen=True, slots=True)
class TextSlot:
    """Where one text field goes: its zone, box, preferred and minimum em size (mm), lines and alignment.

    ``text`` is set for fixed captions (e.g. ``收``); otherwise the layout fills the slot from the model.
    """

    zone: str
    box: Box
    size: float
    min_size: float
    max_lines: int = 1
    align: Literal["left", "center", "right"] = "left"
    valign: Literal["top", "middle"] = "top"
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """One label size: page size, zone boxes (drawn as frames), text slots, barcode and QR boxes."""

    size: str
    width: float
    height: float
    zones: MappingProxyType[str, Box]
    slots: MappingProxyType[str, TextSlot]
    barcode: Box  # inside zone "code"
    qr: Box  # inside zone "qr"
    barcode_module_max_dots: int = 3  # 0.375 mm at 203 dpi: wide enough for any scanner
    zone_of: MappingProxyType[str, str] = field(
        default_factory=lambda: MappingProxyType({"barcode": "code", "qr": "qr"}))


def _t(size: str, w: float, h: float, zones: dict[str, Box], slots: dict[str, TextSlot], barcode: Box,
       qr: Box) -> Template:
    return Template(size, w, h, MappingProxyType(zones), MappingProxyType(slots), barcode, qr)


def _slot(zone: str, x: float, y: float, w: float, h: float, size: float, min_size: float, *, max_lines: int = 1,
          align: Literal["left", "center", "right"] = "left", valign: Literal["top", "middle"] = "top",
          text: str | None = None) -> TextSlot:
    return TextSlot(zone, Box(x, y, w, h), size, min_size, max_lines, align, valign, text)


# 100 x 150 mm (SF, EMS). Heights: code 26, destination 20, recipient 30, sender 20, contents 14, QR/sign 40.
T100X150 = _t(
    "100x150", 100, 150,
    zones={
        "code": Box(0, 0, 100, 26), "destination": Box(0, 26, 100, 20), "recipient": Box(0, 46, 100, 30),
        "sender": Box(0, 76, 100, 20), "contents": Box(0, 96, 100, 14), "qr": Box(0, 110, 44, 40),
        "signature": Box(44, 110, 56, 40),
    },
    slots={
        "carrier": _slot("code", 2, 0.8, 56, 6, 5, 3.5),
        "order_tail": _slot("code", 60, 1.3, 38, 5, 3.6, 2.5, align="right"),
        "waybill_no": _slot("code", 5, 20.5, 90, 5, 4, 2.5, align="center"),
        "sorting_code": _slot("destination", 3, 26.8, 94, 12.7, 11, 5, align="center", valign="middle"),
        "consolidation": _slot("destination", 3, 39.8, 94, 5.6, 4.4, 2.8, align="center"),
        "recipient_tag": _slot("recipient", 2, 47.5, 8, 8, 6.5, 6.5, align="center", text="收"),
        "recipient_line": _slot("recipient", 12, 47.5, 86, 7, 5.2, 3),
        "recipient_address": _slot("recipient", 12, 55, 86, 20, 4.4, 2.8, max_lines=4),
        "sender_tag": _slot("sender", 2, 77.5, 8, 8, 6.5, 6.5, align="center", text="寄"),
        "sender_line": _slot("sender", 12, 77.5, 86, 5.5, 4, 2.8),
        "sender_address": _slot("sender", 12, 83.5, 86, 12, 3.6, 2.5, max_lines=3),
        "contents": _slot("contents", 2, 97.5, 96, 5.5, 3.8, 2.5),
        "service": _slot("contents", 2, 103.5, 96, 5.5, 3.8, 2.5),
        "signature_name": _slot("signature", 46, 113, 52, 5, 3.6, 3.6, text="签收人:"),
        "signature_time": _slot("signature", 46, 131, 52, 5, 3.6, 3.6, text="签收时间:"),
    },
    barcode=Box(4, 7.3, 92, 12.7),
    qr=Box(3, 112, 38, 36),
)

# 100 x 180 mm (most carriers): the same zones, taller.
T100X180 = _t(
    "100x180", 100, 180,
    zones={
        "code": Box(0, 0, 100, 30), "destination": Box(0, 30, 100, 24), "recipient": Box(0, 54, 100, 36),
        "sender": Box(0, 90, 100, 24), "contents": Box(0, 114, 100, 16), "qr": Box(0, 130, 50, 50),
        "signature": Box(50, 130, 50, 50),
    },
    slots={
        "carrier": _slot("code", 2, 0.8, 56, 7, 5.6, 3.5),
        "order_tail": _slot("code", 60, 1.5, 38, 5.5, 4, 2.5, align="right"),
        "waybill_no": _slot("code", 5, 23.8, 90, 5.6, 4.4, 2.5, align="center"),
        "sorting_code": _slot("destination", 3, 30.8, 94, 16, 13.5, 6, align="center", valign="middle"),
        "consolidation": _slot("destination", 3, 47.2, 94, 6.2, 4.8, 3, align="center"),
        "recipient_tag": _slot("recipient", 2, 55.5, 9, 9, 7.5, 7.5, align="center", text="收"),
        "recipient_line": _slot("recipient", 13, 55.5, 85, 8, 5.8, 3),
        "recipient_address": _slot("recipient", 13, 64, 85, 25, 4.8, 2.8, max_lines=5),
        "sender_tag": _slot("sender", 2, 91.5, 9, 9, 7.5, 7.5, align="center", text="寄"),
        "sender_line": _slot("sender", 13, 91.5, 85, 6.5, 4.4, 2.8),
        "sender_address": _slot("sender", 13, 98.5, 85, 14.5, 3.9, 2.5, max_lines=3),
        "contents": _slot("contents", 2, 115.5, 96, 6.5, 4.2, 2.5),
        "service": _slot("contents", 2, 122.5, 96, 6.5, 4.2, 2.5),
        "signature_name": _slot("signature", 52, 133, 46, 6, 4, 4, text="签收人:"),
        "signature_time": _slot("signature", 52, 156, 46, 6, 4, 4, text="签收时间:"),
    },
    barcode=Box(4, 8.5, 92, 15),
    qr=Box(4, 133, 42, 44),
)

# 76 x 130 mm one-ply (STO, J&T, ZTO, YTO, Yunda): narrower, the barcode module drops to 2 dots if needed.
T76X130 = _t(
    "76x130", 76, 130,
    zones={
        "code": Box(0, 0, 76, 24), "destination": Box(0, 24, 76, 17), "recipient": Box(0, 41, 76, 26),
        "sender": Box(0, 67, 76, 18), "contents": Box(0, 85, 76, 12), "qr": Box(0, 97, 36, 33),
        "signature": Box(36, 97, 40, 33),
    },
    slots={
        "carrier": _slot("code", 1.5, 0.7, 42, 5, 4.2, 3),
        "order_tail": _slot("code", 45, 1.1, 29.5, 4.4, 3.2, 2.2, align="right"),
        "waybill_no": _slot("code", 3, 18.6, 70, 5, 3.6, 2.3, align="center"),
        "sorting_code": _slot("destination", 2, 24.7, 72, 11, 9.5, 4.5, align="center", valign="middle"),
        "consolidation": _slot("destination", 2, 35.9, 72, 4.7, 3.6, 2.3, align="center"),
        "recipient_tag": _slot("recipient", 1.5, 42, 7, 7, 5.6, 5.6, align="center", text="收"),
        "recipient_line": _slot("recipient", 10, 42, 64.5, 6, 4.4, 2.6),
        "recipient_address": _slot("recipient", 10, 48.5, 64.5, 18, 3.7, 2.5, max_lines=4),
        "sender_tag": _slot("sender", 1.5, 68, 7, 7, 5.6, 5.6, align="center", text="寄"),
        "sender_line": _slot("sender", 10, 68, 64.5, 5, 3.5, 2.4),
        "sender_address": _slot("sender", 10, 73.5, 64.5, 11, 3.1, 2.3, max_lines=3),
        "contents": _slot("contents", 1.5, 86, 73, 5, 3.3, 2.2),
        "service": _slot("contents", 1.5, 91.5, 73, 5, 3.3, 2.2),
        "signature_name": _slot("signature", 38, 99.5, 36, 5, 3.3, 3.3, text="签收人:"),
        "signature_time": _slot("signature", 38, 115, 36, 5, 3.3, 3.3, text="签收时间:"),
    },
    barcode=Box(2, 6.3, 72, 11.8),
    qr=Box(2, 99, 32, 30),
)

TEMPLATES: MappingProxyType[str, Template] = MappingProxyType(
    {t.size: t for t in (T100X150, T100X180, T76X130)})
SIZES: tuple[str, ...] = tuple(TEMPLATES)


def get_template(size: str) -> Template:
    """The template for ``size`` (e.g. ``"100x150"``); :class:`UnsupportedSize` otherwise."""
    try:
        return TEMPLATES[size]
    except (KeyError, TypeError):
        raise UnsupportedSize(str(size), SIZES) from None
